"""Named commercial PMMA bone cements: composition -> heat, density, heat capacity; rheometry -> cure kinetics.

Each entry of :data:`NAMED_CEMENTS` is what could be read about one product (tags as in docs/references.md: [V] seen
in a source, [C] read in public code, [M] from memory, unverified). From it:

Heat of polymerisation per kilogram of cement (only the liquid's monomer polymerises; the powder is pre-polymerised
PMMA or copolymer beads, radiopacifier and initiator)::

    w_MMA = m_liquid x_MMA / (m_powder + m_liquid)          (mass fraction of monomer in the mixed cement)
    H     = w_MMA dH_MMA,      dH_MMA = 54 kJ/mol / 100.12 g/mol = 5.39e5 J/kg   [M]

Density and heat capacity of the set cement, from the mass fractions w_i of polymer (beads + polymerised monomer),
radiopacifier and any other powder filler (hydroxyapatite in Vertecem V+: 3160 kg/m^3 and 184.07 cal/(K mol) at 298 K,
[V]) (rule of mixtures; the pores of hand-mixed cement are neglected; a liquid given in mL is converted with MMA's
0.936 g/mL at 20 C [V])::

    1 / rho = sum_i w_i / rho_i,        c = sum_i w_i c_i

Cure kinetics: the autocatalytic law of :mod:`vertaug.physics.rheology` with Li 2003's exponents (m 1.05, n 1.10,
alpha0 1e-4; from DSC, [C]); its rate constant k(T) = K0 exp(-E / R T) is fitted to the product's rheometer curing
times (the isothermal time from mixing at which the viscosity reaches its plateau, taken as the gel point alpha_gel
of the viscosity law) by ``scipy.optimize.least_squares`` on ln(time). With alpha_max = 1 the isothermal time to a
cure degree a is exactly::

    t(a, T) = I(a) / k(T),      I(a) = int_{alpha0}^{a} d(alpha) / (alpha^m (1 - alpha)^n)

A product without rheometer data keeps Li 2003's K0 and E and has no rheometry: using it for flow is an error
(:func:`vertaug.physics.rheology.require_rheometry`).

Working phase (:func:`fit_working_viscosity`): a product's published viscosity-versus-time series in its working
phase (:class:`ViscosityPoint`: time from mixing, plate temperature, shear rate, viscosity) is fitted by
``scipy.optimize.least_squares`` on ln(viscosity) with the law of :mod:`vertaug.physics.rheology`, the cure degree of
each point alpha(t, T) coming from the product's own (fitted) kinetics::

    min  sum_i ln^2( mu(alpha(t_i, T_i), T_i, gamma_i; K0_mu [, n_0] [, tau_y]) / mu_i )

K0_mu always; the flow index n_0 only where the series holds two or more shear rates, the yield stress tau_y only
where the source reports one (``fit=`` names what is fitted; everything else keeps the preset's value). The fit
prints and stores its root-mean-square ln-residual. A named cement without such a series keeps its viscosity class's
K0_mu, labelled so in its sources: no working-phase series of a named cement could be read for this version (the
sources searched are listed in docs/cement.md), so the table's ``working_viscosity`` entries are empty and the
function is exercised on synthetic series with known answers (tests/test_cements.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad
from scipy.optimize import least_squares

from vertaug.errors import ParameterError

__all__ = [
    "LI2003_ACTIVATION_J_MOL",
    "LI2003_ALPHA0",
    "LI2003_K0_1_S",
    "LI2003_M",
    "LI2003_N",
    "MMA_HEAT_J_KG",
    "NAMED_CEMENTS",
    "CementComposition",
    "KineticsFit",
    "RheometerPoint",
    "ViscosityFit",
    "ViscosityPoint",
    "cement_properties",
    "fit_cure_kinetics",
    "fit_working_viscosity",
    "named_cement_kwargs",
]

GAS_CONSTANT_J_MOL_K = 8.314462618
KELVIN = 273.15
#: heat of polymerisation of methyl methacrylate, J per kg of monomer: 54 kJ/mol over 100.12 g/mol [M] (the
#: ~540 J/g quoted for bone cement monomer; handbook values 54-58 kJ/mol)
MMA_HEAT_J_KG = 54.0e3 / 100.12e-3
#: Li 2003 kinetics (Quarini 2006 / mhogg cement_polymerisation HETVAL, [C]): the DSC-fitted exponents kept for all
LI2003_K0_1_S = 5.206e9
LI2003_ACTIVATION_J_MOL = 67891.0
LI2003_M = 1.05
LI2003_N = 1.10
LI2003_ALPHA0 = 1.0e-4
#: cure degree at which the viscosity law diverges (rheology.Cement.alpha_gel): the rheometer's curing time
ALPHA_GEL = 0.5
#: component properties at room temperature [M]: density kg/m^3, specific heat J/(kg K)
POLYMER = (1190.0, 1460.0)  # PMMA
RADIOPACIFIERS = {"BaSO4": (4500.0, 460.0), "ZrO2": (5680.0, 460.0)}
#: other powder fillers: hydroxyapatite 3160 kg/m^3 (theoretical density [V]) and 767 J/(kg K) (184.07 cal/(K mol) at
#: 298 K over 1004.6 g/mol [D] from [V])
FILLERS = {"": (1.0, 0.0), "hydroxyapatite": (3160.0, 767.0)}
#: density of the liquid monomer, for packs that give the liquid in mL: MMA 0.936 g/cm^3 at 20 C [V]
MMA_DENSITY_G_ML = 0.936


@dataclass(frozen=True)
class RheometerPoint:
    """A published rheometer time: the cement reached ``viscosity_pa_s`` at ``time_s`` after mixing, at
    ``temperature_c`` (isothermal plate)."""

    temperature_c: float
    time_s: float
    viscosity_pa_s: float
    source: str


@dataclass(frozen=True)
class ViscosityPoint:
    """A published working-phase viscosity: ``viscosity_pa_s`` at ``time_s`` after mixing, plate at
    ``temperature_c``, at ``shear_rate_1_s`` (rotational: the set rate; oscillatory: the angular frequency, by the
    Cox-Merz rule); ``source`` names the paper, its figure or table, and [V] if seen."""

    temperature_c: float
    time_s: float
    viscosity_pa_s: float
    shear_rate_1_s: float
    source: str


@dataclass(frozen=True)
class CementComposition:
    """One commercial cement pack: powder and liquid masses and what they hold, viscosity class, sources."""

    name: str
    viscosity_class: str  # "low" | "high" (the manufacturer's label)
    powder_g: float
    liquid_g: float
    monomer_fraction_of_liquid: float
    radiopacifier: str
    radiopacifier_fraction_of_powder: float
    rheometry: tuple[RheometerPoint, ...] = ()
    sources: tuple[str, ...] = ()
    working_viscosity: tuple[ViscosityPoint, ...] = ()  # empty: none read (module docstring)
    filler: str = ""  # a non-radiopaque powder filler (FILLERS), e.g. hydroxyapatite
    filler_fraction_of_powder: float = 0.0


_NICHOLAS = "Nicholas 2007 J Mater Sci Mater Med (oscillating parallel-plate rheometer) [V]"

#: What was read about each product (docs/cement.md, docs/references.md). "halved at 37 C": Nicholas 2007 reports the
#: curing rates of all three cements about halved at 37 C, i.e. the curing time at 37 C is half that at 25 C [V].
NAMED_CEMENTS: dict[str, CementComposition] = {
    "palacos r": CementComposition(
        "Palacos R", "high", powder_g=40.8, liquid_g=18.8, monomer_fraction_of_liquid=0.979,
        radiopacifier="ZrO2", radiopacifier_fraction_of_powder=0.147,
        rheometry=(RheometerPoint(25.0, 13.0 * 60, 7.5e4, _NICHOLAS),
                   RheometerPoint(37.0, 6.5 * 60, 7.5e4, _NICHOLAS + " (time halved at 37 C)")),
        sources=(("pack 40.8 g powder (33.8 g poly(MA-MMA), 6.0 g ZrO2, 0.3 g BPO) + 20 mL liquid (18.4 g MMA, "
                  "0.4 g DMPT) [M]"), "curing 13 min at 25 C, rate about halved at 37 C, plateau 7.5e4 Pa s "
                 + _NICHOLAS)),
    "cmw 1": CementComposition(
        "CMW 1", "high", powder_g=40.0, liquid_g=18.37, monomer_fraction_of_liquid=0.985,
        radiopacifier="BaSO4", radiopacifier_fraction_of_powder=0.091,
        rheometry=(RheometerPoint(25.0, 8.7 * 60, 7.5e4, _NICHOLAS),
                   RheometerPoint(37.0, 8.7 * 30, 7.5e4, _NICHOLAS + " (time halved at 37 C)")),
        sources=("pack 40 g powder (88.85 % PMMA, 9.1 % BaSO4, 2.05 % BPO) + 18.37 g liquid (98.5 % MMA) [M]",
                 "curing 8.7 min at 25 C, rate about halved at 37 C " + _NICHOLAS)),
    "kyphon hv-r": CementComposition(
        "Kyphon HV-R", "high", powder_g=20.0, liquid_g=9.0, monomer_fraction_of_liquid=0.991,
        radiopacifier="BaSO4", radiopacifier_fraction_of_powder=0.30,
        sources=(("20 g powder (68.0 % MMA-styrene copolymer, 30.0 % BaSO4, 2.0 % BPO) + 9.0 g liquid (99.1 % MMA, "
                  "0.9 % DMPT, 75 ppm HQ): Kyphon HV-R instructions for use M708348B154E Rev. F (2021) [V]"),
                 "no rheometer data of this product could be read: Li 2003 kinetics [C], no rheometry")),
    "vertecem v+": CementComposition(
        "Vertecem V+", "high", powder_g=26.0, liquid_g=10.0 * MMA_DENSITY_G_ML, monomer_fraction_of_liquid=0.9935,
        radiopacifier="ZrO2", radiopacifier_fraction_of_powder=0.40, filler="hydroxyapatite",
        filler_fraction_of_powder=0.15,
        sources=(("26 g powder (44.6 % poly(methyl methacrylate/acrylate), 40.0 % ZrO2, 15.0 % hydroxyapatite, 0.4 % "
                  "BPO) + 10 mL liquid (99.35 % MMA with 60 ppm HQ, 0.65 % DMPT): Vertecem V+ cement kit 07.702.016S "
                  "instructions for use (DePuy Synthes, Danish) [V]; liquid 10 mL x 0.936 g/mL MMA [V]"),
                 "a vertebroplasty cement sold for 'enhanced viscosity' (technique guide title [V]): the high class",
                 "no rheometer data of this product could be read: Li 2003 kinetics [C], no rheometry")),
}


def _composition(name: str) -> CementComposition:
    key = str(name).strip().lower()
    if key not in NAMED_CEMENTS:
        raise ParameterError(f"Cement {name!r} is not in the named-cement table.",
                             f"use one of {sorted(c.name for c in NAMED_CEMENTS.values())}.")
    return NAMED_CEMENTS[key]


def cement_properties(comp: CementComposition) -> dict[str, float]:
    """Monomer mass fraction, heat of polymerisation (J/kg), density (kg/m^3), specific heat (J/(kg K))."""
    total = comp.powder_g + comp.liquid_g
    w_mma = comp.liquid_g * comp.monomer_fraction_of_liquid / total
    w_rad = comp.powder_g * comp.radiopacifier_fraction_of_powder / total
    w_fil = comp.powder_g * comp.filler_fraction_of_powder / total
    rho_r, c_r = RADIOPACIFIERS[comp.radiopacifier]
    rho_f, c_f = FILLERS[comp.filler]
    rho_p, c_p = POLYMER
    w_pol = 1.0 - w_rad - w_fil
    return {
        "monomer_mass_fraction": w_mma,
        "radiopacifier_mass_fraction": w_rad,
        "filler_mass_fraction": w_fil,
        "heat_of_reaction_j_kg": w_mma * MMA_HEAT_J_KG,
        "density_kg_m3": 1.0 / (w_pol / rho_p + w_rad / rho_r + w_fil / rho_f),
        "specific_heat_j_kg_k": w_pol * c_p + w_rad * c_r + w_fil * c_f,
    }


def _cure_integral(alpha: float, m: float = LI2003_M, n: float = LI2003_N, alpha0: float = LI2003_ALPHA0) -> float:
    """I(alpha) = int_{alpha0}^{alpha} da / (a^m (1 - a)^n), by quad in u = ln a."""
    val, _ = quad(lambda u: math.exp(u * (1.0 - m)) * (1.0 - math.exp(u)) ** (-n), math.log(alpha0),
                  math.log(alpha), limit=200, epsabs=0.0, epsrel=1e-12)
    return float(val)


@dataclass(frozen=True)
class KineticsFit:
    """Rate constant fitted to rheometer curing times: K0, E, the points, model times and the residual."""

    k0_1_s: float
    activation_energy_j_mol: float
    points: tuple[RheometerPoint, ...]
    model_time_s: tuple[float, ...]
    residual_rms_log: float  # root mean square of ln(model / measured time)

    def table(self) -> str:
        rows = [f"  {p.temperature_c:5.1f} C  measured {p.time_s / 60:6.2f} min  model {t / 60:6.2f} min"
                for p, t in zip(self.points, self.model_time_s)]
        last = (f"  K0 {self.k0_1_s:.4g} 1/s, E {self.activation_energy_j_mol / 1e3:.2f} kJ/mol, "
                f"rms ln-residual {self.residual_rms_log:.2e}")
        return "\n".join([*rows, last])


def fit_cure_kinetics(points: tuple[RheometerPoint, ...], alpha_gel: float = ALPHA_GEL) -> KineticsFit:
    """Fit ln K0 and E of k(T) = K0 exp(-E/RT) so that t(alpha_gel, T_i) = I(alpha_gel) / k(T_i) matches each point."""
    if len(points) < 2 or len({p.temperature_c for p in points}) < 2:
        raise ParameterError("fit_cure_kinetics needs rheometer times at two or more temperatures.",
                             "give RheometerPoint(temperature_c, time_s, ...) at two temperatures at least.")
    integral = _cure_integral(alpha_gel)
    t_meas = np.array([p.time_s for p in points])
    inv_t = 1.0 / (np.array([p.temperature_c for p in points]) + KELVIN)

    def residual(x):  # x = (ln K0, E in 10 kJ/mol)
        ln_k = x[0] - x[1] * 1e4 / GAS_CONSTANT_J_MOL_K * inv_t
        return np.log(integral) - ln_k - np.log(t_meas)

    x0 = np.array([math.log(LI2003_K0_1_S), LI2003_ACTIVATION_J_MOL / 1e4])
    sol = least_squares(residual, x0, method="lm", xtol=1e-14, ftol=1e-14)
    k0, e = math.exp(sol.x[0]), sol.x[1] * 1e4
    model = tuple(float(integral / (k0 * math.exp(-e / (GAS_CONSTANT_J_MOL_K * (p.temperature_c + KELVIN)))))
                  for p in points)
    rms = float(np.sqrt(np.mean(sol.fun**2)))
    return KineticsFit(k0, e, tuple(points), model, rms)

#: what fit_working_viscosity may fit: the Cement field, its bounds (transformed) and its log-transform flag
_WORKING_PARAMETERS = {
    "consistency": ("consistency_pa_sn", (1e-3, 1e6), True),
    "flow_index": ("flow_index_start", (0.05, 1.0), False),
    "yield_stress": ("yield_stress_pa", (0.0, 1e5), False),
}


@dataclass(frozen=True)
class ViscosityFit:
    """Working-phase viscosity law fitted to a series: the fitted Cement fields, points, model values, residual."""

    values: dict
    points: tuple[ViscosityPoint, ...]
    alpha: tuple[float, ...]
    model_viscosity_pa_s: tuple[float, ...]
    residual_rms_log: float  # root mean square of ln(model / measured viscosity)

    def table(self) -> str:
        rows = [f"  {p.temperature_c:5.1f} C  {p.time_s / 60:6.2f} min  {p.shear_rate_1_s:7.3g} 1/s  alpha {a:.2e}  "
                f"measured {p.viscosity_pa_s:9.4g} Pa s  model {m:9.4g} Pa s"
                for p, a, m in zip(self.points, self.alpha, self.model_viscosity_pa_s)]
        fitted = ", ".join(f"{k} {v:.4g}" for k, v in self.values.items())
        return "\n".join([*rows, f"  {fitted}, rms ln-residual {self.residual_rms_log:.2e}"])


def _alpha_at(cement, time_s: float, temperature_c: float) -> float:
    """Isothermal cure degree of ``cement`` at ``time_s`` after mixing (rheology.cure_0d's last value)."""
    from vertaug.physics.rheology import cure_0d

    return float(cure_0d(cement, time_s, "isothermal", temperature_c, n_out=2, rtol=1e-10).alpha[-1])


def _check_working_points(cement, points, fit) -> tuple[float, ...]:
    unknown = set(fit) - set(_WORKING_PARAMETERS)
    if not fit or unknown:
        raise ParameterError(f"fit_working_viscosity cannot fit {sorted(unknown) or 'nothing'}.",
                             f"name one or more of {sorted(_WORKING_PARAMETERS)} in fit=.")
    if len(points) < len(fit):
        raise ParameterError(f"fit_working_viscosity got {len(points)} point(s) for {len(fit)} parameter(s).",
                             "give at least one ViscosityPoint per fitted parameter.")
    if "flow_index" in fit and len({p.shear_rate_1_s for p in points}) < 2:
        raise ParameterError("A flow index cannot be fitted from a series at one shear rate.",
                             "fit the flow index only where the series holds two or more shear rates.")
    for p in points:
        if not (p.time_s > 0 and p.viscosity_pa_s > 0 and p.shear_rate_1_s > 0):
            raise ParameterError(f"ViscosityPoint {p!r} has a time, viscosity or shear rate <= 0.",
                                 "give the time after mixing (s), the viscosity (Pa s) and the shear rate (1/s).")
    alpha = tuple(_alpha_at(cement, p.time_s, p.temperature_c) for p in points)
    late = [p for p, a in zip(points, alpha) if a >= cement.alpha_gel]
    if late:
        raise ParameterError(f"{len(late)} point(s) lie at or past the gel point of {cement.name!r} "
                             f"(first at {late[0].time_s / 60:.2f} min, {late[0].temperature_c} C).",
                             "fit the working phase only: points before the rheometer curing time.")
    return alpha


def fit_working_viscosity(cement, points: tuple[ViscosityPoint, ...],
                          fit: tuple[str, ...] = ("consistency",)) -> ViscosityFit:
    """Fit the working-phase viscosity law of ``cement`` (a rheology.Cement: its kinetics give alpha(t, T)) to
    ``points`` by least squares on ln(viscosity); ``fit`` names the fitted fields (module docstring)."""
    from dataclasses import replace

    from vertaug.physics.rheology import viscosity_pa_s

    points = tuple(points)
    alpha = np.array(_check_working_points(cement, points, fit))
    fields = [_WORKING_PARAMETERS[k] for k in fit]
    t_k = np.array([p.temperature_c for p in points]) + KELVIN
    gamma = np.array([p.shear_rate_1_s for p in points])
    ln_mu = np.log([p.viscosity_pa_s for p in points])

    def model(x):
        kw = {f: (math.exp(v) if log else v) for (f, _, log), v in zip(fields, x)}
        return viscosity_pa_s(replace(cement, **kw), alpha, t_k, gamma), kw

    def residual(x):
        return np.log(model(x)[0]) - ln_mu

    bounds = [(b[0], min(b[1], cement.viscosity_max_pa_s)) if f == "consistency_pa_sn" else b for f, b, _ in fields]
    lo = [math.log(b[0]) if log else b[0] for (_, _, log), b in zip(fields, bounds)]
    hi = [math.log(b[1]) if log else b[1] for (_, _, log), b in zip(fields, bounds)]
    x0 = [math.log(getattr(cement, f)) if log else min(max(getattr(cement, f), b[0]), b[1])
          for f, b, log in fields]
    sol = least_squares(residual, np.clip(x0, lo, hi), bounds=(lo, hi), method="trf", xtol=1e-15, ftol=1e-15,
                        gtol=1e-15, x_scale="jac")
    mu, kw = model(sol.x)
    rms = float(np.sqrt(np.mean(sol.fun**2)))
    return ViscosityFit(kw, points, tuple(float(a) for a in alpha), tuple(float(m) for m in mu), rms)


def named_cement_kwargs(name: str) -> dict:
    """The :class:`vertaug.physics.rheology.Cement` keyword arguments of the named cement ``name``."""
    comp = _composition(name)
    props = cement_properties(comp)
    kw = {
        "name": comp.name, "kinetics": "Li 2003 exponents", "k0_1_s": LI2003_K0_1_S,
        "activation_energy_j_mol": LI2003_ACTIVATION_J_MOL, "exponent_m": LI2003_M, "exponent_n": LI2003_N,
        "tg_k": None, "alpha0": LI2003_ALPHA0, "alpha_gel": ALPHA_GEL,
        "heat_of_reaction_j_kg": props["heat_of_reaction_j_kg"], "density_kg_m3": props["density_kg_m3"],
        "specific_heat_j_kg_k": props["specific_heat_j_kg_k"], "rheometry": comp.rheometry,
        "has_rheometry": bool(comp.rheometry),
        "sources": (*comp.sources, (f"H = {props['monomer_mass_fraction']:.3f} x 539 J/g MMA [M]; rho, c by mixture "
                                    f"of PMMA and {comp.radiopacifier} [M]")),
    }
    if comp.rheometry:
        fit = fit_cure_kinetics(comp.rheometry)
        kw.update(kinetics="Li 2003 exponents, K0 and E fitted to rheometer curing times",
                  k0_1_s=fit.k0_1_s, activation_energy_j_mol=fit.activation_energy_j_mol,
                  rheometry_fit_rms_log=fit.residual_rms_log)
    return kw
