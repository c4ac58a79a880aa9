#!/usr/bin/env bash
# The browser test (tests/report/test_browser.py) opens the reports in Debian's headless
# chromium. This installs it, and a font with Chinese glyphs for the claims' wording, when
# they are missing and this runs as root with apt-get. It never fails the build: where it
# cannot install, the test skips with the reason (and fails instead when CI=true).
set -u
have() { command -v "$1" >/dev/null 2>&1; }
need=()
have chromium || have chromium-browser || have google-chrome || need+=(chromium)
if have fc-list && [ -z "$(fc-list :lang=zh 2>/dev/null | head -n 1)" ]; then need+=(fonts-wqy-microhei); fi
if ! have fc-list && [ ${#need[@]} -gt 0 ]; then need+=(fonts-wqy-microhei); fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "ensure-chromium: missing ${need[*]}; not root or no apt-get, so not installing (the browser test will say so)" >&2
    exit 0
fi
echo "ensure-chromium: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "ensure-chromium: apt-get could not install ${need[*]} (the browser test will say so)" >&2
fi
exit 0
