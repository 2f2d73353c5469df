"""Boiling of the unreacted monomer (methyl methacrylate, MMA) of a curing cement: an enthalpy method per voxel.

Unreacted monomer per kilogram of cement, with alpha the cure degree (the fraction of the monomer polymerised) and e
the fraction of the monomer already boiled off (both fractions of the monomer the cement held at mixing)::

    m_MMA = w_MMA (1 - alpha - e),          w_MMA = H / dH_p     (Cement.monomer_mass_fraction)

w_MMA is the monomer's mass fraction of the mixed cement; H = w_MMA dH_p is how every named cement's heat is built
(physics/cements.py), so the heat not yet released and the monomer not yet polymerised are the same quantity.

Enthalpy method (after each heat-equation step): a voxel holding unreacted monomer that would pass the boiling point
T_b stays at T_b, and the energy above T_b evaporates monomer until none is left (then it heats further)::

    E_x = C (T - T_b),   m_left = M (1 - alpha - e)      (C: voxel heat capacity J/K, M: its monomer at mixing, kg)
    E_x <= m_left L:   T = T_b,                      e += E_x / (M L)
    E_x >  m_left L:   T = T_b + (E_x - m_left L)/C, e = 1 - alpha

The vapour leaves the reacting cement: its monomer no longer polymerises (the cure's ceiling falls to 1 - e) and its
latent heat m L leaves the energy balance (``ExothermResult.vaporised_j``).

Properties (docs/references.md, [MMA]):

- normal boiling point T_b = 373.4 +/- 0.5 K (100.25 C), the NIST Chemistry WebBook's average of 10 values [V];
- enthalpy of vaporisation at T_b: 33.8 kJ/mol [D], interpolated linearly in T between Steele, Chirico et al. 2002's
  8.68 +/- 0.05 kcal/mol at 340 K and 7.96 +/- 0.1 kcal/mol at 380 K (NIST WebBook [V]; 1 cal = 4.184 J). The value
  at T_b is the one that belongs in this balance: the monomer leaves as vapour at T_b, its sensible heat up to T_b
  being already in the voxel's temperature. The 25 C value (38.8 kJ/mol, 9.27 kcal/mol at 300 K [V]) would
  overstate the sink by 15 %;
- molar mass 100.12 g/mol [V].

Assumptions (named; the direction of each error):

- the monomer boils as pure MMA at 1 atm. Dissolved in the polymer its vapour pressure is lower (it boils above T_b,
  more so as it runs out), and the cement inside bone may be under a few kPa of pressure (Clausius-Clapeyron with
  the values above: dT_b/dp = R T_b^2 / (dH_v p) = 0.34 K per kPa [D]): both make the model boil too early, i.e.
  understate the peak and overstate the monomer lost;
- the vapour escapes: it does not recondense in cooler bone or marrow next to the cement (where it would return its
  latent heat): the model understates the heating of the tissue around a boiling core;
- the voxel's heat capacity stays that of the cement as placed (the matrix of the heat equation is constant): the
  boiled-off monomer's share, w_MMA e of the cement's mass, is kept, which damps later temperature changes of that
  voxel slightly.
"""

from __future__ import annotations

import numpy as np

from vertaug.physics.cements import MMA_HEAT_J_KG

__all__ = [
    "MMA_BOILING_POINT_K",
    "MMA_HEAT_J_KG",
    "MMA_MOLAR_MASS_KG_MOL",
    "MMA_VAPORISATION_J_KG",
    "MMA_VAPORISATION_J_MOL",
    "boil_off",
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


def boil_off(temp_c, heat_capacity_j_k, monomer_left_kg, boiling_c, latent_j_kg):
    """Enthalpy step of the boiling monomer, per voxel (numpy arrays of one length).

    Returns (temperature C, monomer evaporated kg): where a voxel is above ``boiling_c`` with monomer left, the energy
    above the boiling point, C (T - T_b), evaporates monomer at ``latent_j_kg`` (at most what is left) and the
    temperature falls to T_b plus whatever energy the evaporation could not take.
    """
    temp = np.asarray(temp_c, dtype=float)
    cap = np.asarray(heat_capacity_j_k, dtype=float)
    left = np.maximum(np.asarray(monomer_left_kg, dtype=float), 0.0)
    excess_j = np.where((temp > boiling_c) & (left > 0.0), cap * (temp - boiling_c), 0.0)
    evaporated = np.minimum(excess_j / latent_j_kg, left)
    return temp - evaporated * latent_j_kg / cap, evaporated
