"""PMMA bone cement: cure kinetics, heat release and viscosity.

Cure (autocatalytic Arrhenius law; Borzacchiello 1998, Li 2003 via Quarini 2006)::

    d(alpha)/dt = K0 exp(-E / (R T)) alpha^m (alpha_max - alpha)^n
    alpha_max   = min(T / Tg, 1)   (Borzacchiello sets, Tg = 378 K);   alpha_max = 1   (Li 2003)
    q           = rho_c H d(alpha)/dt                    [W per m^3 of cement]

Vitrification: the cure stops when the glass transition of the curing cement reaches the temperature. The
conversion reachable at temperature T is taken as alpha_v = min(1, T_hot / Tg) with Tg = 378 K, the glass
transition of PMMA (105 C) in Borzacchiello 1998's law alpha_max = T/Tg (via Quarini 2006, whose code holds T at the
highest temperature the cement has reached: cure stopped by cooling does not resume below it) [C]. The rate law
fitted to rheometer curing times (alpha_max = 1) runs unchanged up to alpha_v, where the cure stops::

    d(alpha)/dt = K0 exp(-E / (R T)) alpha^m (1 - alpha)^n     (alpha < alpha_v(T_hot)),   0 beyond

(Borzacchiello's own law slows the rate on the way, (alpha_max - alpha)^n; the cut keeps the rheometer times of the
gel point alpha 0.5 < alpha_v(23 C) = 0.78 as fitted.) alpha_v is 0.78 at 23 C and 0.82 at 37 C: Vallo 1998 measured
by DSC and gas chromatography that the largest monomer conversion of a PMMA bone cement depends markedly on its cure
temperature, and Warner 2004 that only about 75-85 % of the monomer converts, the glass effect limiting the setting
exotherm [V]. ``vitrification_tg_k = None`` switches it off (Li 2003 as published).

0-D adiabatic mode (cement alone, no losses)::

    c_c dT/dt = H d(alpha)/dt - w_MMA dH_v de/dt

with e the fraction of the monomer boiled off where its partial pressure over the cement reaches 1 atm
(physics/monomer.py: T_boil(alpha, e) rises as the monomer is used up; ``Cure0DResult.boiled``).

Viscosity (power law whose consistency diverges at a gel point, Castro-Macosko form)::

    mu(alpha, T, gamma) = min(mu_max, tau_y / g + K(alpha, T) * g^(n_flow(alpha) - 1)),   g = max(gamma, gamma_min)
    K(alpha, T)         = K0_mu exp(E_mu/R (1/T - 1/T_ref)) (alpha_g / (alpha_g - alpha))^c     (alpha < alpha_g)
    n_flow(alpha)       = n_0 - (n_0 - n_end) min(alpha / alpha_g, 1)

``tau_y`` (``yield_stress_pa``) makes the law Herschel-Bulkley (Bingham for n = 1): tau = tau_y + K gamma^n, written
as the apparent viscosity tau / gamma, regularised at gamma_min (below it the cement behaves as a very viscous
Newtonian fluid of viscosity tau_y / gamma_min + K gamma_min^(n - 1), capped at mu_max). In the Darcy flow the shear
rate is |u| / sqrt(k phi), so a yield stress adds a threshold pressure gradient tau_y sqrt(phi / k) that a
viscosity (a resistance proportional to the flux) does not. The presets carry tau_y = 0: no rheometer yield stress of
a named vertebroplasty cement could be read for this version (docs/cement.md).

Definitions used for the clinical times (isothermal cure at the given temperature, alpha from alpha0 at mixing):

- set time: time to reach ``ALPHA_SET`` = 0.5. Reason: ISO 5833 defines setting time at the temperature midway between
  ambient and peak in a near-adiabatic test; with the temperature rise proportional to alpha that midpoint is alpha = 0.5.
- working time: time until the viscosity at ``WORKING_SHEAR_RATE_1_S`` passes ``WORKING_LIMIT_PA_S`` (the upper end of
  the 1e1..1e3 Pa s working window, docs/cement.md).
- hardened time: time to reach ``ALPHA_HARD`` = 0.95 of the conversion reachable at that temperature (answers "the
  cement hardens within 30 minutes").

Presets (:func:`cement_preset`): "low" (generic low-viscosity: Li 2003 kinetics and heat, [M] viscosity), "high" = the
named Palacos R, and the named commercial cements of :mod:`vertaug.physics.cements` (heat, density and heat capacity
from the pack composition; K0 and E fitted to rheometer curing times, Nicholas 2007, where published). A named cement
without rheometer data may be used for the exotherm, not for flow (:func:`require_rheometry`). A named cement's K0_mu
is fitted to its working-phase viscosity series where its table entry holds one
(:func:`vertaug.physics.cements.fit_working_viscosity`, residual in ``working_viscosity_fit_rms_log``); otherwise it is
its viscosity class's value, and its last source line says so (no entry holds a series in this version).

SI units throughout; temperatures in K inside (``*_k``), in C at the API edges where named ``*_c``.
Sources of each number: docs/cement.md and docs/references.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp
from scipy.interpolate import CubicHermiteSpline
from scipy.special import expit, logit

from vertaug.constants import BODY_TEMPERATURE_C, KELVIN, ROOM_TEMPERATURE_C
from vertaug.errors import ParameterError, check_range
from vertaug.physics import monomer

__all__ = [
    "ALPHA_HARD",
    "ALPHA_SET",
    "GAS_CONSTANT_J_MOL_K",
    "HIGH_VISCOSITY",
    "LOW_VISCOSITY",
    "PMMA_TG_K",
    "WORKING_LIMIT_PA_S",
    "WORKING_SHEAR_RATE_1_S",
    "Cement",
    "Cure0DResult",
    "advance_cure_isothermal",
    "alpha_max",
    "alpha_reachable",
    "alpha_vitrified",
    "cement_preset",
    "cure_0d",
    "cure_rate_1_s",
    "hardened_time_s",
    "named_cement",
    "preset_names",
    "require_rheometry",
    "set_time_s",
    "time_to_alpha_s",
    "viscosity_pa_s",
    "working_time_s",
]

GAS_CONSTANT_J_MOL_K = 8.314462618
ALPHA_SET = 0.5  # ISO 5833 midpoint temperature <-> half the heat released (see module docstring)
ALPHA_HARD = 0.95  # "hardened": 95 % of the reaction heat released
WORKING_LIMIT_PA_S = 1.0e3  # upper end of the 1e1..1e3 Pa s working window (docs/cement.md, [M])
WORKING_SHEAR_RATE_1_S = 1.0  # shear rate at which the working-time viscosity is read (K itself)
NEVER_CURES_S = 24 * 3600.0  # kinetics that do not reach ALPHA_SET in a day are rejected
#: glass transition of PMMA, K (105 C): Borzacchiello 1998's alpha_max = T/Tg, via Quarini 2006 / mhogg [C]
PMMA_TG_K = 378.0


@dataclass(frozen=True)
class Cement:
    """A PMMA cement: kinetics set, viscosity law and thermal properties (SI).

    ``tg_k`` is None for kinetics sets with alpha_max = 1 (Li 2003); a number for alpha_max = T/Tg (Borzacchiello).
    ``alpha0`` is the degree of cure at the end of mixing (time zero of every cure run).
    ``vitrification_tg_k``: the cure stops at alpha_v = T_hot / Tg (module docstring); None: no vitrification.
    """

    name: str
    density_kg_m3: float = 1100.0
    heat_of_reaction_j_kg: float = 1.0e5
    # kinetics set
    kinetics: str = "Li 2003"
    k0_1_s: float = 5.206e9
    activation_energy_j_mol: float = 67891.0
    exponent_m: float = 1.05
    exponent_n: float = 1.10
    tg_k: float | None = None
    alpha0: float = 1.0e-4
    # viscosity law
    consistency_pa_sn: float = 20.0
    viscosity_activation_energy_j_mol: float = 25.0e3
    reference_temperature_k: float = 296.15
    alpha_gel: float = 0.5
    gel_exponent: float = 2.0
    flow_index_start: float = 0.7
    flow_index_end: float = 0.2
    viscosity_max_pa_s: float = 7.5e4
    shear_rate_min_1_s: float = 1.0e-2
    yield_stress_pa: float = 0.0
    # rheometry behind the law: the data points fitted (physics/cements.py); has_rheometry False = a named product
    # without rheometer data (flow refuses it, require_rheometry); the generic presets carry [M] working-window values
    rheometry: tuple = field(default=(), compare=False)
    has_rheometry: bool = True
    rheometry_fit_rms_log: float | None = None
    working_viscosity_fit_rms_log: float | None = None  # None: K0_mu is not fitted to a working-phase series
    # thermal
    conductivity_w_m_k: float = 0.17
    specific_heat_j_kg_k: float = 1400.0
    vitrification_tg_k: float | None = PMMA_TG_K
    # boiling of the unreacted monomer (physics/monomer.py); None: no boiling
    monomer_boiling_point_k: float | None = monomer.MMA_BOILING_POINT_K
    monomer_vaporisation_heat_j_kg: float = monomer.MMA_VAPORISATION_J_KG
    # the monomer dissolved in the polymer: Flory-Huggins chi, and the mass fraction of the monomer+polymer phase
    # (all but radiopacifier and filler; 1: none known, the generic presets)
    monomer_polymer_chi: float = monomer.MMA_PMMA_CHI
    solution_mass_fraction: float = 1.0
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        check_range("cement.density_kg_m3", self.density_kg_m3, 500.0, 5000.0, "kg/m^3")
        check_range("cement.heat_of_reaction_j_kg", self.heat_of_reaction_j_kg, 0.0, 1.0e6, "J/kg")
        check_range(
            "cement.k0_1_s",
            self.k0_1_s,
            1e-30,
            1e30,
            "1/s",
            "give a positive pre-exponential factor; K0 <= 0 means the cement never cures.",
        )
        check_range("cement.activation_energy_j_mol", self.activation_energy_j_mol, 0.0, 5.0e5, "J/mol")
        check_range("cement.exponent_m", self.exponent_m, 0.0, 5.0)
        check_range("cement.exponent_n", self.exponent_n, 0.0, 5.0)
        if self.tg_k is not None:
            check_range("cement.tg_k", self.tg_k, KELVIN, 600.0, "K")
        if self.vitrification_tg_k is not None:
            check_range("cement.vitrification_tg_k", self.vitrification_tg_k, KELVIN, 600.0, "K",
                        "give the glass transition of the cured cement in K (PMMA 378 K), or None.")
        check_range(
            "cement.alpha0",
            self.alpha0,
            1e-12,
            0.5,
            "",
            "give a small positive initial cure degree (e.g. 1e-4): with alpha0 = 0 the autocatalytic law never starts.",
        )
        check_range("cement.consistency_pa_sn", self.consistency_pa_sn, 1e-3, 1e6, "Pa s^n")
        check_range(
            "cement.viscosity_activation_energy_j_mol",
            self.viscosity_activation_energy_j_mol,
            0.0,
            2e5,
            "J/mol",
        )
        check_range("cement.reference_temperature_k", self.reference_temperature_k, KELVIN, 400.0, "K")
        check_range("cement.alpha_gel", self.alpha_gel, 0.05, 1.0)
        check_range("cement.gel_exponent", self.gel_exponent, 0.0, 20.0)
        check_range("cement.flow_index_start", self.flow_index_start, 0.05, 1.0)
        check_range("cement.flow_index_end", self.flow_index_end, 0.05, 1.0)
        check_range("cement.viscosity_max_pa_s", self.viscosity_max_pa_s, self.consistency_pa_sn, 1e9, "Pa s")
        check_range("cement.shear_rate_min_1_s", self.shear_rate_min_1_s, 1e-8, 1e3, "1/s")
        if not self.yield_stress_pa >= 0.0:
            raise ParameterError(
                f"Parameter cement.yield_stress_pa={self.yield_stress_pa!r} is negative.",
                "give a yield stress >= 0 Pa (0 for a cement without one; doughy PMMA: tens to hundreds of Pa).",
            )
        check_range("cement.yield_stress_pa", self.yield_stress_pa, 0.0, 1e5, "Pa")
        check_range("cement.conductivity_w_m_k", self.conductivity_w_m_k, 1e-3, 100.0, "W/(m K)")
        check_range("cement.specific_heat_j_kg_k", self.specific_heat_j_kg_k, 100.0, 1e4, "J/(kg K)")
        if self.monomer_boiling_point_k is not None:
            check_range("cement.monomer_boiling_point_k", self.monomer_boiling_point_k, KELVIN, 600.0, "K",
                        "give the monomer's boiling point in K (MMA 373.4 K), or None for no boiling.")
        check_range("cement.monomer_vaporisation_heat_j_kg", self.monomer_vaporisation_heat_j_kg, 1e4, 5e6, "J/kg",
                    "give the monomer's enthalpy of vaporisation per kg (MMA 3.38e5 J/kg at its boiling point).")
        check_range("cement.monomer_polymer_chi", self.monomer_polymer_chi, -2.0, 2.0, "",
                    "give the Flory-Huggins parameter of the monomer in its polymer (athermal 0).")
        if not self.monomer_mass_fraction <= self.solution_mass_fraction <= 1.0:
            raise ParameterError(
                f"Parameter cement.solution_mass_fraction={self.solution_mass_fraction!r} is outside "
                f"[{self.monomer_mass_fraction:.3f}, 1] (the monomer's mass fraction H / dH_p up to the whole cement).",
                "give the mass fraction of the cement that is not radiopacifier or filler.")

    @property
    def boiling_law(self) -> monomer.BoilingLaw | None:
        """The monomer's boiling temperature in the cement (physics/monomer.py); None: no boiling."""
        if self.monomer_boiling_point_k is None:
            return None
        return monomer.BoilingLaw(self.monomer_boiling_point_k,
                                  self.monomer_vaporisation_heat_j_kg * monomer.MMA_MOLAR_MASS_KG_MOL,
                                  self.monomer_polymer_chi)

    def boiling_point_k(self, alpha, boiled):
        """T_boil (K) of the cement at cure degree ``alpha`` with the fraction ``boiled`` of its monomer gone, and its
        slopes dT_boil/d(alpha) and dT_boil/d(boiled) (K); numpy-vectorised."""
        law = self.boiling_law
        m1, m2 = monomer.solution_masses(self.monomer_mass_fraction, self.solution_mass_fraction, alpha, boiled)
        t_k, dt_dm, dm2 = law.point_and_slopes_k(m1, m2)
        w = self.monomer_mass_fraction
        return t_k, -w * dt_dm + w * dm2, -w * dt_dm

    @property
    def volumetric_heat_capacity_j_m3k(self) -> float:
        return self.density_kg_m3 * self.specific_heat_j_kg_k

    @property
    def monomer_mass_fraction(self) -> float:
        """w_MMA: kg of polymerisable monomer per kg of mixed cement, H / dH_p (the heat is the monomer's)."""
        return self.heat_of_reaction_j_kg / monomer.MMA_HEAT_J_KG

    @property
    def adiabatic_rise_k(self) -> float:
        """Temperature rise of the cement alone for complete cure (alpha 0 -> 1) without losses."""
        return self.heat_of_reaction_j_kg / self.specific_heat_j_kg_k


_LI2003 = {
    "kinetics": "Li 2003",
    "k0_1_s": 5.206e9,
    "activation_energy_j_mol": 67891.0,
    "exponent_m": 1.05,
    "exponent_n": 1.10,
    "tg_k": None,
    "heat_of_reaction_j_kg": 1.0e5,
    "alpha0": 1.0e-4,
}

LOW_VISCOSITY = Cement(
    name="low",
    consistency_pa_sn=20.0,
    sources=(
        "kinetics: Li 2003 JBME via Quarini 2006 / mhogg cement_polymerisation HETVAL [C]",
        "rho 1100 kg/m3, k 0.17 W/mK [C]; c 1400 J/kgK (Li 2003 0-D check; literature 1250-1700 [M])",
        "K0_mu 20 Pa s^n: low-viscosity VP cement, lower part of the 1e1-1e3 Pa s working window [M]",
        "n 0.7 -> 0.2 [M]; mu_max 7.5e4 Pa s (Nicholas 2007 [V]); alpha_gel 0.5 = ISO set point (model choice)",
    ),
    **_LI2003,
)


def named_cement(name: str, **overrides) -> Cement:
    """The named commercial cement ``name`` (physics/cements.py table): heat, density and heat capacity from its
    composition, cure kinetics fitted to its rheometer curing times where published; ``overrides`` replace fields."""
    from vertaug.physics import cements

    kw = cements.named_cement_kwargs(name)
    comp = cements.NAMED_CEMENTS[str(name).strip().lower()]
    k_class = _CLASS_CONSISTENCY_PA_SN[comp.viscosity_class]
    kw["consistency_pa_sn"] = k_class
    props = cements.cement_properties(comp)  # the monomer+polymer phase: all but radiopacifier and filler
    kw["solution_mass_fraction"] = 1.0 - props["radiopacifier_mass_fraction"] - props["filler_mass_fraction"]
    if comp.working_viscosity:
        fit = cements.fit_working_viscosity(Cement(**kw), comp.working_viscosity)
        kw.update(fit.values, working_viscosity_fit_rms_log=fit.residual_rms_log)
        label = (f"K0_mu {fit.values['consistency_pa_sn']:.4g} Pa s^n fitted to {len(fit.points)} working-phase "
                 f"viscosities, rms ln-residual {fit.residual_rms_log:.2e}")
    else:
        label = (f"K0_mu {k_class:g} Pa s^n: the generic {comp.viscosity_class}-viscosity class value [M], not this "
                 "product's: no working-phase viscosity series of it was read")
    kw["sources"] = (*kw["sources"], label)
    kw.update(overrides)
    return Cement(**kw)


#: working-phase consistency K0_mu per viscosity class (Pa s^n at 23 C, alpha 0): generic values [M], docs/cement.md
_CLASS_CONSISTENCY_PA_SN = {"low": 20.0, "high": 300.0}

#: "high": the named Palacos R (high-viscosity PMMA, the named cement whose rheometer curing times could be read);
#: its working-phase consistency is the generic high class value (no working-phase viscosity series was read)
HIGH_VISCOSITY = named_cement("Palacos R")

_PRESETS = {"low": LOW_VISCOSITY, "high": HIGH_VISCOSITY}


def preset_names() -> list[str]:
    """Every name cement_preset accepts: the two classes and the named cements."""
    from vertaug.physics import cements

    return sorted(_PRESETS) + [c.name for c in cements.NAMED_CEMENTS.values()]


def cement_preset(name: str) -> Cement:
    """Return the preset called ``name``: "low" (generic low-viscosity), "high" (= Palacos R) or a named cement."""
    from vertaug.physics import cements

    key = str(name).strip().lower()
    if key in _PRESETS:
        return _PRESETS[key]
    if key in cements.NAMED_CEMENTS:
        if key == HIGH_VISCOSITY.name.lower():
            return HIGH_VISCOSITY
        return named_cement(key)
    raise ParameterError(f"Cement preset {name!r} is unknown.", f"use one of {preset_names()}.")


def require_rheometry(cement: Cement) -> Cement:
    """``cement`` if its viscosity law may be used for flow; ParameterError for a named cement without rheometry."""
    if not cement.has_rheometry:
        raise ParameterError(
            f"Cement preset {cement.name!r} has no rheometry: no published viscosity-versus-time data of it could be "
            "read, so its flow cannot be simulated.",
            f"choose a preset with rheometry for the injection (e.g. 'high' = {HIGH_VISCOSITY.name}, or 'low'); "
            "it may still be used for the exotherm.")
    return cement


def alpha_max(cement: Cement, temperature_k):
    """Largest reachable cure degree at ``temperature_k`` (1, or T/Tg capped at 1)."""
    t = np.asarray(temperature_k, dtype=float)
    if cement.tg_k is None:
        return np.ones_like(t)
    return np.minimum(t / cement.tg_k, 1.0)


def alpha_vitrified(cement: Cement, hottest_k):
    """Conversion at which the cure stops by vitrification, for the highest temperature reached ``hottest_k``."""
    t = np.asarray(hottest_k, dtype=float)
    if cement.vitrification_tg_k is None:
        return np.ones_like(t)
    return np.minimum(t / cement.vitrification_tg_k, 1.0)


def alpha_reachable(cement: Cement, temperature_k, hottest_k=None):
    """Largest cure degree reachable at ``temperature_k`` (after reaching ``hottest_k``, default the same)."""
    hot = temperature_k if hottest_k is None else np.maximum(temperature_k, hottest_k)
    return np.minimum(alpha_max(cement, temperature_k), alpha_vitrified(cement, hot))


def cure_rate_1_s(cement: Cement, alpha, temperature_k, hottest_k=None):
    """d(alpha)/dt in 1/s; numpy-vectorised over ``alpha``, ``temperature_k`` and ``hottest_k`` (the highest temperature
    the cement has reached, for the vitrification limit; default ``temperature_k``) (broadcast)."""
    a = np.asarray(alpha, dtype=float)
    t = np.asarray(temperature_k, dtype=float)
    amax = alpha_max(cement, t)
    a = np.clip(a, 0.0, None)
    room = np.clip(amax - a, 0.0, None)
    k = cement.k0_1_s * np.exp(-cement.activation_energy_j_mol / (GAS_CONSTANT_J_MOL_K * t))
    rate = k * a**cement.exponent_m * room**cement.exponent_n
    if cement.vitrification_tg_k is None:
        return rate
    hot = t if hottest_k is None else np.maximum(t, np.asarray(hottest_k, dtype=float))
    return np.where(a < alpha_vitrified(cement, hot), rate, 0.0)


#: the isothermal cure step's table of I(u) = int du / (u^m (1 - u)^n) in s = logit(u): nodes per unit of s, and the
#: table's ends (from 1 below logit(alpha0) up to 1 - u = 4e-18)
CURE_TABLE_NODES_PER_S = 80
_CURE_TABLE_S_HI = 40.0


@functools.lru_cache(maxsize=8)
def _cure_integral_table(m: float, n: float, s_lo: float, nodes_per_s: int = CURE_TABLE_NODES_PER_S):
    """Splines of I(s) and its inverse s(I), I = int_{s_lo}^{s} u^(1-m) (1-u)^(1-n) ds' (= int du / (u^m (1-u)^n)).

    I at the nodes by 6-point Gauss-Legendre per interval; cubic Hermite splines with the exact slopes dI/ds and
    ds/dI (error O(ds^4))."""
    s = np.linspace(s_lo, _CURE_TABLE_S_HI, round((_CURE_TABLE_S_HI - s_lo) * nodes_per_s) + 1)

    def slope(z):
        return np.exp(-(1.0 - m) * np.logaddexp(0.0, -z) - (1.0 - n) * np.logaddexp(0.0, z))

    x, w = np.polynomial.legendre.leggauss(6)
    half = 0.5 * np.diff(s)
    integral = np.concatenate(([0.0], np.cumsum(half * (slope(s[:-1, None] + half[:, None] * (1.0 + x)) @ w))))
    keep = np.concatenate(([True], np.diff(integral) > 0.0))  # a slope below rounding adds nothing: stop there
    s, integral = s[keep], integral[keep]
    d = slope(s)
    return CubicHermiteSpline(s, integral, d), CubicHermiteSpline(integral, s, 1.0 / d)


def advance_cure_isothermal(cement: Cement, alpha, temperature_k, dt_s: float, hottest_k=None, ceiling=None):
    """Cure degree after ``dt_s`` at fixed ``temperature_k`` (per entry), the rate law's exact solution.

    With the room term's ceiling c = min(alpha_max(T), ``ceiling``) (``ceiling``: e.g. 1 - the monomer boiled off),
    d(alpha)/dt = k(T) alpha^m (c - alpha)^n separates: I_c(alpha) = int d(alpha) / (alpha^m (c - alpha)^n) grows by
    k dt, and I_c(alpha) = c^(1-m-n) I(alpha / c) with I the integral for c = 1, tabulated once per (m, n)::

        I(u_new) = I(u) + k dt c^(m+n-1),     alpha_new = c u_new

    then the vitrification stop alpha <= alpha_v(max(T, T_hot)) as :func:`cure_rate_1_s`. One table look-up and one
    inverse per voxel, whatever k dt (an RK4 integration needs sub-steps of about 0.1 / k).
    """
    a = np.asarray(alpha, dtype=float)
    t = np.broadcast_to(np.asarray(temperature_k, dtype=float), a.shape)
    c = alpha_max(cement, t)
    if ceiling is not None:
        c = np.minimum(c, np.broadcast_to(np.asarray(ceiling, dtype=float), a.shape))
    m, n = cement.exponent_m, cement.exponent_n
    s_lo = float(np.floor(logit(cement.alpha0))) - 1.0
    fwd, inv = _cure_integral_table(m, n, s_lo)
    out = a.copy()
    live = a < c
    if live.any():
        cl = c[live]
        k = cement.k0_1_s * np.exp(-cement.activation_energy_j_mol / (GAS_CONSTANT_J_MOL_K * t[live]))
        s0 = np.clip(logit(np.clip(a[live] / cl, 0.0, 1.0)), fwd.x[0], fwd.x[-1])
        target = np.minimum(fwd(s0) + k * dt_s * cl ** (m + n - 1.0), inv.x[-1])
        out[live] = cl * expit(inv(target))
    if cement.vitrification_tg_k is not None:
        hot = t if hottest_k is None else np.maximum(t, np.asarray(hottest_k, dtype=float))
        out = np.minimum(out, np.maximum(alpha_vitrified(cement, hot), a))
    return np.maximum(out, a)  # the cure never reverses


def viscosity_pa_s(cement: Cement, alpha, temperature_k, shear_rate_1_s=WORKING_SHEAR_RATE_1_S):
    """Apparent viscosity mu(alpha, T, shear rate) in Pa s; numpy-vectorised (broadcast)."""
    a = np.asarray(alpha, dtype=float)
    t = np.asarray(temperature_k, dtype=float)
    g = np.maximum(np.asarray(shear_rate_1_s, dtype=float), cement.shear_rate_min_1_s)
    ag = cement.alpha_gel
    frac = np.clip(a / ag, 0.0, 1.0)
    n_flow = cement.flow_index_start - (cement.flow_index_start - cement.flow_index_end) * frac
    arr = np.exp(
        cement.viscosity_activation_energy_j_mol
        / GAS_CONSTANT_J_MOL_K
        * (1.0 / t - 1.0 / cement.reference_temperature_k)
    )
    gap = np.maximum(ag - a, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        gel = np.where(gap > 0.0, (ag / np.where(gap > 0.0, gap, 1.0)) ** cement.gel_exponent, np.inf)
        mu = cement.yield_stress_pa / g + cement.consistency_pa_sn * arr * gel * g ** (n_flow - 1.0)
    return np.minimum(mu, cement.viscosity_max_pa_s)


@dataclass(frozen=True)
class Cure0DResult:
    """0-D cure history: times (s from mixing), alpha, temperature (C), viscosity (Pa s at the given shear rate)."""

    mode: str
    t_s: np.ndarray
    alpha: np.ndarray
    temperature_c: np.ndarray
    viscosity_pa_s: np.ndarray
    shear_rate_1_s: float
    boiled: np.ndarray | None = None  # adiabatic: fraction of the monomer boiled off (physics/monomer.py)

    @property
    def peak_temperature_c(self) -> float:
        return float(np.max(self.temperature_c))

    def time_at_alpha_s(self, alpha: float) -> float:
        """First time alpha reaches ``alpha`` (linear interpolation); NaN if never."""
        idx = np.nonzero(self.alpha >= alpha)[0]
        if idx.size == 0:
            return float("nan")
        i = int(idx[0])
        if i == 0:
            return float(self.t_s[0])
        a0, a1 = self.alpha[i - 1], self.alpha[i]
        return float(self.t_s[i - 1] + (alpha - a0) / (a1 - a0) * (self.t_s[i] - self.t_s[i - 1]))

    @property
    def viscosity(self) -> np.ndarray:
        return self.viscosity_pa_s


def _check_temperature_c(name: str, value: float) -> float:
    return check_range(
        name,
        value,
        0.0,
        150.0,
        "C",
        "give a temperature in degrees Celsius between 0 and 150 (body 37, room 23).",
    )


def _checked(sol):
    if not sol.success:  # pragma: no cover - LSODA failure is a bug, not bad input
        raise RuntimeError(f"cure_0d integration failed: {sol.message}")
    return sol


def _rate_below(cement: Cement, alpha: float, temp_k: float, ceiling: float) -> float:
    """d(alpha)/dt with the room term's ceiling min(alpha_max(T), ``ceiling``) (as advance_cure_isothermal); T is the
    hottest temperature so far (it only rises in the adiabatic run)."""
    room = max(min(float(alpha_max(cement, temp_k)), ceiling) - alpha, 0.0)
    if alpha >= float(alpha_vitrified(cement, temp_k)):
        return 0.0
    k = cement.k0_1_s * np.exp(-cement.activation_energy_j_mol / (GAS_CONSTANT_J_MOL_K * temp_k))
    return float(k * max(alpha, 0.0) ** cement.exponent_m * room**cement.exponent_n)


def boiled_fraction_adiabatic(cement: Cement, alpha: float, t0_k: float, alpha_start: float) -> float:
    """e*(alpha): the fraction of the monomer boiled off when an adiabatic cement (from ``t0_k`` at ``alpha_start``)
    sits at its boiling temperature at cure ``alpha``: the root of T0 + (H (alpha - alpha_0) - w L e) / c =
    T_boil(alpha, e) (0 where the energy line is below T_boil at e = 0)."""
    from scipy.optimize import brentq

    w, c = cement.monomer_mass_fraction, cement.specific_heat_j_kg_k
    lat = w * cement.monomer_vaporisation_heat_j_kg / c

    def gap(e):
        t_line = t0_k + cement.adiabatic_rise_k * (alpha - alpha_start) - lat * e
        return t_line - min(float(cement.boiling_point_k(alpha, e)[0]), 1e4)

    top = (1.0 - alpha) * (1.0 - 1e-12)
    if gap(0.0) <= 0.0 or top <= 0.0:
        return 0.0
    return float(brentq(gap, 0.0, top, xtol=1e-15, rtol=1e-14))


def _adiabatic_0d(cement: Cement, t_end: float, t0_k: float, t_eval: np.ndarray, rtol: float):
    """Adiabatic cure (c dT/dt = H d(alpha)/dt - w L de/dt) with the monomer boiling where its partial pressure
    over the cement reaches the ambient pressure (physics/monomer.py). Three phases: (1) heating, T = T0 + H (alpha -
    alpha_0) / c, until T reaches T_boil(alpha, 0); (2) boiling, T = T_boil(alpha, e*(alpha)) with e* from the
    energy balance (:func:`boiled_fraction_adiabatic`), until T_boil rises faster with the cure than the cure's heat
    can follow (H = c dT_boil/d(alpha)); (3) heating again with e fixed. The cure's ceiling is 1 - e.
    Returns (t, alpha, T K, e); the phases' ends are among the times."""
    rise, law = cement.adiabatic_rise_k, cement.boiling_law
    a0 = cement.alpha0
    h_j, c = cement.heat_of_reaction_j_kg, cement.specific_heat_j_kg_k
    lat = cement.monomer_mass_fraction * cement.monomer_vaporisation_heat_j_kg / c

    def line_k(a, e):
        return t0_k + rise * (a - a0) - lat * e

    def boils(_t, y):
        return line_k(y[0], 0.0) - float(cement.boiling_point_k(y[0], 0.0)[0])

    def stops(_t, y):
        return h_j - c * float(cement.boiling_point_k(y[0], boiled_fraction_adiabatic(cement, y[0], t0_k, a0))[1])

    boils.terminal, boils.direction, stops.terminal = True, 1.0, True
    pieces, t_s, y0, e_fix = [], 0.0, a0, 0.0
    phases = ("heat", "boil", "heat") if law is None or boils(0.0, [a0]) < 0.0 else ("boil", "heat")
    for phase in phases:
        if law is None and phase == "boil":
            break
        later = t_eval[t_eval > t_s] if pieces else t_eval

        def rhs(_t, y, phase=phase, e_fix=e_fix):
            e = boiled_fraction_adiabatic(cement, y[0], t0_k, a0) if phase == "boil" else e_fix
            return [_rate_below(cement, y[0], line_k(y[0], e), 1.0 - e)]

        event = None if law is None else (boils if phase == "heat" and not pieces else stops if phase == "boil"
                                          else None)
        sol = _checked(solve_ivp(rhs, (t_s, t_end), [y0], method="LSODA", t_eval=later, rtol=rtol, atol=1e-12,
                                 events=event))
        t_out, a_out = np.asarray(sol.t, dtype=float), np.asarray(sol.y, dtype=float).reshape(-1)
        if sol.status == 1:  # the phase ends at the event: keep that point too
            t_s, y0 = float(sol.t_events[0][0]), float(sol.y_events[0][0][0])
            t_out, a_out = np.append(t_out, t_s), np.append(a_out, y0)
        e_of = (np.array([boiled_fraction_adiabatic(cement, a, t0_k, a0) for a in a_out]) if phase == "boil"
                else np.full(t_out.size, e_fix))
        pieces.append((t_out, a_out, line_k(a_out, e_of), e_of))
        if sol.status != 1:
            break
        if phase == "boil":
            e_fix = boiled_fraction_adiabatic(cement, y0, t0_k, a0)
    return tuple(np.concatenate(p) for p in zip(*pieces))


def cure_0d(
    cement: Cement,
    t_end_s: float,
    mode: str = "isothermal",
    temperature_c: float = BODY_TEMPERATURE_C,
    n_out: int = 2001,
    shear_rate_1_s: float = WORKING_SHEAR_RATE_1_S,
    rtol: float = 1e-9,
) -> Cure0DResult:
    """Cure the cement alone from mixing (alpha = alpha0) for ``t_end_s`` seconds.

    mode "isothermal": T held at ``temperature_c``; "adiabatic": T starts at ``temperature_c`` and rises by H alpha / c
    up to the monomer's boiling point (``Cement.monomer_boiling_point_k``; None: no boiling), where it stays while the
    monomer left boils off (:func:`_adiabatic_0d`).
    """
    t_end = check_range("t_end_s", t_end_s, 1e-6, 1e7, "s")
    t0_k = _check_temperature_c("temperature_c", temperature_c) + KELVIN
    if mode not in ("isothermal", "adiabatic"):
        raise ParameterError(f"mode={mode!r} is unknown.", 'use "isothermal" or "adiabatic".')
    t_eval = np.linspace(0.0, t_end, int(n_out))
    if mode == "isothermal":

        def rhs(_t, y):
            return [float(cure_rate_1_s(cement, y[0], t0_k))]

        sol = _checked(solve_ivp(rhs, (0.0, t_end), [cement.alpha0], method="LSODA", t_eval=t_eval, rtol=rtol,
                                 atol=1e-12))
        t_s, alpha, temp_k = sol.t, sol.y[0], np.full_like(sol.t, t0_k)
    else:
        t_s, alpha, temp_k, boiled = _adiabatic_0d(cement, t_end, t0_k, t_eval, rtol)
    alpha = np.clip(alpha, 0.0, 1.0)
    mu = viscosity_pa_s(cement, alpha, temp_k, shear_rate_1_s)
    return Cure0DResult(mode, t_s, alpha, temp_k - KELVIN, mu, float(shear_rate_1_s),
                        None if mode == "isothermal" else boiled)


def time_to_alpha_s(cement: Cement, alpha: float, temperature_c: float) -> float:
    """Isothermal time (s from mixing) to reach cure degree ``alpha``; ParameterError if not reached in a day."""
    target = check_range("alpha", alpha, cement.alpha0, 1.0 - 1e-9)
    t_k = _check_temperature_c("temperature_c", temperature_c) + KELVIN
    if target > float(alpha_reachable(cement, t_k)) - 1e-9:
        raise ParameterError(
            f"Cure degree alpha={alpha} is above alpha_max={float(alpha_reachable(cement, t_k)):.3f} (the conversion "
            f"reachable) at {temperature_c} C.",
            "ask for a lower alpha or a higher temperature.",
        )

    def hit(_t, y):
        return y[0] - target

    hit.terminal = True
    sol = solve_ivp(
        lambda _t, y: [float(cure_rate_1_s(cement, y[0], t_k))],
        (0.0, NEVER_CURES_S),
        [cement.alpha0],
        method="LSODA",
        events=hit,
        rtol=1e-10,
        atol=1e-14,
    )
    if sol.t_events[0].size == 0:
        raise ParameterError(
            f"Cement {cement.name!r} never cures: alpha does not reach {target} within "
            f"{NEVER_CURES_S / 3600:.0f} h at {temperature_c} C (k0={cement.k0_1_s:g} 1/s, "
            f"E={cement.activation_energy_j_mol:g} J/mol).",
            "check the kinetics set (K0, E, m, n, alpha0) against its source.",
        )
    return float(sol.t_events[0][0])


def set_time_s(cement: Cement, temperature_c: float = BODY_TEMPERATURE_C) -> float:
    """Set time: isothermal time to alpha = ALPHA_SET (ISO 5833 midpoint-temperature equivalent)."""
    return time_to_alpha_s(cement, ALPHA_SET, temperature_c)


def hardened_time_s(cement: Cement, temperature_c: float = BODY_TEMPERATURE_C) -> float:
    """Isothermal time to alpha = ALPHA_HARD x the conversion reachable at ``temperature_c`` (95 % of the heat the
    cement can release there; with vitrification less than 95 % of the full heat)."""
    reachable = float(alpha_reachable(cement, _check_temperature_c("temperature_c", temperature_c) + KELVIN))
    return time_to_alpha_s(cement, ALPHA_HARD * reachable, temperature_c)


def _alpha_at_viscosity(cement: Cement, mu_pa_s: float, temperature_k: float) -> float:
    """alpha where the viscosity at WORKING_SHEAR_RATE_1_S reaches ``mu_pa_s`` (inverse of the gel law)."""
    arr = np.exp(
        cement.viscosity_activation_energy_j_mol
        / GAS_CONSTANT_J_MOL_K
        * (1.0 / temperature_k - 1.0 / cement.reference_temperature_k)
    )
    g = max(WORKING_SHEAR_RATE_1_S, cement.shear_rate_min_1_s)
    ratio = (mu_pa_s - cement.yield_stress_pa / g) / (cement.consistency_pa_sn * arr)
    if g != 1.0:  # flow index depends on alpha: solve numerically
        from scipy.optimize import brentq

        return float(
            brentq(
                lambda a: float(viscosity_pa_s(cement, a, temperature_k, g)) - mu_pa_s,
                0.0,
                cement.alpha_gel - 1e-12,
            )
        )
    if ratio <= 1.0:
        return 0.0
    return cement.alpha_gel * (1.0 - ratio ** (-1.0 / cement.gel_exponent))


def working_time_s(cement: Cement, temperature_c: float = ROOM_TEMPERATURE_C) -> float:
    """Working time: isothermal time until mu(shear 1/s) passes WORKING_LIMIT_PA_S (0 if it starts above)."""
    t_k = _check_temperature_c("temperature_c", temperature_c) + KELVIN
    a_w = _alpha_at_viscosity(cement, WORKING_LIMIT_PA_S, t_k)
    if a_w <= cement.alpha0:
        return 0.0
    return time_to_alpha_s(cement, a_w, temperature_c)
