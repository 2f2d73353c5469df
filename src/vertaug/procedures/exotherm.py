"""The cement exotherm after a procedure: temperatures and thermal damage on the treated model.

The injected cement (``Outcome.cement_fraction``: cement volume per voxel volume) is converted to the thermal model's
fraction of pore space, ``S = min(1, f / p)``, with p the treated model's porosity (``Vertebra.phi``) in porous bone and
the label's pore fraction of :data:`vertaug.physics.thermal.LABEL_THERMAL` elsewhere; clipped volume is reported. Each
voxel is then a mixture of bone matrix, marrow and cement (:func:`vertaug.physics.thermal.mix_properties`). The domain is cropped to the body's bounding
box plus ``MARGIN_MM`` (the far-field boundary at 37 C sits there). The cement is placed at its syringe temperature
(the plan's ``syringe_temperature_c``, 23 C) with the cure it reached at that temperature by the end of the injection
(start time + injection time; the last minute or two in the bone at 37 C is not counted), and the heat equation
with the cure source and Pennes perfusion is integrated for ``duration_s`` (Crank-Nicolson, adaptive steps ``DT_S``..``DT_MAX_S``;
physics/thermal.py).

Peaks can exceed the adiabatic rise of the cement from body temperature (37 + H/c: 108 C for the generic "low"
preset, 159 C for Palacos R = "high"): the rim cures first and preheats the uncured core, which then releases its own
heat (cement does not diffuse: a "superadiabatic" front). The unreacted monomer boils where its partial pressure
over the cement reaches 1 atm (physics/monomer.py: dissolved in the polymer, above 111 C for Palacos R and rising as
the monomer is used up); in the demo's KP core it does not boil (docs/cement.md 7c).
``ExothermMetrics.peak_time_after_mixing_min`` is when the hottest cement temperature is reached, counted from mixing
(placement age + time after placement).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..constants import BODY_TEMPERATURE_C, ROOM_TEMPERATURE_C
from ..model.labels import CORTEX, ENDPLATE
from ..physics import rheology, thermal

__all__ = ["ExothermMetrics", "ExothermSummary", "exotherm_after"]

#: Margin (mm) of tissue kept around the body for the thermal domain.
MARGIN_MM = 10.0
DURATION_S = 900.0
#: Time steps and scheme: Crank-Nicolson, adaptive from DT_S to DT_MAX_S (each step the largest power-of-two multiple of
#: DT_S whose predicted largest change, from the last step's rates, stays below MAX_CHANGE_C and MAX_CURE_CHANGE in
#: cure degree), linear solves to a relative residual of SOLVER_RTOL. Measured 2026-11-24 with the earlier control
#: (1 C, 0.02, 10 s) on a 9 mm-radius sphere of cement in trabecular bone (1 mm voxels, 900 s): peak 97.49 C in 159
#: steps vs 97.53 C with fixed 2.5 s steps (360) and 97.54 C with 0.5 s backward Euler (1800); necrosis 0.287 vs 0.292
#: mL. The control was coarsened to 2 C, 0.05, 20 s (issue 26; 2026-12-01, the demo's fractured L1 at 1 mm, against
#: a fixed 1.25 s reference of 720 steps; CPU s, peak C, necrosis mL, the largest change of the max-temperature map):
#:
#:     VP ("low"):  reference 720 steps 11.0 s, 83.70 C, 0.1097 mL
#:                  1 C / 0.02 / 10 s: 158 steps 4.11 s, 83.59 (-0.11), 0.1056 (-0.0042), 0.53 C
#:                  2 C / 0.05 / 20 s:  95 steps 3.18 s, 84.05 (+0.35), 0.1047 (-0.0050), 0.60 C
#:     KP ("high"): reference 720 steps 12.9 s, 173.45 C, 2.7221 mL
#:                  1 C / 0.02 / 10 s: 188 steps 5.53 s, 173.04 (-0.40), 2.7033 (-0.0189), 5.80 C
#:                  2 C / 0.05 / 20 s: 128 steps 4.61 s, 173.63 (+0.18), 2.6993 (-0.0228), 5.72 C
#:
#: i.e. the coarser control stays within 0.5 C of the reference peak and 5 % of its necrosis, as the finer one did
#: (tests/test_exotherm_steps.py checks 1 C and 5 % against a fine fixed-step run on a cement sphere, where both
#: controls miss the peak by 0.5 C, in opposite directions); the rest of the CPU time per step is
#: the cure's RK4 sub-steps (physics/thermal.py), whose number followed the cure rate, not the step size (since
#: issue 25 the cure step is the exact isothermal solution, one table look-up per voxel:
#: rheology.advance_cure_isothermal).
DT_S = 2.5
DT_MAX_S = 20.0
MAX_CHANGE_C = 2.0
MAX_CURE_CHANGE = 0.05
SOLVER_RTOL = 1e-10
THETA = 0.5


@dataclass(frozen=True)
class ExothermMetrics:
    """Peaks, exposure and damage of one exotherm (C, s, mL; the energy balance error is relative)."""

    peak_temperature_c: float
    peak_temperature_endplate_c: float
    peak_temperature_canal_c: float
    time_above_50c_canal_s: float
    necrosis_volume_ml: float
    thermal_energy_balance_error: float
    set_time_min: float
    peak_time_after_mixing_min: float = float("nan")  # when the cement peak occurs, min from mixing

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class ExothermSummary:
    metrics: ExothermMetrics
    max_temperature_c: np.ndarray  # on the full model grid (37 C outside the thermal domain)
    omega: np.ndarray
    t_s: np.ndarray
    probe_temperature_c: dict
    notes: tuple[str, ...]


def _probes(labels: np.ndarray, cement: np.ndarray) -> dict:
    probes = {}
    if (cement > 0).any():
        w = np.argwhere(cement == cement.max())
        probes["cement core"] = tuple(int(v) for v in w[len(w) // 2])
    canal = thermal.canal_wall_mask(labels)
    if canal.any():
        probes["canal wall"] = canal
    cortex = labels == CORTEX
    if cortex.any():
        probes["cortex"] = cortex
    return probes


def exotherm_after(outcome, duration_s: float = DURATION_S, dt_s: float = DT_S, dt_max_s: float | None = DT_MAX_S,
                   max_change_c: float = MAX_CHANGE_C, max_cure_change: float = MAX_CURE_CHANGE) -> ExothermSummary:
    """Run the exotherm for a procedure ``Outcome`` (its ``model_after`` and ``cement_fraction``); ``dt_max_s`` None:
    fixed steps of ``dt_s``; else adaptive steps with the limits ``max_change_c`` (C) and ``max_cure_change``."""
    model = outcome.model_after
    labels = np.asarray(model.labels)
    f = np.asarray(outcome.cement_fraction, dtype=float)
    pore_l = np.array([thermal.LABEL_THERMAL[i].pore_fraction if i in thermal.LABEL_THERMAL else 0.0
                       for i in range(256)])[labels]
    porosity = np.asarray(model.phi, dtype=float)
    pore = np.where((pore_l > 0) & (pore_l < 1), np.clip(porosity, 1e-3, 1.0), pore_l)
    sat = np.zeros_like(f)
    ok = pore > 0
    sat[ok] = np.minimum(1.0, f[ok] / pore[ok])
    placed = float((sat * pore).sum())
    total = float(f.sum())
    notes = []
    if total > 0 and placed < 0.999 * total:
        notes.append(f"{100 * (1 - placed / total):.1f} % of the cement volume fell in voxels without pore space in "
                     "the thermal table and was not placed")
    s_mm = model.spacing_m[0] * 1e3
    pad = int(np.ceil(MARGIN_MM / s_mm))
    body = np.asarray(model.body_mask) | (sat > 0)
    idx = np.argwhere(body)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, labels.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    lab_c, sat_c = labels[box].astype(np.uint8), sat[box]
    cement = rheology.cement_preset(outcome.inputs.get("cement", "low"))
    age = float(outcome.inputs.get("start_time_s", 0.0)) + float(outcome.metrics.get("injection_time_s", 0.0))
    syringe_c = float(outcome.inputs.get("syringe_temperature_c", ROOM_TEMPERATURE_C))
    res = thermal.simulate_exotherm(lab_c, model.spacing_m, sat_c, duration_s, dt_s=dt_s, cement=cement,
                                    cement_temperature_c=syringe_c,
                                    probes=_probes(lab_c, sat_c), age_at_placement_s=age, theta=THETA,
                                    dt_max_s=dt_max_s if dt_max_s is None else max(dt_max_s, dt_s),
                                    max_change_c=max_change_c, max_cure_change=max_cure_change,
                                    solver_rtol=SOLVER_RTOL, pore_fraction=np.clip(porosity[box], 0.0, 1.0))
    tmax = np.full(labels.shape, thermal.BODY_C, dtype=np.float32)
    tmax[box] = res.max_temperature_c
    omega = np.zeros(labels.shape, dtype=np.float32)
    omega[box] = res.omega
    endplate = res.peak_by_label_c.get(ENDPLATE, float("nan"))
    metrics = ExothermMetrics(
        peak_temperature_c=float(res.cement_peak_c),
        peak_temperature_endplate_c=float(endplate),
        peak_temperature_canal_c=float(res.canal_wall_peak_c),
        time_above_50c_canal_s=float(res.canal_wall_time_above_50c_s),
        necrosis_volume_ml=float(res.necrosis_volume_ml),
        thermal_energy_balance_error=float(res.energy_balance_error_rel),
        set_time_min=rheology.set_time_s(cement, BODY_TEMPERATURE_C) / 60.0,
        peak_time_after_mixing_min=(age + float(res.cement_peak_time_s)) / 60.0,
    )
    return ExothermSummary(metrics, tmax, omega, res.t_s, dict(res.probe_temperature_c), tuple(notes) + tuple(res.notes))
