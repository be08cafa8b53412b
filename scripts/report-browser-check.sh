#!/usr/bin/env bash
# Opens a report's index.html in headless Chromium (Debian's `chromium` package), checks that
# every image loaded, and saves a screenshot:
#   scripts/report-browser-check.sh runs/tiny/report/index.html docs/report-tiny.png
set -euo pipefail
page=$(realpath "${1:?usage: $0 INDEX.html [SCREENSHOT.png]}")
shot=${2:-}
command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --virtual-time-budget=5000
       --user-data-dir="$profile")
# index.html records "loaded/total" images in <body data-images> once the page has loaded.
loaded=$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null | grep -o 'data-images="[0-9]*/[0-9]*"' | cut -d'"' -f2)
echo "images loaded: ${loaded:-none}"
[ -n "$loaded" ] && [ "${loaded%/*}" = "${loaded#*/}" ] && [ "${loaded#*/}" != 0 ]
if [ -n "$shot" ]; then
    chromium "${flags[@]}" --window-size=1400,2600 --screenshot="$(realpath -m "$shot")" "file://$page" 2>/dev/null
    echo "screenshot: $shot"
fi
