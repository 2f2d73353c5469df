"""Balloon tamp: plateau = yield, mass balance of the compacted shell, growth along weak bone, endplate lift, inputs."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import ParameterError
from vertaug.model.labels import CANCELLOUS, ENDPLATE
from vertaug.model.trajectory import plan_trajectories
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.physics import balloon as bl


@pytest.fixture(scope="module")
def intact():
    return vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=2.0))


@pytest.fixture(scope="module")
def wedge():
    return vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, spacing_mm=2.0))


def centre(v):
    c = np.array(v.landmarks.centroid_ijk)
    return tuple(float(x) for x in np.round(c))


def test_plateau_is_the_yield_of_homogeneous_bone(intact):
    """Homogeneous trabecular bone: every crushed voxel has the same yield, so p(V) is flat at exactly that yield."""
    sy = float(np.median(intact.yield_pa[intact.labels == 1]))
    r = bl.inflate(intact, [centre(intact)], volume_ml=2.0)
    assert r.stop_reason == "volume reached"
    assert r.final_volume_ml == pytest.approx(2.0, abs=intact.voxel_volume_m3 * 1e6)
    assert r.action[1] == "seed" and r.pressure_pa[1] == 0.0  # drilled, not inflated
    assert np.allclose(r.pressure_pa[2:], sy, rtol=1e-6)
    assert sy == pytest.approx(1.579e6, rel=1e-3)  # Morgan 2003 x 0.77 % at 80 HU: the phantom's own bone
    assert np.all(np.diff(r.volume_ml) > 0)


def test_shell_conserves_the_crushed_bone(intact):
    r = bl.inflate(intact, [centre(intact)], volume_ml=2.0)
    assert r.crushed_bone_m3 > 0
    assert r.mass_balance_error < 1e-12
    t = bl.treated_vertebra(intact, r)
    from vertaug.model.labels import CANCELLOUS

    trab0 = np.isin(intact.labels, CANCELLOUS)  # trabecular bone and the bone around the veins in it
    before = float(intact.bvtv[trab0].sum())
    after = float(t.bvtv[np.isin(t.labels, CANCELLOUS)].sum())  # cavity has no bone; the shell carries the crushed
    assert after == pytest.approx(before, rel=2e-4)  # float32 fields and the inverse HU chain
    sh = r.shell
    assert sh.any() and not np.any(sh & r.cavity)
    assert np.all(t.bvtv[sh] > intact.bvtv[sh])
    assert np.all(t.k[sh] < intact.k[sh])
    assert np.all(t.E[sh] > intact.E[sh])


def _weak_and_strong_halves(intact):
    """The intact block with its right half at 40 HU and its left half at 80 HU; the tip on the border."""
    c = centre(intact)
    hu = intact.hu.copy()
    weak = np.zeros(hu.shape, bool)
    weak[int(c[0]):] = True
    hu[weak & (intact.labels == 1)] = 40.0
    return replace(intact, hu=hu).with_labels(intact.labels.copy()), weak, c


def test_cavity_takes_the_balloon_shape_and_crushes_weak_bone_first(intact):
    """Right half at 40 HU, left half at 80 HU, tip on the border: the membrane crushes the weak side first (pressure
    at the weak yield), keeps its own shape (the cavity stays inside the device's free shape at the plan volume, one
    connected region), and the pressure rises to the strong yield once the weak half of that shape is crushed."""
    v, weak, c = _weak_and_strong_halves(intact)
    r = bl.inflate(v, [c], volume_ml=1.5)
    share = (r.cavity & weak).sum() / r.cavity.sum()
    assert 0.5 < share < 0.85
    y_weak = float(np.median(v.yield_pa[weak & (v.labels == 1)]))
    y_strong = float(np.median(v.yield_pa[~weak & (v.labels == 1)]))
    assert r.pressure_pa[2] == pytest.approx(y_weak, rel=1e-6)
    assert r.pressure_pa.max() <= y_strong * (1 + 1e-6)
    env, _ = bl.envelope_levels(v.labels.shape, v.spacing_m, [c], [v.landmarks.anterior_axis],
                                bl.device(bl.DEFAULT_DEVICE), 1.5)
    assert ndimage.label(r.cavity)[1] == 1
    assert np.mean(env[r.cavity] == 0) > 0.9  # inside the free shape at 1.5 mL (the rest: one distension step)


def test_membrane_distends_towards_weak_bone_when_its_shape_needs_more_than_the_limit(intact):
    """Weak (40 HU) and strong (80 HU) halves, tip on the border, pressure limit between the two yields: once the weak
    half of the free shape at the plan's volume is crushed, the strong half needs more than the limit, so the membrane
    distends (towards its rated shape) into more weak bone and reaches the plan's volume at the weak yield. Before
    2026-12-01 it distended only when no crushable voxel was left in its shape, and stopped at the limit."""
    v, weak, c = _weak_and_strong_halves(intact)
    y_weak = float(np.median(v.yield_pa[weak & (v.labels == 1)]))
    y_strong = float(np.median(v.yield_pa[~weak & (v.labels == 1)]))
    limit = 0.5 * (y_weak + y_strong)
    r = bl.inflate(v, [c], volume_ml=1.0, device_max_pressure_pa=limit)
    assert r.stop_reason == "volume reached"  # the earlier rule: "pressure limit reached" at 0.368 mL
    assert r.final_volume_ml == pytest.approx(1.0, abs=v.voxel_volume_m3 * 1e6)
    assert r.pressure_pa.max() == pytest.approx(y_weak, rel=1e-6)
    env, _ = bl.envelope_levels(v.labels.shape, v.spacing_m, [c], [v.landmarks.anterior_axis],
                                bl.device(bl.DEFAULT_DEVICE), 1.0)
    beyond = r.cavity & (env > 0)
    assert beyond.any() and np.all(weak[beyond])  # it went beyond its free shape into the weak half only
    assert ndimage.label(r.cavity)[1] == 1


def test_device_free_shape_matches_its_table():
    """The free membrane of every device holds its rated volume at its rated size (prolate of the nominal length,
    a sphere once wider than long), voxelised at 0.5 mm within 3 %."""
    for d in bl.DEVICES.values():
        a, b = d.semi_axes_mm(d.rated_volume_ml)
        assert 4.0 / 3.0 * np.pi * a * b * b == pytest.approx(d.rated_volume_ml * 1e3, rel=1e-9)
        assert 2 * a >= d.length_mm - 1e-9
        env, k = bl.envelope_levels((80, 80, 80), (5e-4,) * 3, [(40.0, 40.0, 40.0)], [(0.0, 1.0, 0.0)], d,
                                    0.5 * d.rated_volume_ml)
        assert (env <= k).sum() * 0.125e-3 == pytest.approx(d.rated_volume_ml, rel=0.03)
        assert (env == 0).sum() * 0.125e-3 == pytest.approx(0.5 * d.rated_volume_ml, rel=0.03)
    with pytest.raises(ParameterError, match="Unknown balloon device"):
        bl.device("kyphon-99/9")


def test_wedge_endplate_is_lifted(wedge):
    tips = [t.tip_ijk for t in plan_trajectories(wedge)]
    r = bl.inflate(wedge, tips, volume_ml=3.0)
    h0 = bl.body_heights_mm(wedge.labels, wedge.spacing_m)
    h1 = bl.body_heights_mm(r.labels, wedge.spacing_m)
    assert "lift" in r.action
    assert h1["height_posterior_mm"] == h0["height_posterior_mm"]
    assert h0["height_anterior_mm"] == pytest.approx(18.0)  # truth 16.9 mm, 2 mm voxels
    # what the model gives (not tuned): 4 of the 8 lost mm at 2 mm voxels (50 %); the lift stops where the plate
    # leaves the membrane's rated shape (the balloon cannot follow it further)
    assert h1["height_anterior_mm"] - h0["height_anterior_mm"] == pytest.approx(4.0)
    assert h1["height_anterior_mm"] <= h0["height_posterior_mm"]  # no over-correction
    assert r.recoil_mm < 0.05 and r.recoil_vox == 0  # the straightened walls carry the 100 N preload
    assert r.final_volume_ml == pytest.approx(5.496, abs=0.01)  # 2 x 3 mL asked; the rated shapes are full (5.568 before the hinged lift)
    assert "rated shape" in r.stop_reason
    assert r.pressure_pa.max() <= bl.DEVICE_MAX_PRESSURE_PA
    # the membrane enters the space the hinged plate opens next to it (no bone there): the cavity is the membrane's
    # space, its volume the balloon's final volume (no recoil here), the rest of the opened space a separate gap
    vvox_ml = float(np.prod(wedge.spacing_m)) * 1e6
    assert np.array_equal(r.cavity, r.membrane) and not np.any(r.fracture_gap & r.cavity)
    assert r.cavity.sum() * vvox_ml == pytest.approx(r.final_volume_ml, abs=1e-9)
    assert sum(r.per_balloon_ml) == pytest.approx(r.final_volume_ml, abs=1e-9)
    # the balloon's volume (counted step by step) = crushed space + the space opened under the plate that it holds;
    # the lift opened that and the gap
    held_ml = r.opened_space_ml - r.fracture_gap.sum() * vvox_ml
    assert r.opened_space_ml > 0 and held_ml > 0
    assert r.crushed_space_ml + held_ml == pytest.approx(r.final_volume_ml, abs=1e-9)
    assert ndimage.label(r.cavity)[1] == 1  # the two balloons' cavities meet: one region
    # lift pressure = preload / contact area, below the crush plateau
    lifts = np.array(r.action) == "lift"
    assert np.allclose(r.pressure_pa[lifts], 100.0 / (r.contact_area_mm2[lifts] * 1e-6), rtol=1e-9)


def test_treated_model_is_valid(wedge):
    tips = [t.tip_ijk for t in plan_trajectories(wedge)]
    r = bl.inflate(wedge, tips, volume_ml=3.0)
    t = bl.treated_vertebra(wedge, r)
    from vertaug.model.labels import LABEL_NAMES

    assert t.labels.dtype == np.uint8 and set(np.unique(t.labels).tolist()) <= set(LABEL_NAMES)
    assert np.all(t.labels[r.cavity] == 7)
    assert t.materials.E_pa.shape == t.labels.shape
    # the cavity never touches soft tissue, canal or disc: no new leak route opened by the balloon
    outside = np.isin(t.labels, (0, 4, 8))
    assert not np.any(ndimage.binary_dilation(outside) & r.cavity)
    h = wedge.spacing_m[0]
    assert np.all(t.k[r.cavity] >= h * h / 12 * 0.999)
    assert t.body_volume_ml > wedge.body_volume_ml  # lifted endplate
    assert t.extra["balloon_cavity"] is r.cavity


def test_no_fracture_no_height_change(intact):
    tips = [t.tip_ijk for t in plan_trajectories(intact)]
    r = bl.inflate(intact, tips, volume_ml=3.0)
    assert not r.fractured
    assert "lift" not in r.action
    assert bl.body_heights_mm(r.labels, intact.spacing_m) == bl.body_heights_mm(intact.labels, intact.spacing_m)
    assert any("no fracture" in n for n in r.notes)


def test_bipedicular_volume_and_pressure_control(intact):
    tips = [t.tip_ijk for t in plan_trajectories(intact)]
    r2 = bl.inflate(intact, tips, volume_ml=1.0)
    assert r2.n_balloons == 2 and r2.final_volume_ml == pytest.approx(2.0, abs=0.01)
    sy = float(np.median(intact.yield_pa[intact.labels == 1]))
    low = bl.inflate(intact, tips[:1], volume_ml=None, max_pressure_pa=0.5 * sy)
    assert low.stop_reason == "pressure limit reached"
    assert low.final_volume_ml < 0.1  # only the deflated balloon (seed)
    high = bl.inflate(intact, tips[:1], volume_ml=None, max_pressure_pa=1.2 * sy)
    # the membrane stops at its rated shape: the crushable bone inside it (the cortex and the voxels touching the
    # body surface are not crushed) holds 2.8 of the rated 3 mL at 2 mm voxels
    assert high.final_volume_ml == pytest.approx(2.8, abs=0.01) and high.final_volume_ml <= bl.BALLOON_MAX_ML
    assert "rated shape" in high.stop_reason


def test_bad_inputs(intact):
    c = centre(intact)
    with pytest.raises(ParameterError, match="larger than the trabecular volume"):
        bl.inflate(intact, [c] * 10, volume_ml=3.0)  # 30 mL in a ~25 mL body
    with pytest.raises(ParameterError, match="above the device maximum"):
        bl.inflate(intact, [c], volume_ml=None, max_pressure_pa=5.0e6)  # 725 psi, device rated 700 psi
    with pytest.raises(ParameterError, match="device_max_pressure_pa"):
        bl.inflate(intact, [c], device_max_pressure_pa=800 * bl.PSI_PA)
    with pytest.raises(ParameterError, match="balloon_max_ml"):
        bl.inflate(intact, [c], volume_ml=5.0)  # the 15/3 balloon holds 3 mL
    with pytest.raises(ParameterError, match="balloon_max_ml"):
        bl.inflate(intact, [c], volume_ml=2.0, balloon_max_ml=4.0)  # above the device's rated volume
    with pytest.raises(ParameterError, match="not in the trabecular bone"):
        bl.inflate(intact, [(0.0, 0.0, 0.0)], volume_ml=1.0)
    with pytest.raises(ParameterError, match="Neither volume_ml nor max_pressure_pa"):
        bl.inflate(intact, [c], volume_ml=None)
    with pytest.raises(ParameterError, match="tips_ijk is empty"):
        bl.inflate(intact, [], volume_ml=1.0)


def test_a_balloon_that_cannot_fit_between_the_endplates_is_refused(wedge):
    """Bad input: the deflated balloon (3 mm) in a column with one 2 mm voxel of bone between the endplates."""
    tip = tuple(round(c) for c in plan_trajectories(wedge)[0].tip_ijk)
    labels = np.asarray(wedge.labels).copy()
    col = labels[tip[0], tip[1]]
    z = np.arange(col.size)
    col[(np.isin(col, CANCELLOUS)) & (z != tip[2])] = ENDPLATE
    thin = wedge.with_labels(labels)
    with pytest.raises(ParameterError, match="does not fit between the endplates"):
        bl.inflate(thin, [tip], volume_ml=1.0)
