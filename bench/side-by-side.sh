#!/usr/bin/env bash
# Levee's own shield against nginx and HAProxy as the protective edge, on the
# same machine, in one run. Three edges in front of the same function:
#   levee   — levee with its shield on (per-IP rate rule, connection guard,
#             header and send timeouts, route cache);
#   nginx   — nginx (limit_req, limit_conn, proxy_cache, tight header, body
#             and send timeouts) → levee with its shield off;
#   haproxy — HAProxy (stick table http_req_rate and conn_cur per source,
#             timeout http-request and client, cache) → the same kind of levee.
# Every run starts its edge (and backend) fresh and stops them after, so no
# rate state carries from one scenario or edge to the next; the order of the
# edges rotates per round. Memory is each process's peak RSS (VmHWM) over the
# run. Everything is on loopback, started here and stopped here by PID, and
# bounded: ROUNDS × scenarios × 3 edges × (SECS + ~2 s); the defaults (2 × 9
# × 3 × 10 s) took 7 min 47 s here. CACHE_TTL=0 turns the cache off on every
# edge. Installs nginx-light and haproxy (Debian) if missing. The table goes
# to stdout; reports to $REPORTS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-8}
SCENARIOS=${SCENARIOS:-"mixed flood slowloris slow-post slow-read cache-bust big-body bad-input key-stuffing"}
LIMIT=20  # requests per source per 60 s, the same rule on every edge: above
          # what a legitimate address sends in a run (250 addresses share
          # 50 req/s), far below what an attacking one does (200 addresses
          # share 2000 req/s)
CACHE_TTL=${CACHE_TTL:-1}  # seconds, the same on every edge, whose keys
                           # ignore the query; 0: no cache anywhere
SEND_TIMEOUT=10  # seconds a stalled response write may wait, on every edge
# slow-read needs an answer bigger than the socket buffers, or there is
# nothing left to read slowly: it asks for 1 MB, with the caches off (their
# keys leave the query out, and levee and HAProxy pass the function only
# what the key holds).
BIG_PATH="/f?action=big&bytes=1000000"

caches() { # TTL → the cache settings of each edge
  levee_cache="" nginx_cache=off haproxy_cache=""
  [ "$1" = 0 ] && return
  levee_cache="cache = { ttl = \"${1}s\" }"
  nginx_cache=fn
  # HAProxy keys on the whole URI, so the query is dropped before the
  # lookup; it stores only answers with an expiry or a validator.
  haproxy_cache="http-request set-uri %[path]
  http-request cache-use fn
  http-response set-header Cache-Control max-age=$1
  http-response cache-store fn"
}

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need haproxy haproxy

cargo build -q --release -p levee -p hello-fn
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir:-$root/target}/release"
dir=$(mktemp -d)
reports=${REPORTS:-$dir/reports}
token="side-by-side-$(date +%s%N)"
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Peak RSS in KiB of a process and its direct children (nginx's workers).
peak_kib() {
  local total=0 p v
  for p in "$1" $(pgrep -P "$1" || true); do
    v=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$p/status" 2>/dev/null || true)
    # Only the edge's own processes: a levee's children are function instances.
    [ "$p" != "$1" ] && [ "$2" = self ] && continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

start_levee() { # DIR EXTRA-CONFIG → sets levee_pid, levee_edge, levee_admin
  mkdir -p "$1"
  printf '[server]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\ndata_dir = "data"\n\n[functions.f]\ncommand = ["%s/hello-fn"]\ncode = "%s/examples/hello/code"\nreserved_concurrency = 20\n\n[[routes]]\nroute = "GET /f"\nfunction = "f"\n%s\n\n%s\n' \
    "$bin" "$root" "${3:-}" "$2" >"$1/levee.toml"
  (cd "$1" && LEVEE_ADMIN_TOKEN="$token" LEVEE_LOG=warn exec "$bin/levee" serve --config levee.toml >out 2>err) &
  levee_pid=$!
  pids+=("$levee_pid")
  for _ in $(seq 1 300); do grep -q "admin listening" "$1/out" && break; sleep 0.1; done
  grep -q "admin listening" "$1/out" || { cat "$1/err" >&2; exit 1; }
  levee_edge=$(sed -n 's/^levee: edge listening on http:\/\///p' "$1/out")
  levee_admin=$(sed -n 's/^levee: admin listening on //p' "$1/out")
}

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

start_backend() { # DIR → a levee with its shield off behind a C proxy, and a port for the proxy
  start_levee "$1/levee" "[limits]
max_connections_per_ip = 19000
max_connections = 19000"
  admin=$levee_admin; backend_pid=$levee_pid
  port=$(free_port)
}

start_edge() { # NAME DIR → sets url, admin, edge_pid, backend_pid
  local port
  case $1 in
  levee)
    start_levee "$2/levee" "[limits]
header_timeout = \"5s\"
send_timeout = \"${SEND_TIMEOUT}s\"
max_connections_per_ip = 20

[firewall]
[[firewall.rules]]
name = \"per-ip\"
priority = 1
action = \"block\"
response = { status = 429 }
statement = { rate = { limit = $LIMIT, window = \"60s\" } }" "$levee_cache"
    url="http://$levee_edge/f"; admin=$levee_admin; edge_pid=$levee_pid; backend_pid=""
    ;;
  nginx)
    start_backend "$2"
    mkdir -p "$2/nginx"
    cat >"$2/nginx/nginx.conf" <<NGINX
user $(id -un);
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $2/nginx/nginx.pid;
error_log $2/nginx/error.log error;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path $2/nginx/body;
  proxy_temp_path $2/nginx/proxy;
  fastcgi_temp_path $2/nginx/fastcgi;
  uwsgi_temp_path $2/nginx/uwsgi;
  scgi_temp_path $2/nginx/scgi;
  limit_req_zone \$binary_remote_addr zone=perip:32m rate=${LIMIT}r/m;
  limit_conn_zone \$binary_remote_addr zone=perconn:32m;
  proxy_cache_path $2/nginx/cache keys_zone=fn:10m max_size=256m;
  upstream levee { server $levee_edge; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout ${SEND_TIMEOUT}s;
    location / {
      limit_req zone=perip burst=$LIMIT nodelay;
      limit_req_status 429;
      limit_conn perconn 20;
      limit_conn_status 429;
      proxy_cache $nginx_cache;
      proxy_cache_key \$host\$uri;
      proxy_cache_valid 200 ${CACHE_TTL}s;
      proxy_cache_lock on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://levee;
    }
  }
}
NGINX
    nginx -c "$2/nginx/nginx.conf" -p "$2/nginx" &
    edge_pid=$!; pids+=("$edge_pid")
    wait_port "$port"
    url="http://127.0.0.1:$port/f"
    ;;
  haproxy)
    start_backend "$2"
    cat >"$2/haproxy.cfg" <<HAPROXY
global
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client ${SEND_TIMEOUT}s
  timeout server 30s
  timeout http-request 5s
cache fn
  total-max-size 16
  max-age $((CACHE_TTL > 0 ? CACHE_TTL : 1))
frontend fe
  bind 127.0.0.1:$port
  stick-table type ip size 1m expire 60s store http_req_rate(60s),conn_cur
  tcp-request connection track-sc0 src
  tcp-request connection reject if { sc0_conn_cur gt 20 }
  http-request deny deny_status 429 if { sc0_http_req_rate gt $LIMIT }
  default_backend be
backend be
  $haproxy_cache
  server levee $levee_edge
HAPROXY
    haproxy -f "$2/haproxy.cfg" -db &
    edge_pid=$!; pids+=("$edge_pid")
    wait_port "$port"
    url="http://127.0.0.1:$port/f"
    ;;
  esac
}

names=(levee nginx haproxy)
for round in $(seq 1 "$ROUNDS"); do
  for s in $SCENARIOS; do
    for i in 0 1 2; do
      t=${names[$(( (i + round) % 3 ))]}
      run="$dir/run-$round-$s-$t"
      out="$reports/$t/$s/$round"
      mkdir -p "$run" "$out"
      path=""; caches "$CACHE_TTL"
      [ "$s" = slow-read ] && { path=$BIG_PATH; caches 0; }
      start_edge "$t" "$run"
      LEVEE_ADMIN_TOKEN="$token" timeout $((SECS + 60)) "$bin/levee" drill --target "${url%/f}${path:-/f}" \
        --scenario "$s" --duration "${SECS}s" --rate 2000 --sources 200 \
        --legit-rate 50 --legit-sources 250 --admin "$admin" --report-dir "$out" \
        >"$out/summary.txt" 2>"$out/progress.txt" || echo "side-by-side: drill failed: $out" >&2
      self=self; [ "$t" = nginx ] && self=children
      { echo "edge_kib $(peak_kib "$edge_pid" "$self")"
        echo "backend_kib $([ -n "$backend_pid" ] && peak_kib "$backend_pid" self || echo 0)"; } >"$out/memory.txt"
      stop_all
      echo "side-by-side: round $round $s $t done" >&2
    done
  done
done

python3 - "$reports" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for path in glob.glob(os.path.join(sys.argv[1], "*", "*", "*", "drill-*.json")):
    target, scenario = path.split(os.sep)[-4:-2]
    r = json.load(open(path))
    mem = dict(l.split() for l in open(os.path.join(os.path.dirname(path), "memory.txt")))
    r["mem"] = {k: int(v) / 1024 for k, v in mem.items()}
    rows.setdefault(scenario, {}).setdefault(target, []).append(r)
print("| scenario | edge | legit success | legit p99 ms, per round | attack req/s | attack answered 2xx | invocations caused | edge peak RSS MiB | + backend levee MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
verdict = {"nginx": [0, 0], "haproxy": [0, 0]}
for scenario in sorted(rows):
    p99 = {}
    for target in ("levee", "nginx", "haproxy"):
        runs = rows[scenario].get(target, [])
        if not runs:
            continue
        lr = sum(x["legit"]["requests"] for x in runs)
        ls = sum(x["legit"]["success"] for x in runs)
        p = [x["legit"]["latency_ms"]["p99"] for x in runs]
        p99[target] = (statistics.median(p), ls / max(lr, 1))
        ar = sum(x["attack"]["requests"] for x in runs)
        a2 = sum(x["attack"]["success"] for x in runs)
        secs = sum(x.get("elapsed_s", 0) or 0 for x in runs) or 1
        inv = sum((x.get("levee") or {}).get("invocations_caused") or 0 for x in runs)
        edge = max(x["mem"]["edge_kib"] for x in runs)
        back = max(x["mem"]["backend_kib"] for x in runs)
        back = f"{back:.1f}" if back else "—"
        print(f"| {scenario} | {target} | {100*ls/max(lr,1):.2f}% ({ls}/{lr}) | {' / '.join(f'{v:.1f}' for v in p)} "
              f"| {ar/secs:.0f} | {a2} | {inv} | {edge:.1f} | {back} |")
    for other in verdict:
        if "levee" in p99 and other in p99:
            verdict[other][1] += 1
            (lp, lsr), (op, osr) = p99["levee"], p99[other]
            verdict[other][0] += lp <= op and lsr >= osr
for other, (won, n) in verdict.items():
    print(f"\nLevee's legit success ≥ and median p99 ≤ {other}'s: {won} of {n} scenarios")
PY
