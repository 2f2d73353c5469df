"""The exotherm's step control (procedures/exotherm.py: MAX_CHANGE_C, MAX_CURE_CHANGE, DT_MAX_S, coarsened in issue 26)
against a fine fixed-step reference: the fewer, larger steps keep the peak and the necrosis volume within the stated
tolerance (1 C, 5 %), as the earlier, finer control (1 C, 0.02, 10 s) did, in fewer steps.

Measured 2026-12-01 on this sphere (Palacos R, 1.5 mm voxels): reference 720 steps, peak 142.540 C, necrosis 0.7938
mL; 1 C / 0.02 / 10 s: 168 steps, 142.003 C (-0.54); 2 C / 0.05 / 20 s: 113 steps, 143.000 C (+0.46); necrosis
equal to 4 digits in all three."""

from __future__ import annotations

import numpy as np
import pytest

from vertaug.physics import rheology, thermal
from vertaug.procedures import exotherm

#: Tolerance of the coarser control against the fine reference (the module docstring's measurements).
PEAK_TOL_C = 1.0
NECROSIS_TOL_REL = 0.05


def _sphere(n=20, h_mm=1.5, radius_mm=7.0):
    x = (np.arange(n) - n / 2 + 0.5) * h_mm
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    labels = np.ones((n, n, n), np.uint8)  # trabecular bone
    return labels, (h_mm * 1e-3,) * 3, (np.sqrt(xx**2 + yy**2 + zz**2) <= radius_mm).astype(float)


def _run(labels, h, cement, **steps):
    return thermal.simulate_exotherm(labels, h, cement, exotherm.DURATION_S, theta=exotherm.THETA,
                                     cement=rheology.cement_preset("high"), solver_rtol=exotherm.SOLVER_RTOL, **steps)


def test_coarser_step_control_agrees_with_the_fine_reference():
    labels, h, cement = _sphere()
    ref = _run(labels, h, cement, dt_s=1.25)  # fixed steps: 720
    old = _run(labels, h, cement, dt_s=exotherm.DT_S, dt_max_s=10.0, max_change_c=1.0, max_cure_change=0.02)
    new = _run(labels, h, cement, dt_s=exotherm.DT_S, dt_max_s=exotherm.DT_MAX_S, max_change_c=exotherm.MAX_CHANGE_C,
               max_cure_change=exotherm.MAX_CURE_CHANGE)
    for name, r in (("reference 1.25 s", ref), ("1 C / 0.02 / 10 s", old), ("default", new)):
        print(f"{name}: {len(r.t_s) - 1} steps, peak {r.cement_peak_c:.3f} C, necrosis {r.necrosis_volume_ml:.4f} mL, "
              f"energy balance {r.energy_balance_error_rel:.1e}")
    assert len(new.t_s) - 1 < 0.8 * (len(old.t_s) - 1)  # fewer steps, or the change buys nothing
    for r in (old, new):
        assert abs(r.cement_peak_c - ref.cement_peak_c) < PEAK_TOL_C
        assert r.necrosis_volume_ml == pytest.approx(ref.necrosis_volume_ml, rel=NECROSIS_TOL_REL)
        assert r.energy_balance_error_rel < thermal.ENERGY_TOL_REL
    assert np.abs(new.max_temperature_c - ref.max_temperature_c).max() < 5.0
    assert new.t_s[-1] == pytest.approx(exotherm.DURATION_S, abs=1e-9)
    assert set(np.round(np.diff(new.t_s)[:-1], 9)) <= {2.5, 5.0, 10.0, 20.0}
