#!/usr/bin/env bash
# Automatic mitigation against `levee drill`: a release levee with no
# [firewall] and `learn_for = "10s"` learns 12 s of the drill's legitimate
# traffic alone (20 req/s from 10 clients, browser and SDK user agents),
# then meets SCENARIO (default flood) at the drill's defaults (500 req/s
# from 1,000 sources) for 20 s. Prints the drill's summary lines and the
# detector's event. One server, on loopback port 0, stopped here by PID.
#   bench/auto-drill.sh [SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scenario=${1:-flood}
cargo build -q --release -p levee -p hello-fn
bin=$root/target/release
dir=$(mktemp -d)
token="auto-drill-$(date +%s%N)"
cat >"$dir/levee.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$dir/data"

[auto_mitigation]
learn_for = "10s"
quiet_for = "5s"

[functions.hello]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"

[functions.other]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"

[[routes]]
route = "GET /f"
function = "hello"
TOML
LEVEE_ADMIN_TOKEN="$token" LEVEE_LOG=warn "$bin/levee" serve --config "$dir/levee.toml" >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
edge="" admin=""
for _ in $(seq 1 100); do
  edge=$(sed -n 's/^levee: edge listening on //p' "$dir/out")
  admin=$(sed -n 's/^levee: admin listening on //p' "$dir/out")
  [ -n "$edge" ] && [ -n "$admin" ] && break
  sleep 0.1
done
[ -n "$edge" ] || { cat "$dir/err" >&2; exit 1; }
drill() { "$bin/levee" drill --target "$edge/f" --report-dir "$dir/reports" "$@" 2>/dev/null | grep -E "^  (legit|attack) "; }
echo "warm-up (legitimate traffic only):"
drill --scenario flood --rate 0 --duration 12s | grep legit
echo "$scenario at the drill's defaults, 20 s:"
drill --scenario "$scenario" --duration 20s
curl -sf -H "Authorization: Bearer $token" "$admin/admin/shield/auto" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); [print("event", e["id"], e["mitigation"], "started", e["started"], "enforced", e["enforced"], "signature", (e["signature"] or {}).get("value")) for e in r["events"]]; print("reference", round(r["reference_rps"],1), "req/s")'
