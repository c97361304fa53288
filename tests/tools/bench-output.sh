#!/usr/bin/env bash
# Benchmark: what `supervise` costs a chatty service. One service prints BENCH_LINES (2 million)
# short lines (`yes hello | head -n N`, 6 bytes each) and ends; the figures are the wall time of
#   direct     the same command, its output straight into the sink
#   pipe       the same command piped through `cat` into the sink (one extra hop, what any
#              log collector in between costs)
#   supervise  `pulp-entrypoint supervise` running it as its only service, each line re-emitted
#              with the name in front (`bench | hello`), supervise's stdout into the sink
# for two sinks: /dev/null, and a pipe into `wc -l` (which also checks that every line arrived).
# The target is supervise at most about 2x pipe. BENCH_RUNS (11) runs of each, interleaved; prints
# the medians of wall time and of CPU time (user + system, less disturbed by other work on a
# shared machine) as a Markdown table. Not a test: figures, not pass/fail (but a wrong line count
# fails it).
# The release binary (the shipped profile) is built first.
set -euo pipefail
cd "$(dirname "$0")/../.."
lines=${BENCH_LINES:-2000000}
runs=${BENCH_RUNS:-11}
cargo build --release --locked -q --bin pulp-entrypoint
entrypoint=${CARGO_TARGET_DIR:-$PWD/target}/release/pulp-entrypoint
work=$(mktemp -d /tmp/pulp-entrypoint-bench-output.XXXXXX)
trap 'rm -rf "$work"' EXIT

producer="yes hello | head -n $lines"
cat > "$work/entrypoint.toml" <<EOF
status_file = "$work/status.json"
stop_grace = "10s"

[supervise]
api = false
content = false
workers = 0

[[service]]
name = "bench"
command = ["sh", "-c", "$producer"]
restart = "never"
essential = true    # its end (code 0) ends supervise
EOF
export PULP_ENTRYPOINT_CONFIG=$work/entrypoint.toml

# The cases, as sh command lines; supervise's own log lines (stderr) are not what is measured.
case_direct=$producer
case_pipe="$producer | cat"
case_supervise="exec '$entrypoint' supervise 2>>'$work/supervise.err'"

now_ns() { date +%s%N; }
# run NAME SINK: one run of case NAME with stdout into SINK (null, or wc: a pipe into `wc -l`,
# whose count is checked); appends "wall cpu" in ms to $work/NAME, cpu being user + system time
# of the case and of everything it started (bash's `times` for the subshell's children), not
# of the sink.
run() {
    local name=$1 sink=$2 command=case_$1 start end count
    start=$(now_ns)
    if [ "$sink" = null ]; then
        (sh -c "${!command}" > /dev/null; times > "$work/times")
    else
        count=$( (sh -c "${!command}"; times > "$work/times") | wc -l)
        [ "$count" = "$lines" ] || { echo "bench-output: $name: $count lines, not $lines" >&2; exit 1; }
    fi
    end=$(now_ns)
    # Second line of `times`: children's user and system time, as 0m0.012s.
    awk -v wall=$(( (end - start) / 1000000 )) 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d %d\n", wall, (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 + 0.5 }' "$work/times" >> "$work/$name"
}
# median of column COLUMN of FILE
median() { cut -d' ' -f"$1" "$2" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }'; }

echo "bench-output: $lines lines, $runs runs each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%d)"
echo "medians in ms: wall time, and CPU time (user + system)"
echo
echo "| sink | direct wall / CPU | pipe (cat) wall / CPU | supervise wall / CPU | supervise / pipe wall, CPU |"
echo "|---|---:|---:|---:|---:|"
for sink in null wc; do
    rm -f "$work/direct" "$work/pipe" "$work/supervise"
    # Interleaved, so that other work on the machine weighs on every case alike.
    for _ in $(seq "$runs"); do
        for name in direct pipe supervise; do run "$name" "$sink"; done
    done
    row=()
    for name in direct pipe supervise; do
        row+=("$(median 1 "$work/$name") / $(median 2 "$work/$name")")
    done
    wall=$(ratio "$(median 1 "$work/supervise")" "$(median 1 "$work/pipe")")
    cpu=$(ratio "$(median 2 "$work/supervise")" "$(median 2 "$work/pipe")")
    label=$([ "$sink" = null ] && echo "/dev/null" || echo "pipe to wc -l")
    echo "| $label | ${row[0]} | ${row[1]} | ${row[2]} | $wall, $cpu |"
done
