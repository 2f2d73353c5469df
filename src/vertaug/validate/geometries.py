"""The two thermal validation geometries of the cement model (physics.md section 5, cases 3 and 5).

Cases (geometry and conditions fixed here, before any comparison; see docs/cement.md for the sources of each number):

- ``porcine_bolus_case``: a porcine-like lumbar body in a 37 C saline bath, ex vivo (no perfusion), one central cement
  bolus. Compared with BMC Musculoskelet Disord 2011 12:116 (centre 68.1 +/- 3.4 C, 223 s above 45 C, cortices <= 42.4 C).
- ``astm_mould_case``: an ISO 5833 / ASTM F451-type cylindrical specimen (60 mm diameter) in a closed mould at 23 C,
  PTFE or PU foam, height 6 or 40 mm. Compared with the reported direction and size of the differences (~50 C mould,
  ~75 C height).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertaug.constants import BODY_TEMPERATURE_C, ROOM_TEMPERATURE_C
from vertaug.errors import ParameterError, check_range
from vertaug.model.labels import CANAL, CORTEX, DEFECT, ENDPLATE, OUTSIDE, TRABECULAR
from vertaug.physics import rheology, thermal
from vertaug.physics.thermal import LABEL_THERMAL, TissueThermal

__all__ = [
    "ThermalCase",
    "astm_mould_case",
    "porcine_bolus_case",
    "run_case",
]

# Porcine lumbar body (typical dimensions, [M]): elliptic cylinder 36 (R) x 26 (A) x 24 (S) mm, 1 mm cortex
PORCINE_BODY_MM = (36.0, 26.0, 24.0)
PORCINE_CORTEX_MM = 1.0
PORCINE_CANAL_RADIUS_MM = 7.0
BATH_LAYER_MM = (
    6.0  # still saline between the specimen and the stirred 37 C bath (equivalent film k/d ~ 100 W/m2K)
)
INJECTION_AGE_S = 180.0  # cement placed 3 min after the start of mixing [M]
SALINE = TissueThermal("saline", 0.6, 4.18e6, 0.0, 1.0)
# Mould test (ISO 5833 specimen 60 mm diameter); mould walls 10 mm; 3 mm still air outside (film ~ 9 W/m2K) [M]
MOULD_DIAMETER_MM = 60.0
MOULD_WALL_MM = 10.0
AIR_LAYER_MM = 3.0
AIR = TissueThermal("air", 0.026, 1.2 * 1005.0, 0.0, 1.0)
MOULDS = {
    "ptfe": TissueThermal("PTFE", 0.25, 2200.0 * 1000.0, 0.0, 0.0),
    "pu_foam": TissueThermal("PU foam", 0.03, 40.0 * 1500.0, 0.0, 0.0),
}
CEMENT_OPEN = TissueThermal("cement cavity", 0.17, 1.54e6, 0.0, 1.0)
#: The mould case is not tissue: it borrows three slots of the label vocabulary for its own thermal table (air outside,
#: the mould wall, the open specimen that takes the cement).
AIR_SLOT, MOULD_SLOT, SPECIMEN_SLOT = OUTSIDE, TRABECULAR, DEFECT


@dataclass(frozen=True)
class ThermalCase:
    """Inputs of one simulate_exotherm run."""

    name: str
    labels: np.ndarray
    spacing_m: tuple
    cement_fraction: np.ndarray
    probes: dict
    table: dict
    kwargs: dict

    @property
    def cement_volume_ml(self) -> float:
        pore = np.array(
            [self.table[int(x)].pore_fraction if int(x) in self.table else 0.0 for x in range(256)]
        )
        return float((self.cement_fraction * pore[self.labels]).sum() * np.prod(self.spacing_m) * 1e6)


def porcine_bolus_case(
    cement_ml: float = 3.0, voxel_mm: float = 1.0, cement: rheology.Cement = rheology.LOW_VISCOSITY
):
    """Porcine-like vertebral body in a 37 C bath with a central spherical bolus of ``cement_ml`` (pore fraction 0.9)."""
    check_range(
        "cement_ml", cement_ml, 0.05, 8.0, "mL", "give a positive bolus volume that fits the body (<= 8 mL)."
    )
    h = check_range("voxel_mm", voxel_mm, 0.1, 4.0, "mm")
    wr, wa, hs = PORCINE_BODY_MM
    canal_d = 2 * PORCINE_CANAL_RADIUS_MM
    nr = round((wr + 2 * BATH_LAYER_MM) / h)
    na = round((wa + canal_d + 2 * BATH_LAYER_MM) / h)
    ns = round((hs + 2 * BATH_LAYER_MM) / h)
    x = (np.arange(nr) + 0.5) * h - nr * h / 2
    y = (
        (np.arange(na) + 0.5) * h - BATH_LAYER_MM - canal_d - wa / 2
    )  # A: body centre at 0, canal posterior (-A)
    z = (np.arange(ns) + 0.5) * h - ns * h / 2
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    ell = (X / (wr / 2)) ** 2 + (Y / (wa / 2)) ** 2
    body = (ell <= 1.0) & (np.abs(Z) <= hs / 2)
    inner = ((X / (wr / 2 - PORCINE_CORTEX_MM)) ** 2 + (Y / (wa / 2 - PORCINE_CORTEX_MM)) ** 2 <= 1.0) & (
        np.abs(Z) <= hs / 2 - PORCINE_CORTEX_MM
    )
    labels = np.full(X.shape, OUTSIDE, np.uint8)
    labels[body] = CORTEX
    labels[body & (np.abs(Z) > hs / 2 - PORCINE_CORTEX_MM) & ~inner] = ENDPLATE
    labels[inner] = TRABECULAR
    canal = (X**2 + (Y + wa / 2 + PORCINE_CANAL_RADIUS_MM) ** 2 <= PORCINE_CANAL_RADIUS_MM**2) & (
        np.abs(Z) <= hs / 2
    )
    labels[canal & ~body] = CANAL
    pore = LABEL_THERMAL[TRABECULAR].pore_fraction
    radius = (3 * cement_ml / pore / (4 * np.pi)) ** (1 / 3) * 10.0  # mm
    frac = ((X**2 + Y**2 + Z**2 <= radius**2) & (labels == TRABECULAR)).astype(float)
    ic, jc, kc = (int(np.argmin(np.abs(v))) for v in (x, y, z))
    cortex_j = np.nonzero(labels[ic, :, kc] == CORTEX)[0]
    canal_j = np.nonzero(labels[ic, :, kc] == CANAL)[0]
    probes = {
        "core": (ic, jc, kc),
        "anterior cortex": (ic, int(cortex_j.max()), kc),
        "posterior cortex": (ic, int(cortex_j.min()), kc),
        "canal": (ic, int(canal_j.max()), kc),
    }
    table = dict(LABEL_THERMAL)
    table[OUTSIDE] = SALINE
    spacing = (h * 1e-3,) * 3
    kwargs = {
        "cement": cement,
        "cement_temperature_c": ROOM_TEMPERATURE_C,
        "age_at_placement_s": INJECTION_AGE_S,
        "far_field_c": BODY_TEMPERATURE_C,
        "perfusion": False,
    }
    return ThermalCase(f"porcine bolus {cement_ml:g} mL", labels, spacing, frac, probes, table, kwargs)


def astm_mould_case(
    height_mm: float = 6.0,
    mould: str = "ptfe",
    voxel_mm: float = 1.0,
    cement=rheology.LOW_VISCOSITY,
    voxel_s_mm: float | None = None,
):
    """Quarter of a closed cylindrical mould (symmetry planes at -R and -A) with a 60 mm cement disc at 23 C.

    ``voxel_mm`` is the in-plane voxel size, ``voxel_s_mm`` the size along the specimen axis (default the same); the
    height should be a whole number of ``voxel_s_mm`` so that the disc is voxelised at its true thickness.
    """
    check_range("height_mm", height_mm, 1.0, 100.0, "mm")
    if mould not in MOULDS:
        raise ParameterError(f"mould={mould!r} is unknown.", f"use one of {sorted(MOULDS)}.")
    h = check_range("voxel_mm", voxel_mm, 0.1, 4.0, "mm")
    hs = h if voxel_s_mm is None else check_range("voxel_s_mm", voxel_s_mm, 0.1, 4.0, "mm")
    rad = MOULD_DIAMETER_MM / 2
    nr = round((rad + MOULD_WALL_MM + AIR_LAYER_MM) / h)
    n_spec = round(height_mm / hs)
    n_wall = round((MOULD_WALL_MM + AIR_LAYER_MM) / hs)
    ns = n_spec + 2 * n_wall
    x = (np.arange(nr) + 0.5) * h
    z = (np.arange(ns) + 0.5) * hs - ns * hs / 2
    X, Y, Z = np.meshgrid(x, x, z, indexing="ij")
    r = np.sqrt(X**2 + Y**2)
    labels = np.full(X.shape, AIR_SLOT, np.uint8)
    labels[(r <= rad + MOULD_WALL_MM) & (np.abs(Z) <= height_mm / 2 + MOULD_WALL_MM)] = MOULD_SLOT
    spec = (r <= rad) & (np.abs(Z) <= height_mm / 2)
    labels[spec] = SPECIMEN_SLOT
    table = {AIR_SLOT: AIR, MOULD_SLOT: MOULDS[mould], SPECIMEN_SLOT: CEMENT_OPEN}
    centre = np.zeros(X.shape, bool)
    centre[0, 0, np.argsort(np.abs(z))[: 2 if ns % 2 == 0 else 1]] = True
    kwargs = {
        "cement": cement,
        "cement_temperature_c": ROOM_TEMPERATURE_C,
        "age_at_placement_s": 60.0,
        "far_field_c": ROOM_TEMPERATURE_C,
        "initial_temperature_c": ROOM_TEMPERATURE_C,
        "perfusion": False,
        "film_w_m2k": (0.0, np.inf, 0.0, np.inf, np.inf, np.inf),
    }
    return ThermalCase(
        f"mould {mould} {height_mm:g} mm",
        labels,
        (h * 1e-3, h * 1e-3, hs * 1e-3),
        spec.astype(float),
        {"centre": centre},
        table,
        kwargs,
    )


def run_case(case: ThermalCase, t_end_s: float = 1800.0, dt_s: float = 1.0) -> thermal.ExothermResult:
    return thermal.simulate_exotherm(
        case.labels,
        case.spacing_m,
        case.cement_fraction,
        t_end_s,
        dt_s,
        probes=case.probes,
        table=case.table,
        **case.kwargs,
    )
