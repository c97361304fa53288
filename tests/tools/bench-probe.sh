#!/usr/bin/env bash
# Benchmark: the CPU one health probe costs, `pulp-entrypoint probe` against the Python probes of
# the Pulp images (readyz.py: requests + JSON; the worker check the Django way), against the real
# pulpcore api and worker started by pulp-entrypoint on a throwaway PostgreSQL. Prints a Markdown
# report (also written to docs/bench-probe.md). Not a test: figures, not pass/fail.
# Only the probe process is measured: what gunicorn and PostgreSQL spend answering is not.
# Ports: PostgreSQL 55434, API 24917 (BENCH_PG_PORT, BENCH_API_PORT). Runs per probe:
# BENCH_RUST_RUNS (200), BENCH_PYTHON_RUNS (30), BENCH_DJANGO_RUNS (10, django.setup() is slow).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/tools/deps.sh
source tests/tools/throwaway.sh
# In a PID namespace of its own, as in a container: `probe ready worker` looks at every
# pulpcore-worker in /proc, and other Pulps on this host (tests) must not count. It also ends
# whatever the benchmark left running when it exits.
if [ "$(id -u)" = 0 ] && [ -z "${BENCH_PROBE_NS:-}" ]; then
    exec env BENCH_PROBE_NS=1 unshare --pid --fork --mount-proc "$0" "$@"
fi
for tool in hyperfine:hyperfine time:/usr/bin/time; do
    command -v "${tool#*:}" >/dev/null || { _pe_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
        _pe_root apt-get install -y -qq "${tool%%:*}" >&2; }
done

# The binary the image ships (Containerfile): static glibc, not PIE, so no loader and no
# relocations at each start, which is most of what a probe costs.
target=$(uname -m)-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked -q --target "$target" --bin pulp-entrypoint
load=$(cut -d' ' -f1-3 /proc/loadavg)  # before our servers start: other work on this machine
entrypoint=$PWD/target/$target/release/pulp-entrypoint
pg_port=${BENCH_PG_PORT:-55434}
api_port=${BENCH_API_PORT:-24917}
rust_runs=${BENCH_RUST_RUNS:-200} python_runs=${BENCH_PYTHON_RUNS:-30} django_runs=${BENCH_DJANGO_RUNS:-10}
python=$PULP_VENV/bin/python3
work=$(mktemp -d /tmp/pulp-entrypoint-bench-probe.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    # SIGTERM, not SIGKILL: the servers run in their own process groups, which only the
    # entrypoint stops (SIGKILL at its stop grace).
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    throwaway_stop "$work"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT  # handled, so it reaches us as PID 1 of the namespace, and cleans up
trap 'exit 143' TERM
throwaway_postgres "$work" "$pg_port"
throwaway_pulp_settings "$work" "$pg_port"
export PATH="$PULP_VENV/bin:$PATH" PULP_ENTRYPOINT_CONFIG=/dev/null PULP_ENTRYPOINT_STOP_GRACE=10s

# Both start on the empty database: one migrates, the other waits for it.
"$entrypoint" pulp-api --bind "127.0.0.1:$api_port" > "$work/api.log" 2>&1 & pids+=($!)
"$entrypoint" pulp-worker > "$work/worker.log" 2>&1 & pids+=($!)
ready() {  # until "probe ready ROLE [ARGS]" passes, at most 5 minutes (first migration included)
    for _ in $(seq 300); do
        "$entrypoint" probe ready "$@" >/dev/null 2>"$work/probe.err" && return 0
        sleep 1
    done
    echo "bench-probe: $1 not ready after 5 minutes: $(cat "$work/probe.err"); logs:" >&2
    tail -n 20 "$work"/*.log >&2; exit 1
}
ready api --address "127.0.0.1:$api_port"
ready worker

# The Python probes: what readyz.py did (requests, JSON, exit 0/3), the same for livez, and the
# worker's heartbeat through Django's ORM as pulpcore itself reads it.
base=http://127.0.0.1:$api_port/pulp/api/v3
cat > "$work/readyz.py" <<'PY'
import sys
import requests
data = requests.get(sys.argv[1], allow_redirects=True).json()
sys.exit(0 if data["database_connection"]["connected"] else 3)
PY
cat > "$work/livez.py" <<'PY'
import sys
import requests
sys.exit(0 if requests.get(sys.argv[1], allow_redirects=True).status_code == 200 else 1)
PY
cat > "$work/worker.py" <<'PY'
import sys
import django
django.setup()
from pulpcore.app.models import AppStatus
sys.exit(0 if AppStatus.objects.online().filter(app_type="worker").exists() else 1)
PY

odd=$work/odd
touch "$odd"
# Per-probe CPU: user+sys of N runs (GNU time: the loop's children), divided by N. Any exit
# other than 0 is noted with its stderr, as against a healthy server it is a bug.
cpu_ms() {
    local runs=$1; shift
    # shellcheck disable=SC2016  # the loop runs in its own bash, which expands it
    /usr/bin/time -o "$work/time" -f "%U %S" bash -c '
        odd=$1 runs=$2; shift 2
        for ((i = 0; i < runs; i++)); do
            "$@" >/dev/null 2>"$odd.err" || echo "\`$*\` exited $?: $(head -c 300 "$odd.err" | tr "\n" " ")" >> "$odd"
        done' _ "$odd" "$runs" "$@"
    awk -v n="$runs" '{ printf "%.2f", ($1 + $2) * 1000 / n }' "$work/time"
}
wall_ms() {  # hyperfine's mean wall time (no shell in between)
    local runs=$1; shift
    hyperfine -N --warmup 2 --runs "$runs" --style none --export-json "$work/wall.json" -i "$*" >/dev/null 2>&1
    python3 -c 'import json, sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["mean"] * 1000))' "$work/wall.json"
}
max_rss() { /usr/bin/time -o "$work/rss" -f %M "$@" >/dev/null 2>&1 || true; cat "$work/rss"; }
row() {  # NAME RUST_RUNS PYTHON_RUNS -- RUST_CMD... -- PYTHON_CMD...
    local name=$1 rruns=$2 pruns=$3 rust=() py=()
    shift 4
    while [ "$1" != -- ]; do rust+=("$1"); shift; done
    shift; py=("$@")
    local rcpu pcpu
    rcpu=$(cpu_ms "$rruns" "${rust[@]}") pcpu=$(cpu_ms "$pruns" "${py[@]}")
    echo "| $name | $rcpu | $pcpu | $(awk -v r="$rcpu" -v p="$pcpu" 'BEGIN { printf "%.1fx", p / r }') |" \
        "$(awk -v r="$rcpu" -v p="$pcpu" -v l="$loop_ms" 'BEGIN { printf "%.0fx", (p - l) / (r - l) }') |" \
        "$(wall_ms "$rruns" "${rust[@]}") | $(wall_ms "$pruns" "${py[@]}") |" \
        "$(max_rss "${rust[@]}") | $(max_rss "${py[@]}") | $rruns / $pruns |"
}
# The bash loop's own cost per run (fork + exec of /bin/true), included in the CPU figures.
loop_ms=$(cpu_ms "$rust_runs" /bin/true)

report=docs/bench-probe.md
mkdir -p docs
{
echo "## Probe CPU benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, $(sed -n 's/^pulpcore==/pulpcore /p' tests/tools/requirements.txt))"
echo
echo "Made by \`tests/tools/bench-probe.sh\`: the real pulpcore api (gunicorn, \`PULP_API_WORKERS\`=2)"
echo "and one worker, started by pulp-entrypoint on a throwaway PostgreSQL; every probe asks them"
echo "over 127.0.0.1. $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r),"
echo "load average before the start $load, $("$python" --version), requests $("$python" -c 'import requests; print(requests.__version__)'), $("$entrypoint" --version)."
echo
echo "| probe | Rust CPU ms | Python CPU ms | ratio | ratio without the loop | Rust wall ms | Python wall ms | Rust max RSS KiB | Python max RSS KiB | runs (Rust / Python) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
row "ready api: GET .../status/, JSON, database connected" "$rust_runs" "$python_runs" -- \
    "$entrypoint" probe ready api --address "127.0.0.1:$api_port" -- "$python" "$work/readyz.py" "$base/status/"
row "live api: GET .../livez/" "$rust_runs" "$python_runs" -- \
    "$entrypoint" probe live api --address "127.0.0.1:$api_port" -- "$python" "$work/livez.py" "$base/livez/"
row "ready worker: heartbeat in PostgreSQL (Python: django.setup() + AppStatus)" "$rust_runs" "$django_runs" -- \
    "$entrypoint" probe ready worker -- "$python" "$work/worker.py"
echo
echo "- CPU: user+sys of the probe process and its children (GNU time over a loop of the runs, divided"
echo "  by the runs), so it includes the loop's fork and the exec: $loop_ms ms a run for \`/bin/true\`."
echo "  Not counted: the CPU gunicorn (status, livez) and PostgreSQL spend answering."
echo "- Wall: hyperfine's mean, no shell in between. Max RSS: GNU time, one run. Ratio: Python / Rust"
echo "  CPU; without the loop: the same once the loop's own cost is taken off both."
echo "- Rust: the static binary the image ships (\`$target\`, crt-static, not PIE)."
echo "- The Rust worker probe also reads /proc to find the local pulpcore-worker and matches its"
echo "  heartbeat by name; the Python one asks whether any worker is online. The Python worker probe"
echo "  runs $django_runs times only: django.setup() (all of pulpcore's apps) dominates it."
if [ -s "$odd" ]; then
    echo "- Probes that did not exit 0 against the healthy servers ($(wc -l < "$odd") runs):"
    sort "$odd" | uniq -c | sed 's/^ */  - /'
fi
} | tee "$report"
