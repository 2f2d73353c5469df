"""Screenshot a report.html with headless Chromium (Debian's `chromium`), to look at what a reader sees.

    python scripts/report_screenshot.py vertaug-demo/report.html report.png [--height 6000]

Chromium is not a dependency of vertaug: install it with `apt-get install chromium`. The flags keep it off the
network (no background services) and run it as root in a container.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 6000) -> Path:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return png


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("html", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--height", type=int, default=6000)
    a = ap.parse_args()
    print(screenshot(a.html, a.png, height=a.height))
