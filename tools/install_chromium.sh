#!/usr/bin/env bash
# Chromium for the browser test (make test-browser): nothing to do when one is there; otherwise the system's
# package manager installs it (Debian's `chromium`), never a browser download of a test tool's own.
set -euo pipefail

HOW="Install it with your system's package manager (Debian: sudo apt-get install chromium; Fedora: sudo dnf install chromium; macOS: brew install --cask chromium) or point CHROMIUM=/path/to/chromium at a Chromium or Chrome you have, then run make test-browser again."

if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] && exit 0
    echo "CHROMIUM=$CHROMIUM is not an executable file. $HOW" >&2
    exit 1
fi
for name in chromium chromium-browser google-chrome google-chrome-stable; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "The browser test needs Chromium, and there is none on this machine. $HOW" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
else
    echo "The browser test needs Chromium; installing it takes root (sudo apt-get install chromium). $HOW" >&2
    exit 1
fi
echo "Installing Chromium for the browser test: apt-get install chromium"
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium; then
    exit 0
fi
echo "apt-get could not install chromium (is a Debian package mirror reachable?). $HOW" >&2
exit 1
