"""Screenshot a report.html with headless Chromium (Debian's `chromium`), to look at what a reader sees.

    python scripts/report_screenshot.py vertaug-demo/report.html report.png [--width 1200]

Chromium is not a dependency of vertaug: install it with `apt-get install chromium`. The flags keep it off the
network (no background services), run it as root in a container and give it software WebGL (the 3-D view). The page
is shot in pieces 8000 px tall (with WebGL on, Chromium repeats a taller page) until a piece's bottom rows are blank
(so nothing is cut), stacked and cropped to the content; the script prints what it checked: the content height,
whether anything touches the right edge (horizontal overflow) and the fraction of coloured pixels (figures
rendered). ``tests/test_pipeline.py`` and ``tests/test_view3d.py`` run it when chromium is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

#: Rows (px) at the bottom that must be blank page background for "nothing is cut" (taller than any gap between
#: the report's blocks), and columns at the right (no horizontal overflow).
BOTTOM_BLANK_PX = 200
BLANK_MARGIN_PX = 8


#: WebGL without a GPU (the 3-D view): Chromium's software rasteriser SwiftShader through ANGLE. Headless
#: Chromium with --disable-gpu has no WebGL, and the view would show plotly's "WebGL is not supported" instead.
WEBGL_FLAGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
#: Virtual time (ms) the page gets before the shot or the DOM dump: plotly draws after the load event.
SETTLE_MS = 10000
#: Console lines that are Chromium's own performance hints, not the page's errors: plotly.js reads its pick buffer
#: back with getImageData, and Chromium suggests willReadFrequently (a speed hint; nothing fails).
HINTS = ("willReadFrequently",)


def _flags(profile: str) -> list[str]:
    """Off the network (no background services), as root in a container, with software WebGL."""
    return ["--headless", "--no-sandbox", *WEBGL_FLAGS, f"--virtual-time-budget={SETTLE_MS}", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _shoot(exe: str, html: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([exe, *_flags(profile), "--hide-scrollbars", f"--screenshot={png}",
                        f"--window-size={width},{height}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)


def console_messages(html: Path) -> tuple[list[str], str]:
    """(the page's console messages and uncaught errors, as Chromium logs them; the DOM after its scripts ran)."""
    exe = chromium()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([exe, *_flags(profile), "--enable-logging=stderr", "--v=0", "--dump-dom",
                              Path(html).resolve().as_uri()], check=True, capture_output=True, text=True,
                             timeout=180)
    return [line for line in res.stderr.splitlines()
            if ":CONSOLE" in line and not any(h in line for h in HINTS)], res.stdout


def shoot_only(html: Path, css_class: str, png: Path, width: int = 1200, height: int = 700) -> np.ndarray:
    """A window-sized shot of a copy of ``html`` in which every top-level element but those of ``css_class`` is
    hidden (one style rule added; the page's scripts run as in the original); the RGB pixels. (Chromium's
    --screenshot of a page scrolled to a #fragment comes out blank, hence the copy.)"""
    import matplotlib.image as mpimg

    exe = chromium()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    page = Path(html).read_text(encoding="utf-8")
    rule = f"<style>body>*:not(.{css_class}){{display:none!important}}</style></head>"
    with tempfile.TemporaryDirectory() as tmp:
        only = Path(tmp) / "only.html"
        only.write_text(page.replace("</head>", rule, 1), encoding="utf-8")
        subprocess.run([exe, *_flags(f"{tmp}/profile"), "--hide-scrollbars", f"--screenshot={png}",
                        f"--window-size={width},{height}", only.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
    return np.asarray(mpimg.imread(png))[..., :3].astype(float)


def inspect(png: Path) -> dict:
    """What a reader would see: content height, blank bottom / right margins, coloured-pixel fraction."""
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(png))[..., :3].astype(float)
    background = img[0, -1]  # top-right corner: page background
    ink = np.abs(img - background).max(axis=2) > 0.02
    rows = np.flatnonzero(ink.any(axis=1))
    chroma = img.max(axis=2) - img.min(axis=2)
    return {
        "height_px": int(img.shape[0]),
        "width_px": int(img.shape[1]),
        "content_height_px": int(rows[-1] + 1) if rows.size else 0,
        "bottom_blank": bool(not ink[-BOTTOM_BLANK_PX:].any()),
        "right_blank": bool(not ink[:, -BLANK_MARGIN_PX:].any()),
        "coloured_fraction": float((chroma > 0.15).mean()),
    }


#: Height (px) of one piece of a full-page shot: with WebGL on (SwiftShader), Chromium repeats the page below ~16 k
#: px in a taller window, so a long report is shot in pieces of this height and stacked.
PIECE_PX = 8000


def _shoot_piece(exe: str, page: str, png: Path, width: int, k: int) -> None:
    """Piece ``k`` of ``page``: a copy whose body is moved up by k pieces, shot in a window one piece tall."""
    rule = f"<style>body{{position:relative;top:-{k * PIECE_PX}px}}</style></head>"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "piece.html"
        copy.write_text(page.replace("</head>", rule, 1), encoding="utf-8")
        _shoot(exe, copy, png, width, PIECE_PX)


def screenshot(html: Path, png: Path, width: int = 1200, max_height: int = 64000) -> dict:
    """Shoot ``html`` into ``png`` at ``width``, piece by piece (:data:`PIECE_PX`) until the bottom rows of a piece
    are blank; returns :func:`inspect`'s checks of the stacked shot. The PNG is cropped to the content plus a
    margin."""
    import matplotlib.image as mpimg

    exe = chromium()
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium")
    page = Path(html).read_text(encoding="utf-8")
    pieces = []
    while len(pieces) * PIECE_PX < max_height:
        _shoot_piece(exe, page, Path(png), width, len(pieces))
        pieces.append(np.asarray(mpimg.imread(png))[..., :3])
        if inspect(png)["bottom_blank"]:
            break
    mpimg.imsave(png, np.concatenate(pieces))
    info = inspect(png)
    img = mpimg.imread(png)
    keep = min(img.shape[0], info["content_height_px"] + 4 * BLANK_MARGIN_PX)
    mpimg.imsave(png, img[:keep])
    info["shot_height_px"] = len(pieces) * PIECE_PX
    return info


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("html", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    a = ap.parse_args()
    info = screenshot(a.html, a.png, width=a.width)
    print(a.png, info)
