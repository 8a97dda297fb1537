#!/usr/bin/env bash
# Two levee builds side by side in one run: BEFORE and AFTER (paths to
# release `levee` binaries) serve the same config at once, and wrk (c=4)
# alternates between them on a warm route and a cached one, so machine
# noise hits both alike. Prints "round path which req/s". Bounded: ROUNDS x
# paths x 2 x SECS seconds; both servers are started here and stopped here
# by PID, on loopback port 0.
# BEFORE_TOML / AFTER_TOML are appended to each server's config, so one
# binary can be compared with itself under two settings.
#   BEFORE=/tmp/old/target/release/levee AFTER=target/release/levee bench/before-after.sh
#   BEFORE=target/release/levee BEFORE_TOML=$'[auto_mitigation]\nmode = "off"' bench/before-after.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-4}; SECS=${SECS:-5}
: "${BEFORE:?BEFORE=path to the old levee}" "${AFTER:=target/release/levee}"
code=$root/examples/hello/code
hello=$root/target/release/hello-fn
work=$(mktemp -d)
start() { # name bin [toml] -> prints edge addr
  local dir=$work/$1; rm -rf "$dir"; mkdir -p "$dir"
  cat > "$dir/levee.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "data"
access_log = "off"

[account]
concurrency = 16

[functions.echo]
command = ["$hello"]
code = "$code"

[[routes]]
route = "GET /echo"
function = "echo"

[[routes]]
route = "GET /cached"
function = "echo"
cache = { ttl = "1h" }

$3
TOML
  (cd "$dir" && { LEVEE_LOG=warn LEVEE_ADMIN_TOKEN=abtokenabtokenabtokenabtoken12 "$2" serve --config levee.toml > out 2> err & echo $! > pid; })
  for _ in $(seq 100); do grep -q "edge listening" "$dir/out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/.*edge listening on \(http[^ ]*\).*/\1/p' "$dir/out"
}
trap 'kill $(cat "$work"/*/pid 2>/dev/null) 2>/dev/null; rm -rf "$work"' EXIT
before=$(start before "$(realpath "$BEFORE")" "${BEFORE_TOML:-}")
after=$(start after "$(realpath "$AFTER")" "${AFTER_TOML:-}")
for url in "$before" "$after"; do wrk -t2 -c4 -d1s "$url/echo" >/dev/null; wrk -t2 -c4 -d1s "$url/cached" >/dev/null; done
for r in $(seq "$ROUNDS"); do
  for path in ${PATHS:-echo cached}; do
    for which in before after; do
      url=$before; [ $which = after ] && url=$after
      rps=$(wrk -t2 -c4 -d${SECS}s "$url/$path" | awk '/Requests\/sec/ {print $2}')
      echo "$r $path $which $rps"
    done
  done
done
