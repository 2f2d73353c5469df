"""Figures (matplotlib, Agg backend): PNG files for the report and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..anatomy.io import Volume
from ..anatomy.levels import label_table
from ..anatomy.morphometry import MEASUREMENT_POSITIONS, SpineMorphometry
from ..constants import PSI_PA
from ..model.labels import (
    BASIVERTEBRAL,
    CANAL,
    CORTEX,
    DEFECT,
    DISC,
    ENDPLATE,
    LABEL_NAMES,
    OUTSIDE,
    SEGMENTAL,
    TRABECULAR,
    VEIN_CHANNEL,
)


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
    return _save(fig, path)


#: colour and legend name of each tissue label in the model figure (OUTSIDE transparent, not in the legend)
LABEL_STYLE = {
    OUTSIDE: ("#00000000", "outside"),
    TRABECULAR: ("#f2d16b", "trabecular"),
    CORTEX: ("#e8e8e8", "cortex"),
    ENDPLATE: ("#5aa0ff", "endplate"),
    CANAL: ("#b05cff", "canal"),
    BASIVERTEBRAL: ("#ff3030", "basivertebral"),
    SEGMENTAL: ("#ff9a1f", "segmental vein"),
    DEFECT: ("#00d0a0", "cleft/defect"),
    DISC: ("#7f7f7f", "disc"),
    VEIN_CHANNEL: ("#c00060", "vein channel"),
}


def model_slices_figure(vertebra, path: str | Path, title: str | None = None) -> Path:
    """Mid-sagittal and mid-axial slices of the model's tissue labels over its CT (mm axes)."""
    from matplotlib.colors import ListedColormap

    plt = _plt()
    v = vertebra
    c = np.round(v.landmarks.centroid_ijk).astype(int)
    s_mm = v.spacing_m[0] * 1e3
    numbers = sorted(LABEL_NAMES)
    # one colour per integer 0..max (numbers not in the vocabulary, e.g. the phantom's 9, transparent)
    cmap = ListedColormap([LABEL_STYLE.get(n, ("#00000000",))[0] for n in range(numbers[-1] + 1)])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=100)
    for ax, (img, lab, xl, yl, ttl) in zip(axes, [
        (v.hu[c[0]].T, v.labels[c[0]].T, "posterior -> anterior (mm)", "inferior -> superior (mm)", "mid-sagittal"),
        (v.hu[:, :, c[2]].T, v.labels[:, :, c[2]].T, "RAS x (mm)", "posterior -> anterior (mm)",
         "mid-axial"),
    ]):
        ext = (0, img.shape[1] * s_mm, 0, img.shape[0] * s_mm)
        ax.imshow(img, origin="lower", cmap="gray", vmin=-250, vmax=1000, extent=ext)
        masked = np.ma.masked_where(lab == OUTSIDE, lab)
        ax.imshow(masked, origin="lower", cmap=cmap, vmin=-0.5, vmax=numbers[-1] + 0.5, alpha=0.55, extent=ext,
                  interpolation="nearest")
        ax.set_title(ttl, fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    axes[1].set_xlabel("right-left position, RAS x (mm)")
    shown = [n for n in numbers if n != OUTSIDE]
    handles = [plt.Rectangle((0, 0), 1, 1, color=LABEL_STYLE[n][0]) for n in shown]
    fig.legend(handles, [LABEL_STYLE[n][1] for n in shown], loc="lower center", ncol=len(shown), fontsize=7)
    fig.suptitle(title or f"{v.level} voxel model ({s_mm:g} mm)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)


# --------------------------------------------------------------------------------------------- procedure figures

#: Cement below this volume fraction of a voxel is not drawn (invisible on imaging; the front's numerical trace).
DISPLAY_MIN_FRACTION = 0.01
ROUTES = {"B": "basivertebral", "S": "segmental", "C": "cortical", "D": "disc"}
COLORS = {"VP": "#d9534f", "KP": "#337ab7"}


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _plt().close(fig)
    return path


def _plot_axes():
    """Figure and axes of the report's small line and bar plots (5 x 3.2 in at 100 dpi)."""
    return _plt().subplots(figsize=(5, 3.2), dpi=100)


def _finish_plot(fig, ax, path, title: str, legend_fontsize: int = 8) -> Path:
    """Title, legend, tight layout and save: the common end of the small plots."""
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    return _save(fig, path)


def cement_slices_figure(outcome, path: str | Path, title: str) -> Path:
    """A sagittal and an axial slice, each through the plane holding the most cement (a bipedicular fill has two
    deposits beside the midline: a mid-sagittal slice would miss both): CT, body outline, cement, cavity, leak."""
    plt = _plt()
    v = outcome.model_after
    f = np.asarray(outcome.cement_fraction)
    f = np.where(f >= DISPLAY_MIN_FRACTION, f, 0.0)  # the Darcy front leaves ~1e-30 traces: not cement one could see
    c = np.round(v.landmarks.centroid_ijk).astype(int)
    if f.any():
        c = [int(np.argmax(f.sum(axis=tuple(a for a in range(3) if a != ax)))) for ax in range(3)]
    s_mm = v.spacing_m[0] * 1e3
    body = np.asarray(v.body_mask)
    outside = (f > 0) & ~body
    # stacked: the figure is shown in half the page's width, where side-by-side panels would shrink their text by half
    fig, axes = plt.subplots(2, 1, figsize=(4.6, 8.4), dpi=100)
    for ax, sl, ttl, xl, yl in (
            (axes[0], (c[0], slice(None), slice(None)), f"sagittal, x = {c[0] * s_mm:.0f} mm",
             "posterior -> anterior (mm)", "inferior -> superior (mm)"),
            (axes[1], (slice(None), slice(None), c[2]), f"axial, z = {c[2] * s_mm:.0f} mm", "right -> left (mm)",
             "posterior -> anterior (mm)")):
        hu, cf, bd, out = v.hu[sl].T, f[sl].T, body[sl].T.astype(float), outside[sl].T
        ext = (0, hu.shape[1] * s_mm, 0, hu.shape[0] * s_mm)
        ax.imshow(hu, origin="lower", cmap="gray", vmin=-250, vmax=1000, extent=ext)
        ax.contour(bd, [0.5], colors="w", linewidths=0.8, extent=ext, origin="lower")
        ax.imshow(np.ma.masked_where(cf <= 0, cf), origin="lower", cmap="autumn_r", vmin=0, vmax=0.6, alpha=0.85,
                  extent=ext, interpolation="nearest")
        cav = outcome.fields.get("balloon_cavity")
        if cav is not None:
            ax.contour(np.asarray(cav)[sl].T.astype(float), [0.5], colors="c", linewidths=1.0, extent=ext,
                       origin="lower")
        if out.any():
            ax.contour(out.astype(float), [0.5], colors="lime", linewidths=1.2, extent=ext, origin="lower")
        ax.set_title(ttl, fontsize=11)
        ax.set_xlabel(xl, fontsize=10)
        ax.set_ylabel(yl, fontsize=10)
    parts = "cement: yellow (little) to red (voxel filled); body outline white" + (
        "; balloon cavity cyan" if outcome.fields.get("balloon_cavity") is not None else "") + (
        "; cement outside the body green" if outside.any() else "")
    import textwrap

    fig.suptitle(title + "\n" + textwrap.fill(parts, 52), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


#: Leaks below one cubic millimetre (0.001 mL, one voxel at 1 mm) are drawn as none: numerical traces of the front
#: (1e-30 mL and the like) would otherwise set the axis scale.
LEAK_DISPLAY_MIN_ML = 1e-3


def leakage_figure(outcomes: dict, path: str | Path) -> Path:
    fig, ax = _plot_axes()
    x = np.arange(len(ROUTES))
    w = 0.38
    top = 0.0
    for i, (name, o) in enumerate(outcomes.items()):
        by = o.metrics.get("leaked_ml_by_route", {})
        vals = [max(float(by.get(r, 0.0)), 0.0) for r in ROUTES]
        shown = [v if v >= LEAK_DISPLAY_MIN_ML else 0.0 for v in vals]
        total = sum(vals)
        label = f"{name}: total {total:.3g} mL" if total >= LEAK_DISPLAY_MIN_ML else f"{name}: < 0.001 mL"
        ax.bar(x + (i - 0.5) * w, shown, w, label=label, color=COLORS.get(name))
        top = max(top, *shown)
    if top == 0.0:
        ax.set_ylim(0.0, 0.1)
        ax.text(0.5, 0.55, "no leak of 0.001 mL (1 mm$^3$) or more", transform=ax.transAxes, ha="center",
                fontsize=9, color="0.3")
    ax.set_xticks(x, [f"{k}\n{v}" for k, v in ROUTES.items()], fontsize=8)
    ax.set_ylabel("cement leaked (mL)")
    return _finish_plot(fig, ax, path, "Leakage by route (Yeom 2003 classes)")


def pressure_volume_figure(outcomes: dict, path: str | Path) -> Path:
    fig, ax = _plot_axes()
    for name, o in outcomes.items():
        s = o.series
        if "plunger_pressure_pa" in s:
            ax.plot(s["injected_ml"], np.asarray(s["plunger_pressure_pa"]) / 1e6, "-", color=COLORS.get(name),
                    label=f"{name} plunger")
            ax.plot(s["injected_ml"], np.asarray(s["tip_pressure_pa"]) / 1e6, "--", color=COLORS.get(name),
                    label=f"{name} bone at tip")
    ax.set_xlabel("cement injected (mL)")
    ax.set_ylabel("pressure (MPa)")
    ax.set_yscale("symlog", linthresh=1e-3)
    return _finish_plot(fig, ax, path, "Injection pressure vs volume", legend_fontsize=7)


def balloon_figure(outcome, path: str | Path) -> Path:
    s = outcome.series
    fig, ax = _plot_axes()
    psi = np.asarray(s["balloon_pressure_pa"]) / PSI_PA
    # each step's pressure is the yield of the bone crushed (or the lift pressure) in that step: it jumps from voxel to
    # voxel; the running maximum is the pressure the inflation has had to reach so far (what the gauge shows)
    ax.plot(s["balloon_volume_ml"], psi, ".", ms=3, color=COLORS["KP"], alpha=0.35, label="per step (crush / lift)")
    ax.plot(s["balloon_volume_ml"], np.maximum.accumulate(psi), "-", color=COLORS["KP"], label="highest so far")
    ax.axhspan(175 - 37, 175 + 37, color="grey", alpha=0.2, label="clinical 175 +/- 37 psi")
    ax.set_xlabel("balloon volume, all balloons (mL)")
    ax.set_ylabel("balloon pressure (psi)")
    return _finish_plot(fig, ax, path, "Kyphoplasty balloon pressure-volume")


def temperature_figure(exotherms: dict, path: str | Path) -> Path:
    """Probe temperatures over time, and each procedure's peak anywhere in its cement (the table's "peak temperature
    (cement core)") as a marked line: the cement-core probe is one voxel, the table's peak the hottest cement voxel."""
    fig, ax = _plot_axes()
    styles = {"cement core": "-", "canal wall": "--", "cortex": ":"}
    names = {"cement core": "cement-core voxel", "canal wall": "canal wall (hottest voxel)",
             "cortex": "cortex (hottest voxel)"}
    top = 50.0
    for name, ex in exotherms.items():
        for probe, series in ex.probe_temperature_c.items():
            ax.plot(np.asarray(ex.t_s) / 60, series, styles.get(probe, "-."), color=COLORS.get(name),
                    label=f"{name} {names.get(probe, probe)}")
        peak = float(ex.metrics.peak_temperature_c)
        if np.isfinite(peak):
            top = max(top, peak)
            ax.axhline(peak, color=COLORS.get(name), lw=1.0, ls=(0, (1, 2)))
            ax.annotate(f"{name}: peak of all cement voxels {peak:.1f} C (table)", (0.02, peak),
                        xycoords=("axes fraction", "data"), ha="left", va="bottom" if name == "KP" else "top",
                        fontsize=7, color=COLORS.get(name))
    ax.axhline(50, color="k", lw=0.6)
    ax.set_ylim(top=top + 12.0)
    ax.set_xlabel("time after injection (min)")
    ax.set_ylabel("temperature (C)")
    return _finish_plot(fig, ax, path, "Exotherm: probes over time; dotted: the table's peak", legend_fontsize=7)


def failure_strain_figure(vertebra, strain_fields: dict, path: str | Path) -> Path:
    """Mid-sagittal slice of each state: effective strain at the FE failure load (%) over the CT; the voxels at or
    above 0.7 % (outlined) are the 2 % of the bone that yields first (Pistoia criterion)."""
    plt = _plt()
    names = [n for n, f in strain_fields.items() if f is not None]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(2.9 * max(1, len(names)) + 0.8, 3.0), dpi=100,
                             squeeze=False, layout="constrained")
    i = int(round(vertebra.landmarks.centroid_ijk[0]))
    s_mm = vertebra.spacing_m[0] * 1e3
    hu = np.asarray(vertebra.hu)[i].T
    ext = (0, hu.shape[1] * s_mm, 0, hu.shape[0] * s_mm)
    im = None
    for ax, name in zip(axes[0], names):
        eps = np.asarray(strain_fields[name])[i].T
        ax.imshow(hu, origin="lower", cmap="gray", vmin=-250, vmax=1000, extent=ext)
        im = ax.imshow(np.ma.masked_where(eps <= 0, eps), origin="lower", cmap="viridis", vmin=0.0, vmax=0.7,
                       alpha=0.9, extent=ext, interpolation="nearest")
        if (eps >= 0.7).any():
            ax.contour((eps >= 0.7).astype(float), [0.5], colors="r", linewidths=0.8, extent=ext, origin="lower")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("posterior -> anterior (mm)", fontsize=7)
    axes[0][0].set_ylabel("inferior -> superior (mm)", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="strain at failure load (%)")
    fig.suptitle("Where the level yields first (mid-sagittal; red: the 2 % of bone over 0.7 %)", fontsize=8)
    return _save(fig, path)


def stiffness_figure(states: dict, path: str | Path) -> Path:
    plt = _plt()
    names = list(states)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.0), dpi=100)
    cols = [COLORS.get(n, "#888888") for n in names]
    axes[0].bar(names, [states[n]["stiffness_n_per_mm"] / 1e3 for n in names], color=cols)
    axes[0].set_ylabel("stiffness (kN/mm)")
    axes[1].bar(names, [states[n]["strength_n"] / 1e3 for n in names], color=cols)
    axes[1].set_ylabel("strength (kN)")
    fig.suptitle("Voxel FE, compression between PMMA end caps", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
