#!/usr/bin/env bash
# Benchmark: the start path of pulp-entrypoint against the classic scripts (tests/tools/classic/),
# on one throwaway PostgreSQL, with the real pulpcore. Prints a Markdown report (also written to
# target/bench-startup.md). Not a test: figures, not pass/fail.
#  1. pre-exec time on a migrated database (hyperfine; the "server" is a shim that exits at once)
#  2. peak memory before exec (GNU time's max RSS, same shim)
#  3. delay between migrations finishing in one replica and a waiting replica starting its server
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/tools/deps.sh
source tests/tools/throwaway.sh
for tool in hyperfine:hyperfine time:/usr/bin/time; do
    command -v "${tool#*:}" >/dev/null || { _pe_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
        _pe_root apt-get install -y -qq "${tool%%:*}" >&2; }
done

cargo build --release --locked -q
entrypoint=$PWD/target/release/pulp-entrypoint
classic=$PWD/tests/tools/classic/entrypoint.sh
work=$(mktemp -d /tmp/pulp-entrypoint-bench.XXXXXX)
chmod 755 "$work"
port=${BENCH_PG_PORT:-55433}
trap 'throwaway_stop "$work"; rm -rf "$work"' EXIT
throwaway_postgres "$work" "$port"
throwaway_pulp_settings "$work" "$port"
export PULP_ENTRYPOINT_CONFIG=/dev/null

# Shims: the "server" exits at once, recording when it started; pulpcore-manager records when a
# migrate finished.
shims=$work/shims
mkdir -p "$shims"
for server in pulpcore-api pulpcore-content pulpcore-worker; do
    printf '#!/bin/sh\ndate +%%s.%%N > "%s/started-${REPLICA:-0}"\n' "$work" > "$shims/$server"
done
cat > "$shims/pulpcore-manager" <<SH
#!/bin/sh
"$PULP_VENV/bin/pulpcore-manager" "\$@"; code=\$?
case "\$1" in migrate) date +%s.%N > "$work/migrated";; esac
exit \$code
SH
chmod +x "$shims"/*
export PATH="$shims:$PULP_VENV/bin:$PATH"

# Migrate and collect static files once, so every measured start finds nothing to do.
"$entrypoint" pulp-api >/dev/null 2>&1
report=target/bench-startup.md
{
echo "## Start-up benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, pulpcore $("$PULP_VENV/bin/pip" show pulpcore 2>/dev/null | sed -n 's/^Version: //p'))"
echo
echo "### 1. Pre-exec time on a migrated database"
echo
hyperfine --warmup 2 --runs 10 --style none --export-markdown "$work/hyperfine.md" \
    -n pulp-entrypoint "$entrypoint pulp-api" \
    -n classic "$classic pulpcore-api" >/dev/null 2>&1
cat "$work/hyperfine.md"
echo
echo "### 2. Peak memory before exec (max RSS, KiB)"
echo
echo "| start path | max RSS |"
echo "|---|---|"
max_rss() { /usr/bin/time -o "$work/rss" -f %M "$@" >/dev/null 2>&1; cat "$work/rss"; }
echo "| pulp-entrypoint | $(max_rss "$entrypoint" pulp-api) |"
echo "| classic | $(max_rss "$classic" pulpcore-api) |"
echo
echo "### 3. Migrations finished -> waiting replica starts its server"
echo
echo 'Three runs each; a negative delay: the replica started its server before `migrate` had exited.'
echo
echo "| start path | delays (ms) |"
echo "|---|---|"
delay() {  # the replica under test ("$@") waits while "$entrypoint migrate" migrates
    PGPASSWORD=$THROWAWAY_PASSWORD psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "DROP DATABASE pulp WITH (FORCE)" -c "CREATE DATABASE pulp OWNER pulp"
    rm -f "$work/migrated" "$work/started-waiter"
    "$entrypoint" migrate >/dev/null 2>&1 &
    local migrator=$!
    # The waiter starts once the migration is under way, so it really waits.
    until PGPASSWORD=$THROWAWAY_PASSWORD psql -qtA -h 127.0.0.1 -p "$port" -U postgres -d pulp \
        -c "SELECT to_regclass('django_migrations') IS NOT NULL" | grep -q t; do sleep 0.05; done
    REPLICA=waiter "$@" >/dev/null 2>&1
    wait "$migrator"
    python3 -c "import sys; print('%.0f' % ((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" \
        "$(cat "$work/migrated")" "$(cat "$work/started-waiter")"
}
for path in pulp-entrypoint classic; do
    delays=()
    for _ in 1 2 3; do
        if [ "$path" = classic ]; then delays+=("$(delay "$classic" pulpcore-worker)")
        else delays+=("$(delay "$entrypoint" pulp-worker)"); fi
    done
    echo "| $path | ${delays[*]} |"
done
} | tee "$report"
