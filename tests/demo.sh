#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL, then the real Pulp API, content app and a worker, each started
# by pulp-entrypoint, until /pulp/api/v3/status/ lists all three; their health probes; then a
# clean SIGTERM stop.
# Installs what it needs (PostgreSQL, a venv with pulpcore from PyPI) on first run.
# Ports: PostgreSQL 55432, API 24817, content 24816 (override with DEMO_PG_PORT, DEMO_API_PORT,
# DEMO_CONTENT_PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/tools/deps.sh
source tests/tools/throwaway.sh

pg_port=${DEMO_PG_PORT:-55432}
api_port=${DEMO_API_PORT:-24817}
content_port=${DEMO_CONTENT_PORT:-24816}
work=$(mktemp -d /tmp/pulp-entrypoint-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    throwaway_stop "$work"
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building pulp-entrypoint"
cargo build --release --locked -q
entrypoint=$PWD/target/release/pulp-entrypoint

step "throwaway PostgreSQL on 127.0.0.1:$pg_port"
throwaway_postgres "$work" "$pg_port"
throwaway_pulp_settings "$work" "$pg_port"
export PATH="$PULP_VENV/bin:$PATH"

step "starting pulp-api, pulp-content and pulp-worker through pulp-entrypoint on the empty database"
echo "(they wait for PostgreSQL, one of them migrates while the others wait, then all start)"
"$entrypoint" pulp-api --bind "127.0.0.1:$api_port" > "$work/api.log" 2>&1 & pids+=($!)
"$entrypoint" pulp-content --bind "127.0.0.1:$content_port" > "$work/content.log" 2>&1 & pids+=($!)
"$entrypoint" pulp-worker > "$work/worker.log" 2>&1 & pids+=($!)

status_url="http://127.0.0.1:$api_port/pulp/api/v3/status/"
summary() {
    python3 -c '
import json, sys
s = json.load(sys.stdin)
names = lambda key: [a["name"] for a in s.get(key) or []]
print("database connected:", s["database_connection"]["connected"])
print("api apps:          ", names("online_api_apps"))
print("content apps:      ", names("online_content_apps"))
print("workers:           ", names("online_workers"))
sys.exit(0 if names("online_api_apps") and names("online_content_apps") and names("online_workers") else 1)'
}
step "waiting for $status_url to list all three"
ok=
for _ in $(seq 120); do
    if body=$(curl -fsS "$status_url" 2>/dev/null) && summary <<<"$body" >/dev/null; then ok=1; break; fi
    sleep 1
done
if [ -z "$ok" ]; then
    echo "demo: the status endpoint did not list all three within 120 s; logs:" >&2
    tail -n 20 "$work"/*.log >&2
    exit 1
fi
summary <<<"$body"

step "health probes, as Kubernetes would exec them (exit 0: ready / alive)"
for check in "ready api --address 127.0.0.1:$api_port" "live api --address 127.0.0.1:$api_port" \
    "ready content --address 127.0.0.1:$content_port" "ready worker" "live worker"; do
    code=0
    # shellcheck disable=SC2086  # the check is words
    "$entrypoint" probe $check 2>"$work/probe.err" || code=$?
    printf '%-48s exit %s %s\n' "probe $check" "$code" "$(cat "$work/probe.err")"
done

step "SIGTERM to each entrypoint: they forward it and pass on the exit code"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for i in "${!pids[@]}"; do
    code=0; wait "${pids[$i]}" || code=$?
    echo "$(sed -n "$((i + 1))p" <<<$'pulp-api\npulp-content\npulp-worker'): exit code $code"
done
pids=()
echo
echo "The entrypoints' own log lines (phases and their durations):"
grep -h -E "phase=|starting pulp|waiting for the setup lock|stopped" "$work"/api.log "$work"/content.log "$work"/worker.log \
    | sed -E 's/^[0-9T:.-]+Z +//' | head -n 20 || true
echo
echo "demo: done."
