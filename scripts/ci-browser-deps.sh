#!/usr/bin/env bash
# Installs what the web page's browser tests (tests/test_web_page.py) need and the Python packages do not
# bring: Debian's chromium, which Playwright drives (it never downloads a browser of its own). Run by
# .ci/run before ./scripts/test; a no-op where chromium is already installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci-browser-deps: no chromium and no apt-get; the browser tests will be skipped" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "ci-browser-deps: not root and no sudo; cannot install chromium" >&2; exit 0; }
  sudo="sudo -n"
fi
echo "ci-browser-deps: installing chromium (apt-get) for the web page's browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2; do  # a mirror hiccup gets a second try; then the browser tests skip, saying why
  if $sudo apt-get update -q >/dev/null &&
     $sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
    chromium --version >&2
    exit 0
  fi
  echo "ci-browser-deps: apt-get failed (attempt $attempt)" >&2
  sleep 10
done
echo "ci-browser-deps: could not install chromium; the browser tests will be skipped" >&2
