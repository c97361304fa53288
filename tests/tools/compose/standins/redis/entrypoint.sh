#!/bin/bash
# The official redis image's docker-entrypoint.sh, in short: options alone mean redis-server;
# as root, /data is given to `redis` and the server runs as that user; protected mode is off
# unless the arguments say otherwise (the official image compiles it off).
set -euo pipefail
if [ "${1:0:1}" = - ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid="$(id -u redis)" --regid="$(id -g redis)" --clear-groups "$0" "$@"
    fi
    case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
