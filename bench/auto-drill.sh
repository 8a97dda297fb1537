#!/usr/bin/env bash
# Automatic mitigation against `levee drill`: a release levee with no
# [firewall] and `learn_for = "10s"` learns 12 s of the drill's legitimate
# traffic alone (20 req/s from 10 clients, browser and SDK user agents),
# then meets SCENARIO (default flood) at the drill's defaults (500 req/s
# from 1,000 sources) for 20 s — except the two that are not attacks: a
# flash crowd is 10x (200 req/s) from 10,000 new sources, a route launch
# 5x (100 req/s) from the known clients onto GET /new, a bursty replay 10x
# (200 req/s) of the known clients' own traffic one second in four. RAMP=10s
# raises the scenario's rate over that long; DRILL_ARGS adds drill options
# (e.g. "--rate 3000 --sources 10000" for a flood). Prints the drill's
# summary lines, its automatic-mitigation marks and the detector's
# events. One server (bench/lib.sh), on loopback port 0.
#   bench/auto-drill.sh [SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
scenario=${1:-flood}
cargo build -q --release -p levee -p hello-fn
bin=$PWD/target/release
start_levee "$bin" '[auto_mitigation]
learn_for = "10s"
quiet_for = "5s"

[[routes]]
route = "GET /new"
function = "hello"' ""
case $scenario in
  flash-crowd) surge=(--rate 200 --sources 10000) ;;
  route-launch) surge=(--rate 100 --launch-path /new) ;;
  bursty-replay) surge=(--rate 200) ;;
  *) surge=() ;;
esac
drill() { "$bin/levee" drill --target "$edge/f" --admin "$admin" --token "$token" --report-dir "$dir/reports" "$@" 2>/dev/null | grep -E "^  (legit|attack|auto|note) "; }
echo "warm-up (legitimate traffic only):"
drill --scenario flood --rate 0 --duration 12s | grep legit
echo "$scenario at the drill's defaults, 20 s:"
# shellcheck disable=SC2086 # DRILL_ARGS is a list of options
drill --scenario "$scenario" --duration 20s "${surge[@]}" ${RAMP:+--ramp "$RAMP"} ${DRILL_ARGS:-}
curl -sf -H "Authorization: Bearer $token" "$admin/admin/shield/auto" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); [print("event", e["id"], e["mitigation"], "started", e["started"], "enforced", e["enforced"], "signature", (e["signature"] or {}).get("value")) for e in r["events"]]; print("reference", round(r["reference_rps"],1), "req/s")'
