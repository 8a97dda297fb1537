#!/usr/bin/env bash
# Levee's own shield against nginx and HAProxy as the protective edge, on the
# same machine, in one run. Three targets serve the same function:
#   levee  — levee with its shield on (per-IP rate rule, connection guard);
#   nginx  — nginx (limit_req, limit_conn, tight timeouts) → levee, shield off;
#   haproxy— HAProxy (stick table http_req_rate per source, timeout
#            http-request) → the same levee.
# Each round runs the same `levee drill` scenarios against each target in
# turn (order rotating per round) and the summary table is printed. Everything
# is on loopback, started here and stopped here by PID, bounded in time
# (ROUNDS × 3 targets × scenarios × (SECS + ~3 s)). Installs nginx-light,
# haproxy and wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-8}
SCENARIOS=${SCENARIOS:-"mixed slowloris"}
LIMIT=20  # requests per source per 60 s, the same rule everywhere: above what a
          # legitimate address sends in a run (40 addresses share 20 req/s), far
          # below what an attacking one does (200 addresses share 2000 req/s)

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need haproxy haproxy

cargo build -q --release -p levee -p hello-fn
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir:-$root/target}/release"
dir=$(mktemp -d)
token="side-by-side-$(date +%s%N)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_levee() { # NAME BODY
  mkdir -p "$dir/$1"
  printf '[server]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\ndata_dir = "data"\n\n[functions.f]\ncommand = ["%s/hello-fn"]\ncode = "%s/examples/hello/code"\nreserved_concurrency = 20\n\n[[routes]]\nroute = "GET /f"\nfunction = "f"\n\n%s\n' \
    "$bin" "$root" "$2" >"$dir/$1/levee.toml"
  LEVEE_ADMIN_TOKEN="$token" LEVEE_LOG=warn "$bin/levee" serve --config "$dir/$1/levee.toml" >"$dir/$1/out" 2>"$dir/$1/err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q "admin listening" "$dir/$1/out" && return; sleep 0.1; done
  cat "$dir/$1/err" >&2; exit 1
}
addr() { sed -n "s/^levee: $2 listening on http:\/\///p" "$dir/$1/out"; }

start_levee shielded "[limits]
header_timeout = \"5s\"
max_connections_per_ip = 20

[firewall]
[[firewall.rules]]
name = \"per-ip\"
priority = 1
action = \"block\"
response = { status = 429 }
statement = { rate = { limit = $LIMIT, window = \"60s\" } }"
start_levee open "[limits]
max_connections_per_ip = 19000
max_connections = 19000"
backend=$(addr open edge)

nport=$(free_port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log error;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  limit_req_zone \$binary_remote_addr zone=perip:32m rate=${LIMIT}r/m;
  limit_conn_zone \$binary_remote_addr zone=perconn:32m;
  upstream levee { server $backend; keepalive 64; }
  server {
    listen 127.0.0.1:$nport;
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout 10s;
    location / {
      limit_req zone=perip burst=$LIMIT nodelay;
      limit_req_status 429;
      limit_conn perconn 20;
      limit_conn_status 429;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://levee;
    }
  }
}
NGINX
nginx -c "$dir/nginx/nginx.conf" -p "$dir/nginx" &
pids+=($!)

hport=$(free_port)
cat >"$dir/haproxy.cfg" <<HAPROXY
global
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 5s
frontend fe
  bind 127.0.0.1:$hport
  stick-table type ip size 1m expire 60s store http_req_rate(60s),conn_cur
  tcp-request connection track-sc0 src
  tcp-request connection reject if { sc0_conn_cur gt 20 }
  http-request deny deny_status 429 if { sc0_http_req_rate gt $LIMIT }
  default_backend be
backend be
  server levee $backend
HAPROXY
haproxy -f "$dir/haproxy.cfg" -db &
pids+=($!)
sleep 1

declare -A target admin
target[levee]="http://$(addr shielded edge)/f"; admin[levee]="http://$(addr shielded admin)"
target[nginx]="http://127.0.0.1:$nport/f"; admin[nginx]="http://$(addr open admin)"
target[haproxy]="http://127.0.0.1:$hport/f"; admin[haproxy]="http://$(addr open admin)"
names=(levee nginx haproxy)
for round in $(seq 1 "$ROUNDS"); do
  for s in $SCENARIOS; do
    for i in 0 1 2; do
      t=${names[$(( (i + round) % 3 ))]}
      out="$dir/reports/$t/$s/$round"
      mkdir -p "$out"
      LEVEE_ADMIN_TOKEN="$token" "$bin/levee" drill --target "${target[$t]}" --scenario "$s" \
        --duration "${SECS}s" --rate 2000 --sources 200 --legit-rate 20 --legit-sources 40 \
        --admin "${admin[$t]}" --report-dir "$out" >"$out/summary.txt" 2>"$out/progress.txt" || true
      echo "side-by-side: round $round $s $t done" >&2
    done
  done
done

python3 - "$dir/reports" <<'PY'
import glob, json, os, sys
rows = {}
for path in glob.glob(os.path.join(sys.argv[1], "*", "*", "*", "drill-*.json")):
    target, scenario = path.split(os.sep)[-4:-2]
    r = json.load(open(path))
    rows.setdefault((scenario, target), []).append(r)
print("| scenario | edge | legit success | legit p99 ms | attack requests | attack req/s | attack 2xx (reached the function) | invocations caused |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for (scenario, target), runs in sorted(rows.items()):
    lr = sum(x["legit"]["requests"] for x in runs)
    ls = sum(x["legit"]["success"] for x in runs)
    p99 = max(x["legit"]["latency_ms"]["p99"] for x in runs)
    ar = sum(x["attack"]["requests"] for x in runs)
    a2 = sum(x["attack"]["success"] for x in runs)
    secs = sum(x.get("elapsed_s", 0) or 0 for x in runs) or 1
    inv = sum((x.get("levee") or {}).get("invocations_caused") or 0 for x in runs)
    print(f"| {scenario} | {target} | {100*ls/max(lr,1):.2f}% ({ls}/{lr}) | {p99:.1f} | {ar} | {ar/secs:.0f} | {a2} | {inv} |")
PY
