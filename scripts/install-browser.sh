#!/usr/bin/env bash
# Installs what the browser test (tests/test_web_browser.py) needs from Debian's packages:
# Chromium, and a font with Arabic glyphs (DejaVu) so pages render legibly in screenshots.
# Idempotent and non-interactive; CI runs it before the tests. Playwright (the Python package in
# the `test` extra) drives this Chromium through executable_path=/usr/bin/chromium: never run
# `playwright install`, which downloads a browser build of its own (there is no internet here).
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ -x /usr/bin/chromium ]; then
    echo "install-browser: already installed: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi

# apt needs package lists: fetch them once, only if chromium is unknown to apt-cache.
# (The output is captured, not piped into `grep -q`: with pipefail, grep closing the pipe early
# would make the check fail at random.)
known() {
    local policy
    policy="$(apt-cache policy chromium 2>/dev/null || true)"
    [[ "$policy" =~ Candidate:\ [0-9] ]]
}
if ! known; then
    $SUDO apt-get update -q
fi
if ! known; then
    echo "install-browser: no 'chromium' package in the apt sources" >&2
    exit 1
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]:-chromium}"
echo "install-browser: installed: $(/usr/bin/chromium --version 2>/dev/null)"
