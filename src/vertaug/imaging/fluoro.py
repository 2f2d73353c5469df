"""Simulated fluoroscopy of a procedure: lateral and AP frames over its timeline, GIFs and a key-frame grid.

A frame is the CT's DRR (imaging/drr.py) plus what the procedure put into the patient. Each object replaces
water-equivalent material (marrow pushed out of the pores, soft tissue or blood outside the bone; the bone itself is
conserved, as in balloon compaction), so its extra line integral is

    dL = int [ f_c (mu_cement - mu_w) + f_b (mu_contrast - mu_w) ] dt  +  chord_steel (mu_steel - mu_w)

with f_c, f_b the cement and balloon volume fractions on the overlay grid (the voxel model's grid, or the CT grid),
chord_steel the exact length of the ray inside the cannula wall, mu_w = mu_water. The frame shows the line integral
with dense = dark, as fluoroscopy monitors show it (a log-transformed detector signal): the display equalisation
(EQUALIZE_*) flattens the slow soft-tissue changes, the window (lo, hi) puts the 2nd percentile of the equalised plain
DRR inside the patient (away from the skin) at white and its median at 50 % grey, fixed for all frames of a procedure and view so that the frames compare, and a soft
shoulder (``display_gray``) keeps thick cement darker than thin cement. Cement outside ``body_mask`` (a leak) is
projected on its own and outlined in red where its projected thickness exceeds ``LEAK_OUTLINE_MM``.

Entry points: ``render_procedure`` (frames as arrays), ``write_fluoro`` (GIF per procedure and view + key-frame
grid PNG, returns the paths), ``synthetic_timeline`` (a stand-in VP/KP timeline for demos and tests: shapes placed
by rule, not a physics result).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..anatomy.io import Volume
from ..constants import CANNULA_GAUGES, DEFAULT_CANNULA_GAUGE
from ..errors import GridMismatchError, InvalidValueError, ParameterError, check_range
from .drr import (
    CEMENT_PMMA_BASO4,
    EFFECTIVE_ENERGY_KEV,
    STAINLESS_STEEL,
    VIEW_LETTERS,
    VIEWS,
    Geometry,
    Material,
    Rays,
    contrast_material,
    crop_to_support,
    ellipsoid_chord_mm,
    make_rays,
    mu_from_hu,
    mu_water_per_mm,
    project_volume,
    tube_chord_mm,
)

__all__ = [
    "BONE_HU",
    "Cannula",
    "Ellipsoid",
    "FluoroFrame",
    "FluoroImage",
    "OverlayGrid",
    "ProcedureFrames",
    "cannulas_from_trajectories",
    "display_gray",
    "drr_line_integral",
    "ellipsoid_fraction",
    "render_procedure",
    "synthetic_timeline",
    "write_drr_png",
    "write_fluoro",
    "write_gif",
    "write_key_frame_grid",
]

#: The default cannula (constants.CANNULA_GAUGES, 11 G regular wall): outer 3.048 mm, inner 2.388 mm.
CANNULA_OUTER_MM = CANNULA_GAUGES[DEFAULT_CANNULA_GAUGE][0] * 1e3
CANNULA_INNER_MM = CANNULA_GAUGES[DEFAULT_CANNULA_GAUGE][1] * 1e3
#: A leak is outlined where the projected thickness of cement outside the body exceeds this (mm).
LEAK_OUTLINE_MM = 0.3
LEAK_RGB = (255, 40, 40)
#: Display window of the plain DRR (pixels with L > WINDOW_MIN_L, inside the patient): lo at the
#: WINDOW_LOW_PERCENTILE-th percentile, and hi such that the median pixel shows at WINDOW_MEDIAN_GREY of the way to
#: black; denser pixels (bone edges, cement) go into the shoulder of ``display_gray``.
WINDOW_LOW_PERCENTILE = 2.0
WINDOW_MEDIAN_GREY = 0.5
WINDOW_MIN_L = 0.2
#: Display equalisation (dynamic-range compression, as fluoroscopy/radiography image processing does): the shown
#: signal is L - EQUALIZE_STRENGTH * G_sigma(L_plain), G a Gaussian of EQUALIZE_SIGMA_MM; it flattens the slow
#: soft-tissue thickness changes so that bone edges fill the grey range. L_plain is the frame-independent plain DRR,
#: so cement and instruments are not smoothed away. 0 turns it off.
EQUALIZE_SIGMA_MM = 12.0
EQUALIZE_STRENGTH = 0.9
#: Field of view (mm, square) of the procedure frames, centred on the overlay grid: a 9-inch image intensifier
#: shows about 230 mm; 180 mm keeps the treated level and its neighbours.
FRAME_FOV_MM = 180.0


@dataclass(frozen=True)
class Cannula:
    """A steel cannula from ``entry_mm`` to ``tip_mm`` (RAS+ world mm). ``inner_diameter_mm=0`` makes it solid
    (a trocar in place); otherwise the lumen counts as water-equivalent."""

    entry_mm: tuple[float, float, float]
    tip_mm: tuple[float, float, float]
    outer_diameter_mm: float = CANNULA_OUTER_MM
    inner_diameter_mm: float = CANNULA_INNER_MM


@dataclass(frozen=True)
class Ellipsoid:
    """An analytic ellipsoid (world mm); ``axes`` columns are its unit axes (identity when None)."""

    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    axes: tuple | None = None

    @property
    def volume_ml(self) -> float:
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi_axes_mm) / 1000.0)


@dataclass(frozen=True, eq=False)
class FluoroFrame:
    """One moment of a procedure. Arrays live on the OverlayGrid; ``balloon`` may also be an analytic Ellipsoid."""

    label: str
    cement_fraction: np.ndarray | None = None
    balloon: np.ndarray | Ellipsoid | None = None
    cannulas: tuple[Cannula, ...] = ()


@dataclass(frozen=True, eq=False)
class OverlayGrid:
    """The grid the frame arrays live on: voxel -> RAS+ mm affine, shape, and the body mask (leaks are cement outside
    it; None: no leak marking)."""

    affine_mm: np.ndarray
    shape: tuple[int, int, int]
    body_mask: np.ndarray | None = None

    @classmethod
    def from_vertebra(cls, v) -> OverlayGrid:
        """The grid of a ``vertaug.model.vertebra.Vertebra`` with its body mask."""
        return cls(np.asarray(v.affine_mm, dtype=float), tuple(v.shape), np.asarray(v.body_mask, dtype=bool))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine_mm[:3, :3]))) / 1000.0

    @property
    def centre_mm(self) -> np.ndarray:
        c = (np.asarray(self.shape, dtype=float) - 1.0) / 2.0
        return self.affine_mm[:3, :3] @ c + self.affine_mm[:3, 3]


@dataclass(frozen=True, eq=False)
class FluoroImage:
    """One rendered frame of one view: line integral L, projected leak thickness (mm) and the display RGB."""

    label: str
    view: str
    line_integral: np.ndarray
    leak_mm: np.ndarray
    rgb: np.ndarray


@dataclass(frozen=True, eq=False)
class ProcedureFrames:
    """All frames of one procedure, per view, with the geometry and window used."""

    name: str
    images: dict[str, list[FluoroImage]]
    geometry: dict[str, Geometry]
    window: dict[str, tuple[float, float]]
    notes: tuple[str, ...] = field(default_factory=tuple)


def cannulas_from_trajectories(v, trajectories, inner_diameter_mm: float | None = None) -> tuple[Cannula, ...]:
    """Cannulas from planned paths on the model grid of ``v`` (objects with ``entry_ijk``, ``tip_ijk`` in model voxel
    indices and ``gauge_mm`` the outer diameter, as ``vertaug.model.trajectory.Trajectory``)."""
    aff = np.asarray(v.affine_mm, dtype=float)
    out = []
    for t in trajectories:
        e = aff[:3, :3] @ np.asarray(t.entry_ijk, dtype=float) + aff[:3, 3]
        p = aff[:3, :3] @ np.asarray(t.tip_ijk, dtype=float) + aff[:3, 3]
        od = float(getattr(t, "gauge_mm", CANNULA_OUTER_MM))
        idm = inner_diameter_mm if inner_diameter_mm is not None else od * CANNULA_INNER_MM / CANNULA_OUTER_MM
        out.append(Cannula(tuple(float(x) for x in e), tuple(float(x) for x in p), od, idm))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ core


#: Bone DRR threshold (HU): a "bone window" DRR keeps only voxels at or above it (the rest as air), as DRRs for 2-D/3-D
#: registration do; cortical and dense trabecular bone lie above ~200 HU, soft tissue and contrast-free organs below.
BONE_HU = 200.0


def drr_line_integral(ct: Volume, geometry: Geometry, energy_kev: float = EFFECTIVE_ENERGY_KEV,
                      min_hu: float | None = None) -> np.ndarray:
    """The plain DRR of a CT: line integral of mu (dimensionless) per pixel, shape ``geometry.shape``. With
    ``min_hu``, voxels below it count as air (a bone DRR for ``min_hu=BONE_HU``)."""
    mu = mu_from_hu(ct.data, energy_kev)
    if min_hu is not None:
        mu = np.where(ct.data >= min_hu, mu, np.float32(0.0))
    return project_volume(mu, ct.affine_mm, make_rays(geometry)).astype(np.float32)


def _window(shown: np.ndarray, plain: np.ndarray, pixel_mm: float = 1.0) -> tuple[float, float]:
    """Window of the shown signal from the pixels inside the patient and at least EQUALIZE_SIGMA_MM from its edge
    (where the equalisation over- and undershoots); all inside pixels when that leaves too few."""
    inside = (plain > WINDOW_MIN_L) & np.isfinite(shown)
    core = ndimage.binary_erosion(inside, iterations=max(1, round(EQUALIZE_SIGMA_MM / pixel_mm)))
    vals = shown[core] if core.sum() >= 100 else shown[inside]
    if vals.size < 10:
        return float(shown.min()), max(float(shown.max()), float(shown.min()) + 1e-3)
    lo, med = np.percentile(vals, (WINDOW_LOW_PERCENTILE, 50.0))
    hi = med + (med - lo) * (1.0 - WINDOW_MEDIAN_GREY) / WINDOW_MEDIAN_GREY
    return float(lo), float(max(hi, lo + 1e-3))


def _background(base: np.ndarray, pixel_mm: float, strength: float = EQUALIZE_STRENGTH) -> np.ndarray:
    """The slowly varying part subtracted for display: strength x Gaussian(base, EQUALIZE_SIGMA_MM), averaged over
    the pixels inside the patient (L > WINDOW_MIN_L); +inf outside, so that air shows white."""
    if strength <= 0:
        return np.zeros_like(base)
    # normalised convolution over the patient only, so that air and the field edge do not pull it down at the skin
    inside = (base > WINDOW_MIN_L).astype(np.float64)
    sig = EQUALIZE_SIGMA_MM / pixel_mm
    num = ndimage.gaussian_filter(base * inside, sig, mode="nearest")
    den = ndimage.gaussian_filter(inside, sig, mode="nearest")
    return np.where(inside > 0, strength * num / np.maximum(den, 1e-6), np.inf)


#: Display shoulder: above SHOULDER (share of the window) the grey level approaches black exponentially with scale
#: SHOULDER_SCALE windows, so that thick cement stays darker than thin cement instead of clipping to one black.
SHOULDER = 0.7
SHOULDER_SCALE = 1.0


def display_gray(line_integral: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """uint8 image, dense = dark: 255 (1 - d(x)), x = (L - lo)/(hi - lo); d(x) = clip(x, 0) up to SHOULDER, then
    SHOULDER + (1 - SHOULDER)(1 - exp(-(x - SHOULDER)/SHOULDER_SCALE)) (continuous, tends to 1 = black)."""
    lo, hi = window
    x = np.maximum((np.asarray(line_integral, dtype=np.float64) - lo) / (hi - lo), 0.0)
    tail = SHOULDER + (1.0 - SHOULDER) * (1.0 - np.exp(-(x - SHOULDER) / SHOULDER_SCALE))
    d = np.where(x <= SHOULDER, x, tail)
    return np.round(255.0 * (1.0 - d)).astype(np.uint8)


#: Sub-rays per pixel side for the analytic instruments: a 0.33 mm cannula wall is thinner than a pixel, so its
#: chord is averaged over SUBPIXEL^2 rays per pixel (the detector integrates over the pixel area).
SUBPIXEL = 3


def _subpixel_rays(g: Geometry, n: int = SUBPIXEL) -> list[Rays]:
    """n x n ray sets, each shifted evenly across the pixel."""
    _, u, v = VIEWS[g.view]
    offs = ((np.arange(n) + 0.5) / n - 0.5) * g.pixel_mm
    out = []
    for du in offs:
        for dv in offs:
            c = np.asarray(g.centre_mm) + du * u + dv * v
            out.append(make_rays(replace(g, centre_mm=tuple(float(x) for x in c))))
    return out


def _cannula_chord_mm(c: Cannula, sub: list[Rays]) -> np.ndarray:
    """Steel path length (mm) per pixel, averaged over the sub-pixel rays."""
    return sum(tube_chord_mm(r, c.entry_mm, c.tip_mm, c.outer_diameter_mm / 2.0, c.inner_diameter_mm / 2.0)
               for r in sub) / len(sub)


def _fit_centre(ct: Volume, centre: np.ndarray, view: str, fov_mm: float) -> np.ndarray:
    """Move the frame centre (within the detector plane) so the field stays inside the CT's extent where it can."""
    _, u, v = VIEWS[view]
    corners = np.array([[i, j, k] for i in (-0.5, ct.shape[0] - 0.5) for j in (-0.5, ct.shape[1] - 0.5)
                        for k in (-0.5, ct.shape[2] - 0.5)])
    world = corners @ ct.affine_mm[:3, :3].T + ct.affine_mm[:3, 3]
    c = np.array(centre, dtype=float)
    for ax in (u, v):
        proj = world @ ax
        lo, hi = proj.min() + fov_mm / 2, proj.max() - fov_mm / 2
        x = float(c @ ax)
        if lo <= hi:
            c += (min(max(x, lo), hi) - x) * ax
    return c


def _check_field(name: str, arr, grid: OverlayGrid) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float32)
    if a.shape != tuple(grid.shape):
        raise GridMismatchError(f"Frame field {name} has shape {a.shape}, the overlay grid {tuple(grid.shape)}.",
                                "give the field on the overlay grid (resample it with drr.resample_to_grid).")
    if not np.isfinite(a).all() or a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise InvalidValueError(f"Frame field {name} is not a volume fraction in [0, 1].",
                                "give fractions (0 = none, 1 = full voxel).")
    return np.clip(a, 0.0, 1.0)


def _compose(image: np.ndarray, window, leak_mm: np.ndarray, label: str, view: str, scale: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    gray = display_gray(image, window)
    im = Image.fromarray(gray, mode="L").resize((gray.shape[1] * scale, gray.shape[0] * scale), Image.BILINEAR)
    rgb = np.stack([np.asarray(im)] * 3, axis=-1)
    leak = leak_mm > LEAK_OUTLINE_MM
    if leak.any():
        big = np.kron(leak, np.ones((scale, scale), dtype=bool))
        big = ndimage.binary_dilation(big, iterations=max(1, scale // 2))
        edge = big & ~ndimage.binary_erosion(big, iterations=max(1, scale))
        rgb[edge] = LEAK_RGB
    pil = Image.fromarray(rgb)
    draw = ImageDraw.Draw(pil)
    draw.text((4, 3), label, fill=(255, 255, 0))
    left, right = VIEW_LETTERS[view]
    h = rgb.shape[0]
    draw.text((4, h // 2), left, fill=(255, 255, 0))
    draw.text((rgb.shape[1] - 12, h // 2), right, fill=(255, 255, 0))
    draw.text((4, h - 14), view.upper(), fill=(255, 255, 0))
    return np.asarray(pil)


def render_procedure(
    ct: Volume,
    grid: OverlayGrid,
    frames: list[FluoroFrame],
    name: str = "procedure",
    views: tuple[str, ...] = ("lateral", "ap"),
    fov_mm: float = FRAME_FOV_MM,
    pixel_mm: float = 1.0,
    projection: str = "parallel",
    centre_mm=None,
    energy_kev: float = EFFECTIVE_ENERGY_KEV,
    cement: Material = CEMENT_PMMA_BASO4,
    contrast: Material | None = None,
    steel: Material = STAINLESS_STEEL,
    display_scale: int = 2,
    equalize: float = EQUALIZE_STRENGTH,
    fit_fov: bool = True,
) -> ProcedureFrames:
    """Render every frame in every view. The CT DRR is computed once per view; each frame adds its objects.

    The field (``fov_mm`` square, ``pixel_mm`` pixels) is centred on ``centre_mm`` (default: the overlay grid's
    centre), moved in the image plane to stay inside the CT when ``fit_fov``.
    """
    if not frames:
        raise ParameterError("No frames to render.", "give at least one FluoroFrame.")
    fov_mm = check_range("fov_mm", fov_mm, 10.0, 1000.0, "mm")
    display_scale = int(check_range("display_scale", display_scale, 1, 8))
    contrast = contrast or contrast_material()
    mu_w = mu_water_per_mm(energy_kev)
    d_cem = cement.mu_per_mm(energy_kev) - mu_w
    d_bal = contrast.mu_per_mm(energy_kev) - mu_w
    d_steel = steel.mu_per_mm(energy_kev) - mu_w
    centre = grid.centre_mm if centre_mm is None else np.asarray(centre_mm, dtype=float)
    outside = None if grid.body_mask is None else ~np.asarray(grid.body_mask, dtype=bool)
    if outside is not None and outside.shape != tuple(grid.shape):
        raise GridMismatchError(f"body_mask has shape {outside.shape}, the overlay grid {tuple(grid.shape)}.",
                                "give the body mask on the overlay grid.")
    mu_ct = mu_from_hu(ct.data, energy_kev)
    images: dict[str, list[FluoroImage]] = {}
    geoms: dict[str, Geometry] = {}
    windows: dict[str, tuple[float, float]] = {}
    for view in views:
        cv = _fit_centre(ct, centre, view, fov_mm) if fit_fov else centre
        g = Geometry(view=view, centre_mm=tuple(float(c) for c in cv), size_mm=(fov_mm, fov_mm),
                     pixel_mm=pixel_mm, projection=projection)
        rays = make_rays(g)
        sub = _subpixel_rays(g) if any(fr.cannulas for fr in frames) else []
        steel_mm: dict[Cannula, np.ndarray] = {}
        base = project_volume(mu_ct, ct.affine_mm, rays)
        bg = _background(base, pixel_mm, equalize)
        win = _window(base - bg, base, pixel_mm)
        out = []
        for fr in frames:
            line = base.copy()
            leak = np.zeros_like(base)
            delta = np.zeros(grid.shape, dtype=np.float32)
            any_field = False
            if fr.cement_fraction is not None:
                fc = _check_field("cement_fraction", fr.cement_fraction, grid)
                delta += np.float32(d_cem) * fc
                any_field = True
                if outside is not None and (fc * outside).any():
                    leak = project_volume(*crop_to_support(fc * outside, grid.affine_mm), rays)
            if isinstance(fr.balloon, Ellipsoid):
                line += d_bal * ellipsoid_chord_mm(rays, fr.balloon.centre_mm, fr.balloon.semi_axes_mm, fr.balloon.axes)
            elif fr.balloon is not None:
                delta += np.float32(d_bal) * _check_field("balloon", fr.balloon, grid)
                any_field = True
            if any_field:
                line += project_volume(*crop_to_support(delta, grid.affine_mm), rays)
            for c in fr.cannulas:
                if c not in steel_mm:
                    steel_mm[c] = _cannula_chord_mm(c, sub)
                line += d_steel * steel_mm[c]
            rgb = _compose(line - bg, win, leak, fr.label, view, display_scale)
            out.append(FluoroImage(fr.label, view, line.astype(np.float32), leak.astype(np.float32), rgb))
        images[view], geoms[view], windows[view] = out, g, win
    notes = ((f"effective energy {energy_kev:g} keV; mu_water {mu_w:.5f}/mm; cement {cement.name} "
             f"{cement.mu_per_mm(energy_kev):.4f}/mm; balloon {contrast.name} {contrast.mu_per_mm(energy_kev):.4f}/mm; "
             f"cannula {steel.name} {steel.mu_per_mm(energy_kev):.4f}/mm"),)
    return ProcedureFrames(name, images, geoms, windows, notes)


# ------------------------------------------------------------------------------------------------ files


def write_gif(images: list[FluoroImage], path: str | Path, frame_ms: int = 700) -> Path:
    """Animated GIF (loops) of the frames' RGB images; the last frame is held three times as long."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = [Image.fromarray(im.rgb).convert("P", palette=Image.ADAPTIVE, colors=255) for im in images]
    durations = [frame_ms] * (len(pil) - 1) + [3 * frame_ms]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=durations, loop=0, optimize=False)
    return path


def _key_indices(n: int, n_key: int) -> list[int]:
    if n <= n_key:
        return list(range(n))
    return sorted({round(float(i)) for i in np.linspace(0, n - 1, n_key)})


def _pyplot():
    """matplotlib.pyplot on the Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


#: Height (px) of the key-frame grid's titles: legible when the report shows the grid at about half its width.
KEY_FRAME_TITLE_PX = 18


def _title_font(size_px: int):
    """(Pillow font, title line height in px): the default TrueType font at ``size_px`` (Pillow >= 10.1 with
    FreeType), else Pillow's bitmap font (11 px)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size_px), size_px + 6
    except (TypeError, ImportError, OSError):  # pragma: no cover - older Pillow or no FreeType
        return ImageFont.load_default(), 14


def write_key_frame_grid(procedures: list[ProcedureFrames], path: str | Path, n_key: int = 4,
                         views: tuple[str, ...] = ("lateral", "ap")) -> Path:
    """PNG grid: one row per (procedure, view), ``n_key`` key frames (first to last, evenly spaced) per row.

    The frames are tiled at their own pixel size (no resampling) under a one-line title each, with Pillow: the frames
    are already images with their labels, and a matplotlib figure of 24 axes cost ~2 s of the demo for the same tiles.
    """
    from PIL import Image, ImageDraw

    rows = [(p, v) for p in procedures for v in views if v in p.images]
    picks = [[p.images[v][i] for i in _key_indices(len(p.images[v]), n_key)] for p, v in rows]
    h = max(im.rgb.shape[0] for row in picks for im in row)
    w = max(im.rgb.shape[1] for row in picks for im in row)
    ncol = max(len(row) for row in picks)
    font, title = _title_font(KEY_FRAME_TITLE_PX)
    gap = 6  # px between tiles
    sheet = Image.new("RGB", (ncol * (w + gap) + gap, len(rows) * (h + title + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, ((p, v), row) in enumerate(zip(rows, picks)):
        y = gap + r * (h + title + gap)
        for c, im in enumerate(row):
            x = gap + c * (w + gap)
            draw.text((x, y), f"{p.name} {v}: {im.label}", fill=(0, 0, 0), font=font)
            sheet.paste(Image.fromarray(np.ascontiguousarray(im.rgb[..., :3], dtype=np.uint8)), (x, y + title))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def write_drr_png(ct: Volume, path: str | Path, energy_kev: float = EFFECTIVE_ENERGY_KEV, pixel_mm: float = 1.0,
                  projection: str = "parallel", equalize: float = EQUALIZE_STRENGTH,
                  bone_hu: float | None = BONE_HU) -> Path:
    """Lateral and AP DRRs of the whole CT (mm axes), for a first look at the anatomy; with ``bone_hu`` a second row
    shows the bone DRR (voxels >= bone_hu only, plain window), where ribs, vertebrae and pelvis stand out."""
    plt = _pyplot()
    ext = np.abs(ct.affine_mm[:3, :3]) @ (np.asarray(ct.shape, dtype=float) - 2.0)  # a voxel inside each face
    centre = ct.affine_mm[:3, :3] @ ((np.asarray(ct.shape, dtype=float) - 1) / 2) + ct.affine_mm[:3, 3]
    rows = [None] if bone_hu is None else [None, float(bone_hu)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 5.5 * len(rows)), dpi=110, squeeze=False)
    for r, min_hu in enumerate(rows):
        for c, (view, size) in enumerate((("lateral", (ext[1], ext[2])), ("ap", (ext[0], ext[2])))):
            ax = axes[r, c]
            g = Geometry(view=view, centre_mm=tuple(centre), size_mm=tuple(float(s) for s in size),
                         pixel_mm=pixel_mm, projection=projection)
            line = drr_line_integral(ct, g, energy_kev, min_hu)
            if min_hu is None:
                shown = line - _background(line, pixel_mm, equalize)
                gray = display_gray(shown, _window(shown, line, pixel_mm))
                what = "DRR"
            else:
                gray = display_gray(line, (0.0, float(np.percentile(line, 99.5)) + 1e-6))
                what = f"bone DRR (HU >= {min_hu:g})"
            left, right = VIEW_LETTERS[view]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=255, extent=(0, size[0], size[1], 0))
            ax.set_title(f"{view.upper()} {what} ({projection}, {energy_kev:g} keV)   {left} <-> {right}", fontsize=9)
            ax.set_xlabel("mm")
            ax.set_ylabel("mm (superior at top)")
    fig.tight_layout()
    return _save_png(fig, plt, path)


def write_fluoro(
    out_dir: str | Path,
    ct: Volume,
    procedures: dict[str, tuple[OverlayGrid, list[FluoroFrame]]],
    views: tuple[str, ...] = ("lateral", "ap"),
    n_key: int = 4,
    frame_ms: int = 700,
    **render_kwargs,
) -> dict[str, Path]:
    """Render each procedure and write ``fluoro_<name>_<view>.gif`` and ``fluoro_key_frames.png`` into ``out_dir``.

    ``procedures`` maps a name ('VP', 'KP') to its overlay grid and frames; ``render_kwargs`` go to
    ``render_procedure`` (fov_mm, pixel_mm, projection, energy_kev, ...). Returns {'<name>_<view>': gif path, ...,
    'key_frames': png path}.
    """
    if not procedures:
        raise ParameterError("No procedures to render.", "give {'VP': (grid, frames), 'KP': (grid, frames)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    rendered = []
    for name, (grid, frames) in procedures.items():
        pf = render_procedure(ct, grid, frames, name=name, views=views, **render_kwargs)
        rendered.append(pf)
        for view in views:
            paths[f"{name}_{view}"] = write_gif(pf.images[view], out / f"fluoro_{name}_{view}.gif", frame_ms)
    paths["key_frames"] = write_key_frame_grid(rendered, out / "fluoro_key_frames.png", n_key, views)
    return paths


# ------------------------------------------------------------------------------------------------ synthetic timeline


def ellipsoid_fraction(grid: OverlayGrid, e: Ellipsoid, supersample: int = 2) -> np.ndarray:
    """Volume fraction of each grid voxel inside the ellipsoid (``supersample``^3 points per voxel)."""
    inv = np.linalg.inv(grid.affine_mm)
    r = np.asarray(e.semi_axes_mm, dtype=float)
    rot = np.eye(3) if e.axes is None else np.asarray(e.axes, dtype=float)
    c_ijk = inv[:3, :3] @ np.asarray(e.centre_mm, dtype=float) + inv[:3, 3]
    half = np.abs(inv[:3, :3]) @ np.full(3, r.max()) + 1
    lo = np.maximum(np.floor(c_ijk - half).astype(int), 0)
    hi = np.minimum(np.ceil(c_ijk + half).astype(int) + 1, grid.shape)
    out = np.zeros(grid.shape, dtype=np.float32)
    if np.any(hi <= lo):
        return out
    s = int(supersample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    acc = np.zeros(tuple(hi - lo), dtype=np.float32)
    ii, jj, kk = np.meshgrid(*[np.arange(a, b, dtype=float) for a, b in zip(lo, hi)], indexing="ij")
    for dx in offs:
        for dy in offs:
            for dz in offs:
                p = np.stack([ii + dx, jj + dy, kk + dz], axis=-1) @ grid.affine_mm[:3, :3].T + grid.affine_mm[:3, 3]
                q = ((p - np.asarray(e.centre_mm)) @ rot) / r
                acc += (np.einsum("...i,...i->...", q, q) <= 1.0)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = acc / s**3
    return out


def _scaled_fill(grid: OverlayGrid, centre, shape_mm, rot, volume_ml: float, where: np.ndarray | None,
                 porosity: float) -> np.ndarray:
    """Cement fraction = porosity inside an ellipsoid of the given shape, scaled so the cement volume is volume_ml."""
    k = 1.0
    for _ in range(4):
        e = Ellipsoid(tuple(centre), tuple(np.asarray(shape_mm) * k), rot)
        f = ellipsoid_fraction(grid, e) * porosity
        if where is not None:
            f = f * where
        got = float(f.sum()) * grid.voxel_volume_ml
        if got <= 0:
            k *= 2.0
            continue
        k *= (volume_ml / got) ** (1.0 / 3.0)
    f = ellipsoid_fraction(grid, Ellipsoid(tuple(centre), tuple(np.asarray(shape_mm) * k), rot)) * porosity
    return f if where is None else f * where


def synthetic_timeline(v, kind: str = "VP", volume_ml: float = 4.0, leak_ml: float = 0.3, n_fill: int = 4,
                       balloon_ml: float = 3.0, porosity: float = 0.85) -> list[FluoroFrame]:
    """A rule-built VP or KP timeline on the grid of Vertebra ``v`` for demos and tests (NOT a physics result).

    Cannulas: bipedicular, tips 7 mm either side of the body centre, entries 45 mm behind along the anterior axis
    with 15 deg convergence. VP: cement fills an ellipsoid (pores, fraction ``porosity``) around the centre in
    ``n_fill`` steps up to ``volume_ml``; from half-way a leak of up to ``leak_ml`` grows just outside the anterior
    wall. KP: a contrast balloon (ellipsoid, up to ``balloon_ml``) inflates in three steps, is withdrawn, then
    cement fills the cavity (full voxels) and a little beyond (pores); no leak.
    """
    kind = kind.upper()
    if kind not in ("VP", "KP"):
        raise ParameterError(f"Parameter kind={kind!r} is not known.", "use 'VP' or 'KP'.")
    volume_ml = check_range("volume_ml", volume_ml, 0.1, 20.0, "mL")
    grid = OverlayGrid.from_vertebra(v)
    body = grid.body_mask
    aff = grid.affine_mm
    lm = v.landmarks
    to_w = lambda ijk: aff[:3, :3] @ np.asarray(ijk, dtype=float) + aff[:3, 3]
    rot3 = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    h = rot3 @ np.asarray(lm.height_axis)
    a = rot3 @ np.asarray(lm.anterior_axis)
    a = a - (a @ h) * h
    a /= np.linalg.norm(a)
    lat = np.cross(a, h)
    c = to_w(lm.centroid_ijk)
    ant_wall = to_w(lm.anterior_wall_ijk)
    axes = np.stack([lat, a, h], axis=1)  # columns: lateral, anterior, height
    cannulas = []
    for side in (-1.0, 1.0):
        tip = c + side * 7.0 * lat
        back = -a * np.cos(np.radians(15.0)) + side * lat * np.sin(np.radians(15.0))
        cannulas.append(Cannula(tuple(tip + 45.0 * back), tuple(tip)))
    cannulas = tuple(cannulas)
    frames = [FluoroFrame("cannulas placed", cannulas=cannulas)]
    fill_shape = np.array([14.0, 10.0, 7.0])  # relative semi-axes (lateral, AP, height)
    if kind == "VP":
        for i in range(1, n_fill + 1):
            vol = volume_ml * i / n_fill
            lk = leak_ml * max(0.0, (i - n_fill / 2) / (n_fill / 2))
            f = _scaled_fill(grid, c, fill_shape, axes, vol - lk, body, porosity)
            if lk > 0:
                lc = ant_wall + 4.0 * a + 3.0 * lat
                f = np.maximum(f, _scaled_fill(grid, lc, (3.0, 2.0, 2.0), axes, lk, ~body, porosity))
            frames.append(FluoroFrame(f"VP {vol:.1f} mL" + (f" (leak {lk:.2f} mL)" if lk > 0 else ""),
                                      cement_fraction=f, cannulas=cannulas))
        return frames
    bal_shape = np.array([9.0, 9.0, 6.0])
    for b in (balloon_ml / 3, 2 * balloon_ml / 3, balloon_ml):
        k = (b / Ellipsoid((0, 0, 0), tuple(bal_shape)).volume_ml) ** (1.0 / 3.0)
        bal = []
        for side in (-1.0, 1.0):
            bal.append(ellipsoid_fraction(grid, Ellipsoid(tuple(c + side * 7.0 * lat), tuple(bal_shape * k), axes)))
        frames.append(FluoroFrame(f"KP balloons {b:.1f} mL each", balloon=np.clip(bal[0] + bal[1], 0, 1) * body,
                                  cannulas=cannulas))
    cavity = frames[-1].balloon
    frames.append(FluoroFrame("KP balloons withdrawn", cannulas=cannulas))
    cav_ml = float(cavity.sum()) * grid.voxel_volume_ml
    for i in range(1, n_fill + 1):
        vol = volume_ml * i / n_fill
        in_cav = min(vol, cav_ml)
        f = cavity * (in_cav / cav_ml if cav_ml > 0 else 0.0)
        extra = vol - in_cav
        if extra > 1e-6:
            ring = _scaled_fill(grid, c, fill_shape, axes, extra + float((porosity * cavity).sum()) *
                                grid.voxel_volume_ml, body, porosity)
            f = np.maximum(f, ring)
        frames.append(FluoroFrame(f"KP {vol:.1f} mL", cement_fraction=np.clip(f, 0, 1), cannulas=cannulas))
    return frames
