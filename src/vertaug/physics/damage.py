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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertaug.constants import KELVIN

__all__ = [
    "ARRHENIUS_A_1_S",
    "ARRHENIUS_B_K",
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
        a, b = t0[hot], t1[hot]
        span = np.abs(b - a)
        moving = span > 0.0
        f = np.ones(hot.size)
        f[moving] = np.minimum((top[hot][moving] - thr) / span[moving], 1.0)
        out[hot] = f
    return out


@dataclass
class DamageState:
    """Running per-voxel damage accumulators (mutable: updated in place every step, flat arrays)."""

    omega: np.ndarray
    cem43_min: np.ndarray
    time_above_50c_s: np.ndarray
    peak_temperature_c: np.ndarray
    _log_rate_prev: np.ndarray
    _log_cem_prev: np.ndarray

    @classmethod
    def start(cls, temperature_c: np.ndarray) -> DamageState:
        t = np.asarray(temperature_c, dtype=float)
        z = np.zeros_like(t)
        return cls(z.copy(), z.copy(), z.copy(), t.copy(), _log_arrhenius(t), _log_cem43(t))

    def step(self, t_old_c: np.ndarray, t_new_c: np.ndarray, dt_s: float) -> None:
        log_rate = _log_arrhenius(t_new_c)
        log_cem = _log_cem43(t_new_c)
        self.omega += _log_mean_step(self._log_rate_prev, log_rate, dt_s)
        self.cem43_min += _log_mean_step(self._log_cem_prev, log_cem, dt_s)
        self.time_above_50c_s += dt_s * _fraction_above(t_old_c, t_new_c, THRESHOLD_50_C)
        np.maximum(self.peak_temperature_c, t_new_c, out=self.peak_temperature_c)
        self._log_rate_prev, self._log_cem_prev = log_rate, log_cem
