#!/usr/bin/env bash
# The test suite: installs what it needs (PostgreSQL, the pulpcore venv), then runs every test.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh --test pid1`).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/tools/deps.sh
cargo test --locked "$@"
