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


def model_slices_figure(vertebra, path: str | Path, title: str | None = None) -> Path:
    """Mid-sagittal and mid-axial slices of the model's tissue labels over its CT (mm axes)."""
    from matplotlib.colors import ListedColormap

    plt = _plt()
    v = vertebra
    c = np.round(v.landmarks.centroid_ijk).astype(int)
    s_mm = v.spacing_m[0] * 1e3
    colors = ["none", "#f2d16b", "#e8e8e8", "#5aa0ff", "#b05cff", "#ff3030", "#ff9a1f", "#00d0a0", "#7f7f7f"]
    cmap = ListedColormap(["#00000000"] + colors[1:])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=100)
    for ax, (img, lab, xl, yl, ttl) in zip(axes, [
        (v.hu[c[0]].T, v.labels[c[0]].T, "posterior -> anterior (mm)", "inferior -> superior (mm)", "mid-sagittal"),
        (v.hu[:, :, c[2]].T, v.labels[:, :, c[2]].T, "RAS x (mm)", "posterior -> anterior (mm)",
         "mid-axial"),
    ]):
        ext = (0, img.shape[1] * s_mm, 0, img.shape[0] * s_mm)
        ax.imshow(img, origin="lower", cmap="gray", vmin=-250, vmax=1000, extent=ext)
        masked = np.ma.masked_where(lab == 0, lab)
        ax.imshow(masked, origin="lower", cmap=cmap, vmin=0, vmax=8, alpha=0.55, extent=ext, interpolation="nearest")
        ax.set_title(ttl, fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    axes[1].set_xlabel("right-left position, RAS x (mm)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i]) for i in range(1, 9)]
    names = ["trabecular", "cortex", "endplate", "canal", "basivertebral", "segmental vein", "cleft/defect", "disc"]
    fig.legend(handles, names, loc="lower center", ncol=8, fontsize=7)
    fig.suptitle(title or f"{v.level} voxel model ({s_mm:g} mm)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
