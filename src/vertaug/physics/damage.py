"""Thermal damage of tissue from a temperature history.

Arrhenius damage integral (Henriques-Moritz; parameters of Quarini 2006 via mhogg/cement_polymerisation)::

    Omega(x) = int A exp(-B / T(x, t)) dt,    A = 1e98 1/s,  B = 7.5e4 K;   necrosis where Omega >= 1

CEM43 (Sapareto and Dewey 1984), cumulative equivalent minutes at 43 C::

    CEM43(x) = sum_steps (dt / 60 s) R^(43 - T_C),   R = 0.5 for T_C >= 43, 0.25 below

Time above 50 C (Lundskog's threshold): sum of dt where T > 50 C. Each increment integrates the rate exactly when its
logarithm varies linearly over the step (the logarithmic mean of the end rates, dt (r1 - r0) / ln(r1 / r0); equal to
the trapezoidal rule for constant T, and exact for CEM43 while T varies linearly on one side of 43 C, close to exact for
Omega since B / T is nearly linear in T over a step): the rates change by a factor ~1.8 per degree near 75 C, where the
trapezoidal rule on adaptive steps of ~1 C overestimates. The time above a threshold is the fraction of the step spent
above it under linear interpolation.

Floor: Omega and CEM43 are booked only in voxels whose step reaches above ``DAMAGE_FLOOR_C`` = 39 C (max of the
step's end temperatures); a voxel below it all step keeps its damage. Both rates rise with T, so what this leaves out is
bounded by their values at 39 C: dOmega/dt <= A exp(-B / 312.15 K) = 4.5e-7 1/s, dCEM43/dt <= 0.25^(43 - 39) = 0.0039
equivalent minutes per minute; over the procedures' 900 s exotherm (procedures/exotherm.py) at most 4.04e-4 of Omega
(necrosis at 1) and 0.0586 min of CEM43 (15 min x 0.25^4) per voxel (tests/test_thermal.py computes both). In the
demo's runs at 1 mm only 4 % (VP) and 12 % (KP) of the voxels pass 39 C, so the floor skips the logarithms and
exponentials of the other 88-96 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertaug.constants import KELVIN

__all__ = [
    "ARRHENIUS_A_1_S",
    "ARRHENIUS_B_K",
    "DAMAGE_FLOOR_C",
    "NECROSIS_OMEGA",
    "DamageState",
    "arrhenius_rate_1_s",
    "cem43_rate_min_s",
    "time_to_omega_one_s",
]

ARRHENIUS_A_1_S = 1.0e98
ARRHENIUS_B_K = 7.5e4
NECROSIS_OMEGA = 1.0
THRESHOLD_50_C = 50.0
DAMAGE_FLOOR_C = 39.0  # Omega and CEM43 are booked where a step reaches above this (module docstring: the bound)
_LN_A = float(np.log(ARRHENIUS_A_1_S))
_LN_HALF, _LN_QUARTER, _LN_60 = float(np.log(0.5)), float(np.log(0.25)), float(np.log(60.0))


def _log_arrhenius(temperature_c):
    return _LN_A - ARRHENIUS_B_K / (np.asarray(temperature_c, dtype=float) + KELVIN)


def _log_cem43(temperature_c):
    t = np.asarray(temperature_c, dtype=float)
    return np.where(t >= 43.0, _LN_HALF, _LN_QUARTER) * (43.0 - t) - _LN_60


def arrhenius_rate_1_s(temperature_c):
    """dOmega/dt = A exp(-B/T) in 1/s (computed in log space: A alone overflows nothing, but stays exact)."""
    return np.exp(_log_arrhenius(temperature_c))


def cem43_rate_min_s(temperature_c):
    """dCEM43/dt in equivalent minutes per second."""
    return np.exp(_log_cem43(temperature_c))


def _log_mean_step(log_r0, log_r1, dt_s):
    """int_0^dt exp(log_r0 + (log_r1 - log_r0) s / dt) ds = dt exp(log_r0) expm1(d) / d, d = log_r1 - log_r0."""
    d = np.subtract(log_r1, log_r0)
    small = np.abs(d) < 1e-8
    factor = np.expm1(d)
    np.divide(factor, d, out=factor, where=~small)
    factor[small] = 1.0 + 0.5 * d[small]
    out = np.exp(log_r0)
    out *= dt_s
    out *= factor
    return out


def time_to_omega_one_s(temperature_c: float) -> float:
    """Exposure time at a constant temperature that gives Omega = 1."""
    return float(1.0 / arrhenius_rate_1_s(temperature_c))


def _fraction_above(t0, t1, thr):
    """Fraction of a step with linear T from t0 to t1 spent above ``thr``: (max - thr) / |t1 - t0| clipped to 0..1
    (1 or 0 for a constant T), evaluated only where the step reaches above ``thr``."""
    out = np.zeros(np.shape(t0))
    top = np.maximum(t0, t1)
    hot = np.flatnonzero(top > thr)
    if hot.size:
        out[hot] = _fraction_above_where_hot(t0[hot], t1[hot], top[hot], thr)
    return out


def _fraction_above_where_hot(a, b, top, thr):
    """:func:`_fraction_above` on steps whose top ``top`` = max(a, b) is above ``thr``."""
    span = np.abs(b - a)
    moving = span > 0.0
    f = np.ones(a.size)
    f[moving] = np.minimum((top[moving] - thr) / span[moving], 1.0)
    return f


@dataclass
class DamageState:
    """Running per-voxel damage accumulators (mutable: updated in place every step, flat arrays). ``floor_c``: Omega
    and CEM43 are booked where a step's end temperatures reach above it (module docstring; -inf books every voxel)."""

    omega: np.ndarray
    cem43_min: np.ndarray
    time_above_50c_s: np.ndarray
    peak_temperature_c: np.ndarray
    floor_c: float = DAMAGE_FLOOR_C

    @classmethod
    def start(cls, temperature_c: np.ndarray, floor_c: float = DAMAGE_FLOOR_C) -> DamageState:
        t = np.asarray(temperature_c, dtype=float)
        z = np.zeros_like(t)
        return cls(z.copy(), z.copy(), z.copy(), t.copy(), floor_c)

    def step(self, t_old_c: np.ndarray, t_new_c: np.ndarray, dt_s: float) -> None:
        """Book one step with T linear from ``t_old_c`` (the previous step's ``t_new_c``) to ``t_new_c``."""
        top = np.maximum(t_old_c, t_new_c)
        hot = np.flatnonzero(top > self.floor_c)
        np.maximum(self.peak_temperature_c, t_new_c, out=self.peak_temperature_c)
        if not hot.size:
            return
        t0, t1, top = t_old_c[hot], t_new_c[hot], top[hot]
        self.omega[hot] += _log_mean_step(_log_arrhenius(t0), _log_arrhenius(t1), dt_s)
        self.cem43_min[hot] += _log_mean_step(_log_cem43(t0), _log_cem43(t1), dt_s)
        above = np.flatnonzero(top > THRESHOLD_50_C)
        if above.size:
            self.time_above_50c_s[hot[above]] += dt_s * _fraction_above_where_hot(t0[above], t1[above], top[above],
                                                                                THRESHOLD_50_C)
