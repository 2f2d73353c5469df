"""Kyphoplasty cavity figure: the cavity (the balloons' space) and the gap opened under the lifted plate beyond it,
outlined over the cement that fills them.

Runs no physics: it draws the fields of a kyphoplasty :class:`vertaug.procedures.outcome.Outcome`
(``balloon_cavity``, ``fracture_gap``, ``cement_saturation``) on the treated model's labels, in the sagittal,
coronal and axial planes through the cavity's centroid (array axes of the canonical RAS+ grid).
"""

from __future__ import annotations

import numpy as np

from vertaug.model.labels import BODY

__all__ = ["cavity_cement_figure"]

#: a voxel counts as filled when more than half of its pore space holds cement (as BalloonMetrics counts it)
FILLED_SATURATION = 0.5
#: saturation below this is not drawn (numerical traces of the front, not visible cement)
DISPLAY_MIN_SATURATION = 0.05


def _planes(mask: np.ndarray) -> list[tuple[str, int, int]]:
    """(name, array axis cut, index) of the three planes through the centroid of ``mask``."""
    c = np.rint(np.argwhere(mask).mean(axis=0)).astype(int)
    return [("sagittal", 0, int(c[0])), ("coronal", 1, int(c[1])), ("axial", 2, int(c[2]))]


def cavity_cement_figure(outcome, path, title: str = "KP"):
    """Three slices: the vertebral body in grey, cement saturation in colour, the cavity (solid red) and the gap opened
    under the lifted plate beyond the membrane (dashed orange) as outlines; each panel's title gives the share of the
    cavity's voxels in that slice more than half full. Returns ``path``, or None without a balloon cavity."""
    cavity = outcome.fields.get("balloon_cavity")
    if cavity is None or not np.any(cavity):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gap = outcome.fields.get("fracture_gap")
    gap = np.zeros(cavity.shape, bool) if gap is None else np.asarray(gap, bool)
    sat = np.asarray(outcome.fields.get("cement_saturation", np.zeros(cavity.shape)), float)
    labels = np.asarray(outcome.model_after.labels)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    im = None
    for ax, (name, axis, k) in zip(axes, _planes(cavity)):
        def cut(a, k=k, axis=axis):
            return np.take(np.asarray(a), k, axis=axis).T  # rows = the later axis, drawn bottom-up

        ax.imshow(cut(np.isin(labels, BODY)), cmap="gray", vmin=0, vmax=2, origin="lower", interpolation="nearest")
        im = ax.imshow(np.ma.masked_less(cut(sat), DISPLAY_MIN_SATURATION), cmap="viridis", vmin=0, vmax=1, origin="lower",
                       interpolation="nearest", alpha=0.9)
        ax.contour(cut(cavity).astype(float), levels=[0.5], colors="red", linewidths=1.2)
        if cut(gap).any():
            ax.contour(cut(gap).astype(float), levels=[0.5], colors="orange", linewidths=1.0, linestyles="--")
        in_slice = cut(cavity)
        filled = 100.0 * float(np.mean(cut(sat)[in_slice] > FILLED_SATURATION)) if in_slice.any() else float("nan")
        ax.set_title(f"{name} slice {k} (cavity here {filled:.0f} % filled)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="cement saturation (pore fraction)")
    whole = 100.0 * float(np.mean(sat[cavity] > FILLED_SATURATION))
    fig.suptitle(f"{title}: cavity (red, {whole:.0f} % of its voxels > half full), gap under the lifted plate beyond the "
                 "balloon (orange dashed), cement")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
