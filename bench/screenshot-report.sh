#!/usr/bin/env bash
# Renders a levee drill HTML report in headless Chromium and writes a PNG, to
# check the inline SVG charts render. Usage: bench/screenshot-report.sh REPORT.html [OUT.png]
# Installs chromium with apt-get if it is missing (Debian package; root here).
# Bounded: the browser gets at most 60 s.
set -euo pipefail
report=${1:?usage: $0 REPORT.html [OUT.png]}
out=${2:-${report%.html}.png}
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
abs=$(readlink -f "$report")
timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --window-size=1000,1600 \
    --screenshot="$out" "file://$abs" 2>/dev/null
test -s "$out"
echo "screenshot: $out"
