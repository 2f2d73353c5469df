"""Material maps of the voxel vertebra: HU -> BMD -> apparent density -> BV/TV -> porosity, permeability, E, yield.

Equations (each law is one small function below, with its source; docs/materials.md holds the same with the
verification status of every number: [V] seen in a source, [C] read in public code, [D] derived here, [M] memory):

    BMD      = a + b * HU                                   [mg/cm^3 HA-equivalent]  linear calibration (overridable)
    rho_ash  = rho_QCT  (default)  or  0.877 rho_QCT + 0.0789   [g/cm^3]  (Schileo et al. 2008), rho_QCT = BMD
    rho_app  = rho_ash / 0.598                              [g/cm^3]   ash fraction 0.598 (Schileo 2008)
    BV/TV    = rho_app / rho_tissue,  rho_tissue = 1.24 / 0.598 = 2.07 g/cm^3  (tissue mineral density, Tassani 2011)
    phi      = 1 - BV/TV
    S_v(phi) = 32.3 phi - 93.9 phi^2 + 134 phi^3 - 101 phi^4 + 28.8 phi^5   [mm^-1]  Martin 1984 (bone surface / TV)
    k_long   = C phi^3 / S_v^2,  C = 0.022                  [m^2]      Kozeny-Carman, C from Kohles & Roberts 2002
    k_trans  = k_long / 2.05                                [m^2]      Nauman, Fong & Keaveny 1999 (vertebra)
    E        = 4730 rho_app^1.56                            [MPa]      Morgan, Bayraktar & Keaveny 2003 (vertebra)
    E        = 2980 rho_QCT^1.05                            [MPa]      Kopperdahl et al. 2002 (vertebra), selectable
    sigma_y  = 37.4 rho_QCT^1.39                            [MPa]      Kopperdahl et al. 2002
    sigma_y  = eps_y * E,  eps_y = 0.77 %                   [MPa]      Morgan & Keaveny 2001 (vertebral yield strain)
    compaction: BV/TV' = min(1, BV/TV * V_before / V_after) (mass of bone conserved), then the same laws.
    fractured:  E' = 0.15 E, sigma_y' = 0.50 sigma_y where the fracture-zone map marks crushed or cracked bone
                (zones 1, 2 and 4 of anatomy/fracture.py; Keaveny, Wachtel & Kopperdahl 1999, overloaded trabecular
                bone [M]; compared with whole vertebrae after a 25 % deformity, Wegrzyn 2011 [V], in docs/anatomy.md)

Everything public takes and returns SI (density kg/m^3, modulus and stress Pa, permeability m^2, viscosity Pa s),
except the calibration output ``bmd_mg_cm3`` which keeps the clinical unit in its name (1 mg/cm^3 = 1 kg/m^3).
Every law validates its input and raises :class:`vertaug.errors.ParameterError` naming the parameter and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vertaug.anatomy.fracture import ZONE_BAND, ZONE_CRACK, ZONE_DAMAGED
from vertaug.errors import GridMismatchError, InvalidValueError, ParameterError
from vertaug.model.labels import (
    BASIVERTEBRAL,
    CORTEX,
    DEFECT,
    ENDPLATE,
    LABEL_NAMES,
    SEGMENTAL,
    TRABECULAR,
    VEIN_CHANNEL,
)

__all__ = [
    "DEFAULT_CALIBRATION",
    "DENSITY_LAWS",
    "MODULUS_LAWS",
    "SHELL_LABEL_THICKNESS_M",
    "BoneProperties",
    "Calibration",
    "MaterialMaps",
    "apparent_density_from_ash_kg_m3",
    "apparent_density_from_bmd_kg_m3",
    "apparent_density_from_bvtv_kg_m3",
    "ash_density_from_apparent_kg_m3",
    "ash_density_from_qct_kg_m3",
    "bmd_from_apparent_density_mg_cm3",
    "bmd_to_hu",
    "bvtv_from_apparent_density",
    "compacted_bvtv",
    "g_cm3_to_kg_m3",
    "hu_to_bmd_mg_cm3",
    "kg_m3_to_g_cm3",
    "kozeny_carman_permeability_m2",
    "material_maps",
    "material_maps_like",
    "modulus_kopperdahl2002_pa",
    "modulus_morgan2003_pa",
    "mpa_to_pa",
    "pa_to_mpa",
    "permeability_from_bvtv_m2",
    "porosity_from_bvtv",
    "properties_from_bvtv",
    "qct_density_from_ash_kg_m3",
    "shell_fraction",
    "specific_surface_martin1984_per_m",
    "transverse_permeability_m2",
    "yield_stress_from_strain_pa",
    "yield_stress_kopperdahl2002_pa",
]

# ---------------------------------------------------------------------------------------------------------------
# Constants with their sources (tags as in docs/references.md: [V] seen, [C] code, [D] derived, [M] memory).
ASH_FRACTION = 0.598  # rho_ash / rho_app, constant over the density range: 0.598 +/- 0.004 (Schileo 2008) [V]
TISSUE_MINERAL_DENSITY_KG_M3 = 1240.0  # rho_ash / (BV/TV), trabecular 1.24 +/- 0.16 g/cm^3 (Tassani 2011) [V]
TISSUE_DENSITY_KG_M3 = TISSUE_MINERAL_DENSITY_KG_M3 / ASH_FRACTION  # wet tissue 2074 kg/m^3 [D]; BV/TV = rho_app/this
# rho_ash = 0.877 rho_QCT + 0.0789 g/cm^3 (Schileo 2008, J Biomech 41:356): linear, R^2 0.997, intercept > 0 and
# slope < 1 [V: abstract]; the two coefficients [M]
SCHILEO_SLOPE = 0.877
SCHILEO_INTERCEPT_KG_M3 = 78.9
KOZENY_CONSTANT = 0.022  # Kohles & Roberts 2002 J Biomech Eng 124:521, bovine cancellous bone [V]
ANISOTROPY_K_LONG_OVER_TRANS = 2.05  # vertebral k_long / k_trans, Nauman, Fong & Keaveny 1999 ABME [V]
YIELD_STRAIN_VERTEBRA = 0.0077  # compressive apparent yield strain 0.77 %, Morgan & Keaveny 2001 J Biomech 34:569 [M]
MARROW_VISCOSITY_PA_S = 0.067  # human marrow 67 mPa s (Biorheology 2011, docs/references.md) [V]
# vertebral marrow ~60 % fat by age 70 (Steiner 1993 via BioNumbers 117069) [V] x fat 900 + cells 1050 kg/m^3 [M]
MARROW_DENSITY_KG_M3 = 960.0
CEMENT_MODULUS_PA = 1937e6  # PMMA vertebroplasty cement 1937 +/- 478 MPa, ISO 5833 test (docs/references.md) [V]
CEMENT_MODULUS_SD_PA = 478e6
CEMENT_COMPRESSIVE_STRENGTH_PA = 70e6  # ISO 5833 minimum compressive strength >= 70 MPa [M]
CEMENT_DENSITY_KG_M3 = 1100.0  # cement_polymerisation thermal input (Quarini 2006 code, docs/references.md) [C]
TISSUE_MODULUS_PA = 18.0e9  # trabecular tissue modulus, Bayraktar et al. 2004 [C]
TISSUE_YIELD_COMPRESSION_PA = 134e6  # Bayraktar 2004 tissue yield stress in compression [C]
TISSUE_YIELD_TENSION_PA = 83e6  # Bayraktar 2004 tissue yield stress in tension [C]
# L1 shell and endplate over age 45: porous, ~0.35 mm on average, both < 0.5 mm; clinical CT overestimates >= 2x
# (Silva, Wang, Keaveny & Hayes 1994 Bone 15:409) [V]
CORTEX_THICKNESS_M = 0.35e-3
ENDPLATE_THICKNESS_M = 0.35e-3
#: Thickness of the labelled shell (cortex / endplate labels) of the voxel models: vertebra.SHELL_MM and the phantom's
#: cortex_mm. The bone of the thin shell above is smeared over the labelled layers: floor(1 mm / h) layers of voxel
#: size h (one at 1 mm, two at 0.5 mm), so the shell holds the same bone at every voxel size.
SHELL_LABEL_THICKNESS_M = 1.0e-3
# Numerical guard of the HU chain (not physics; documented in docs/materials.md): a trabecular voxel keeps at
# least this much bone so its modulus and yield are positive, and at most fully dense tissue.
BVTV_FLOOR = 0.02
# Crushed and cracked bone (the compacted band, the fracture lines and the damaged zone of a virtual fracture,
# anatomy/fracture.py) is weaker than intact bone of the same density. Material level: human vertebral trabecular bone
# overloaded past yield reloads with a lower modulus and a lower strength, the loss growing with the strain reached
# (Keaveny, Wachtel & Kopperdahl 1999, J Orthop Res 17:346-353; modulus reductions up to about 85 % at the largest
# strains, strength falling less than modulus [M]: its text, and that of Keaveny et al. 1994 J Biomech 27:1309
# "Mechanical behavior of damaged trabecular bone", could not be retrieved on 2026-12-01 either, so both factors stay
# from memory); damage starts at small strains, modulus changes from 0.24 % and residual strain from 0.20 % apparent
# strain in human vertebral specimens (Morgan, Yeh & Keaveny 2005 Eur J Morphol 42:13 [V: abstract]). The band of a
# compression fracture has been strained far past those tests, so the largest reduction is taken [A]. Whole vertebra
# [V: abstract, Wegrzyn 2011 J Bone Miner Res 26:739]: 21 human L3 compressed to 25 % deformity and reloaded lost
# 53 +/- 18 % of their stiffness and 11 +/- 19 % of their failure load. That is an outcome of the whole chain, compared
# in docs/anatomy.md (the model loses less stiffness and more strength), not a value these factors were set to.
FRACTURED_MODULUS_FACTOR = 0.15
FRACTURED_YIELD_FACTOR = 0.50
#: Fracture-zone values that are weakened (compacted band, fracture line, damaged: anatomy/fracture.ZONE_*); the cleft
#: is a defect label in the model (E = 0).
FRACTURED_ZONES = (ZONE_BAND, ZONE_CRACK, ZONE_DAMAGED)

DENSITY_LAWS = ("identity", "schileo2008")
DEFAULT_DENSITY_LAW = "identity"
MODULUS_LAWS = ("morgan2003", "kopperdahl2002")

_MARTIN_COEFFS_PER_MM = (32.3, -93.9, 134.0, -101.0, 28.8)  # S_v(phi) in mm^-1, Martin 1984 [M]


# ---------------------------------------------------------------------------------------------------------------
# Unit helpers
def g_cm3_to_kg_m3(x):
    """Density: g/cm^3 -> kg/m^3 (x 1000)."""
    return np.asarray(x, dtype=float) * 1000.0


def kg_m3_to_g_cm3(x):
    """Density: kg/m^3 -> g/cm^3 (/ 1000)."""
    return np.asarray(x, dtype=float) / 1000.0


def pa_to_mpa(x):
    """Stress or modulus: Pa -> MPa."""
    return np.asarray(x, dtype=float) / 1e6


def mpa_to_pa(x):
    """Stress or modulus: MPa -> Pa."""
    return np.asarray(x, dtype=float) * 1e6


def _checked(name: str, value, low: float, high: float, unit: str, *, low_open: bool = False,
             fix: str | None = None) -> np.ndarray:
    """``value`` as a float array, or ParameterError if any element is NaN/inf or outside [low, high]."""
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr)
    bad |= (arr <= low) if low_open else (arr < low)
    bad |= arr > high
    if np.any(bad):
        first = arr[bad].flat[0] if arr.ndim else float(arr)
        rng = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ParameterError(
            f"Parameter {name} has {int(np.count_nonzero(bad))} value(s) outside {rng} {unit} "
            f"(first: {first!r}).",
            fix or f"give {name} in {unit}, finite and within {rng}.",
        )
    return arr


# ---------------------------------------------------------------------------------------------------------------
# 1. HU -> BMD
@dataclass(frozen=True)
class Calibration:
    """Linear CT calibration ``BMD_mg_cm3 = intercept_mg_cm3 + slope_mg_cm3_per_hu * HU``.

    The default is a *nominal* phantomless calibration: BMD (mg/cm^3 hydroxyapatite-equivalent) ~ HU, i.e. water
    (0 HU) -> 0 mg/cm^3 and about 1 mg/cm^3 per HU at 120 kVp. It is the order of magnitude of phantom slopes at
    120 kVp [M]; no single published equation could be verified here, and published phantomless work
    (asynchronous phantom calibration, Skornitzke et al. 2022 Sci Rep 12; internal calibration with air and
    blood/adipose, Lee et al. 2017 Bone 103:325) shows the coefficients are scanner- and kVp-specific [V].
    For a real patient, give the scanner's asynchronous values or an internal two-point calibration
    (:meth:`from_two_points`).
    """

    intercept_mg_cm3: float = 0.0
    slope_mg_cm3_per_hu: float = 1.0
    source: str = "nominal phantomless default: BMD = HU (about 1 mg/cm3 HA per HU at 120 kVp) [M], unverified"

    def __post_init__(self):
        if not np.isfinite(self.intercept_mg_cm3) or abs(self.intercept_mg_cm3) > 1000.0:
            raise ParameterError(
                f"Parameter intercept_mg_cm3={self.intercept_mg_cm3!r} is not a plausible calibration intercept.",
                "give a finite intercept within [-1000, 1000] mg/cm3.",
            )
        if not np.isfinite(self.slope_mg_cm3_per_hu) or not (0.05 <= self.slope_mg_cm3_per_hu <= 5.0):
            raise ParameterError(
                f"Parameter slope_mg_cm3_per_hu={self.slope_mg_cm3_per_hu!r} is outside [0.05, 5] mg/cm3 per HU.",
                "give the slope of the scanner's HU -> BMD calibration (about 0.7-1.3 at 120 kVp).",
            )

    @classmethod
    def from_two_points(cls, hu_1: float, bmd_1_mg_cm3: float, hu_2: float, bmd_2_mg_cm3: float,
                        source: str = "two-point internal calibration") -> Calibration:
        """Calibration through two reference materials (e.g. air and blood, as in internal calibration)."""
        if not np.all(np.isfinite([hu_1, bmd_1_mg_cm3, hu_2, bmd_2_mg_cm3])) or hu_1 == hu_2:
            raise ParameterError(
                f"Two-point calibration needs two finite points with different HU (got HU {hu_1!r}, {hu_2!r}).",
                "measure two reference materials of different CT number.",
            )
        slope = (bmd_2_mg_cm3 - bmd_1_mg_cm3) / (hu_2 - hu_1)
        return cls(bmd_1_mg_cm3 - slope * hu_1, slope, source)


DEFAULT_CALIBRATION = Calibration()


def hu_to_bmd_mg_cm3(hu, calibration: Calibration = DEFAULT_CALIBRATION) -> np.ndarray:
    """Volumetric BMD (mg/cm^3 HA-equivalent) from CT number: ``a + b * HU`` (see :class:`Calibration`)."""
    hu = _checked("hu", hu, -10000.0, 100000.0, "HU")
    return calibration.intercept_mg_cm3 + calibration.slope_mg_cm3_per_hu * hu


def bmd_to_hu(bmd_mg_cm3, calibration: Calibration = DEFAULT_CALIBRATION) -> np.ndarray:
    """Inverse of :func:`hu_to_bmd_mg_cm3`."""
    bmd = _checked("bmd_mg_cm3", bmd_mg_cm3, -5000.0, 5000.0, "mg/cm3")
    return (bmd - calibration.intercept_mg_cm3) / calibration.slope_mg_cm3_per_hu


# ---------------------------------------------------------------------------------------------------------------
# 2. BMD (QCT-equivalent density) -> ash -> apparent density -> BV/TV -> porosity
def ash_density_from_qct_kg_m3(rho_qct_kg_m3, density_law: str = DEFAULT_DENSITY_LAW) -> np.ndarray:
    """Ash density from QCT-equivalent density (in and out in kg/m^3).

    ``"identity"`` (default): ``rho_ash = rho_QCT`` (HA-equivalent density read as ash density; no fitted
    parameter). With it, Morgan 2003 (on rho_app) and Kopperdahl 2002 (on rho_QCT) give the same vertebral modulus
    within 10-30 % over BMD 60-150 mg/cm^3; with Schileo they differ 2-3x (docs/materials.md).
    ``"schileo2008"``: ``rho_ash = 0.877 rho_QCT + 0.0789 g/cm^3`` (Schileo et al. 2008, femoral specimens).
    """
    law = _density_law(density_law)
    if law == "identity":
        return _checked("rho_qct_kg_m3", rho_qct_kg_m3, 0.0, 3000.0, "kg/m3")
    rho = _checked("rho_qct_kg_m3", rho_qct_kg_m3, -SCHILEO_INTERCEPT_KG_M3 / SCHILEO_SLOPE, 3000.0, "kg/m3")
    return SCHILEO_SLOPE * rho + SCHILEO_INTERCEPT_KG_M3


def qct_density_from_ash_kg_m3(rho_ash_kg_m3, density_law: str = DEFAULT_DENSITY_LAW) -> np.ndarray:
    """Inverse of :func:`ash_density_from_qct_kg_m3`."""
    rho = _checked("rho_ash_kg_m3", rho_ash_kg_m3, 0.0, 3000.0, "kg/m3")
    if _density_law(density_law) == "identity":
        return rho
    return (rho - SCHILEO_INTERCEPT_KG_M3) / SCHILEO_SLOPE




def _density_law(name: str) -> str:
    if name not in DENSITY_LAWS:
        raise ParameterError(f"Parameter density_law={name!r} is not one of {DENSITY_LAWS}.",
                             "choose 'identity' (default) or 'schileo2008'.")
    return name


def apparent_density_from_ash_kg_m3(rho_ash_kg_m3, ash_fraction: float = ASH_FRACTION) -> np.ndarray:
    """Wet apparent density ``rho_app = rho_ash / 0.598``: the ash/apparent ratio is constant over the whole density
    range, 0.598 +/- 0.004 cortical and 0.598 +/- 0.036 small trabecular specimens (Schileo 2008) [V]."""
    rho = _checked("rho_ash_kg_m3", rho_ash_kg_m3, 0.0, 3000.0, "kg/m3")
    af = float(_checked("ash_fraction", ash_fraction, 0.3, 0.8, "(-)"))
    return rho / af


def ash_density_from_apparent_kg_m3(rho_app_kg_m3, ash_fraction: float = ASH_FRACTION) -> np.ndarray:
    """Inverse of :func:`apparent_density_from_ash_kg_m3`."""
    rho = _checked("rho_app_kg_m3", rho_app_kg_m3, 0.0, 3000.0, "kg/m3")
    af = float(_checked("ash_fraction", ash_fraction, 0.3, 0.8, "(-)"))
    return rho * af


def apparent_density_from_bmd_kg_m3(bmd_mg_cm3, ash_fraction: float = ASH_FRACTION,
                                    density_law: str = DEFAULT_DENSITY_LAW) -> np.ndarray:
    """Wet apparent density (kg/m^3) from BMD (mg/cm^3 = kg/m^3): QCT -> ash (``density_law``) -> apparent."""
    return apparent_density_from_ash_kg_m3(ash_density_from_qct_kg_m3(bmd_mg_cm3, density_law), ash_fraction)


def bmd_from_apparent_density_mg_cm3(rho_app_kg_m3, ash_fraction: float = ASH_FRACTION,
                                     density_law: str = DEFAULT_DENSITY_LAW) -> np.ndarray:
    """Inverse of :func:`apparent_density_from_bmd_kg_m3` (Schileo: negative below rho_app = 131.9 kg/m^3)."""
    return qct_density_from_ash_kg_m3(ash_density_from_apparent_kg_m3(rho_app_kg_m3, ash_fraction), density_law)


def bvtv_from_apparent_density(rho_app_kg_m3, tissue_density_kg_m3: float = TISSUE_DENSITY_KG_M3) -> np.ndarray:
    """Bone volume fraction ``BV/TV = rho_app / rho_tissue``; rho_tissue = 2074 kg/m^3 wet tissue, from the tissue
    mineral density rho_ash/(BV/TV) = 1.24 g/cm^3 (Tassani et al. 2011 J Biomech 44:103) [V] / ash fraction 0.598.

    Raises ParameterError if the result would fall outside (0, 1]: the density is not that of bone.
    """
    rho_t = float(_checked("tissue_density_kg_m3", tissue_density_kg_m3, 1500.0, 2500.0, "kg/m3"))
    rho = _checked("rho_app_kg_m3", rho_app_kg_m3, 0.0, rho_t, "kg/m3", low_open=True,
                   fix=f"apparent density must be > 0 and at most the tissue density {rho_t:g} kg/m3.")
    return rho / rho_t


def apparent_density_from_bvtv_kg_m3(bvtv, tissue_density_kg_m3: float = TISSUE_DENSITY_KG_M3) -> np.ndarray:
    """Inverse of :func:`bvtv_from_apparent_density`."""
    rho_t = float(_checked("tissue_density_kg_m3", tissue_density_kg_m3, 1500.0, 2500.0, "kg/m3"))
    return _checked("bvtv", bvtv, 0.0, 1.0, "(-)", low_open=True) * rho_t


def porosity_from_bvtv(bvtv) -> np.ndarray:
    """Porosity ``phi = 1 - BV/TV`` with BV/TV in (0, 1]."""
    return 1.0 - _checked("bvtv", bvtv, 0.0, 1.0, "(-)", low_open=True)


# ---------------------------------------------------------------------------------------------------------------
# 3. Permeability
def specific_surface_martin1984_per_m(porosity) -> np.ndarray:
    """Bone surface per total volume S_v (1/m) from porosity: Martin 1984 fifth-order fit [M].

    ``S_v = 32.3 p - 93.9 p^2 + 134 p^3 - 101 p^4 + 28.8 p^5`` in mm^-1 (Martin RB, Crit Rev Biomed Eng 1984,
    10:179). S_v(1) = 0.2 mm^-1 (the fit, not zero), S_v(0) = 0.
    """
    p = _checked("porosity", porosity, 0.0, 1.0, "(-)")
    s_per_mm = np.zeros_like(p)
    for n, c in enumerate(_MARTIN_COEFFS_PER_MM, start=1):
        s_per_mm = s_per_mm + c * p**n
    return s_per_mm * 1e3


def kozeny_carman_permeability_m2(porosity, specific_surface_per_m, kozeny_constant: float = KOZENY_CONSTANT):
    """Kozeny-Carman permeability ``k = C phi^3 / S_v^2`` (m^2), S_v = bone surface / total volume (1/m).

    C = 0.022 from the Kozeny fit to cancellous bone permeability vs porosity (Kohles & Roberts 2002) [V].
    Zero porosity gives zero permeability.
    """
    p = _checked("porosity", porosity, 0.0, 1.0, "(-)")
    s = _checked("specific_surface_per_m", specific_surface_per_m, 0.0, 1e6, "1/m")
    c = float(_checked("kozeny_constant", kozeny_constant, 1e-4, 1.0, "(-)"))
    p, s = np.broadcast_arrays(p, s)
    k = np.zeros(p.shape, dtype=float)
    ok = p > 0.0
    if np.any(ok & (s <= 0.0)):
        raise ParameterError("Parameter specific_surface_per_m is 0 where porosity > 0: permeability unbounded.",
                             "give a positive specific surface for porous voxels.")
    k[ok] = c * p[ok] ** 3 / s[ok] ** 2
    return k if k.ndim else float(k)


def permeability_from_bvtv_m2(bvtv, kozeny_constant: float = KOZENY_CONSTANT) -> np.ndarray:
    """Longitudinal (superior-inferior) permeability from BV/TV: Kozeny-Carman with Martin's S_v(phi).

    The Kozeny value is taken as the longitudinal permeability; see :func:`transverse_permeability_m2`.
    For osteoporotic BV/TV 0.057-0.138 it gives about 2.1e-8 .. 4.2e-9 m^2, inside the measured vertebral
    range (Nauman 1999: 2.68e-11 .. 2.00e-8 m^2; Baroud 2004 SI: 4.45 +/- 1.72e-8 m^2) [V].
    """
    p = porosity_from_bvtv(bvtv)
    return kozeny_carman_permeability_m2(p, specific_surface_martin1984_per_m(p), kozeny_constant)


def transverse_permeability_m2(k_long_m2, anisotropy_ratio: float = ANISOTROPY_K_LONG_OVER_TRANS) -> np.ndarray:
    """Transverse permeability ``k_trans = k_long / 2.05`` (vertebral ratio, Nauman et al. 1999) [V].

    Baroud 2004 measured AP = 0.78 SI (ratio 1.29) [V]; pass ``anisotropy_ratio=1/0.78`` to use it.
    """
    k = _checked("k_long_m2", k_long_m2, 0.0, 1e-4, "m2")
    r = float(_checked("anisotropy_ratio", anisotropy_ratio, 1.0, 20.0, "(-)"))
    return k / r


# ---------------------------------------------------------------------------------------------------------------
# 4. Elasticity and yield
def modulus_morgan2003_pa(rho_app_kg_m3) -> np.ndarray:
    """Vertebral trabecular on-axis modulus ``E = 4730 rho_app^1.56 MPa`` (rho_app in g/cm^3), returned in Pa.

    Morgan, Bayraktar & Keaveny 2003 J Biomech 36:897 (vertebra, n = 61; apparent density) [V: paper and density
    measure; coefficients C: read in public QCT-FE code].
    """
    rho = _checked("rho_app_kg_m3", rho_app_kg_m3, 0.0, 2500.0, "kg/m3")
    return 4730e6 * (rho / 1000.0) ** 1.56


def modulus_kopperdahl2002_pa(rho_qct_kg_m3) -> np.ndarray:
    """Vertebral trabecular modulus ``E = 2980 rho^1.05 MPa`` (rho = QCT density in g/cm^3), in Pa.

    Kopperdahl, Morgan & Keaveny 2002 J Orthop Res 20:801 ("QCT estimates of the mechanical properties of human
    vertebral trabecular bone") [C: coefficients as applied to QCT mg/cm^3 / 1000 in public QCT-FE code; M: density
    measure unverified].
    """
    rho = _checked("rho_qct_kg_m3", rho_qct_kg_m3, 0.0, 2500.0, "kg/m3")
    return 2980e6 * (rho / 1000.0) ** 1.05


def yield_stress_kopperdahl2002_pa(rho_qct_kg_m3) -> np.ndarray:
    """Vertebral trabecular compressive yield stress ``sigma_y = 37.4 rho^1.39 MPa`` (Kopperdahl 2002) [C], in Pa."""
    rho = _checked("rho_qct_kg_m3", rho_qct_kg_m3, 0.0, 2500.0, "kg/m3")
    return 37.4e6 * (rho / 1000.0) ** 1.39


def yield_stress_from_strain_pa(modulus_pa, yield_strain: float = YIELD_STRAIN_VERTEBRA) -> np.ndarray:
    """Yield stress ``sigma_y = eps_y E`` with the site-uniform apparent yield strain (vertebra 0.77 %).

    Morgan & Keaveny 2001 J Biomech 34:569: yield strains are uniform within a site [V: finding restated in
    Morgan et al. 2004 J Biomech 37:1413]; vertebral compressive value 0.77 +/- 0.06 % [M].
    """
    e = _checked("modulus_pa", modulus_pa, 0.0, 1e11, "Pa")
    eps = float(_checked("yield_strain", yield_strain, 1e-4, 0.05, "(-)"))
    return eps * e


# ---------------------------------------------------------------------------------------------------------------
# 5. Compaction (kyphoplasty balloon) and thin shells
def compacted_bvtv(bvtv_before, volume_ratio) -> np.ndarray:
    """BV/TV after compaction by ``volume_ratio = V_before / V_after >= 1``, bone mass conserved [D].

    ``BV/TV' = min(1, BV/TV * volume_ratio)``: bone pushed out of a balloon cavity into a shell densifies it; it
    cannot exceed fully dense tissue. Feed the result to the same laws (``permeability_from_bvtv_m2`` etc.).
    """
    b = _checked("bvtv_before", bvtv_before, 0.0, 1.0, "(-)", low_open=True)
    r = _checked("volume_ratio", volume_ratio, 1.0, 1e3, "(-)",
                 fix="volume_ratio = V_before / V_after must be >= 1 (compaction only).")
    return np.minimum(b * r, 1.0)


def shell_fraction(thickness_m: float, voxel_size_m: float,
                   label_thickness_m: float = SHELL_LABEL_THICKNESS_M) -> float:
    """Volume fraction of each shell voxel (edge ``voxel_size_m``) when a shell of ``thickness_m`` is smeared over
    the labelled shell of ``label_thickness_m``: n = max(1, floor(label / h)) voxel layers, min(1, t / (n h)) [D]."""
    t = float(_checked("thickness_m", thickness_m, 1e-6, 0.01, "m"))
    h = float(_checked("voxel_size_m", voxel_size_m, 1e-5, 0.01, "m"))
    lt = float(_checked("label_thickness_m", label_thickness_m, 1e-5, 0.01, "m"))
    layers = max(1, int(np.floor(lt / h + 1e-6)))
    return min(1.0, t / (layers * h))


@dataclass(frozen=True)
class BoneProperties:
    """Trabecular properties of one BV/TV (arrays of its shape), SI units; from :func:`properties_from_bvtv`."""

    bvtv: np.ndarray
    porosity: np.ndarray
    rho_app_kg_m3: np.ndarray
    permeability_m2: np.ndarray
    permeability_transverse_m2: np.ndarray
    E_pa: np.ndarray
    yield_pa: np.ndarray


def properties_from_bvtv(bvtv, modulus_law: str = "morgan2003", *, density_law: str = DEFAULT_DENSITY_LAW,
                         anisotropy_ratio: float = ANISOTROPY_K_LONG_OVER_TRANS,
                         tissue_density_kg_m3: float = TISSUE_DENSITY_KG_M3) -> BoneProperties:
    """All trabecular laws at a given BV/TV in (0, 1] (e.g. the shell after :func:`compacted_bvtv`).

    rho_app = BV/TV rho_tissue; k from Kozeny-Carman; E and yield from the chosen law: ``"morgan2003"`` (E on rho_app,
    yield = 0.77 % E) or ``"kopperdahl2002"`` (E and yield on rho_QCT, recovered from rho_app through
    ``density_law``, at least BVTV_FLOOR x the tissue mineral density so that the law stays defined).
    """
    if modulus_law not in MODULUS_LAWS:
        raise ParameterError(f"Parameter modulus_law={modulus_law!r} is not one of {MODULUS_LAWS}.",
                             "choose 'morgan2003' (default) or 'kopperdahl2002'.")
    rho_t = float(_checked("tissue_density_kg_m3", tissue_density_kg_m3, 1500.0, 2500.0, "kg/m3"))
    b = _checked("bvtv", bvtv, 0.0, 1.0, "(-)", low_open=True)
    rho_app = b * rho_t
    k = permeability_from_bvtv_m2(b)
    if modulus_law == "morgan2003":
        e = modulus_morgan2003_pa(rho_app)
        sy = yield_stress_from_strain_pa(e)
    else:
        rho_ash = ash_density_from_apparent_kg_m3(rho_app)
        rho_qct = qct_density_from_ash_kg_m3(np.maximum(rho_ash, BVTV_FLOOR * TISSUE_MINERAL_DENSITY_KG_M3),
                                             density_law)
        rho_qct = np.maximum(rho_qct, BVTV_FLOOR * TISSUE_MINERAL_DENSITY_KG_M3)
        e = modulus_kopperdahl2002_pa(rho_qct)
        sy = yield_stress_kopperdahl2002_pa(rho_qct)
    return BoneProperties(b, 1.0 - b, rho_app, k, transverse_permeability_m2(k, anisotropy_ratio), e, sy)


# ---------------------------------------------------------------------------------------------------------------
# 6. Maps over a labelled voxel grid
@dataclass(frozen=True)
class MaterialMaps:
    """Per-voxel material fields (float32 arrays of the label grid's shape; SI units in the names).

    bvtv and porosity are volume fractions; permeability is zero where the label is impermeable (cortex,
    endplate, soft tissue, canal, disc): flow exits are boundary conditions of the flow module, not permeability.
    """

    bmd_mg_cm3: np.ndarray
    rho_app_kg_m3: np.ndarray
    bvtv: np.ndarray
    porosity: np.ndarray
    permeability_m2: np.ndarray
    permeability_transverse_m2: np.ndarray
    E_pa: np.ndarray
    yield_pa: np.ndarray
    modulus_law: str = "morgan2003"
    density_law: str = DEFAULT_DENSITY_LAW
    calibration: Calibration = field(default_factory=lambda: DEFAULT_CALIBRATION)
    #: factor on the trabecular permeability law (label 1; e.g. a cohort sample of Baroud 2004's scatter)
    permeability_scale: float = 1.0
    #: fracture-zone map on the label grid (anatomy/fracture.py: 1 band, 2 crack weakened), or None (intact)
    fracture_zone: np.ndarray | None = None
    #: the intraosseous vein channels (model/veins.py: lumen area fraction, tube permeability), or None
    vein_lumen: object | None = None


def _trabecular_fields(bmd_mg_cm3: np.ndarray, modulus_law: str, density_law: str, tissue_density_kg_m3: float):
    """rho_app, BV/TV, k_long, E, yield for trabecular voxels from BMD, BV/TV kept in [BVTV_FLOOR, 1]."""
    bmd_full = float(bmd_from_apparent_density_mg_cm3(tissue_density_kg_m3, density_law=density_law))
    bmd_low = float(qct_density_from_ash_kg_m3(0.0, density_law))  # BMD of zero ash density
    rho_app = apparent_density_from_bmd_kg_m3(np.clip(bmd_mg_cm3, bmd_low, bmd_full), density_law=density_law)
    bvtv = np.clip(rho_app / tissue_density_kg_m3, BVTV_FLOOR, 1.0)
    p = properties_from_bvtv(bvtv, modulus_law, density_law=density_law, tissue_density_kg_m3=tissue_density_kg_m3)
    return p.rho_app_kg_m3, p.bvtv, p.permeability_m2, p.E_pa, p.yield_pa


def material_maps(hu: np.ndarray, labels: np.ndarray, calibration: Calibration = DEFAULT_CALIBRATION,
                  modulus_law: str = "morgan2003", *, density_law: str = DEFAULT_DENSITY_LAW,
                  voxel_size_m: float = 1.0e-3,
                  anisotropy_ratio: float = ANISOTROPY_K_LONG_OVER_TRANS,
                  tissue_density_kg_m3: float = TISSUE_DENSITY_KG_M3,
                  shell_label_thickness_m: float = SHELL_LABEL_THICKNESS_M,
                  permeability_scale: float = 1.0, fracture_zone: np.ndarray | None = None,
                  vein_lumen=None) -> MaterialMaps:
    """Material fields of a labelled CT grid (labels of vertaug.model.labels; see docs/materials.md, "Per label").

    - 1 trabecular: the HU chain (BMD -> rho_app -> BV/TV -> k, E, yield), BV/TV kept in [0.02, 1]; both
      permeabilities times ``permeability_scale`` (1 by default; a cohort samples the measured scatter).
    - 2 cortex, 3 endplate: a bone-tissue shell of cited thickness t smeared over the labelled shell
      (``shell_label_thickness_m``, floor(label / h) >= 1 voxel layers): BV/TV = t / (layers h),
      E = BV/TV * 18 GPa, yield = BV/TV * 134 MPa (Bayraktar 2004 tissue values), impermeable (k = 0).
    - 5 basivertebral vein, 6 segmental vein exit: open channel filling the voxel, k = (h/2)^2 / 8 (Poiseuille
      tube of radius h/2) [D]; 7 cleft/defect: open gap of width h, k = h^2 / 12 (cubic law) [D]. Fluid: E = 0.
    - 0 outside, 4 canal, 8 disc: no bone, no flow through (k = 0), E = 0 (mechanics does not mesh them).
    - ``fracture_zone`` (same shape, optional): where it is 1 (compacted band), 2 (fracture line) or 4 (damaged), E and yield of the
      bone are multiplied by FRACTURED_MODULUS_FACTOR and FRACTURED_YIELD_FACTOR (crushed bone, Keaveny et al. 1999).
    - 10 vein channel (``vein_lumen``, model/veins.py): trabecular bone from the HU over the fraction 1 - f of the
      voxel outside the lumen (BV/TV and E times 1 - f) in parallel with the Poiseuille tube:
      k = (1 - f) k_bone + k_tube, both axes; the yield stress is the bone's (the crush stress a balloon meets in
      the cancellous bone the vein runs through) [D].
    BMD is reported for every voxel (calibration of the HU, whatever the label).
    """
    if modulus_law not in MODULUS_LAWS:
        raise ParameterError(f"Parameter modulus_law={modulus_law!r} is not one of {MODULUS_LAWS}.",
                             "choose 'morgan2003' (default) or 'kopperdahl2002'.")
    hu = np.asarray(hu)
    labels = np.asarray(labels)
    if hu.shape != labels.shape:
        raise GridMismatchError(f"hu has shape {hu.shape} but labels has shape {labels.shape}.",
                                "resample both onto the same voxel grid.")
    if not np.all(np.isfinite(hu)):
        raise InvalidValueError("hu holds NaN or infinite values.", "fill or mask them before building materials.")
    lo, hi = min(LABEL_NAMES), max(LABEL_NAMES)
    if labels.size and set(np.unique(labels).tolist()) - set(LABEL_NAMES):
        raise InvalidValueError(f"labels holds values outside {lo}..{hi}: "
                                f"{sorted(set(np.unique(labels).tolist()) - set(LABEL_NAMES))}.",
                                f"use the label table of vertaug.model.labels ({lo} {LABEL_NAMES[lo]} ... "
                                f"{hi} {LABEL_NAMES[hi]}).")
    h = float(_checked("voxel_size_m", voxel_size_m, 1e-5, 0.01, "m"))
    k_scale = float(_checked("permeability_scale", permeability_scale, 1e-3, 1e3, "(-)"))
    _density_law(density_law)
    bmd = hu_to_bmd_mg_cm3(hu, calibration)
    shape = labels.shape
    rho = np.zeros(shape, np.float32)
    bvtv = np.zeros(shape, np.float32)
    k = np.zeros(shape, np.float32)
    e = np.zeros(shape, np.float32)
    sy = np.zeros(shape, np.float32)

    m = labels == TRABECULAR
    if np.any(m):
        rho[m], bvtv[m], k[m], e[m], sy[m] = _trabecular_fields(bmd[m], modulus_law, density_law,
                                                                tissue_density_kg_m3)
        if k_scale != 1.0:
            k[m] *= np.float32(k_scale)
    k_t_vein = _vein_channel_fields(labels, bmd, vein_lumen, (rho, bvtv, k, e, sy), modulus_law, density_law,
                                    tissue_density_kg_m3, k_scale, anisotropy_ratio)
    for label, thickness in ((CORTEX, CORTEX_THICKNESS_M), (ENDPLATE, ENDPLATE_THICKNESS_M)):
        m = labels == label
        f = shell_fraction(thickness, h, shell_label_thickness_m)
        bvtv[m] = f
        rho[m] = f * tissue_density_kg_m3
        e[m] = f * TISSUE_MODULUS_PA
        sy[m] = f * TISSUE_YIELD_COMPRESSION_PA
    vein = (labels == BASIVERTEBRAL) | (labels == SEGMENTAL)
    k[vein] = (h / 2.0) ** 2 / 8.0
    k[labels == DEFECT] = h**2 / 12.0

    if fracture_zone is not None:
        fracture_zone = np.asarray(fracture_zone)
        if fracture_zone.shape != shape:
            raise GridMismatchError(f"fracture_zone has shape {fracture_zone.shape} but labels has shape {shape}.",
                                    "resample the fracture-zone map onto the model grid (nearest neighbour).")
        weak = np.isin(fracture_zone, FRACTURED_ZONES)
        e[weak] *= np.float32(FRACTURED_MODULUS_FACTOR)
        sy[weak] *= np.float32(FRACTURED_YIELD_FACTOR)
    porosity = (1.0 - bvtv).astype(np.float32)
    trab = labels == TRABECULAR
    k_trans = k.copy()
    k_trans[trab] = transverse_permeability_m2(k[trab], anisotropy_ratio)
    if k_t_vein is not None:
        k_trans[labels == VEIN_CHANNEL] = k_t_vein
    return MaterialMaps(bmd.astype(np.float32), rho, bvtv, porosity, k, k_trans, e, sy, modulus_law, density_law,
                        calibration, k_scale, fracture_zone, vein_lumen)


def _vein_channel_fields(labels, bmd, lumen, fields, modulus_law, density_law, tissue_density_kg_m3, k_scale,
                         anisotropy_ratio):
    """Fill the VEIN_CHANNEL voxels of ``fields`` (rho, bvtv, k_long, E, yield; in place): bone over 1 - f in
    parallel with the tube. Returns the transverse permeability of those voxels (None if there are none)."""
    m = labels == VEIN_CHANNEL
    if not np.any(m):
        return None
    if lumen is None or np.shape(lumen.k_tube_m2) != labels.shape:
        raise InvalidValueError(f"labels holds vein-channel voxels (label {VEIN_CHANNEL}) but no vein_lumen on "
                                "their grid was given.", "pass the VeinLumen of model/veins.py (vein_lumen=...).")
    rho, bvtv, k, e, sy = fields
    f = np.clip(lumen.area_fraction[m], 0.0, 1.0)
    r, b, kb, eb, yb = _trabecular_fields(bmd[m], modulus_law, density_law, tissue_density_kg_m3)
    kb = kb * k_scale
    rho[m], bvtv[m], e[m], sy[m] = r * (1 - f), b * (1 - f), eb * (1 - f), yb
    kt = lumen.k_tube_m2[m]
    k[m] = kb * (1 - f) + kt
    return transverse_permeability_m2(kb, anisotropy_ratio) * (1 - f) + kt


def material_maps_like(materials: MaterialMaps, hu: np.ndarray, labels: np.ndarray,
                       voxel_size_m: float) -> MaterialMaps:
    """:func:`material_maps` of new labels / HU with the laws, calibration and permeability scale of ``materials``
    (a treated model keeps the choices made for the untreated one, its fracture zone included)."""
    return material_maps(hu, labels, materials.calibration, materials.modulus_law, density_law=materials.density_law,
                         voxel_size_m=voxel_size_m, permeability_scale=materials.permeability_scale,
                         fracture_zone=materials.fracture_zone, vein_lumen=materials.vein_lumen)
