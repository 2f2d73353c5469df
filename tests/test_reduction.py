"""Fracture reduction: the force balance of a rigid fragment on a spring, the fragment's resistance by mobility,
postural reduction by elastic unloading, and the vertebroplasty's hydraulic lift."""

import numpy as np
import pytest

from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import ParameterError
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.physics import reduction as rd


@pytest.fixture(scope="module")
def wedge():
    return vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, spacing_mm=2.0))


def test_rigid_fragment_on_a_spring_under_a_pressure():
    """A plate of area A under pressure p, resistance R, spring K, gap g: lift = clip((p A - R) / K, 0, g)."""
    a_m2, r_n, k = 4e-4, 100.0, 2e5  # 400 mm2, 100 N, 0.2 N/mm
    for p in (1e5, 2.5e5, 3e5, 5e5, 1e6):
        exact = min(max((p * a_m2 - r_n) / k, 0.0), 2e-3)
        assert rd.lift_m(p * a_m2, r_n, k, 2e-3) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert rd.lift_m(2.5e5 * a_m2, r_n, k, 2e-3) == 0.0  # p A = R: in equilibrium, no lift
    assert rd.lift_m(5e5 * a_m2, r_n, k, 2e-3) == pytest.approx(5e-4)  # (200 - 100) N / 0.2 N/mm = 0.5 mm
    assert rd.lift_m(2e6 * a_m2, r_n, k, 2e-3) == 2e-3  # (800 - 100) / 0.2 = 3.5 mm > gap: stops at the intact plane: no over-correction
    assert rd.lift_m(5e5 * a_m2, r_n, 0.0, 2e-3) == 2e-3  # a free fragment rises to the intact plane


def test_resistance_by_mobility(wedge):
    dep = rd.fragment_of(wedge, True)
    assert dep.max() > 0
    acute, _ = rd.fragment_resistance_n(wedge, dep, "acute", 100.0)
    assert acute == 100.0
    chronic, why = rd.fragment_resistance_n(wedge, dep, "chronic", 100.0)
    # the phantom has no zone map: the bridging bone is the fragment's footprint at the phantom's uniform yield
    sy = float(np.median(wedge.yield_pa[wedge.labels == 1]))
    h = wedge.spacing_m[0]
    n_cols = ((dep > 0) & (wedge.labels == 1).any(axis=2)).sum()  # columns with bone across the line
    exact = 100.0 + 83.0 / 134.0 * sy * n_cols * h * h
    assert chronic == pytest.approx(exact, rel=1e-6)
    assert chronic > 5 * acute and "bridging" in why
    with pytest.raises(ParameterError, match="fracture mobility"):
        rd.fragment_resistance_n(wedge, dep, "healing", 100.0)


def test_postural_reduction_is_elastic_unloading(wedge):
    """Uniform columns in series: K = sum E A / H; lift = (0.50 - 0.11 MPa) x endplate area / K."""
    dep = rd.fragment_of(wedge, True)
    area = rd.endplate_area_m2(wedge)
    r = rd.postural_reduction(wedge, dep, area)
    k = rd._support_stiffness_n_per_m(wedge, dep > 0)
    assert r.lift_m == pytest.approx(0.39e6 * area / k, rel=1e-12)
    assert r.lift_m < wedge.spacing_m[2] and r.lift_vox == 0  # tens of micrometres: below one voxel


def test_lift_labels_raises_the_fragment(wedge):
    from vertaug.model.heights import height_change

    dep = rd.fragment_of(wedge, True)
    lab = rd.lift_labels(wedge, dep, 2)
    hc = height_change(wedge, lab)
    assert hc.restored_mm == pytest.approx(4.0, abs=0.5)  # two 2 mm voxels at the anterior measurement
    # the posterior wall does not move; its height, measured with CT endplates along lines placed about the body's
    # centroid (which the lift moves), reads 25.69 -> 25.08 mm: within half a 2 mm voxel
    assert hc.after.posterior_mm == pytest.approx(hc.before.posterior_mm, abs=1.0)
    full = height_change(wedge, rd.lift_labels(wedge, dep, 100))
    assert full.after.anterior_mm <= full.before.posterior_mm + 1e-9  # never above the intact plane


@pytest.mark.parametrize("kind", ["wedge", "biconcave", "crush"])
def test_fragment_depression_follows_the_genant_reference(kind):
    """The fragment's depression is the height lost, measured the one way, spread with the type's shape: lifting it
    fully gives back the reference height (posterior for wedge, the neighbours' for crush; the superior half of the
    dish for biconcave: the inferior endplate is not lifted), within one 2 mm voxel, and never moves the posterior
    wall of a wedge."""
    from vertaug.model.heights import height_change

    v = vertebra_from_phantom(make_phantom(fracture=kind, grade=2, spacing_mm=2.0))
    dep, ref_mm, note = rd.fragment_depression(v)
    assert kind in note and dep.max() > 0
    full = height_change(v, rd.lift_labels(v, dep, 100))
    b, a = full.before, full.after
    if kind == "wedge":
        assert ref_mm == pytest.approx(b.posterior_mm)
        # posterior 25.69 -> 24.81 mm with CT endplates (the wall does not move; the lines follow the centroid)
        assert a.anterior_mm == pytest.approx(b.posterior_mm, abs=2.0)
        assert a.posterior_mm == pytest.approx(b.posterior_mm, abs=1.0)
    elif kind == "biconcave":
        assert a.middle_mm - b.middle_mm == pytest.approx(0.5 * (b.posterior_mm - b.middle_mm), abs=2.0)
    else:
        m = v.morphometry
        assert ref_mm == pytest.approx(b.posterior_mm / (1.0 - m.deformity_crush))  # the neighbours' height
        assert ref_mm > b.posterior_mm + 4.0 and a.posterior_mm == pytest.approx(ref_mm, abs=2.0)
        # the height lost is referenced to the neighbours too (model/heights.crush_reference_mm), not to the
        # collapsed back wall: the full lift restores (nearly) all of it
        assert full.reference_mm == pytest.approx(ref_mm)
        assert full.lost_mm == pytest.approx(ref_mm - b.anterior_mm) and full.restored_pct_of_lost > 80.0
    intact = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=2.0))
    assert not rd.fragment_of(intact).any()
