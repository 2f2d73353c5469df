"""Boiling of the unreacted monomer (methyl methacrylate, MMA) of a curing cement: an enthalpy method per voxel.

Unreacted monomer per kilogram of cement, with alpha the cure degree (the fraction of the monomer polymerised) and e
the fraction of the monomer already boiled off (both fractions of the monomer the cement held at mixing)::

    m_1 = w_MMA (1 - alpha - e),   m_2 = s - w_MMA (1 - alpha),   w_MMA = H / dH_p   (Cement.monomer_mass_fraction)

w_MMA is the monomer's mass fraction of the mixed cement (H = w_MMA dH_p is how every named cement's heat is built,
physics/cements.py); m_2 the polymer dissolving it: the bead polymer (with initiator and activator) and the
monomer polymerised so far, s (``Cement.solution_mass_fraction``) being all of the cement that is not radiopacifier
or filler (the radiopacifier and fillers are not part of the solution).

Boiling law: the dissolved monomer boils where its partial pressure over the cement reaches the ambient pressure::

    a_1(phi_1) p_sat(T_boil) = p_amb,                    p_amb = 101325 Pa (AMBIENT_PRESSURE_PA)
    phi_1 = (m_1 / rho_1) / (m_1 / rho_1 + m_2 / rho_2)    (rho_1 = 936, rho_2 = 1190 kg/m^3)
    ln a_1 = ln phi_1 + (1 - phi_1) + chi (1 - phi_1)^2    (Flory-Huggins, solvent in a high polymer)
    ln p_sat(T) / p_0 = -(dH_v / R) (1/T - 1/T_b)          (Clausius-Clapeyron through (T_b, p_0 = 1 atm))
    =>  1 / T_boil = 1 / T_b - (R / dH_v) ln(p_amb / (a_1 p_0))

so T_boil rises as the monomer is used up (by the cure or by boiling) and is infinite with none left. Palacos R
(s = 0.899, w_MMA = 0.309, chi = 0): phi_1 = 0.40 at mixing, T_boil = 111.5 C; 128.9 C at alpha 0.5; 161.9 C at
alpha 0.8 [D]; pure monomer (m_2 = 0): T_b.

Enthalpy method (after each heat-equation step): a voxel above its T_boil with monomer left evaporates monomer x
until it sits at the T_boil of what is left::

    T - x L / C = T_boil(m_1 - x, m_2)      (C: voxel heat capacity J/K, L = dH_v per kg; solved per voxel by a
                                              safeguarded Newton iteration in x on [0, m_1], to 1e-9 K)

The vapour leaves the reacting cement: its monomer no longer polymerises (the cure's ceiling falls to 1 - e) and its
latent heat x L leaves the energy balance (``ExothermResult.vaporised_j``); C (T_in - T_out) = x L exactly.

Properties (docs/references.md, [MMA]):

- normal boiling point T_b = 373.4 +/- 0.5 K (100.25 C), the NIST Chemistry WebBook's average of 10 values [V];
- enthalpy of vaporisation at T_b: 33.8 kJ/mol [D], interpolated linearly in T between Steele, Chirico et al. 2002's
  8.68 +/- 0.05 kcal/mol at 340 K and 7.96 +/- 0.1 kcal/mol at 380 K (NIST WebBook [V]; 1 cal = 4.184 J). The value
  at T_b is the one that belongs in this balance: the monomer leaves as vapour, its sensible heat being already in
  the voxel's temperature. The 25 C value (38.8 kJ/mol, 9.27 kcal/mol at 300 K [V]) would overstate the sink by 15 %;
- molar mass 100.12 g/mol [V]; density of the liquid 0.936 g/mL at 20 C [V]; PMMA 1190 kg/m^3 [M];
- vapour pressure: Clausius-Clapeyron with that dH_v held constant, through the normal boiling point (1 atm at T_b,
  not a fitted Antoine curve): exact at T_b; between the two enthalpy data (340-380 K) dH_v is interpolated, beyond
  380 K extrapolated. If dH_v keeps falling as Steele's two points do (-75 J/(mol K)), the constant value overstates
  p_sat above T_b by 2 % at 400 K, 6 % at 420 K, 12 % at 440 K, i.e. T_boil comes out too low by 0.8 / 2.6 / 5.5 K
  there [D]: the model boils slightly early, more so the hotter the boiling (valid to a few K up to ~420 K);
- Flory-Huggins chi of MMA in PMMA: the athermal limit chi = 0 (``MMA_PMMA_CHI``): no published value could be read
  for this version. A positive chi (a poorer solvent) raises the activity and lowers T_boil: with chi = 0.5, T_boil
  at mixing is 105.0 C instead of 111.5 C for Palacos R [D]. chi = 0 errs towards boiling too late.

Assumptions (named; the direction of each error):

- the bead polymer is taken as dissolved from mixing on (one monomer+polymer phase). Early on, before the beads
  have swollen, part of the monomer is a liquid of its own (activity 1, boiling at T_b): the model boils too late in
  the first minutes (the cores that boil pass 100 C later, when the beads have long swollen);
- chi = 0 (above): boils too late; Clausius-Clapeyron with constant dH_v (above): boils slightly early;
- the pressure over the cement is 1 atm. The cement inside bone may be under a few kPa (Clausius-Clapeyron:
  dT_boil/dp = R T^2 / (dH_v p) = 0.34 K per kPa at T_b [D]; no measured pressure inside curing cement was read):
  the model boils too early by about that;
- the vapour escapes: it does not recondense in cooler bone or marrow next to the cement (where it would return its
  latent heat): the model understates the heating of the tissue around a boiling core;
- the voxel's heat capacity stays that of the cement as placed (the matrix of the heat equation is constant): the
  boiled-off monomer's share, w_MMA e of the cement's mass, is kept, which damps later temperature changes of that
  voxel slightly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertaug.constants import KELVIN
from vertaug.physics.cements import GAS_CONSTANT_J_MOL_K, MMA_DENSITY_G_ML, MMA_HEAT_J_KG, POLYMER

__all__ = [
    "AMBIENT_PRESSURE_PA",
    "MMA_BOILING_POINT_K",
    "MMA_DENSITY_KG_M3",
    "MMA_HEAT_J_KG",
    "MMA_MOLAR_MASS_KG_MOL",
    "MMA_PMMA_CHI",
    "MMA_VAPORISATION_J_KG",
    "MMA_VAPORISATION_J_MOL",
    "NORMAL_PRESSURE_PA",
    "PMMA_DENSITY_KG_M3",
    "BoilingLaw",
    "boil_off",
    "log_activity",
    "monomer_volume_fraction",
    "solution_masses",
    "vapour_pressure_pa",
]

#: molar mass of MMA, kg/mol [V]
MMA_MOLAR_MASS_KG_MOL = 100.12e-3
#: normal boiling point of MMA, K: NIST Chemistry WebBook, average of 10 values, 373.4 +/- 0.5 K [V]
MMA_BOILING_POINT_K = 373.4
_CAL_J = 4.184
#: enthalpy of vaporisation of MMA at its boiling point, J/mol [D]: Steele, Chirico et al. 2002 (NIST WebBook [V])
#: 8.68 kcal/mol at 340 K and 7.96 kcal/mol at 380 K, interpolated linearly to 373.4 K
MMA_VAPORISATION_J_MOL = _CAL_J * 1e3 * (8.68 + (7.96 - 8.68) * (MMA_BOILING_POINT_K - 340.0) / (380.0 - 340.0))
#: the same per kilogram of monomer
MMA_VAPORISATION_J_KG = MMA_VAPORISATION_J_MOL / MMA_MOLAR_MASS_KG_MOL
#: the pressure of the normal boiling point (1 atm), Pa
NORMAL_PRESSURE_PA = 101325.0
#: the pressure over the curing cement: 1 atm (the bath, the mould and the bone are taken as open to the room)
AMBIENT_PRESSURE_PA = 101325.0
#: densities of the monomer (0.936 g/mL at 20 C [V]) and of the polymer (PMMA 1190 kg/m^3 [M]), for phi_1
MMA_DENSITY_KG_M3 = 1e3 * MMA_DENSITY_G_ML
PMMA_DENSITY_KG_M3 = POLYMER[0]
#: Flory-Huggins interaction parameter of MMA in PMMA: the athermal limit 0 (no published value could be read; a
#: positive chi raises the activity and lowers the boiling temperature: the model boils too late, docs/cement.md)
MMA_PMMA_CHI = 0.0


def vapour_pressure_pa(temp_k, boiling_point_k=MMA_BOILING_POINT_K, vaporisation_j_mol=MMA_VAPORISATION_J_MOL):
    """Saturation pressure of pure MMA, Pa: Clausius-Clapeyron through (T_b, 1 atm) with dH_v at T_b (docstring)."""
    t = np.asarray(temp_k, dtype=float)
    return NORMAL_PRESSURE_PA * np.exp(-vaporisation_j_mol / GAS_CONSTANT_J_MOL_K * (1.0 / t - 1.0 / boiling_point_k))


def monomer_volume_fraction(monomer_kg, polymer_kg):
    """phi_1 = (m_1 / rho_1) / (m_1 / rho_1 + m_2 / rho_2) of the monomer+polymer phase (0 where it holds nothing)."""
    v1 = np.maximum(np.asarray(monomer_kg, dtype=float), 0.0) / MMA_DENSITY_KG_M3
    v2 = np.maximum(np.asarray(polymer_kg, dtype=float), 0.0) / PMMA_DENSITY_KG_M3
    tot = v1 + v2
    return np.divide(v1, tot, out=np.zeros_like(tot), where=tot > 0)


def solution_masses(monomer_mass_fraction, solution_mass_fraction, alpha, boiled):
    """(monomer, polymer) in the monomer+polymer phase per kg of cement as mixed: w (1 - alpha - e), s - w (1 - alpha).

    w: the monomer's mass fraction at mixing; s: the mass fraction of everything that is not radiopacifier or filler
    (bead polymer, initiator, activator and the monomer); alpha: cure degree; e: fraction of the monomer boiled off."""
    a = np.asarray(alpha, dtype=float)
    return (monomer_mass_fraction * (1.0 - a - np.asarray(boiled, dtype=float)),
            solution_mass_fraction - monomer_mass_fraction * (1.0 - a))


def log_activity(phi_1, chi=MMA_PMMA_CHI):
    """ln a_1 = ln phi_1 + (1 - phi_1) + chi (1 - phi_1)^2: Flory-Huggins, solvent in a high polymer (-inf at 0)."""
    phi = np.asarray(phi_1, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(phi) + (1.0 - phi) + chi * (1.0 - phi) ** 2


@dataclass(frozen=True)
class BoilingLaw:
    """T_boil(m_1, m_2): where a_1(phi_1) p_sat(T) reaches the ambient pressure (module docstring), in K.

    ``boiling_point_k`` T_b of the pure monomer at 1 atm, ``vaporisation_j_mol`` dH_v at T_b, ``chi`` the Flory-Huggins
    parameter, ``pressure_pa`` the ambient pressure. ``point_k`` gives T_boil and dT_boil/dm_1 (K per kg of monomer);
    inf where the monomer's activity is too low to boil at any temperature (no monomer left)."""

    boiling_point_k: float = MMA_BOILING_POINT_K
    vaporisation_j_mol: float = MMA_VAPORISATION_J_MOL
    chi: float = MMA_PMMA_CHI
    pressure_pa: float = AMBIENT_PRESSURE_PA

    @property
    def r_over_h(self) -> float:
        """R / dH_v (1/K), the Clausius-Clapeyron slope of 1/T against ln p."""
        return GAS_CONSTANT_J_MOL_K / float(self.vaporisation_j_mol)

    @property
    def ln_pressure(self) -> float:
        """ln(p / 1 atm) of the ambient pressure."""
        return float(np.log(self.pressure_pa / NORMAL_PRESSURE_PA))

    def point_k(self, monomer_kg, polymer_kg):
        """(T_boil K, dT_boil/dm_1 K per kg of monomer)."""
        temp_k, d_monomer, _ = self.point_and_slopes_k(monomer_kg, polymer_kg)
        return temp_k, d_monomer

    def point_and_slopes_k(self, monomer_kg, polymer_kg):
        """(T_boil K, dT_boil/dm_1 <= 0 K per kg of monomer, dT_boil/dm_2 >= 0 K per kg of polymer: more polymer
        dilutes the monomer); the slopes are -inf / +inf where nothing boils (T_boil inf or no monomer)."""
        m1 = np.maximum(np.asarray(monomer_kg, dtype=float), 0.0)
        m2 = np.maximum(np.asarray(polymer_kg, dtype=float), 0.0)
        v1, v2 = m1 / MMA_DENSITY_KG_M3, m2 / PMMA_DENSITY_KG_M3
        phi = monomer_volume_fraction(m1, m2)
        chi = float(self.chi)
        inv_t = 1.0 / float(self.boiling_point_k) - self.r_over_h * (self.ln_pressure - log_activity(phi, chi))
        ok = inv_t > 0
        temp_k = np.divide(1.0, inv_t, out=np.full_like(inv_t, np.inf), where=ok)
        tot = v1 + v2
        live = ok & (phi > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dphi_dm1 = np.where(tot > 0, v2 / MMA_DENSITY_KG_M3 / tot**2, 0.0)
            dphi_dm2 = np.where(tot > 0, -v1 / PMMA_DENSITY_KG_M3 / tot**2, 0.0)
            dt_dphi = -temp_k**2 * self.r_over_h * (1.0 / phi - 1.0 - 2.0 * chi * (1.0 - phi))
            return (temp_k, np.where(live, dt_dphi * dphi_dm1, -np.inf), np.where(live, dt_dphi * dphi_dm2, np.inf))


def boil_off(temp_c, heat_capacity_j_k, monomer_left_kg, polymer_kg, latent_j_kg, law: BoilingLaw | None = None,
             tol_k=1e-9, max_iter=60):
    """Enthalpy step of the boiling monomer, per voxel (numpy arrays of one length).

    Returns (temperature C, monomer evaporated kg): where a voxel is above its boiling temperature T_boil(m_1, m_2)
    with monomer left, monomer x evaporates until T - x L / C = T_boil(m_1 - x, m_2) (safeguarded Newton in x on the
    voxels that boil; T_boil rises as the monomer goes, and is infinite with none left, so the root lies in
    [0, m_1]); the energy C (T_in - T_out) = x L exactly. ``polymer_kg`` 0: pure monomer, T_boil = T_b throughout
    (then all of it boils if the energy suffices).
    """
    law = law or BoilingLaw()
    temp = np.asarray(temp_c, dtype=float).copy()
    cap = np.asarray(heat_capacity_j_k, dtype=float)
    left = np.maximum(np.asarray(monomer_left_kg, dtype=float), 0.0)
    pol = np.broadcast_to(np.asarray(polymer_kg, dtype=float), left.shape)
    evaporated = np.zeros_like(left)
    t_b0, _ = law.point_k(left, pol)
    idx = np.flatnonzero((left > 0.0) & (temp + KELVIN > t_b0))
    if not idx.size:
        return temp, evaporated
    t_k, c, m1, m2 = temp[idx] + KELVIN, cap[idx], left[idx], pol[idx]
    lo, hi = np.zeros_like(m1), m1.copy()
    x = np.minimum((t_k - t_b0[idx]) * c / latent_j_kg, m1)  # the pure-monomer answer: a first guess
    for _ in range(max_iter):
        tb, slope = law.point_k(m1 - x, m2)
        f = t_k - x * latent_j_kg / c - tb  # decreasing in x
        lo, hi = np.where(f > 0, x, lo), np.where(f > 0, hi, x)
        fp = -latent_j_kg / c + slope  # slope = dT_boil/dm_1 <= 0 (x = m_1 - m)
        with np.errstate(invalid="ignore", divide="ignore"):
            newton = x - f / fp
        x_new = np.where(np.isfinite(newton) & (newton > lo) & (newton < hi), newton, 0.5 * (lo + hi))
        if np.all((np.abs(np.where(np.isfinite(f), f, np.inf)) < tol_k) | (hi - lo <= 1e-15 * m1)):
            break
        x = x_new
    evaporated[idx] = x
    temp[idx] -= x * latent_j_kg / c
    return temp, evaporated
