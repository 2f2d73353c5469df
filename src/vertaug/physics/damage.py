"""Thermal damage of tissue from a temperature history.

Arrhenius damage integral (Henriques-Moritz; parameters of Quarini 2006 via mhogg/cement_polymerisation)::

    Omega(x) = int A exp(-B / T(x, t)) dt,    A = 1e98 1/s,  B = 7.5e4 K;   necrosis where Omega >= 1

CEM43 (Sapareto and Dewey 1984), cumulative equivalent minutes at 43 C::

    CEM43(x) = sum_steps (dt / 60 s) R^(43 - T_C),   R = 0.5 for T_C >= 43, 0.25 below

Time above 50 C (Lundskog's threshold): sum of dt where T > 50 C. Each increment uses the trapezoidal rule on the step
end temperatures (Omega, CEM43) and the fraction of the step spent above the threshold under linear interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
KELVIN = 273.15
_LN_A = float(np.log(ARRHENIUS_A_1_S))


def arrhenius_rate_1_s(temperature_c):
    """dOmega/dt = A exp(-B/T) in 1/s (computed in log space: A alone overflows nothing, but stays exact)."""
    t_k = np.asarray(temperature_c, dtype=float) + KELVIN
    return np.exp(_LN_A - ARRHENIUS_B_K / t_k)


def cem43_rate_min_s(temperature_c):
    """dCEM43/dt in equivalent minutes per second."""
    t = np.asarray(temperature_c, dtype=float)
    r = np.where(t >= 43.0, 0.5, 0.25)
    return r ** (43.0 - t) / 60.0


def time_to_omega_one_s(temperature_c: float) -> float:
    """Exposure time at a constant temperature that gives Omega = 1."""
    return float(1.0 / arrhenius_rate_1_s(temperature_c))


def _fraction_above(t0, t1, thr):
    """Fraction of a step with linear T from t0 to t1 spent above ``thr``."""
    both = (t0 > thr) & (t1 > thr)
    cross = (t0 > thr) != (t1 > thr)
    denom = np.where(cross, t1 - t0, 1.0)
    f_cross = np.where(t1 > t0, (t1 - thr) / denom, (t0 - thr) / -denom)
    return np.where(both, 1.0, np.where(cross, np.clip(f_cross, 0.0, 1.0), 0.0))


@dataclass
class DamageState:
    """Running per-voxel damage accumulators (mutable: updated in place every step, flat arrays)."""

    omega: np.ndarray
    cem43_min: np.ndarray
    time_above_50c_s: np.ndarray
    peak_temperature_c: np.ndarray
    _rate_prev: np.ndarray
    _cem_prev: np.ndarray

    @classmethod
    def start(cls, temperature_c: np.ndarray) -> DamageState:
        t = np.asarray(temperature_c, dtype=float)
        z = np.zeros_like(t)
        return cls(z.copy(), z.copy(), z.copy(), t.copy(), arrhenius_rate_1_s(t), cem43_rate_min_s(t))

    def step(self, t_old_c: np.ndarray, t_new_c: np.ndarray, dt_s: float) -> None:
        rate = arrhenius_rate_1_s(t_new_c)
        cem = cem43_rate_min_s(t_new_c)
        self.omega += 0.5 * dt_s * (self._rate_prev + rate)
        self.cem43_min += 0.5 * dt_s * (self._cem_prev + cem)
        self.time_above_50c_s += dt_s * _fraction_above(t_old_c, t_new_c, THRESHOLD_50_C)
        np.maximum(self.peak_temperature_c, t_new_c, out=self.peak_temperature_c)
        self._rate_prev, self._cem_prev = rate, cem
