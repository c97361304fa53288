# Source this file (bash): helpers that set up a throwaway PostgreSQL cluster and a Pulp
# settings file in a directory, for the demo and the benchmarks. Tests use tests/support/.
#   throwaway_postgres DIR PORT       initdb + start on 127.0.0.1:PORT (password auth), user pulp, db pulp
#   throwaway_stop DIR                stop the cluster
#   throwaway_pulp_settings DIR PORT  write DIR/settings.py, DIR/database_fields.symmetric.key, dirs
# PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` user.

THROWAWAY_PASSWORD="demo-$RANDOM$RANDOM"

_throwaway_as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

throwaway_postgres() {
    local dir=$1 port=$2
    mkdir -p "$dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/pg"
    printf '%s\n' "$THROWAWAY_PASSWORD" > "$dir/pg.pw"
    chmod 644 "$dir/pg.pw"
    _throwaway_as_pg initdb -D "$dir/pg/data" -U postgres -A scram-sha-256 --pwfile="$dir/pg.pw" \
        --no-sync >/dev/null
    _throwaway_as_pg pg_ctl -D "$dir/pg/data" -l "$dir/pg/log" -w \
        -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    PGPASSWORD=$THROWAWAY_PASSWORD psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "CREATE ROLE pulp LOGIN PASSWORD '$THROWAWAY_PASSWORD'" -c "CREATE DATABASE pulp OWNER pulp"
}

throwaway_stop() {
    local dir=$1
    [ -d "$dir/pg/data" ] && _throwaway_as_pg pg_ctl -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
}

throwaway_pulp_settings() {
    local dir=$1 port=$2
    mkdir -p "$dir/pulp/media" "$dir/pulp/tmp" "$dir/pulp/assets"
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' > "$dir/database_fields.symmetric.key"
    cat > "$dir/settings.py" <<PY
# Plain literal assignments, as deployments mount them.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pulp",
        "USER": "pulp",
        "PASSWORD": "$THROWAWAY_PASSWORD",
        "HOST": "127.0.0.1",
        "PORT": $port,
    }
}
SECRET_KEY = "throwaway-demo-secret-key"
CONTENT_ORIGIN = "http://127.0.0.1:24816"
MEDIA_ROOT = "$dir/pulp/media/"
STATIC_ROOT = "$dir/pulp/assets/"
WORKING_DIRECTORY = "$dir/pulp/tmp/"
FILE_UPLOAD_TEMP_DIR = "$dir/pulp/tmp/"
DB_ENCRYPTION_KEY = "$dir/database_fields.symmetric.key"
PY
    export PULP_SETTINGS="$dir/settings.py"
    export DJANGO_SETTINGS_MODULE=pulpcore.app.settings
}
