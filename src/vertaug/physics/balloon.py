"""Balloon tamp (kyphoplasty): a device membrane crushing trabecular bone, compacted shell, endplate lift, deflation.

A quasi-static, voxel-by-voxel model: the balloon is a membrane at a uniform gauge pressure ``p``; the volume grows
in steps of whole voxels (volume-controlled up to ``volume_ml`` per balloon, or pressure-controlled up to
``max_pressure_pa``), never above the device's rated volume or pressure. Height axis = array axis 2 (canonical RAS+).

Equations and choices (docs/kyphoplasty.md holds the same with the numbers measured):

0. The device (:data:`DEVICES`, :class:`BalloonDevice`): a membrane of nominal working length L, rated volume and
   rated pressure (Kyphon Xpander 10/3, 15/3, 20/3 and Express 10/2, 15/2: the size code is L in mm / the maximum
   volume in mL; instructions for use M708348B151E Rev. C, 2017 [V: sizes]; rated pressure 700 psi [M]). Its free
   shape at volume V is a prolate spheroid of length L along the cannula whose radius grows with V
   (V = 4/3 pi (L/2) b^2), a sphere once b reaches L/2. The membrane carries no pressure of its own below the rated
   volume (its free compliance is taken as infinite: no maker's pressure-volume curve was found) and is not inflated
   beyond it. Where it may go is :func:`envelope_levels`: the free shape at the plan's volume (level 0), distended in
   steps of ``ENVELOPE_STEP`` of volume up to the rated shape when the bone inside the current shape cannot be crushed
   within the pressure limit (walls, body surface, bone stronger than the rating) and the plate cannot be lifted.
   Until 2026-12-01 it distended only when no crushable voxel at all was left in its shape, so on the demo's L1 the
   balloons stopped at the rating with 3.42 of 4 mL while bone of 0.9-4 MPa lay just outside their shapes.
   The cavity is the space the membrane occupies (:attr:`BalloonResult.cavity`): the crushed voxels and the space it
   entered under the lifted plate; its volume is the balloon's final volume less the deflation recoil.

1. Crushing (cavity growth). Trabecular bone is a crushable foam: under a compressive stress above its yield
   stress it collapses at a nearly constant stress (the plateau) until it densifies (Gibson & Ashby, Cellular
   Solids [M]). A balloon in such a foam advances its front where

       p >= sigma_y(voxel)                                                     (crushable-foam cavity expansion [D])

   with sigma_y from the voxel's density (model/materials.py: Morgan 2003 E x 0.77 % yield strain, or Kopperdahl
   2002). No geometric amplification is applied: for a crushable foam (plastic Poisson ratio ~0) the crushed zone
   stays at the front, unlike Hill's cavity expansion in a dense plastic solid (p ~ 2-3 sigma_y) [M]. Each step
   the balloon pressure is the smallest yield stress on the front inside the membrane's current shape,
   p_crush = min_front sigma_y; the front voxels with sigma_y <= p_crush (1 + PRESSURE_TOLERANCE) (and <= the rated
   pressure) are crushed, nearest to a balloon's centre first, so the weak bone inside the shape goes first and the
   pressure rises as the membrane fills its shape. Cancellous voxels (TRABECULAR, and VEIN_CHANNEL at the yield of the
   bone around the vein) and cleft/defect voxels (no bone, yield 0: the membrane opens a cleft at no cost) not touching
   a non-body label are crushable (where the shell is thinner than a voxel the membrane does not open the body); the
   cortex and endplates (smeared tissue yield = shell fraction x 134 MPa, tens of MPa) are walls at any device
   pressure, the venous exits are not entered.

2. Compacted shell (mass conservation). The bone of the crushed voxels, M = sum BV/TV_i V_vox, is pushed into the
   trabecular voxels that border the final cavity:

       BV/TV' = compacted_bvtv(BV/TV, V_before / V_after)      with  sum_shell (BV/TV' - BV/TV) V_vox = M

   A vein channel in the compacted shell is tamped closed (relabelled TRABECULAR) [D].

   spread evenly (the same increment per voxel), capped at fully dense bone; what does not fit goes one layer
   further. The shell's permeability, modulus and yield follow from BV/TV' through the same laws
   (properties_from_bvtv), its HU from the inverse of the HU chain (so rebuilding materials from HU gives the same
   shell). During growth the front cost is the yield of the *virgin* bone ahead of the shell: the densified shell
   is carried outwards with the front (foam compaction), it is not re-crushed.

3. Endplate lift (fracture reduction). The fragment's depression per column is
   :func:`vertaug.physics.reduction.fragment_depression`: the height lost, measured the one way along the level's
   axes (model/heights.py), spread over the endplate with the Genant type's shape (wedge hinged at 15 % of the AP
   depth, the superior half of a biconcave dish, a crush uniformly from the neighbours' reference height; Genant 1993),
   in whole voxels along array axis 2; zero when the level is not fractured (Genant grade >= 1 in the model's
   morphometry, or ``fractured=True``). The fragment is the superior endplate together with the compacted band (and
   fracture line) pressed under it (``FRAGMENT_ZONES`` of the fracture-zone map, when the model has one): the
   impacted bone moves with the endplate, and the plane of weakness is the band's lower border. Without the band in
   the fragment the membrane had to crush the band (5-23 MPa on the demo's L1, above the 700 psi rating) to touch
   the endplate, and never lifted it. The fragment is a rigid plate loaded by a preload F_res
   (default 100 N: cadaver reduction studies reduce under a constant 100 N load, Rotter 2015 Clin Biomech and
   Spine J 2022;22:2072 [V: abstracts]). The balloon touches the plate over A_c (cavity voxels directly under
   the fragment's lowest voxel, x h^2) and lifts it when

       p_lift = F_res / A_c  <=  p_crush          (the balloon takes the path of least pressure)

   and p_lift <= the pressure limit. F_res is the fragment's resistance of physics/reduction.py (the preload, plus the
   bridging bone of a healed fracture), passed in as ``preload_n``. The membrane touches the plate only where the
   voxel under the plate lies inside its rated shape: it cannot follow a plate lifted beyond its own size. Only
   columns still below their reference count in A_c. The rigid plate rotates back about its hinge
   (:func:`hinged_target`): after k lift steps every column is lifted by rint(k d / d_max) of its depression d (a
   wedge straightens about the posterior wall, a crush rises as one; no column passes its reference: no
   over-correction). Where a column rises, the column content above the fragment's lowest voxel (fragment, disc, the
   spine above) moves up one voxel and the opened voxel becomes void; in a cortical-wall column, or where the opened
   voxel would touch a non-body label in its axial plane, it becomes cortex instead (the buckled wall is
   straightened; the body surface is never opened). Opened voxels in contact columns are the membrane's space (the
   balloon volume grows by them). The rest is space opened under the rigid plate with no bone in it; the membrane, at
   a pressure above zero, enters the part of it that is face-connected to its space and inside its rated shape
   (:func:`_membrane_follows`, nearest first, up to the plan's volume: it is counted in the balloon volume like a
   crushed voxel, at no pressure of its own), after a lift and after a crush step that reaches it. So the balloon's
   final volume = crushed voxels + opened voxels the membrane holds = the cavity, and the crushed bone goes into the
   shell around that space (item 2). What the membrane cannot reach (beyond its rated shape: the plate is rigid and
   rises over its whole area) or hold (the plan's volume is spent) stays ``fracture_gap``: the fracture line opened,
   open void (DEFECT), not cavity. Before 2026-12-01 the gap next to the membrane counted as cavity but not as balloon
   volume (demo L1: cavity 4.11 mL, 20 % above the balloon's 3.42 mL).

   Two balloons (bipedicular): a bone septum between the two membranes is loaded in compression by both at p and is
   crushed like any front voxel when p >= its yield, so the two spaces merge where the septum is weaker than the
   pressure reached. For the cement they are one cavity only across a voxel face (scipy.ndimage.label's default face
   connectivity, the one of flow.inject's fluxes); spaces meeting along an edge or a corner are two cavities.
   :attr:`BalloonResult.per_balloon_ml` gives each balloon's share (voxels nearest its centre). No clinical or
   cadaver source found measures whether bipedicular balloon cavities merge.

4. Deflation (elastic recoil). The plastic part of the lift (crushed, re-positioned bone) stays; the elastic part
   is recovered when the balloon pressure is released. The preload then rests on the bone columns of the fragment
   that run continuously from the inferior endplate to the lifted superior endplate (not over the cavity); the
   recoil is their elastic shortening under F_res:

       delta_recoil = F_res / K_support,   K_support = sum_columns E_col A_col / H_col,
       1 / E_col = mean over the column of 1 / E_voxel  (voxels in series)

   rounded to whole voxels (the grid cannot hold less). With no supporting column the fragment falls back fully
   (delta_recoil = the whole lift). The cavity stays open (its walls are compacted bone).

Device limits: the device's rated volume and pressure (``balloon_max_ml`` and ``device_max_pressure_pa`` may only
lower them); deflated balloon and cannula radius SEED_RADIUS_MM = 1.5 mm (11 G cannula, outer 3.05 mm); this seed is
drilled, not inflated: it is recorded at p = 0. A tip with less than the deflated balloon's 3 mm of cancellous bone
between the endplates (vertebra plana) is refused (ParameterError) before any work. Cadaver figures to compare with
(Nan Fang 2006, docs/references.md, [V]): 2.95 +/- 0.18 mL at 122.7 +/- 27.9 psi (0.85 MPa); clinical 175 +/- 37 psi (a Kyphon tamp under a 110 N load).
Nothing here is tuned to them. The compacted shell's BV/TV is capped at 1 - BVTV_FLOOR (the shell stays porous).

Not modelled: the membrane's own pressure-volume curve (no maker's figure found), its lengthening and bending around
the fragment, lift of the inferior endplate, viscous or rate effects in bone, damage of the bone outside the crushed
voxels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from vertaug.anatomy.fracture import ZONE_BAND, ZONE_CRACK, ZONE_INTACT
from vertaug.errors import ParameterError, check_range
from vertaug.model.labels import (
    BASIVERTEBRAL,
    BODY,
    CANCELLOUS,
    CORTEX,
    DEFECT,
    ENDPLATE,
    SEGMENTAL,
    TRABECULAR,
    VEIN_CHANNEL,
    member_table,
)
from vertaug.model.materials import (
    BVTV_FLOOR,
    TISSUE_DENSITY_KG_M3,
    bmd_from_apparent_density_mg_cm3,
    bmd_to_hu,
    compacted_bvtv,
    material_maps_like,
)

from ..constants import PSI_PA

__all__ = [
    "BALLOON_MAX_ML",
    "DEFAULT_DEVICE",
    "DEVICES",
    "DEVICE_HARD_LIMIT_PA",
    "DEVICE_MAX_PRESSURE_PA",
    "PSI_PA",
    "BalloonDevice",
    "BalloonResult",
    "body_heights_mm",
    "device",
    "envelope_levels",
    "hinged_target",
    "inflate",
    "treated_vertebra",
    "wedge_angle_deg",
]

@dataclass(frozen=True)
class BalloonDevice:
    """An inflatable bone tamp: nominal working length, rated (maximum) volume and rated pressure (SI inside)."""

    name: str
    length_mm: float  # nominal working length of the membrane along the cannula
    rated_volume_ml: float  # largest volume the maker allows
    rated_pressure_pa: float  # largest pressure the maker allows
    source: str

    def semi_axes_mm(self, volume_ml: float) -> tuple[float, float]:
        """(along the cannula, transverse) semi-axes of the free membrane at ``volume_ml``: a prolate spheroid of the
        nominal length whose radius grows with the volume, a sphere once the radius reaches half the length."""
        v = float(volume_ml) * 1e3  # mm^3
        a = 0.5 * self.length_mm
        b = float(np.sqrt(3.0 * v / (4.0 * np.pi * a)))
        if b > a:
            a = b = (3.0 * v / (4.0 * np.pi)) ** (1.0 / 3.0)
        return float(a), float(b)


_KYPHON_IFU = ("Medtronic KYPHON Xpander / Express inflatable bone tamp instructions for use, M708348B151E Rev. C "
               "(2017): sizes 10/3, 15/3, 20/3 (Xpander) and 10/2, 15/2 (Express) [V]; size = nominal length (mm) / "
               "maximum volume (mL), rated pressure 700 psi [M]")
#: the device table (name -> device); the size code is the nominal length in mm / the maximum volume in mL
DEVICES: dict[str, BalloonDevice] = {
    d.name: d for d in (
        BalloonDevice("kyphon-xpander-10/3", 10.0, 3.0, 700.0 * PSI_PA, _KYPHON_IFU),
        BalloonDevice("kyphon-xpander-15/3", 15.0, 3.0, 700.0 * PSI_PA, _KYPHON_IFU),
        BalloonDevice("kyphon-xpander-20/3", 20.0, 3.0, 700.0 * PSI_PA, _KYPHON_IFU),
        BalloonDevice("kyphon-express-10/2", 10.0, 2.0, 700.0 * PSI_PA, _KYPHON_IFU),
        BalloonDevice("kyphon-express-15/2", 15.0, 2.0, 700.0 * PSI_PA, _KYPHON_IFU),
    )
}
DEFAULT_DEVICE = "kyphon-xpander-15/3"
DEVICE_MAX_PRESSURE_PA = DEVICES[DEFAULT_DEVICE].rated_pressure_pa
DEVICE_MAX_PRESSURE_PSI = DEVICE_MAX_PRESSURE_PA / PSI_PA
DEVICE_HARD_LIMIT_PA = 700.0 * PSI_PA  # no device setting above the rating of the table's devices is accepted
BALLOON_MAX_ML = DEVICES[DEFAULT_DEVICE].rated_volume_ml
#: fracture zones that belong to the lifted fragment: the compacted band pressed under the depressed endplate and the
#: fracture line through it (anatomy/fracture.py); the fracture's plane of weakness is the band's lower border
FRAGMENT_ZONES = (ZONE_BAND, ZONE_CRACK)
#: each distension step of the membrane beyond the plan's volume adds this share of volume to its envelope
ENVELOPE_STEP = 0.1


def device(name: str) -> BalloonDevice:
    """The device ``name`` of :data:`DEVICES`; a ParameterError naming the known ones otherwise."""
    if name not in DEVICES:
        raise ParameterError(f"Unknown balloon device {name!r}.", f"use one of {', '.join(sorted(DEVICES))}.")
    return DEVICES[name]


SEED_RADIUS_MM = 1.5  # deflated balloon / 11 G cannula radius [M]
PRESET_PRELOAD_N = 100.0  # axial load held during cadaver reduction (Rotter 2015; Spine J 2022 35753638) [V]
PRESSURE_TOLERANCE = 0.05  # front voxels within 5 % of the lowest yield crush in the same step (numerical choice)
DISTANCE_BAND_VOX = 1.0  # ... and within one voxel of the nearest such voxel to a balloon centre (compact growth)
#: densest compacted shell: the porosity never falls below the BV/TV floor (the shell stays porous, flow.inject needs
#: phi > 0 in trabecular voxels); what does not fit goes one layer further (mass conserved)
SHELL_BVTV_MAX = 1.0 - BVTV_FLOOR
FLUID_HU = 40.0  # HU given to the fluid-filled cavity (blood / saline ~ 40 HU [M])
HEIGHT_POSITIONS = {"posterior": 0.15, "middle": 0.50, "anterior": 0.85}
HEIGHT_BAND_MM = 3.0  # heights averaged over columns within +/- 3 mm of the mid-sagittal plane

# short names other modules and tests use, aliases of the label vocabulary (vertaug.model.labels)
TRAB, BVF, SEG = TRABECULAR, BASIVERTEBRAL, SEGMENTAL
BODY_LABELS = BODY
_IS_BODY = member_table(BODY)  # _IS_BODY[column] == np.isin(column, BODY) for one column at a time


@dataclass(frozen=True, eq=False)
class BalloonResult:
    """Inflation history and the models at full inflation and after deflation (SI; mL/mm where named)."""

    volume_ml: np.ndarray  # total balloon volume (all balloons) per step
    pressure_pa: np.ndarray  # balloon gauge pressure per step
    lift_mm: np.ndarray  # largest endplate lift so far per step
    contact_area_mm2: np.ndarray  # balloon-on-fragment contact area per step
    action: tuple[str, ...]  # 'seed' | 'crush' | 'lift' per step
    cavity_inflated: np.ndarray  # bool, cavity at full inflation
    cavity: np.ndarray  # bool, the membrane's space after deflation (on the deflated grid): the cavity for the cement
    shell: np.ndarray  # bool, trabecular voxels whose BV/TV was raised by compaction
    lift_columns_vox: np.ndarray  # int (nx, ny): lift per column at full inflation, voxels
    labels_inflated: np.ndarray
    labels: np.ndarray  # after deflation
    hu: np.ndarray  # after deflation (cavity fluid, shell HU from the compacted BV/TV)
    bvtv: np.ndarray  # after deflation
    posterior_mask: np.ndarray
    crushed_bone_m3: float  # bone tissue volume pushed out of the cavity (sum BV/TV V_vox)
    shell_gain_m3: float  # bone tissue volume added to the shell
    mass_balance_error: float  # |crushed - shell gain| / crushed (0 when nothing crushed)
    recoil_mm: float  # elastic recoil on deflation (before rounding to voxels)
    recoil_vox: int
    n_balloons: int
    stop_reason: str
    fractured: bool
    notes: tuple[str, ...] = field(default=())
    #: bool, space opened under the lifted plate that the membrane could not enter (outside its rated shape, or beyond
    #: the plan's volume): the fracture line opened, DEFECT, not cavity
    fracture_gap: np.ndarray | None = None
    #: the model's fracture-zone map after the lift (the fragment's band moved with its columns), or None
    fracture_zone: np.ndarray | None = None
    #: bool, the space the membrane occupied (crushed voxels and the space it entered under the lifted plate), after
    #: deflation: the same voxels as ``cavity`` (kept for the readers of the older name)
    membrane: np.ndarray | None = None
    #: volume of the membrane's space per balloon (voxels nearest to each balloon's centre), mL
    per_balloon_ml: tuple[float, ...] = ()
    #: at full inflation: space crushed by the membrane (the drilled seed included) and void opened under the lifted
    #: plate, mL; final volume = crushed + the opened space the membrane holds; opened = that + the gap
    crushed_space_ml: float = float("nan")
    opened_space_ml: float = float("nan")

    @property
    def final_pressure_pa(self) -> float:
        return float(self.pressure_pa[-1])

    @property
    def final_volume_ml(self) -> float:
        return float(self.volume_ml[-1])


# ------------------------------------------------------------------------------------------------- measurements


def _body(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, BODY_LABELS)


def _column_heights_vox(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (x, y): bottom and top z index of the body and the height in voxels (0 where no body)."""
    nz = body.shape[2]
    any_ = body.any(axis=2)
    top = np.where(any_, nz - 1 - np.argmax(body[:, :, ::-1], axis=2), -1)
    bot = np.where(any_, np.argmax(body, axis=2), 0)
    return bot, top, np.where(any_, top - bot + 1, 0)


def _ap_frame(body: np.ndarray):
    """Posterior and anterior y index of the body and the mid-sagittal x (phantoms and canonical CT: y anterior)."""
    foot = body.any(axis=2)
    ys = np.nonzero(foot.any(axis=0))[0]
    xs = np.nonzero(foot.any(axis=1))[0]
    return float(ys.min()), float(ys.max()), 0.5 * (xs.min() + xs.max())


def body_heights_mm(labels: np.ndarray, spacing_m) -> dict[str, float]:
    """Anterior, middle, posterior body heights (mm) by columns along axis 2, as morphometry measures them.

    Height of a column = (top - bottom + 1) x h over the body labels; averaged over the columns within
    +/- HEIGHT_BAND_MM of the mid-sagittal plane at 15 / 50 / 85 % of the AP depth (+/- half a voxel).
    """
    h_mm = float(spacing_m[2]) * 1e3
    body = _body(labels)
    if not body.any():
        return {f"height_{k}_mm": float("nan") for k in HEIGHT_POSITIONS}
    _, _, hc = _column_heights_vox(body)
    y0, y1, xm = _ap_frame(body)
    band = max(1, round(HEIGHT_BAND_MM / (float(spacing_m[0]) * 1e3)))
    xs = slice(max(0, round(xm) - band), round(xm) + band + 1)
    out = {}
    for name, u in HEIGHT_POSITIONS.items():
        y = round(y0 + u * (y1 - y0))
        col = hc[xs, y]
        col = col[col > 0]
        out[f"height_{name}_mm"] = float(col.mean() * h_mm) if col.size else float("nan")
    return out


def wedge_angle_deg(heights: dict[str, float], labels: np.ndarray, spacing_m) -> float:
    """Wedge angle from the anterior and posterior heights over 70 % of the AP depth (degrees)."""
    y0, y1, _ = _ap_frame(_body(labels))
    depth_mm = (y1 - y0 + 1) * float(spacing_m[1]) * 1e3
    dh = heights["height_posterior_mm"] - heights["height_anterior_mm"]
    return float(np.degrees(np.arctan2(dh, 0.7 * depth_mm)))


# ------------------------------------------------------------------------------------------------- helpers


def _seed(labels: np.ndarray, tips_ijk: list, radius_vox: float) -> np.ndarray:
    g = np.ogrid[tuple(slice(0, s) for s in labels.shape)]
    seed = np.zeros(labels.shape, bool)
    for t in tips_ijk:
        d2 = sum((gi - float(c)) ** 2 for gi, c in zip(g, t))
        seed |= d2 <= max(radius_vox, 0.5) ** 2
    return seed & np.isin(labels, CANCELLOUS)


def envelope_levels(shape, spacing_m, tips_ijk, axes, dev: BalloonDevice, volume_ml: float) -> tuple[np.ndarray, int]:
    """Where the membrane may be: per voxel, the first distension level k at which it lies inside a balloon's free
    shape (:meth:`BalloonDevice.semi_axes_mm` at V_k = volume_ml (1 + ENVELOPE_STEP)^k, the last level at the rated
    volume), centred at the tip, long axis along the cannula. Returns (levels int16, K = the rated level); voxels
    outside the rated shape get K + 1."""
    vmax = dev.rated_volume_ml
    vols = [min(float(volume_ml), vmax)]
    while vols[-1] < vmax - 1e-12:
        vols.append(min(vols[-1] * (1.0 + ENVELOPE_STEP), vmax))
    k_rated = len(vols) - 1
    h = np.asarray(spacing_m, float) * 1e3
    lev = np.full(shape, k_rated + 1, np.int16)
    a_max = dev.semi_axes_mm(vmax)[0]
    for tip, ax in zip(tips_ijk, axes):
        d = np.asarray(ax, float) * h
        d = d / np.linalg.norm(d)
        lo = [max(0, int(np.floor(t - (a_max + 1) / hh))) for t, hh in zip(tip, h)]
        hi = [min(n, int(np.ceil(t + (a_max + 1) / hh)) + 1) for t, n, hh in zip(tip, shape, h)]
        g = np.meshgrid(*[(np.arange(l0, h0) - t) * hh for l0, h0, t, hh in zip(lo, hi, tip, h)], indexing="ij")
        u = g[0] * d[0] + g[1] * d[1] + g[2] * d[2]
        r2 = g[0] ** 2 + g[1] ** 2 + g[2] ** 2 - u**2
        box = tuple(slice(l0, h0) for l0, h0 in zip(lo, hi))
        sub = lev[box]
        for k in range(k_rated, -1, -1):
            a, b = dev.semi_axes_mm(vols[k])
            sub[(u / a) ** 2 + r2 / b**2 <= 1.0] = k
        lev[box] = np.minimum(lev[box], sub)
    return lev, k_rated


def _top_endplate_insert(labels: np.ndarray, i: int, j: int, zone: np.ndarray | None = None) -> int | None:
    """z index where a lift opens a voxel in column (i, j): the lowest voxel of the fragment, so the opened voxel lies
    right under it. The fragment is the superior endplate run and, where a fracture-zone map is given, the compacted
    band (and fracture line) pressed under it (FRAGMENT_ZONES: the impacted bone moves with the endplate); where the
    column has no endplate on top (a cortical wall column, or a voxelised edge), the top body voxel. None if the
    column holds no body."""
    col = labels[i, j]
    body = _IS_BODY[col]
    if not body.any():
        return None
    z = int(np.nonzero(body)[0].max())
    if col[z] != ENDPLATE:
        return z
    while z > 0 and col[z - 1] == ENDPLATE:
        z -= 1
    if zone is not None:
        zc = zone[i, j]
        while z > 0 and zc[z - 1] in FRAGMENT_ZONES and col[z - 1] in CANCELLOUS:
            z -= 1
    return z


def hinged_target(depression: np.ndarray, k: int) -> np.ndarray:
    """Lift per column after ``k`` voxels of lift at the most depressed column: the rigid fragment rotates back about
    its hinge (wedge) or rises as one (crush), each column by the same share of its depression, rint(k d / d_max)."""
    d_max = int(depression.max())
    if d_max <= 0:
        return np.zeros_like(depression)
    return np.rint(depression * (min(int(k), d_max) / d_max)).astype(depression.dtype)


def _lift_step(st: dict, depression, lifted, contact=None) -> int:
    """Raise every fragment column still below its target (``depression``) by one voxel. Returns the number of
    opened voxels in the ``contact`` columns (bool (nx, ny): the membrane follows the plate there and the opened voxel
    is balloon space; elsewhere it is a gap opened under the rigid plate).

    ``st`` holds the state arrays (labels, hu, post, cavity, bvtv, E, yield); all move with the column.
    """
    labels = st["labels"]
    nz = labels.shape[2]
    opened = 0
    for i, j in np.argwhere(depression - lifted > 0):
        z_ins = _top_endplate_insert(labels, i, j, st.get("zone"))
        if z_ins is None or z_ins < 1 or z_ins >= nz - 1:
            continue
        if labels[i, j, nz - 1] in BODY_LABELS:
            raise ParameterError("The endplate lift reaches the top of the model grid.",
                                 "build the model with a larger margin above the level.")
        below = int(labels[i, j, z_ins - 1])
        for arr in st.values():
            arr[i, j, z_ins + 1:] = arr[i, j, z_ins:-1].copy()
        if below in (CORTEX, BASIVERTEBRAL, SEGMENTAL) or _on_surface(labels, i, j, z_ins):
            # a cortical wall column, or a voxel on the body surface: the wall is straightened, never opened
            for arr in st.values():
                arr[i, j, z_ins] = arr[i, j, z_ins - 1]
            labels[i, j, z_ins] = CORTEX
            st["cavity"][i, j, z_ins] = False
            st["gap"][i, j, z_ins] = False
        else:
            labels[i, j, z_ins] = DEFECT
            st["hu"][i, j, z_ins] = FLUID_HU
            in_contact = contact is not None and bool(contact[i, j])
            st["cavity"][i, j, z_ins] = True
            st["gap"][i, j, z_ins] = not in_contact
            st["bvtv"][i, j, z_ins] = 0.0
            st["E"][i, j, z_ins] = 0.0
            st["yield"][i, j, z_ins] = 0.0
            if "zone" in st:
                st["zone"][i, j, z_ins] = ZONE_INTACT  # the opened void is no part of the fragment
            opened += int(in_contact)
        st["post"][i, j, z_ins] = False
        lifted[i, j] += 1
    return opened


def _on_surface(labels: np.ndarray, i: int, j: int, k: int) -> bool:
    """True if voxel (i, j, k) has a face neighbour in the same axial plane outside the body."""
    nx, ny = labels.shape[:2]
    for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
        if not (0 <= a < nx and 0 <= b < ny) or labels[a, b, k] not in BODY_LABELS:
            return True
    return False


def _open(st: dict, sel: np.ndarray) -> None:
    """Make the voxels ``sel`` cavity: fluid-filled void (DEFECT), no bone."""
    st["cavity"][sel] = True
    st["labels"][sel] = DEFECT
    st["hu"][sel] = FLUID_HU
    st["bvtv"][sel] = 0.0
    st["E"][sel] = 0.0
    st["yield"][sel] = 0.0


def _open_flat(st: dict, flat: np.ndarray) -> None:
    """:func:`_open` for the voxels at the flat (C order) indices ``flat``; the state arrays are C-contiguous."""
    for key, value in (("cavity", True), ("labels", DEFECT), ("hu", FLUID_HU), ("bvtv", 0.0), ("E", 0.0),
                       ("yield", 0.0)):
        assert st[key].flags.c_contiguous  # reshape(-1) is then a view
        st[key].reshape(-1)[flat] = value


def _contact_column(st: dict, i: int, j: int, reach=None) -> bool:
    """True if column (i, j) has a crushed (balloon) voxel in the run of cavity right under the superior endplate,
    and the voxel under the plate lies inside the membrane's rated shape (``reach``; the membrane cannot follow a
    plate lifted beyond its own size)."""
    labels, cavity, gap = st["labels"], st["cavity"], st["gap"]
    z = _top_endplate_insert(labels, i, j, st.get("zone"))
    if z is None:
        return False
    z -= 1
    if reach is not None and (z < 0 or not reach[i, j, z]):
        return False
    while z >= 0 and cavity[i, j, z]:
        if not gap[i, j, z]:
            return True
        z -= 1
    return False


class _Front:
    """The crushable front, kept incrementally: the TRABECULAR voxels not touching a non-body label,
    outside the cavity, with a face neighbour in the cavity, as sorted flat indices (C order, as ``np.argwhere``).

    Same set as ``binary_dilation(cavity) & ~cavity & (labels == TRABECULAR) & ~binary_dilation(~body)`` every step:
    a crush step only turns front voxels (TRABECULAR, body) into cavity (DEFECT, body), so the body mask and the
    "touching a non-body label" mask do not change; the front loses the crushed voxels and gains their trabecular
    face neighbours. A lift step moves whole columns: everything is rebuilt from the grid.
    """

    def __init__(self, st: dict, depression, reach=None):
        self.st = st
        self.reach = reach
        self.shape = st["labels"].shape
        self.frag_cols = depression > 0
        self.rebuild()

    def rebuild(self) -> None:
        st = self.st
        labels, cavity = st["labels"], st["cavity"]
        # trabecular voxels touching a non-body label (a shell thinner than a voxel): the membrane does not open them
        outer = ndimage.binary_dilation(~np.isin(labels, BODY_LABELS))
        # a cleft or defect (open space, no bone) is entered by the membrane at no cost (its yield is 0); a vein channel
        # crushes with the bone around it
        self.crushable = np.isin(labels, CANCELLOUS + (DEFECT,)) & ~cavity & ~outer
        front = ndimage.binary_dilation(cavity) & ~cavity & self.crushable
        self.flat = np.flatnonzero(front)
        self.contact = np.zeros(self.frag_cols.shape, bool)
        for i, j in np.argwhere(self.frag_cols):
            self.contact[i, j] = _contact_column(st, i, j, self.reach)

    def crushed(self, sel_flat: np.ndarray) -> None:
        """Update after the voxels ``sel_flat`` (sorted flat indices, already opened) became cavity."""
        cav = self.st["cavity"].reshape(-1)
        ok = self.crushable.reshape(-1)
        ok[sel_flat] = False
        ijk = np.stack(np.unravel_index(sel_flat, self.shape), axis=1)
        nb = []
        for ax in range(3):
            for dz in (-1, 1):
                q = ijk.copy()
                q[:, ax] += dz
                q = q[(q[:, ax] >= 0) & (q[:, ax] < self.shape[ax])]
                nb.append(np.ravel_multi_index(tuple(q.T), self.shape))
        nb = np.concatenate(nb)
        nb = nb[ok[nb] & ~cav[nb]]
        self.flat = np.union1d(np.setdiff1d(self.flat, sel_flat, assume_unique=True), nb)
        for i, j in set(zip(ijk[:, 0].tolist(), ijk[:, 1].tolist())):
            if self.frag_cols[i, j]:
                self.contact[i, j] = _contact_column(self.st, i, j, self.reach)


def _spread_shell(labels, bvtv, cavity, mass_m3, vvox, max_layers=8):
    """Distribute the crushed bone over the trabecular voxels around the cavity (mass conserved, cap 1)."""
    new = bvtv.astype(float).copy()
    shell = np.zeros(labels.shape, bool)
    left = float(mass_m3)
    inside = cavity.copy()
    for _ in range(max_layers):
        if left <= 1e-9 * float(mass_m3):
            break
        layer = ndimage.binary_dilation(inside) & ~inside & np.isin(labels, CANCELLOUS)
        if not layer.any():
            break
        b = np.maximum(new[layer], BVTV_FLOOR)
        room = np.maximum(SHELL_BVTV_MAX - b, 0.0) * vvox
        inc = min(left / (layer.sum() * vvox), 1.0)
        target = np.maximum(np.minimum(b + inc, SHELL_BVTV_MAX), b)
        new[layer] = compacted_bvtv(b, target / b)
        gained = float(np.minimum(inc * vvox, room).sum())
        left -= gained
        shell |= layer
        inside |= layer
    return new, shell, float(mass_m3) - left


def _hu_from_bvtv(bvtv: np.ndarray, calibration, density_law: str) -> np.ndarray:
    rho = bvtv * TISSUE_DENSITY_KG_M3
    bmd = bmd_from_apparent_density_mg_cm3(rho, density_law=density_law)
    return bmd_to_hu(bmd, calibration)


def _recoil(labels, E_pa, cavity, depression, lifted, spacing_m, preload_n):
    """Elastic recoil of the lifted fragment under the preload (see module docstring, item 4), in m."""
    cols = np.argwhere(lifted > 0)
    if cols.size == 0:
        return 0.0
    h = spacing_m
    a_col = h[0] * h[1]
    k_sum = 0.0
    for i, j in cols:
        body = np.isin(labels[i, j], BODY_LABELS)
        if cavity[i, j].any() or (labels[i, j] == DEFECT).any():
            continue  # not continuous bone
        e = E_pa[i, j][body].astype(float)
        if e.size == 0 or np.any(e <= 0):
            continue
        e_col = 1.0 / np.mean(1.0 / e)
        k_sum += e_col * a_col / (e.size * h[2])
    if k_sum <= 0:
        return float("inf")
    return preload_n / k_sum


# ------------------------------------------------------------------------------------------------- main entry


@dataclass(frozen=True)
class _BalloonProblem:
    """One inflation, validated: the grid, the balloon positions, the volume and pressure limits, the fragment."""

    spacing: tuple  # m, isotropic
    vvox: float  # voxel volume, m^3
    h_mm: float  # voxel size, mm
    tips: np.ndarray  # (n, 3) balloon centres, voxel ijk
    v_target_vox: int  # balloon volume to reach, voxels (all balloons)
    p_cap: float  # largest pressure the balloon may reach, Pa
    preload: float  # axial load on the fragment, N
    fractured: bool
    depression: np.ndarray  # (nx, ny) voxels each column lies below H_ref (0 outside the fragment)
    h_ref: float  # reference height (posterior, or the neighbours' for a crush), mm
    device: BalloonDevice
    envelope: np.ndarray  # int16, distension level at which each voxel enters a balloon's shape (envelope_levels)
    k_rated: int  # the level of the rated volume

    @property
    def n_balloons(self) -> int:
        return len(self.tips)


@dataclass
class _Inflation:
    """The evolving model during inflation and the P-V history (one entry per step)."""

    fields: dict  # labels, hu, post, bvtv, E, yield, cavity, gap: the voxel fields a lift moves with the column
    lifted: np.ndarray  # (nx, ny) voxels each column has been lifted
    front: _Front  # the crushable front and the contact columns, updated step by step
    n_bal: int  # balloon volume in voxels: crushed + lifted under the balloon's contact
    crushed_m3: float  # bone tissue volume crushed so far
    n_crushed: int = 0  # voxels crushed (the drilled seed included): the rest of n_bal is space opened by the lift
    level: int = 0  # distension level of the membrane (envelope_levels)
    n_lift: int = 0  # lift steps so far: voxels of lift at the most depressed column (hinged_target)
    history: dict = field(default_factory=lambda: {"vols": [], "press": [], "lifts": [], "areas": [], "acts": []})

    def record(self, pb: _BalloonProblem, p: float, a_c: int, act: str) -> None:
        h = self.history
        h["vols"].append(self.n_bal * pb.vvox * 1e6)
        h["press"].append(p)
        h["lifts"].append(float(self.lifted.max()) * pb.h_mm)
        h["areas"].append(a_c * pb.spacing[0] * pb.spacing[1] * 1e6)
        h["acts"].append(act)


def _volume_and_pressure_cap(volume_ml, max_pressure_pa, device_max_pressure_pa, balloon_max_ml):
    """(volume per balloon in mL, pressure cap in Pa) of a volume- or a pressure-controlled inflation."""
    device_max = check_range("device_max_pressure_pa", device_max_pressure_pa, 1e4, DEVICE_HARD_LIMIT_PA, "Pa",
                             f"balloon tamps are rated up to ~700 psi ({DEVICE_HARD_LIMIT_PA:.3g} Pa).")
    bmax = check_range("balloon_max_ml", balloon_max_ml, 0.1, 10.0, "mL",
                       "give a volume within the device's rated volume (DEVICES).")
    if volume_ml is not None:
        v_one = check_range("volume_ml", volume_ml, 0.05, bmax, "mL",
                            f"a balloon holds at most balloon_max_ml={bmax:g} mL; give a smaller volume.")
        return v_one, device_max
    if max_pressure_pa is None:
        raise ParameterError("Neither volume_ml nor max_pressure_pa is given.",
                             "give the balloon volume per balloon (mL) or the maximum pressure (Pa).")
    if max_pressure_pa > device_max:
        raise ParameterError(
            f"Parameter max_pressure_pa={max_pressure_pa:.4g} Pa ({max_pressure_pa / PSI_PA:.0f} psi) is above the "
            f"device maximum {device_max:.4g} Pa ({device_max / PSI_PA:.0f} psi).",
            "lower max_pressure_pa, or raise device_max_pressure_pa for a device rated higher (<= 700 psi).")
    return bmax, check_range("max_pressure_pa", max_pressure_pa, 1e4, device_max, "Pa")


def _balloon_problem(vertebra, tips_ijk, volume_ml, max_pressure_pa, dev: BalloonDevice, preload_n, fractured,
                     axes=None) -> _BalloonProblem:
    """Check the model and the settings; find the fragment to lift; the membrane's envelope."""
    device_max_pressure_pa, balloon_max_ml = dev.rated_pressure_pa, dev.rated_volume_ml
    labels0 = np.asarray(vertebra.labels)
    spacing = tuple(float(s) for s in vertebra.spacing_m)
    if any(abs(s - spacing[0]) > 1e-9 * spacing[0] for s in spacing):
        raise ParameterError(f"spacing_m={spacing} is not isotropic.", "build the model on an isotropic grid.")
    h = np.array(vertebra.landmarks.height_axis, float)
    if abs(h[2]) < 0.9:
        raise ParameterError(f"The height axis {tuple(h)} is not close to array axis 2.",
                             "reorient the model so that axis 2 runs inferior -> superior (canonical RAS+).")
    if not tips_ijk:
        raise ParameterError("tips_ijk is empty.", "give one balloon position (voxel ijk) per cannula.")
    n = len(tips_ijk)
    v_one, p_cap = _volume_and_pressure_cap(volume_ml, max_pressure_pa, device_max_pressure_pa, balloon_max_ml)
    preload = check_range("preload_n", preload_n, 0.0, 1e6, "N")
    vvox = float(np.prod(spacing))
    v_target_vox = round(n * v_one * 1e-6 / vvox)
    trab_vox = int((labels0 == TRABECULAR).sum())
    if v_target_vox > trab_vox:
        raise ParameterError(
            f"Balloon volume {n} x {v_one:g} mL = {n * v_one:g} mL is larger than the trabecular volume of the body, "
            f"{trab_vox * vvox * 1e6:.2f} mL.", "use a smaller balloon volume (typically 2-4 mL per balloon).")
    if fractured is None:
        m = getattr(vertebra, "morphometry", None)
        fractured = bool(m is not None and m.genant_grade is not None and m.genant_grade >= 1)
    tips = np.array([[float(c) for c in t] for t in tips_ijk])
    for t in tips:
        q = tuple(round(c) for c in t)
        if any(not (0 <= c < s) for c, s in zip(q, labels0.shape)) or labels0[q] not in (*CANCELLOUS, DEFECT):
            raise ParameterError(f"Balloon tip {tuple(t)} is not in the trabecular bone of the body.",
                                 f"place the cannula tip inside the vertebral body (label {TRABECULAR}).")
    from vertaug.physics.reduction import fragment_depression

    _check_fits(labels0, tips, spacing[2] * 1e3)
    depression, h_ref, _ = fragment_depression(vertebra, fractured)
    if axes is None:
        axes = [tuple(vertebra.landmarks.anterior_axis)] * n
    env, k_rated = envelope_levels(labels0.shape, spacing, tips, axes, dev, v_one)
    return _BalloonProblem(spacing=spacing, vvox=vvox, h_mm=spacing[0] * 1e3, tips=tips, v_target_vox=v_target_vox,
                           p_cap=p_cap, preload=preload, fractured=fractured, depression=depression, h_ref=h_ref,
                           device=dev, envelope=env, k_rated=k_rated)


def _check_fits(labels: np.ndarray, tips: np.ndarray, h_mm: float) -> None:
    """The deflated balloon (2 x SEED_RADIUS_MM across) must fit between the endplates at each tip: the run of bone
    and open space (cancellous or defect) through the tip along the height axis (array axis 2) is at least that tall."""
    open_ = np.isin(labels, (*CANCELLOUS, DEFECT))
    for t in tips:
        i, j, k = (round(c) for c in t)
        col = open_[i, j]
        lo = k
        while lo > 0 and col[lo - 1]:
            lo -= 1
        hi = k
        while hi < col.size - 1 and col[hi + 1]:
            hi += 1
        room_mm = (hi - lo + 1) * h_mm
        if room_mm < 2.0 * SEED_RADIUS_MM:
            raise ParameterError(
                f"The deflated balloon ({2 * SEED_RADIUS_MM:g} mm across) does not fit between the endplates at tip "
                f"{(i, j, k)}: {room_mm:g} mm of cancellous bone there.",
                "a collapse this thin (vertebra plana) is no balloon candidate: use vertebroplasty, or move the tip.")


def _seeded_inflation(pb: _BalloonProblem, vertebra, seed_radius_mm) -> _Inflation:
    """The deflated balloons drilled in (a sphere of the cannula radius around each tip, recorded at p = 0)."""
    st = {
        "labels": np.asarray(vertebra.labels).copy(),
        "hu": np.asarray(vertebra.hu, np.float32).copy(),
        "post": np.asarray(vertebra.posterior_mask, bool).copy(),
        "bvtv": np.asarray(vertebra.bvtv, float).copy(),
        "E": np.asarray(vertebra.materials.E_pa, float).copy(),
        "yield": np.asarray(vertebra.yield_pa, float).copy(),
    }
    zone = getattr(vertebra.materials, "fracture_zone", None)
    if zone is not None:
        st["zone"] = np.asarray(zone).copy()  # moves with the lifted columns (the fragment's band goes up with it)
    labels = st["labels"]
    cavity = _seed(labels, pb.tips, seed_radius_mm / pb.h_mm)
    st["cavity"] = cavity
    st["gap"] = np.zeros(labels.shape, bool)  # cavity opened under the lifted plate (not crushed)
    crushed_m3 = float(st["bvtv"][cavity].sum() * pb.vvox)
    _open(st, cavity)
    s = _Inflation(fields=st, lifted=np.zeros_like(pb.depression), front=None, n_bal=int(cavity.sum()),
                   crushed_m3=crushed_m3, n_crushed=int(cavity.sum()))
    s.history = {"vols": [0.0, cavity.sum() * pb.vvox * 1e6], "press": [0.0, 0.0], "lifts": [0.0, 0.0],
                 "areas": [0.0, 0.0], "acts": ["start", "seed"]}  # the seed: drilled, no inflation pressure yet
    s.front = _Front(st, pb.depression, reach=pb.envelope <= pb.k_rated)
    return s


def _crush_step(pb: _BalloonProblem, s: _Inflation, flat, y_front, p_crush) -> tuple[float, bool]:
    """Crush the front voxels (``flat``, inside the membrane's shape) within PRESSURE_TOLERANCE of the lowest yield,
    nearest a balloon centre first (within DISTANCE_BAND_VOX of the nearest); returns the step's pressure and
    whether a crushed voxel now borders space opened under the lifted plate (which the membrane then enters)."""
    fr, st = s.front, s.fields
    cand = flat[y_front <= min(p_crush * (1.0 + PRESSURE_TOLERANCE), pb.p_cap)]  # C order, as np.argwhere
    idx = np.transpose(np.unravel_index(cand, st["labels"].shape))
    d = np.min(np.linalg.norm(idx[:, None, :] - pb.tips[None, :, :], axis=2), axis=1)
    keep = d <= d.min() + DISTANCE_BAND_VOX
    cand, d = cand[keep], d[keep]
    sel = np.sort(cand[np.argsort(d, kind="stable")][: pb.v_target_vox - s.n_bal])  # C order, as a bool mask
    s.crushed_m3 += float(st["bvtv"].reshape(-1)[sel].sum() * pb.vvox)
    p = float(st["yield"].reshape(-1)[sel].max())
    _open_flat(st, sel)
    fr.crushed(sel)
    s.n_bal += int(sel.size)
    s.n_crushed += int(sel.size)
    return p, bool(st["gap"].any()) and bool(st["gap"].reshape(-1)[_face_neighbours(sel, st["gap"].shape)].any())


def _face_neighbours(flat: np.ndarray, shape) -> np.ndarray:
    """Flat (C order) indices of the face neighbours inside the grid of the voxels at ``flat``."""
    ijk = np.stack(np.unravel_index(flat, shape), axis=1)
    out = []
    for ax in range(3):
        for dz in (-1, 1):
            q = ijk.copy()
            q[:, ax] += dz
            q = q[(q[:, ax] >= 0) & (q[:, ax] < shape[ax])]
            out.append(np.ravel_multi_index(tuple(q.T), shape))
    return np.concatenate(out) if out else np.zeros(0, np.intp)


def _membrane_follows(pb: _BalloonProblem, s: _Inflation) -> int:
    """The membrane enters the space opened under the lifted plate that is open to it: gap voxels face-connected to
    the membrane's space (cavity minus gap) and inside its rated shape (no bone there: yield 0, so a membrane at any
    pressure > 0 fills it before it crushes anything). Nearest to the membrane first, up to the plan's volume; what
    it cannot reach or hold stays gap (the fracture line opened under the rigid plate). Returns voxels taken."""
    st = s.fields
    left = pb.v_target_vox - s.n_bal
    gap = st["gap"] & (pb.envelope <= pb.k_rated)
    if left <= 0 or not gap.any():
        return 0
    membrane = st["cavity"] & ~st["gap"]
    lab, _ = ndimage.label(gap | membrane)  # face connectivity: the membrane moves across voxel faces
    keep = np.unique(lab[membrane])
    cand = gap & np.isin(lab, keep[keep > 0])
    n = int(cand.sum())
    if n == 0:
        return 0
    if n > left:
        # the membrane enters layer by layer: grow it one face layer at a time through the gap until the volume is spent
        take = np.zeros_like(cand)
        grown = membrane.copy()
        while left > 0:
            layer = ndimage.binary_dilation(grown) & cand & ~take
            idx = np.flatnonzero(layer)
            if idx.size == 0:
                break
            idx = idx[:left]
            take.reshape(-1)[idx] = True
            grown.reshape(-1)[idx] = True
            left -= idx.size
        cand = take
    st["gap"][cand] = False
    return int(cand.sum())


def _front_in_shape(pb: _BalloonProblem, s: _Inflation) -> tuple[np.ndarray, np.ndarray]:
    """The crushable front inside the membrane's shape at its distension level: flat indices and their yield."""
    flat = s.front.flat[pb.envelope.reshape(-1)[s.front.flat] <= s.level]
    return flat, s.fields["yield"].reshape(-1)[flat]


def _inflation_step(pb: _BalloonProblem, s: _Inflation) -> str | None:
    """One step along the path of least pressure: lift the fragment or crush the front. Returns the reason to stop,
    or None after a step."""
    fr, depression = s.front, pb.depression
    a_c = int((fr.contact & (depression - s.lifted > 0)).sum())
    p_lift = pb.preload / (a_c * pb.spacing[0] * pb.spacing[1]) if a_c > 0 else np.inf
    can_lift = p_lift <= pb.p_cap and s.n_bal + a_c <= pb.v_target_vox
    flat, y_front = _front_in_shape(pb, s)
    # the membrane distends towards its rated shape where the bone inside its current shape cannot be crushed within
    # the pressure limit (walls, the body surface, bone stronger than the rating) and the plate cannot be lifted
    while not can_lift and (y_front.size == 0 or y_front.min() > pb.p_cap) and s.level < pb.k_rated:
        s.level += 1
        flat, y_front = _front_in_shape(pb, s)
    p_crush = float(y_front.min()) if y_front.size else np.inf
    if min(p_crush, p_lift) > pb.p_cap:
        return ("pressure limit reached" if np.isfinite(min(p_crush, p_lift))
                else "the balloon fills its rated shape: no crushable bone left inside it")
    if p_lift <= p_crush and s.n_bal + a_c <= pb.v_target_vox:
        s.n_lift += 1
        moving = fr.contact & (depression - s.lifted > 0)
        s.n_bal += _lift_step(s.fields, hinged_target(depression, s.n_lift), s.lifted, moving)
        s.n_bal += _membrane_follows(pb, s)
        fr.rebuild()
        s.record(pb, p_lift, a_c, "lift")
    elif np.isfinite(p_crush) and p_crush <= pb.p_cap:
        p, touches_gap = _crush_step(pb, s, flat, y_front, p_crush)
        if touches_gap:
            s.n_bal += _membrane_follows(pb, s)
            fr.rebuild()
        s.record(pb, p, a_c, "crush")
    else:
        return "balloon volume left is smaller than one lift step and no bone can be crushed"
    return None


def _deflate(pb: _BalloonProblem, s: _Inflation, notes: list) -> tuple[float, int]:
    """Elastic recoil of the lifted fragment under the preload; returns (recoil in m, voxels of lift lost)."""
    st, lifted = s.fields, s.lifted
    recoil_m = _recoil(st["labels"], st["E"], st["cavity"], pb.depression, lifted, pb.spacing, pb.preload)
    recoil_vox = (int(min(np.floor(recoil_m / pb.spacing[2] + 1e-9), lifted.max())) if np.isfinite(recoil_m)
                  else int(lifted.max()))
    if recoil_vox > 0:
        notes.append(f"deflation: elastic recoil {recoil_m * 1e3:.3g} mm -> {recoil_vox} voxel(s) of lift lost")
        _drop(st, lifted, recoil_vox)
    elif lifted.max() > 0:
        notes.append(f"deflation: elastic recoil {recoil_m * 1e3:.3g} mm is below one voxel; the lift is kept")
    return recoil_m, recoil_vox


def _balloon_result(pb: _BalloonProblem, s: _Inflation, vertebra, stop: str, inflated: tuple) -> BalloonResult:
    """Deflate, spread the crushed bone over the compacted shell, and pack the result."""
    labels_inflated, cavity_inflated, lift_cols = inflated
    opened_vox = int((s.fields["cavity"]).sum()) - s.n_crushed  # void opened under the plate: held + gap
    notes = []
    recoil_m, recoil_vox = _deflate(pb, s, notes)
    st, crushed_m3 = s.fields, s.crushed_m3
    gap = st.pop("gap")  # opened under the rigid plate where the membrane could not follow (reach or volume)
    labels, hu, cavity = st["labels"], st["hu"], st["cavity"]
    balloon_space = cavity & ~gap  # the membrane's space: crushed voxels and the opened space it entered
    if gap.any():
        open_to = gap & ndimage.binary_dilation(balloon_space)
        notes.append(f"fracture gap opened under the lifted plate beyond the membrane's reach or volume: "
                     f"{gap.sum() * pb.vvox * 1e6:.2f} mL (open void, not part of the cavity; {int(open_to.sum())} of its "
                     "voxels face the cavity)")
    per_balloon = _per_balloon_ml(balloon_space, pb)
    bvtv_after = np.where(cavity, 0.0, st["bvtv"])
    bvtv_new, shell, gain = _spread_shell(labels, bvtv_after, balloon_space, crushed_m3, pb.vvox)
    mats = vertebra.materials
    hu_shell = _hu_from_bvtv(bvtv_new[shell], mats.calibration, mats.density_law)
    hu[shell] = hu_shell.astype(np.float32)
    labels[shell & (labels == VEIN_CHANNEL)] = TRABECULAR  # the compacted shell closes the veins it tamps [D]
    err = abs(crushed_m3 - gain) / crushed_m3 if crushed_m3 > 0 else 0.0
    if not pb.fractured:
        notes.append("no fracture at this level (Genant grade 0): the endplate is not lifted, height change ~0")
    if s.lifted.max() == 0 and pb.fractured:
        notes.append("the balloon did not lift the endplate (no contact with the fragment, or crushing was cheaper)")
    hist = s.history
    return BalloonResult(
        volume_ml=np.array(hist["vols"]), pressure_pa=np.array(hist["press"]), lift_mm=np.array(hist["lifts"]),
        contact_area_mm2=np.array(hist["areas"]), action=tuple(hist["acts"]), cavity_inflated=cavity_inflated,
        cavity=balloon_space, shell=shell, lift_columns_vox=lift_cols, labels_inflated=labels_inflated, labels=labels, hu=hu,
        bvtv=bvtv_new, posterior_mask=st["post"], crushed_bone_m3=crushed_m3, shell_gain_m3=gain,
        mass_balance_error=err, recoil_mm=recoil_m * 1e3, recoil_vox=recoil_vox, n_balloons=pb.n_balloons,
        stop_reason=stop, fractured=pb.fractured,
        notes=tuple(notes) + (f"H_ref {pb.h_ref:.1f} mm (reference height)",), fracture_gap=gap,
        fracture_zone=st.get("zone"), membrane=balloon_space, per_balloon_ml=per_balloon,
        crushed_space_ml=s.n_crushed * pb.vvox * 1e6, opened_space_ml=opened_vox * pb.vvox * 1e6,
    )


def _per_balloon_ml(space: np.ndarray, pb: _BalloonProblem) -> tuple[float, ...]:
    """Volume (mL) of the membrane's space nearest to each balloon's centre (the voxels of one balloon)."""
    idx = np.argwhere(space)
    if idx.size == 0:
        return tuple(0.0 for _ in pb.tips)
    owner = np.argmin(np.linalg.norm(idx[:, None, :] - pb.tips[None, :, :], axis=2), axis=1)
    return tuple(float(np.sum(owner == b)) * pb.vvox * 1e6 for b in range(len(pb.tips)))


def inflate(
    vertebra,
    tips_ijk: list,
    volume_ml: float | None = 3.0,
    max_pressure_pa: float | None = None,
    device_max_pressure_pa: float | None = None,
    balloon_max_ml: float | None = None,
    preload_n: float = PRESET_PRELOAD_N,
    seed_radius_mm: float = SEED_RADIUS_MM,
    fractured: bool | None = None,
    balloon_device: str | BalloonDevice = DEFAULT_DEVICE,
    axes: list | None = None,
) -> BalloonResult:
    """Inflate one balloon per tip in ``tips_ijk`` (voxel coordinates); see the module docstring.

    Volume-controlled when ``volume_ml`` (per balloon) is given: inflate to that volume, stopping early if the
    pressure would exceed ``device_max_pressure_pa``. Pressure-controlled when ``volume_ml`` is None: inflate while
    the needed pressure stays <= ``max_pressure_pa`` (<= the device maximum), up to ``balloon_max_ml`` per balloon.
    ``fractured`` (default: Genant grade >= 1 in ``vertebra.morphometry``) enables the endplate lift.
    ``balloon_device`` (a name of :data:`DEVICES` or a :class:`BalloonDevice`) gives the membrane's shape, rated
    volume and rated pressure; ``balloon_max_ml`` and ``device_max_pressure_pa`` (default: the device's ratings) may
    only lower them. ``axes``: the long axis of each balloon (voxel frame; default the level's anterior axis).
    """
    dev = balloon_device if isinstance(balloon_device, BalloonDevice) else device(balloon_device)
    dev = _rated(dev, balloon_max_ml, device_max_pressure_pa)
    pb = _balloon_problem(vertebra, tips_ijk, volume_ml, max_pressure_pa, dev, preload_n, fractured, axes)
    s = _seeded_inflation(pb, vertebra, seed_radius_mm)
    stop = "volume reached"
    while s.n_bal < pb.v_target_vox:
        reason = _inflation_step(pb, s)
        if reason is not None:
            stop = reason
            break
    inflated = (s.fields["labels"].copy(), s.fields["cavity"] & ~s.fields["gap"], s.lifted.copy())
    return _balloon_result(pb, s, vertebra, stop, inflated)


def _rated(dev: BalloonDevice, balloon_max_ml, device_max_pressure_pa) -> BalloonDevice:
    """The device with its rated volume / pressure lowered to ``balloon_max_ml`` / ``device_max_pressure_pa``."""
    if balloon_max_ml is not None:
        check_range("balloon_max_ml", balloon_max_ml, 0.1, dev.rated_volume_ml, "mL",
                    f"the {dev.name} balloon is rated for {dev.rated_volume_ml:g} mL; choose a larger device.")
        dev = replace(dev, rated_volume_ml=float(balloon_max_ml))
    if device_max_pressure_pa is not None:
        check_range("device_max_pressure_pa", device_max_pressure_pa, 1e4, dev.rated_pressure_pa, "Pa",
                    f"the {dev.name} balloon is rated for {dev.rated_pressure_pa / PSI_PA:.0f} psi.")
        dev = replace(dev, rated_pressure_pa=float(device_max_pressure_pa))
    return dev


def _drop(st: dict, lifted, n_vox: int) -> None:
    """Undo ``n_vox`` lift steps in every lifted column (the voxel opened last, under the endplate, closes)."""
    labels = st["labels"]
    for i, j in np.argwhere(lifted > 0):
        for _ in range(min(n_vox, int(lifted[i, j]))):
            z = _top_endplate_insert(labels, i, j, st.get("zone")) - 1  # the voxel just under the fragment
            for arr in st.values():
                arr[i, j, z:-1] = arr[i, j, z + 1:].copy()
            lifted[i, j] -= 1


def treated_vertebra(vertebra, result: BalloonResult):
    """The model after deflation as a :class:`Vertebra`: cavity (DEFECT, fluid), compacted shell, moved endplate.

    Materials are rebuilt from the labels and HU (the shell's HU encodes its compacted BV/TV); the cavity's
    permeability is that of an open slot of its local width w = 2 x (distance to the cavity wall), k = w^2 / 12
    (cubic law [D]), at least the value of a DEFECT voxel, h^2 / 12.
    """
    m0 = vertebra.materials
    if result.fracture_zone is not None:
        m0 = replace(m0, fracture_zone=result.fracture_zone)
    labels = result.labels.copy()
    mats = material_maps_like(m0, result.hu, labels, float(vertebra.spacing_m[0]))
    v = replace(vertebra, hu=result.hu, posterior_mask=result.posterior_mask)
    note = f"kyphoplasty balloon: cavity labelled {DEFECT} (open void), compacted shell in label {TRABECULAR} with raised HU"
    v = v.with_labels(labels, materials=mats, morphometry=None, notes=(*vertebra.notes, note))
    cav = result.cavity
    if cav.any():
        w = 2.0 * ndimage.distance_transform_edt(cav) * float(vertebra.spacing_m[0])
        k_cav = np.maximum(w**2 / 12.0, float(vertebra.spacing_m[0]) ** 2 / 12.0).astype(np.float32)
        k = mats.permeability_m2.copy()
        kt = mats.permeability_transverse_m2.copy()
        k[cav] = k_cav[cav]
        kt[cav] = k_cav[cav]
        mats = replace(mats, permeability_m2=k, permeability_transverse_m2=kt)
        v = replace(v, materials=mats)
    extra = dict(vertebra.extra)
    extra["balloon_cavity"] = cav
    extra["balloon_shell"] = result.shell
    return replace(v, extra=extra)
