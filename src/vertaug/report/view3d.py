"""The report's 3-D view: the vertebral body surface with VP's and KP's cement, KP's balloon cavity and any leak,
pre-rendered at evenly spaced azimuths and turned in the page by a few lines of inline JavaScript (drag, slider or
play). Self-contained: no network and no WebGL (a page opened from a mail attachment or an offline ward PC shows it),
at the cost of a fixed set of views.

Surfaces: the voxel faces (between a voxel inside and one outside) of the body mask (every 3rd voxel), of the cement
(fraction >= DISPLAY_MIN_FRACTION) inside the body, of the cement outside it (leak) and of the balloon cavity, on the
model grid in mm: the model as it is computed, without smoothing (scikit-image's marching cubes would round it, but
is not a dependency of vertaug); drawn with matplotlib's mplot3d (Agg). The body is translucent so the cement shows.
"""

from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["N_VIEWS", "render_views"]

#: Azimuths rendered (every 360 / N_VIEWS degrees).
N_VIEWS = 12
_STYLE = {"body": ("#d8d0c0", 0.18), "cement": ("#e07b00", 0.95), "cavity": ("#00a0c0", 0.35),
          "leak": ("#20c020", 1.0)}


def _mesh(mask: np.ndarray, spacing_mm: float, step: int):
    """The voxel surface of ``mask`` (every ``step``-th voxel): one quad per face between a voxel inside and one
    outside, vertices in mm; None for fewer than 8 voxels."""
    m = np.asarray(mask, bool)[::step, ::step, ::step]
    if m.sum() < 8:
        return None
    p = np.pad(m, 1)
    quads = []
    corners = {0: ((0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1)), 1: ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),
               2: ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0))}
    for axis in range(3):
        d = np.diff(p.astype(np.int8), axis=axis)  # +1: outside -> inside, -1: inside -> outside, along the axis
        for idx in np.argwhere(d != 0):
            base = idx.astype(float)
            base[axis] += 1.0  # the face lies between index i and i+1 of the padded array
            quads.append([base + c for c in corners[axis]])
    verts = (np.asarray(quads) - 1.0) * step * spacing_mm  # (n, 4, 3), undo the padding
    return verts


def _surfaces(outcome, display_min: float) -> dict:
    model = outcome.model_after
    s_mm = float(model.spacing_m[0]) * 1e3
    body = np.asarray(model.body_mask)
    f = np.asarray(outcome.cement_fraction)
    cement = f >= display_min
    out = {"body": _mesh(body, s_mm, 3), "cement": _mesh(cement & body, s_mm, 1),
           "leak": _mesh(cement & ~body, s_mm, 1)}
    cav = outcome.fields.get("balloon_cavity")
    if cav is not None:
        out["cavity"] = _mesh(np.asarray(cav) > 0.5, s_mm, 1)
    return {k: v for k, v in out.items() if v is not None}


def render_views(outcomes: dict, display_min: float, n_views: int = N_VIEWS) -> list[str]:
    """JPEG data URIs of the procedures side by side (one panel each), one per azimuth; [] when nothing to show."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from .figures import _plt

    plt = _plt()
    surf = {name: _surfaces(o, display_min) for name, o in outcomes.items()}
    if not any(surf.values()):
        return []
    allv = np.concatenate([q.reshape(-1, 3) for s in surf.values() for q in s.values()])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    fig = plt.figure(figsize=(3.4 * len(surf), 2.8), dpi=120)  # 816 x 336 px for two panels
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.92, wspace=0.0)
    axes = []
    for i, (name, s) in enumerate(surf.items()):
        ax = fig.add_subplot(1, len(surf), i + 1, projection="3d")
        for part, quads in s.items():
            colour, alpha = _STYLE[part]
            ax.add_collection3d(Poly3DCollection(quads, facecolors=colour, edgecolors=colour, linewidths=0.0, alpha=alpha,
                                                 shade=True))
        ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[1], hi[1]), ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(hi - lo, zoom=1.35)
        ax.set_axis_off()
        parts = ", ".join(p for p in ("cement", "cavity", "leak") if p in s)
        ax.set_title(f"{name}: body, {parts or 'no cement'}", fontsize=9)
        axes.append(ax)
    frames = []
    for k in range(n_views):
        for ax in axes:
            ax.view_init(elev=15, azim=-90 + 360.0 * k / n_views)
        buf = io.BytesIO()
        fig.savefig(buf, format="jpeg", pil_kwargs={"quality": 85})  # a quarter of the PNG's size
        frames.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    plt.close(fig)
    return frames
