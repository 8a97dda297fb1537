#!/usr/bin/env bash
# What fair admission changes at the limit: `levee drill --scenario mixed`
# at its defaults (500 attack req/s from 1,000 sources, 20 legitimate req/s)
# for 10 s against a function with 4 slots and no rules. BIN_DIR holds the
# release `levee` and `hello-fn` to run (default: this tree's, built here);
# EXTRA is appended to the function's table, e.g. EXTRA='queue_timeout = "0s"'.
# Prints the drill's two summary lines.
#   bench/fair-admission.sh [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p levee -p hello-fn
  bin=$PWD/target/release
fi
start_levee "$bin" "" "reserved_concurrency = 4
${EXTRA:-}"
"$bin/levee" drill --target "$edge/f" --scenario mixed --duration 10s --report-dir "$dir/reports" 2>/dev/null | grep -E "^  (legit|attack) "
