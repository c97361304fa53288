#!/usr/bin/env bash
# Benchmark: the start path of pulp-entrypoint against the classic scripts (tests/tools/classic/),
# on one throwaway PostgreSQL, with the real pulpcore from PyPI. Prints a Markdown report (also
# written to target/bench-startup.md). Not a test: figures, not pass/fail. See docs/bench-startup.md.
#  1. pre-exec time on a migrated database (hyperfine; the "server" is a shim that exits at once)
#  2. peak memory before exec (GNU time's max RSS, same shim)
#  3. the entrypoint's own `migrate` finishing -> a waiting pulp-entrypoint replica starting its server
#  4. an external plain `pulpcore-manager migrate --noinput` (pulp-operator's Job, the compose
#     migration_service) finishing -> a waiting replica starting its server
# For 3 and 4 every run starts from a copy of a template database with migrations pending; the
# waiters start once the migrate is under way (connected to the database) and run side by side
# on the same migrate; the delay is (waiter's server start) - (migrate's exit), both taken in shims.
#
# Environment:
#   BENCH_VENV=default|plugins|both   which Pulp to measure (default: both)
#       default: tests/tools/deps.sh's PULP_VENV (requirements.txt); every run migrates an empty
#                database, as a first installation does
#       plugins: pulpcore with eight plugins (requirements-bench-plugins.txt), cached like
#                deps.sh's venvs in ~/.cache/pulp-entrypoint/venv-plugins-<key>; every run
#                applies the migrations of BENCH_PLUGIN_PENDING (default "maven gem"), as an
#                upgrade that adds plugins does (a full migrate of this set takes ~90 s)
#   BENCH_RUNS=3            runs of 3 and 4
#   BENCH_SEPARATE=1        one migrate per waiter instead of all waiters of a table on one migrate
#   BENCH_PG_PORT           PostgreSQL's port (default: a free one from the kernel)
#   BENCH_LOCK_TIMEOUT=3m   the entrypoint waiters' --lock-timeout, so a broken build cannot hang
#   BENCH_WAIT_TIMEOUT=600  seconds after which any waiter is killed (reported as "none")
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
source tests/tools/deps.sh
source tests/tools/throwaway.sh
for tool in hyperfine:hyperfine time:/usr/bin/time; do
    command -v "${tool#*:}" >/dev/null || { _pe_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
        _pe_root apt-get install -y -qq "${tool%%:*}" >&2; }
done

progress() { echo "bench: [${SECONDS}s] $*" >&2; }
bench_venv=${BENCH_VENV:-both}
case $bench_venv in default) venvs=(default);; plugins) venvs=(plugins);; both) venvs=(default plugins);;
    *) echo "bench: BENCH_VENV is default, plugins or both, not '$bench_venv'" >&2; exit 64;; esac
runs=${BENCH_RUNS:-3}
lock_timeout=${BENCH_LOCK_TIMEOUT:-3m}
wait_timeout=${BENCH_WAIT_TIMEOUT:-600}
separate=${BENCH_SEPARATE:-0}

# The plugin venv, cached as tests/tools/deps.sh caches its own (keyed by the requirements file and
# the Python version, `.complete` written last); installed while cargo builds, before any timing.
plugin_venv_job=
if [[ " ${venvs[*]} " == *" plugins "* ]]; then
    plugin_requirements=tests/tools/requirements-bench-plugins.txt
    plugin_key=$( (cat "$plugin_requirements"; python3 --version) | sha256sum | cut -c1-16)
    PULP_VENV_PLUGINS="${PULP_VENV_PLUGINS:-${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint/venv-plugins-$plugin_key}"
    if [ ! -f "$PULP_VENV_PLUGINS/.complete" ]; then
        echo "bench: creating $PULP_VENV_PLUGINS from PyPI (about two minutes)" >&2
        rm -rf "$PULP_VENV_PLUGINS" "$PULP_VENV_PLUGINS.log"
        mkdir -p "$(dirname "$PULP_VENV_PLUGINS")"
        {
            python3 -m venv "$PULP_VENV_PLUGINS" &&
                "$PULP_VENV_PLUGINS/bin/pip" install -q --disable-pip-version-check -r "$plugin_requirements" &&
                touch "$PULP_VENV_PLUGINS/.complete"
        } >"$PULP_VENV_PLUGINS.log" 2>&1 &
        plugin_venv_job=$!
    fi
fi

cargo build --release --locked -q
progress "built"
if [ -n "$plugin_venv_job" ]; then
    if wait "$plugin_venv_job"; then rm -f "$PULP_VENV_PLUGINS.log"; else
        echo "bench: installing $PULP_VENV_PLUGINS failed:" >&2; cat "$PULP_VENV_PLUGINS.log" >&2; exit 1
    fi
fi
entrypoint=$PWD/target/release/pulp-entrypoint
classic=$PWD/tests/tools/classic/entrypoint.sh
work=$(mktemp -d /tmp/pulp-entrypoint-bench.XXXXXX)
chmod 755 "$work"
trap 'throwaway_stop "$work"; rm -rf "$work"' EXIT
# A port the kernel says is free (not a fixed one in the ephemeral range, where an outgoing
# connection may hold it); taken again if another process binds it before PostgreSQL does.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for attempt in 1 2 3; do
    port=${BENCH_PG_PORT:-$(free_port)}
    if throwaway_postgres "$work" "$port" 2>"$work/pg-start.err"; then break; fi
    throwaway_stop "$work"; rm -rf "$work/pg"
    if [ "$attempt" = 3 ] || [ -n "${BENCH_PG_PORT:-}" ]; then
        echo "bench: PostgreSQL did not start on port $port:" >&2; cat "$work/pg-start.err" "$work/pg/log" >&2 2>/dev/null; exit 1
    fi
done
export PULP_ENTRYPOINT_CONFIG=/dev/null
base_path=$PATH
psql_su() { PGPASSWORD=$THROWAWAY_PASSWORD PGOPTIONS="-c client_min_messages=warning" psql -qtA -h 127.0.0.1 -p "$port" -U postgres "$@"; }
count_lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
ms() { python3 -c "import sys; print('%.0f' % ((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }

# Leaves every migration of the apps given as arguments (and nothing else) pending: migrates the
# rest of a fresh database, as an installation without those plugins is, post_migrate handlers
# included except the pending apps' own (pulpcore's role handler fails without their models).
partial_migrate_py='
import sys
import django
django.setup()
from django.apps import apps
from django.core.management import call_command
from django.core.management.commands import migrate
from django.db.migrations.graph import MigrationGraph
from django.db.models.signals import post_migrate
pending = set(sys.argv[1:])
leaf_nodes = MigrationGraph.leaf_nodes
MigrationGraph.leaf_nodes = lambda self, app=None: [n for n in leaf_nodes(self, app) if n[0] not in pending]
def emit_post_migrate_signal(verbosity, interactive, db, **kwargs):
    for config in apps.get_app_configs():
        if config.models_module is not None and config.label not in pending:
            post_migrate.send(sender=config, app_config=config, verbosity=verbosity,
                              interactive=interactive, using=db, **kwargs)
migrate.emit_post_migrate_signal = emit_post_migrate_signal
call_command("migrate", interactive=False, verbosity=0)
'

# hyperfine's Markdown table for two exports, the first being the fastest expected.
table_py='
import json, math, sys
rows = []
for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
    r = json.load(open(path))["results"][0]
    rows.append((name, r["mean"], r["stddev"] or 0.0, r["min"], r["max"], len(r["times"])))
best = min(rows, key=lambda r: r[1])
print("| Command | Runs | Mean [ms] | Min [ms] | Max [ms] | Relative |")
print("|:---|---:|---:|---:|---:|---:|")
for name, mean, sd, lo, hi, n in rows:
    rel = mean / best[1]
    err = rel * math.sqrt((sd / mean) ** 2 + (best[2] / best[1]) ** 2)
    rel_s = "1.00" if mean == best[1] else "%.2f ± %.2f" % (rel, err)
    print("| `%s` | %d | %.1f ± %.1f | %.1f | %.1f | %s |" % (name, n, mean * 1e3, sd * 1e3, lo * 1e3, hi * 1e3, rel_s))
'

# bench_one NAME VENV PENDING: all four measurements with one Pulp install; PENDING "all" or apps.
bench_one() {
    local name=$1 venv=$2 pending=$3 dir=$work/$1
    mkdir -p "$dir"
    throwaway_pulp_settings "$dir" "$port"
    # Shims: the "server" exits at once, recording when it started; pulpcore-manager records when
    # a real migrate (not `migrate --check`) finished, and names its connection so that the
    # benchmark sees when the migrate is under way.
    local shims=$dir/shims server
    mkdir -p "$shims"
    for server in pulpcore-api pulpcore-content pulpcore-worker; do
        printf '#!/bin/sh\ndate +%%s.%%N > "%s/started-${REPLICA:-0}"\n' "$dir" > "$shims/$server"
    done
    cat > "$shims/pulpcore-manager" <<SH
#!/bin/sh
case "\$1 \$*" in
    "migrate "*--check*) exec "$venv/bin/pulpcore-manager" "\$@";;
    "migrate "*) PGAPPNAME=pulp-bench-migrate "$venv/bin/pulpcore-manager" "\$@"; code=\$?
        date +%s.%N > "$dir/migrated"; exit \$code;;
    "showmigrations "*) echo showmigrations >> "$dir/polls-\${REPLICA:-0}"
        exec "$venv/bin/pulpcore-manager" "\$@";;
    *) exec "$venv/bin/pulpcore-manager" "\$@";;
esac
SH
    chmod +x "$shims"/*
    export PATH="$shims:$venv/bin:$base_path"

    # The template every run of 3 and 4 starts from. Migrating it takes a minute or two with many
    # plugins: it is kept as a dump next to the venvs, keyed by the venv, the pending apps, this
    # script's way of making it and PostgreSQL's version.
    progress "$name: template database ($pending pending)"
    psql_su -d postgres -c "DROP DATABASE IF EXISTS pulp WITH (FORCE)" -c "DROP DATABASE IF EXISTS pulp_pending" \
        -c "CREATE DATABASE pulp_pending OWNER pulp"
    if [ "$pending" != all ]; then
        local dump key
        key=$( (echo "$venv" "$pending" "$partial_migrate_py"; psql_su -d postgres -c 'SHOW server_version_num') |
            sha256sum | cut -c1-16)
        dump="${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint/bench-db-$name-$key.dump"
        if [ -f "$dump" ]; then
            PGPASSWORD=$THROWAWAY_PASSWORD pg_restore -h 127.0.0.1 -p "$port" -U pulp -d pulp_pending \
                --no-owner --exit-on-error "$dump"
        else
            # shellcheck disable=SC2086  # a list of app labels
            PULP_DATABASES__default__NAME=pulp_pending python3 -c "$partial_migrate_py" $pending \
                >"$dir/partial.log" 2>&1 || { cat "$dir/partial.log" >&2; return 1; }
            PGPASSWORD=$THROWAWAY_PASSWORD pg_dump -h 127.0.0.1 -p "$port" -U pulp -d pulp_pending \
                --format=custom --file="$dump.tmp" && mv "$dump.tmp" "$dump"
        fi
    fi
    local template_rows
    template_rows=0
    if [ "$(psql_su -d pulp_pending -c "SELECT to_regclass('django_migrations') IS NOT NULL")" = t ]; then
        template_rows=$(psql_su -d pulp_pending -c "SELECT count(*) FROM django_migrations")
    fi

    # run_delays MIGRATOR WAITER...: one run; MIGRATOR is "entrypoint" or "external", each WAITER
    # is LABEL=COMMAND (run with sh -c, REPLICA=LABEL). Prints "LABEL DELAY_MS" per waiter.
    run_delays() {
        local migrator=$1 spec label migrate_pid pids=() labels=()
        shift
        psql_su -d postgres -c "DROP DATABASE IF EXISTS pulp WITH (FORCE)" \
            -c "CREATE DATABASE pulp TEMPLATE pulp_pending OWNER pulp"
        rm -f "$dir/migrated" "$dir"/started-* "$dir"/polls-*
        if [ "$migrator" = entrypoint ]; then "$entrypoint" migrate >"$dir/migrate.log" 2>&1 &
        else pulpcore-manager migrate --noinput >"$dir/migrate.log" 2>&1 & fi
        migrate_pid=$!
        # The waiters start once the migrate is under way (its pulpcore-manager is connected; for
        # the entrypoint's, the lock is held), so they really wait.
        until [ "$(psql_su -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulp-bench-migrate'")" != 0 ]; do
            kill -0 "$migrate_pid" 2>/dev/null || break
            sleep 0.05
        done
        for spec in "$@"; do
            label=${spec%%=*}
            REPLICA=$label timeout "$wait_timeout" sh -c "${spec#*=}" >"$dir/waiter-$label.log" 2>&1 &
            pids+=("$!"); labels+=("$label")
        done
        wait "$migrate_pid" || { echo "bench: the migrate failed:" >&2; cat "$dir/migrate.log" >&2; return 1; }
        # When the last migration was recorded (Django's clock, the same as date's here).
        local last_row
        last_row=$(psql_su -d pulp -c "SELECT extract(epoch FROM max(applied)) FROM django_migrations")
        local i started
        for i in "${!pids[@]}"; do
            wait "${pids[$i]}" || true
            if [ -f "$dir/started-${labels[$i]}" ]; then
                started=$(cat "$dir/started-${labels[$i]}")
                echo "${labels[$i]} $(ms "$(cat "$dir/migrated")" "$started") $(ms "$last_row" "$started")" \
                    "$(count_lines "$dir/polls-${labels[$i]}")"
            else
                echo "${labels[$i]} none none -"
                echo "bench: waiter ${labels[$i]} did not start its server:" >&2; tail -n 5 "$dir/waiter-${labels[$i]}.log" >&2
            fi
        done
    }
    # delays_table MIGRATOR ROW=LABEL=COMMAND...: $runs runs, one table row per waiter.
    delays_table() {
        local migrator=$1 spec label
        shift
        local specs=()
        for spec in "$@"; do specs+=("${spec#*=}"); done
        : > "$dir/delays"
        local run
        for run in $(seq "$runs"); do
            progress "$name: $migrator migrate, run $run of $runs"
            if [ "$separate" = 1 ]; then
                for spec in "${specs[@]}"; do run_delays "$migrator" "$spec" >> "$dir/delays"; done
            else run_delays "$migrator" "${specs[@]}" >> "$dir/delays"; fi
        done
        echo "| start path | delays after migrate's exit (ms) | after its last migration's row (ms) |"
        echo "|---|---|---|"
        local after_exit after_row polls row
        for spec in "$@"; do
            label=${spec#*=}; label=${label%%=*}
            after_exit=$(awk -v l="$label" '$1 == l { printf "%s ", $2 }' "$dir/delays")
            after_row=$(awk -v l="$label" '$1 == l { printf "%s ", $3 }' "$dir/delays")
            polls=$(awk -v l="$label" '$1 == l { printf "%s ", $4 }' "$dir/delays")
            row=${spec%%=*}
            [ "$label" = classic ] && row="$row (\`showmigrations\` runs: ${polls% })"
            echo "| $row | ${after_exit% } | ${after_row% } |"
        done
    }
    local ep_flags="--lock-timeout $lock_timeout"
    local m3 m4
    # The classic path waits in 4 only: it polls showmigrations whoever migrates.
    m3=$(delays_table entrypoint \
        "\`pulp-entrypoint pulp-worker\`=entrypoint=$entrypoint $ep_flags pulp-worker")
    m4=$(delays_table external \
        "\`pulp-entrypoint --no-migrate pulp-worker\`=nomigrate=$entrypoint $ep_flags --no-migrate pulp-worker" \
        "\`pulp-entrypoint wait-migrations\`, then the server=waitmigrations=$entrypoint $ep_flags wait-migrations && exec pulpcore-worker" \
        "classic=classic=$classic pulpcore-worker")

    # The last run left a migrated database: apply what the api role does once (collectstatic,
    # the entrypoint's record), so every measured start below finds nothing to do.
    local pending_count
    pending_count=$(( $(psql_su -d pulp -c "SELECT count(*) FROM django_migrations") - template_rows ))
    progress "$name: pre-exec time and memory"
    "$entrypoint" pulp-api >"$dir/prepare.log" 2>&1 || { cat "$dir/prepare.log" >&2; return 1; }
    hyperfine --warmup 3 --runs 20 --style none --export-json "$dir/entrypoint.json" \
        "$entrypoint pulp-api" >/dev/null 2>&1
    # The classic path takes seconds: three runs (its files are in the page cache from 3 and 4).
    rm -f "$dir/polls-0"
    # GNU time around each classic run gives its max RSS too (about a millisecond more of seconds).
    rm -f "$dir/rss-classic"
    hyperfine --runs 3 --style none --export-json "$dir/classic.json" \
        "/usr/bin/time -a -o $dir/rss-classic -f %M $classic pulpcore-api" >/dev/null 2>&1
    local classic_polls
    classic_polls=$(count_lines "$dir/polls-0")
    max_rss() { /usr/bin/time -o "$dir/rss" -f %M "$@" >/dev/null 2>&1; cat "$dir/rss"; }

    local plugins
    plugins=$("$venv/bin/pip" list --format=freeze --disable-pip-version-check 2>/dev/null |
        grep -i '^pulp\(core\|[-_]\(file\|container\|rpm\|ansible\|python\|deb\|gem\|maven\|ostree\)\)==' |
        sed 's/==/ /' | paste -sd, - | sed 's/,/, /g')
    echo "## Pulp \`$name\`: $plugins"
    echo
    if [ "$pending" = all ]; then
        echo "Runs of 3 and 4 start from an empty database ($pending_count migrations to apply, rows of \`django_migrations\`)."
    else
        echo "Runs of 3 and 4 start with the migrations of \`$(echo "$pending" | sed 's/ /`, `/g')\` pending ($pending_count rows of \`django_migrations\`), the rest applied."
    fi
    echo
    echo "### 1. Pre-exec time on a migrated database"
    echo
    python3 -c "$table_py" pulp-entrypoint "$dir/entrypoint.json" classic "$dir/classic.json"
    echo
    echo "(classic: $classic_polls \`showmigrations\` in its 3 runs.)"
    echo
    echo "### 2. Peak memory before exec (max RSS, KiB)"
    echo
    echo "| start path | max RSS |"
    echo "|---|---|"
    echo "| pulp-entrypoint | $(max_rss "$entrypoint" pulp-api) |"
    echo "| classic | $(sort -n "$dir/rss-classic" | tail -n 1) |"
    echo
    echo "### 3. The entrypoint's \`migrate\` finished -> waiting replica starts its server"
    echo
    echo "$m3"
    echo
    echo "The classic path is measured in 4 only: it polls \`showmigrations\` whoever migrates."
    echo
    echo "### 4. External \`pulpcore-manager migrate --noinput\` finished -> waiting replica starts its server"
    echo
    echo "$m4"
    echo
}

report=target/bench-startup.md
{
echo "# Start-up benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $(python3 --version), PostgreSQL $(psql_su -d postgres -c 'SHOW server_version' | cut -d' ' -f1))"
echo
echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
if [ "$separate" = 1 ]; then echo "Delays of 3 and 4: $runs runs, each waiter on a migrate of its own;"
else echo "Delays of 3 and 4: $runs runs; the waiters of one table run side by side on the same migrate;"; fi
echo 'the delay is (server start) - (migrate exit), as pulp-operator'"'"'s Job and compose see it; a negative'
echo 'one: the replica started its server before `migrate` had exited (all migrations were recorded, the'
echo 'post_migrate handlers were still running). The second column counts from the last migration'"'"'s row'
echo '(`django_migrations.applied`): what a waiter can notice. "none": no server start.'
echo
for v in "${venvs[@]}"; do
    if [ "$v" = default ]; then bench_one default "$PULP_VENV" all
    else bench_one plugins "$PULP_VENV_PLUGINS" "${BENCH_PLUGIN_PENDING:-maven gem}"; fi
done
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $SECONDS s in all."
} | tee "$report"
