#!/bin/bash
# The part of the official postgres image's docker-entrypoint.sh that compose.yml uses: as root,
# give PGDATA and the socket directory to `postgres` and run again as that user; on an empty
# PGDATA, initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD (never on a command
# line: a file descriptor), POSTGRES_INITDB_ARGS, a `host all all all METHOD` line
# (POSTGRES_HOST_AUTH_METHOD, scram-sha-256 by default), listen_addresses '*', and create
# POSTGRES_DB; then exec the server.
set -euo pipefail
if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    chmod 700 "$PGDATA"
    chmod 2775 /var/run/postgresql
    # gosu's way: the UID and primary GID of /etc/passwd's postgres, no other groups.
    exec setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
        echo "docker-entrypoint.sh: POSTGRES_PASSWORD is not set (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as upstream.
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    printf '\nhost all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start >/dev/null
        PGPASSWORD=${POSTGRES_PASSWORD:-} psql -v ON_ERROR_STOP=1 -q -h /var/run/postgresql \
            -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "docker-entrypoint.sh: PostgreSQL init process complete; ready for start up."
fi
exec "$@"
