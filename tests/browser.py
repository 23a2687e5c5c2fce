"""Find a Chromium or Chrome however the platform names it (stdlib only: `make install` runs it with
the system python before the virtualenv exists).

    python3 tests/browser.py          # prints the browser's path, or says what to install (exit 1)

$CHROMIUM, if set, names the binary; otherwise the usual command names on PATH, then the usual
application paths on macOS and Windows.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "chromium-freeworld")
APP_PATHS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "C:/Program Files/Google/Chrome/Application/chrome.exe",
    "C:/Program Files (x86)/Google/Chrome/Application/chrome.exe",
)
INSTALL_HINT = (
    "no Chromium or Chrome found (looked for $CHROMIUM, " + ", ".join(NAMES) + " on PATH, and the macOS/Windows "
    "application folders); install one: Debian `sudo apt-get install chromium`, Ubuntu `sudo apt-get install "
    "chromium-browser` (or `sudo snap install chromium`), Fedora `sudo dnf install chromium`, macOS `brew install "
    "--cask chromium`, or set CHROMIUM=/path/to/chrome"
)


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        found = shutil.which(env)
        return found if found else None
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in APP_PATHS if Path(p).is_file() and os.access(p, os.X_OK)), None)


if __name__ == "__main__":
    path = find_chromium()
    if path is None:
        print(INSTALL_HINT, file=sys.stderr)
        sys.exit(1)
    print(path)
