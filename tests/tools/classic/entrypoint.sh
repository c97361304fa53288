#!/bin/bash
# Classic reference entrypoint: wait for PostgreSQL in Python, then poll showmigrations every 5 s,
# then exec the server command given as arguments.
here=$(dirname "$0")
python3 "$here/wait_on_postgres.py" || exit 1
while true; do
    pulpcore-manager showmigrations | grep -q '\[ \]'
    [ $? -eq 1 ] && break   # no unapplied migration listed
    sleep 5
done
exec "$@"
