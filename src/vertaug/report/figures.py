"""Figures (matplotlib, Agg backend): PNG files for the report and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..anatomy.io import Volume
from ..anatomy.levels import label_table
from ..anatomy.morphometry import MEASUREMENT_POSITIONS, SpineMorphometry


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sagittal_level_figure(ct: Volume, seg: Volume, spine: SpineMorphometry, level: str, path: str | Path) -> Path:
    """Mid-sagittal CT slice through ``level`` with its outline and the three height lines (mm axes)."""
    plt = _plt()
    m = spine[level]
    table = label_table(spine.numbering)
    mask = seg.data == table[m.level]
    i = int(round(np.argwhere(mask)[:, 0].mean()))
    sx, sy, sz = ct.spacing_mm
    fig, ax = plt.subplots(figsize=(5, 6), dpi=100)
    extent = (0, ct.shape[1] * sy, 0, ct.shape[2] * sz)
    ax.imshow(ct.data[i].T, origin="lower", cmap="gray", vmin=-250, vmax=1000, extent=extent, aspect="equal")
    ax.contour(mask[i].T.astype(float), levels=[0.5], colors="tab:orange", linewidths=1.0,
               extent=extent, origin="lower")
    if m.evaluable:
        c = np.array(m.centroid_mm)
        h, a = np.array(m.height_axis), np.array(m.anterior_axis)
        inv = np.linalg.inv(ct.affine_mm)
        for key, frac in MEASUREMENT_POSITIONS.items():
            hgt = getattr(m, f"height_{key}_mm")
            off = (frac - 0.5) * m.ap_depth_mm
            p0 = c + off * a - 0.5 * hgt * h
            p1 = c + off * a + 0.5 * hgt * h
            q0 = inv[:3, :3] @ p0 + inv[:3, 3]
            q1 = inv[:3, :3] @ p1 + inv[:3, 3]
            ax.plot([(q0[1] + 0.5) * sy, (q1[1] + 0.5) * sy], [(q0[2] + 0.5) * sz, (q1[2] + 0.5) * sz], "c-", lw=1.5)
        ax.set_title(f"{m.level}: Ha {m.height_anterior_mm:.1f} / Hm {m.height_middle_mm:.1f} / "
                     f"Hp {m.height_posterior_mm:.1f} mm\nGenant {m.genant_grade} ({m.genant_type}), "
                     f"wedge {m.wedge_angle_deg:.1f} deg", fontsize=9)
        cj = (inv[:3, :3] @ c + inv[:3, 3])
        half = 45.0
        ax.set_xlim(cj[1] * sy - half, cj[1] * sy + half)
        ax.set_ylim(cj[2] * sz - half, cj[2] * sz + half)
    else:
        ax.set_title(f"{m.level}: not evaluable ({m.reason})", fontsize=8)
    ax.set_xlabel("posterior -> anterior (mm)")
    ax.set_ylabel("inferior -> superior (mm)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
