#!/usr/bin/env bash
# What fair admission changes at the limit: `levee drill --scenario mixed`
# at its defaults (500 attack req/s from 1,000 sources, 20 legitimate req/s)
# for 10 s against a function with 4 slots and no rules. BIN_DIR holds the
# release `levee` and `hello-fn` to run (default: this tree's, built here);
# EXTRA is appended to the function's table, e.g. EXTRA='queue_timeout = "0s"'.
# Prints the drill's two summary lines. One server, started here on loopback
# port 0 and stopped here by PID.
#   bench/fair-admission.sh [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build -q --release -p levee -p hello-fn
  bin=$root/target/release
fi
dir=$(mktemp -d)
cat >"$dir/levee.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$dir/data"

[functions.hello]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"
reserved_concurrency = 4
${EXTRA:-}

[functions.other]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"

[[routes]]
route = "GET /f"
function = "hello"
TOML
LEVEE_ADMIN_TOKEN="fair-admission-$(date +%s%N)" LEVEE_LOG=warn "$bin/levee" serve --config "$dir/levee.toml" >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
edge=""
for _ in $(seq 1 100); do
  edge=$(sed -n 's/^levee: edge listening on //p' "$dir/out")
  [ -n "$edge" ] && break
  sleep 0.1
done
[ -n "$edge" ] || { cat "$dir/err" >&2; exit 1; }
"$bin/levee" drill --target "$edge/f" --scenario mixed --duration 10s --report-dir "$dir/reports" 2>/dev/null | grep -E "^  (legit|attack) "
