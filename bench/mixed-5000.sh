#!/usr/bin/env bash
# DESIGN.md's flood target: a `mixed` drill from 5000 attacking loopback
# addresses against levee (release) with a per-IP rate rule, beside steady
# legitimate traffic. Prints the drill summary; reports land in $REPORTS
# (default: a temp dir). RESERVED sets the function's reserved concurrency
# (default 20); CACHE_TTL (e.g. 1s) puts the route behind levee's cache.
# Starts its own levee, stops it by PID; bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SECS=${SECS:-10}
cargo build -q --release -p levee -p hello-fn
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir:-$root/target}/release"
dir=$(mktemp -d)
reports=${REPORTS:-$dir/reports}
token="mixed-5000-$(date +%s%N)"
route_cache=""
[ -n "${CACHE_TTL:-}" ] && route_cache="cache = { ttl = \"$CACHE_TTL\" }"
cat >"$dir/levee.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "data"

[limits]
max_connections_per_ip = 20

[functions.f]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"
reserved_concurrency = ${RESERVED:-20}

[[routes]]
route = "GET /f"
function = "f"
$route_cache

[firewall]
[[firewall.rules]]
name = "per-ip"
priority = 1
action = "block"
response = { status = 429 }
statement = { rate = { limit = 20, window = "60s" } }
TOML
LEVEE_ADMIN_TOKEN="$token" LEVEE_LOG=warn "$bin/levee" serve --config "$dir/levee.toml" >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do grep -q "admin listening" "$dir/out" && break; sleep 0.1; done
edge=$(sed -n 's/^levee: edge listening on //p' "$dir/out")
admin=$(sed -n 's/^levee: admin listening on //p' "$dir/out")
mkdir -p "$reports"
LEVEE_ADMIN_TOKEN="$token" "$bin/levee" drill --target "$edge/f" --scenario mixed \
  --duration "${SECS}s" --rate 3000 --sources 5000 --legit-rate 20 --legit-sources 40 \
  --admin "$admin" --report-dir "$reports"
