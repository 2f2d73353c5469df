"""The bone-marrow-cement mixture of the heat equation (physics/thermal.mix_properties), by hand on single voxels."""

import numpy as np
import pytest

from vertaug.errors import InvalidValueError
from vertaug.model.labels import CANAL, CORTEX, TRABECULAR
from vertaug.physics import rheology, thermal

TAB = thermal.LABEL_THERMAL
CEM = rheology.cement_preset("high")


def _mix(label, s, p=None):
    lab = np.full((1, 1, 1), label, dtype=np.uint8)
    pore = None if p is None else np.full(lab.shape, p)
    return [float(np.ravel(x)[0]) for x in thermal.mix_properties(lab, np.full(lab.shape, s), CEM, pore_fraction=pore)]


def test_without_cement_at_the_table_porosity_the_bulk_values_hold():
    k, rc, perf, phi_c = _mix(TRABECULAR, 0.0)
    t = TAB[TRABECULAR]
    assert (k, rc, phi_c) == (pytest.approx(t.conductivity_w_m_k), pytest.approx(t.rho_c_j_m3k), 0.0)
    assert perf == pytest.approx(t.perfusion_1_s * thermal.BLOOD_RHO_C_J_M3K)


def test_cement_displaces_marrow_and_the_bone_matrix_stays():
    t, b = TAB[TRABECULAR], TAB[CORTEX]
    p_l = t.pore_fraction
    k_marrow = (t.conductivity_w_m_k - (1 - p_l) * b.conductivity_w_m_k) / p_l
    for p, s in ((0.8, 1.0), (0.95, 0.5), (0.6, 0.0)):
        k, rc, perf, phi_c = _mix(TRABECULAR, s, p)
        assert phi_c == pytest.approx(p * s)
        assert k == pytest.approx((1 - p) * b.conductivity_w_m_k + p * (1 - s) * k_marrow
                                  + p * s * CEM.conductivity_w_m_k, rel=1e-12)
        rc_marrow = (t.rho_c_j_m3k - (1 - p_l) * b.rho_c_j_m3k) / p_l
        assert rc == pytest.approx((1 - p) * b.rho_c_j_m3k + p * (1 - s) * rc_marrow
                                   + p * s * CEM.volumetric_heat_capacity_j_m3k, rel=1e-12)
        # perfusion is carried by the marrow left: none in a voxel whose pores are full of cement
        assert perf == pytest.approx(t.perfusion_1_s * p * (1 - s) / p_l * thermal.BLOOD_RHO_C_J_M3K)
    # an open label is replaced by cement whatever porosity is passed (it applies to porous bone only)
    k, rc, _, phi_c = _mix(CANAL, 0.5, 0.3)
    assert phi_c == 0.5 and k == pytest.approx(0.5 * TAB[CANAL].conductivity_w_m_k + 0.5 * CEM.conductivity_w_m_k)


def test_bad_porosity_is_a_one_line_error():
    lab = np.full((2, 2, 2), TRABECULAR, dtype=np.uint8)
    with pytest.raises(InvalidValueError, match="pore_fraction") as err:
        thermal.mix_properties(lab, np.zeros(lab.shape), CEM, pore_fraction=np.full((2, 2, 1), 0.9))
    assert "\n" not in str(err.value)
