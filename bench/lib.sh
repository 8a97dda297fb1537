# Shared by bench/fair-admission.sh and bench/auto-drill.sh: one release
# levee serving hello-fn on GET /f (and a second, idle function), started
# on loopback port 0 and stopped by PID when the calling script exits.
#   start_levee BIN_DIR TOP_TOML FUNCTION_TOML
# TOP_TOML goes before the functions ([auto_mitigation], …); FUNCTION_TOML
# into [functions.hello]. Sets $dir, $edge, $admin and $token.
start_levee() {
  local bin top=$2 extra=$3 root
  bin=$(cd "$1" && pwd)
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=$(mktemp -d)
  token="bench-$(date +%s%N)"
  cat >"$dir/levee.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$dir/data"

$top

[functions.hello]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"
$extra

[functions.other]
command = ["$bin/hello-fn"]
code = "$root/examples/hello/code"

[[routes]]
route = "GET /f"
function = "hello"
TOML
  LEVEE_ADMIN_TOKEN="$token" LEVEE_LOG=warn "$bin/levee" serve --config "$dir/levee.toml" >"$dir/out" 2>"$dir/err" &
  levee_pid=$!
  trap 'kill "$levee_pid" 2>/dev/null; wait "$levee_pid" 2>/dev/null; rm -rf "$dir"' EXIT
  edge="" admin=""
  for _ in $(seq 1 100); do
    edge=$(sed -n 's/^levee: edge listening on //p' "$dir/out")
    admin=$(sed -n 's/^levee: admin listening on //p' "$dir/out")
    [ -n "$edge" ] && [ -n "$admin" ] && return 0
    sleep 0.1
  done
  cat "$dir/err" >&2
  return 1
}
