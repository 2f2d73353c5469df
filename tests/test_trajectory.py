"""Transpedicular cannula trajectories on the real L1 and on phantoms."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import InputError, ParameterError
from vertaug.model.trajectory import (
    PedicleNotFoundError,
    TrajectoryError,
    find_pedicles,
    plan_trajectories,
)
from vertaug.model.labels import LABELS
from vertaug.model.vertebra import vertebra_from_ct, vertebra_from_phantom

PHANTOM_PEDICLE_WIDTH_MM = 8.0  # anatomy/phantom.py: elliptic pedicles 8 mm wide
PHANTOM_PEDICLE_OFFSET_MM = 11.0 + 4.0  # centred at x = +/-(canal half-width + half the pedicle width)


@pytest.fixture(scope="module")
def real_l1(example):
    ct = load_ct(example["ct"])
    return vertebra_from_ct(ct, load_labels(example["seg"], ct), "L1", body=load_labels(example["body"], ct))


@pytest.fixture(scope="module")
def wedge():
    return vertebra_from_phantom(make_phantom(fracture="wedge", grade=2))


def _world(v, ijk):
    return v.affine_mm[:3, :3] @ np.asarray(ijk, float) + v.affine_mm[:3, 3]


def _ap_fraction(v, ijk):
    """Independent of the module: (p - posterior wall) . a / AP depth, with a made orthogonal to the height axis."""
    lm = v.landmarks
    h = np.array(lm.height_axis) / np.linalg.norm(lm.height_axis)
    a = np.array(lm.anterior_axis) - h * (np.array(lm.anterior_axis) @ h)
    a /= np.linalg.norm(a)
    p0 = np.array(lm.posterior_wall_ijk)
    return float((np.asarray(ijk) - p0) @ a / ((np.array(lm.anterior_wall_ijk) - p0) @ a))


def _lateral_mm(v, ijk):
    """Signed distance (mm) of a point from the body's mid-sagittal plane: through the body centroid, normal to the
    level's own lateral axis a x h (towards the patient's right; the anatomy's, not the image's x)."""
    from vertaug.model.heights import model_axes

    h, a = model_axes(v)
    r = np.cross(a, h)
    return float((_world(v, ijk) - _world(v, v.landmarks.centroid_ijk)) @ (r / np.linalg.norm(r)))


def test_real_l1_both_pedicles_found(real_l1):
    peds = find_pedicles(real_l1)
    assert set(peds) == {"left", "right"}
    for p in peds.values():
        # 3 mm CT resampled to 1 mm: coarse; adult L1 pedicles are ~5-10 mm wide, the blur adds a few mm
        assert 5.0 <= p.width_mm <= 15.0
        assert -15.0 <= p.isthmus_u_mm < 0.0  # behind the posterior wall
        assert p.n_sections >= 3
    # left is on the patient's left (RAS+: smaller world x); pedicles 20-45 mm apart (canal + a pedicle width)
    xl, xr = _world(real_l1, peds["left"].isthmus_ijk)[0], _world(real_l1, peds["right"].isthmus_ijk)[0]
    assert 20.0 < xr - xl < 45.0


@pytest.mark.parametrize("kind,grade", [("none", 0), ("wedge", 2), ("biconcave", 3)])
def test_phantom_pedicles_match_construction(kind, grade):
    v = vertebra_from_phantom(make_phantom(fracture=kind, grade=grade))
    s = v.spacing_m[0] * 1e3
    peds = find_pedicles(v)
    assert set(peds) == {"left", "right"}
    for side, sign in (("left", -1.0), ("right", 1.0)):
        p = peds[side]
        assert abs(p.width_mm - PHANTOM_PEDICLE_WIDTH_MM) <= s
        assert abs(_lateral_mm(v, p.isthmus_ijk) - sign * PHANTOM_PEDICLE_OFFSET_MM) <= s
        assert abs(p.axis[1]) > 0.99  # the phantom pedicles run straight antero-posterior


def _check_path(v, t, gauge_mm):
    s = v.spacing_m[0] * 1e3
    tip, entry, d = np.array(t.tip_ijk), np.array(t.entry_ijk), np.array(t.direction)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(entry + d * t.length_mm / s, tip, atol=1e-6)
    # tip in the anterior third, at 70-75 % of the depth, inside the body; entry behind the posterior wall
    assert 2 / 3 <= _ap_fraction(v, tip) <= 0.80
    assert t.tip_ap_fraction == pytest.approx(_ap_fraction(v, tip), abs=0.02)
    assert v.body_mask[tuple(np.round(tip).astype(int))]
    assert _ap_fraction(v, entry) < 0.0
    assert 30.0 <= t.length_mm <= 70.0
    # tip voxels: inside the body, within the cannula radius (plus half a voxel diagonal) of the tip
    assert len(t.tip_voxels) >= 1
    assert v.body_mask[tuple(t.tip_voxels.T)].all()
    assert np.linalg.norm(t.tip_voxels - tip, axis=1).max() <= gauge_mm / 2 / s + 0.87
    assert t.canal_clearance_mm > 0.0
    assert t.bone_fraction >= 0.9


@pytest.mark.parametrize("which", ["real_l1", "wedge"])
def test_bipedicular_tips_in_anterior_third_and_off_midline(which, request):
    v = request.getfixturevalue(which)
    ts = plan_trajectories(v, "bipedicular", gauge_mm=3.048)
    assert [t.side for t in ts] == ["left", "right"]
    for t, sign in zip(ts, (-1.0, 1.0)):
        _check_path(v, t, 3.048)
        assert sign * _lateral_mm(v, t.tip_ijk) > 3.0  # off the midline, on its own side
        assert 5.0 < t.medial_angle_deg < 30.0  # converging medially


@pytest.mark.parametrize("which", ["real_l1", "wedge"])
def test_unipedicular_tip_at_midline(which, request):
    v = request.getfixturevalue(which)
    (t,) = plan_trajectories(v, "unipedicular")
    _check_path(v, t, 3.048)
    assert t.target == "midline"
    assert abs(_lateral_mm(v, t.tip_ijk)) <= 2.0
    bi = {b.side: b for b in plan_trajectories(v, "bipedicular")}
    assert t.medial_angle_deg > bi[t.side].medial_angle_deg + 5.0  # steeper toward the midline


def test_canal_clearance_is_distance_to_canal_minus_radius(wedge):
    """The reported clearance against a brute-force distance from the path to every canal voxel (faces)."""
    s = wedge.spacing_m[0] * 1e3
    canal = np.argwhere(wedge.labels == LABELS["canal"]).astype(float)
    for gauge in (2.413, 3.048):
        for t in plan_trajectories(wedge, "bipedicular", gauge_mm=gauge):
            path = np.array(t.entry_ijk) + np.outer(np.linspace(0.0, t.length_mm / s, 300), t.direction)
            d2 = ((path[:, None, :] - canal[None, :, :]) ** 2).sum(axis=2)
            brute = (np.sqrt(d2.min()) - 0.5) * s - gauge / 2
            assert t.canal_clearance_mm == pytest.approx(brute, abs=0.1)


def _widen_canal(v, n_vox):
    lat = np.zeros((3, 3, 3), bool)
    lat[:, 1, 1] = True
    big = ndimage.binary_dilation(v.labels == LABELS["canal"], lat, iterations=n_vox)
    labels = v.labels.copy()
    labels[big & (labels == 0)] = LABELS["canal"]  # into the pedicles (label 0, posterior_mask)
    return replace(v, labels=labels)


def test_near_canal_warns_and_breach_raises(wedge):
    ts = plan_trajectories(_widen_canal(wedge, 4), "bipedicular")
    for t in ts:
        assert 0.0 < t.canal_clearance_mm < 1.0
        assert any("canal clearance" in w for w in t.warnings)
    with pytest.raises(TrajectoryError, match="breaches the spinal canal") as e:
        plan_trajectories(_widen_canal(wedge, 9), "bipedicular")
    assert "gauge" in str(e.value) and isinstance(e.value, InputError)


def test_model_without_pedicles_gives_clear_error(wedge):
    bare = replace(wedge, posterior_mask=np.zeros_like(wedge.posterior_mask))
    for approach in ("bipedicular", "unipedicular"):
        with pytest.raises(PedicleNotFoundError) as e:
            plan_trajectories(bare, approach)
        msg = str(e.value)
        assert isinstance(e.value, InputError)
        assert "L1" in msg and "pedicle" in msg and "Fix:" in msg and "posterior elements" in msg


def test_one_pedicle_missing(wedge):
    pm = wedge.posterior_mask.copy()
    cx = int(round(wedge.landmarks.centroid_ijk[0]))
    pm[cx:] = False  # remove the right side (RAS+: larger i)
    v = replace(wedge, posterior_mask=pm)
    assert set(find_pedicles(v)) == {"left"}
    with pytest.raises(PedicleNotFoundError, match="right pedicle"):
        plan_trajectories(v, "bipedicular")
    (t,) = plan_trajectories(v, "unipedicular")
    assert t.side == "left"
    with pytest.raises(PedicleNotFoundError):
        plan_trajectories(v, "unipedicular", side="right")


def test_bad_parameters(wedge):
    with pytest.raises(ParameterError, match="approach"):
        plan_trajectories(wedge, "lateral")
    with pytest.raises(ParameterError, match="gauge_mm"):
        plan_trajectories(wedge, gauge_mm=0.0)
    with pytest.raises(ParameterError, match="side"):
        plan_trajectories(wedge, "unipedicular", side="middle")


def test_pedicle_run_starts_behind_a_small_rim_section():
    """A small first section (the body rim) followed by the pedicle's base at more than twice its area would end
    the run after one section; the run then starts at the next kept section (sections of L1's right pedicle
    without the body map, areas in voxels, 1 mm model)."""
    import numpy as np

    from vertaug.model.trajectory import MIN_SECTIONS, _pedicle_run

    areas = [113, 269, 303, 224, 162, 146, 145, 154]
    secs = [(-4 - i, np.ones(a, bool)) for i, a in enumerate(areas)]
    run = _pedicle_run(secs, 1.0)
    assert [u for u, _ in run] == [-5, -6, -7, -8, -9, -10]
    # a run that is long enough from the first section is unchanged (and ends where the area doubles)
    secs2 = [(-4 - i, np.ones(a, bool)) for i, a in enumerate([150, 160, 170, 180, 200, 400])]
    assert [u for u, _ in _pedicle_run(secs2, 1.0)] == [-4, -5, -6, -7, -8]
    assert len(run) >= MIN_SECTIONS
