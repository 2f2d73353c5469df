"""Morphometry from the anatomy: invariance to the affine's rotation, the body without a body map, CT endplates."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from vertaug.anatomy.io import Volume, load_ct, load_labels
from vertaug.anatomy.morphometry import BODY_FROM_CANAL, BODY_FROM_MAP, measure_volumes
from vertaug.anatomy.phantom import make_phantom

LUMBAR = ("L1", "L2", "L3", "L4", "L5")
TPTBOX = Path(__file__).parent / "data" / "tptbox-l3"


@pytest.fixture(scope="module")
def bundled(example):
    ct = load_ct(example["ct"])
    return ct, load_labels(example["seg"], ct), load_labels(example["body"], ct)


def _rotation(axis: int, deg: float) -> np.ndarray:
    """4x4 rigid rotation of the world about axis 0 (x: sagittal tilt), 1 (y: coronal) or 2 (z: axial)."""
    t = np.radians(deg)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(4)
    r[i, i] = r[j, j] = np.cos(t)
    r[i, j], r[j, i] = -np.sin(t), np.sin(t)
    return r


def _rotated(vol: Volume, r: np.ndarray) -> Volume:
    return replace(vol, affine_mm=r @ vol.affine_mm)


@pytest.fixture(scope="module")
def unrotated(bundled):
    return measure_volumes(*bundled)


ROTATIONS = [(axis, deg) for axis in (2, 0, 1) for deg in (5, 10, 20)]
FAST = [(2, 10), (0, 20)]


@pytest.mark.parametrize(
    "axis,deg", [pytest.param(*r, marks=() if r in FAST else pytest.mark.slow) for r in ROTATIONS]
)
def test_rotated_affine_gives_the_same_heights_and_grades(bundled, unrotated, axis, deg):
    """The same voxels with a rigidly rotated affine: heights within half a voxel (1.5 mm at 3 mm; the issue found
    19.6 mm at 10 deg axial), the same grade and type."""
    r = _rotation(axis, deg)
    rot = measure_volumes(*(_rotated(v, r) for v in bundled))
    for name in LUMBAR:
        a, b = unrotated[name], rot[name]
        assert b.evaluable, (name, b.reason)
        for key in ("anterior", "middle", "posterior"):
            assert getattr(b, f"height_{key}_mm") == pytest.approx(getattr(a, f"height_{key}_mm"), abs=1.6), (name, key)
        assert (b.genant_grade, b.genant_type) == (a.genant_grade, a.genant_type), name
        # the frame turns with the world (within 3 deg: the canal is found on a 1 mm grid of the projection)
        assert np.allclose(r[:3, :3] @ np.array(a.anterior_axis), b.anterior_axis, atol=0.05), name


def _resampled(vols, r: np.ndarray) -> list[Volume]:
    """The voxels themselves rotated by ``r`` about the image centre onto a grid of the same spacing and axes, grown to
    hold the whole rotated image (so the spine stays in view) and aligned with the old lattice (no extra shift):
    linear interpolation for the CT, nearest neighbour for the label and body maps."""
    a = vols[0].affine_mm
    shape = np.array(vols[0].shape)
    centre = a @ np.r_[(shape - 1) / 2, 1]
    to_c, from_c = np.eye(4), np.eye(4)
    to_c[:3, 3], from_c[:3, 3] = -centre[:3], centre[:3]
    world = from_c @ r @ to_c
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    vox = np.linalg.solve(a[:3, :3], (world @ a @ corners.T)[:3] - a[:3, 3:4])
    lo, hi = np.floor(vox.min(axis=1) + 1e-6), np.ceil(vox.max(axis=1) - 1e-6)
    new = a.copy()
    new[:3, 3] = a[:3, 3] + a[:3, :3] @ lo
    m = np.linalg.inv(a) @ np.linalg.inv(world) @ new
    out_shape = tuple(int(n) for n in hi - lo + 1)
    out = []
    for vol, order in zip(vols, (1, 0, 0)):
        fill = float(vol.data.min()) if order else 0
        data = ndimage.affine_transform(vol.data, m[:3, :3], m[:3, 3], output_shape=out_shape, order=order, cval=fill)
        out.append(Volume(data, new, vol.source))
    return out


# measured (3 mm isotropic grid, the default endplate surfaces, benchmarks/bench_morphometry_rotation.py): in all 9
# resampled rotations every height of L1..L5 stays within one voxel (largest change 1.68 mm) and every level keeps grade
# and type; L1 (0.239 +- 0.034 unrotated, a borderline grade-1 wedge) reads 0.207..0.240. Before issue 23's wall fit
# L1 flipped to grade 2 at 20 deg axial (0.264): its posterior wall was read 1.6 mm too far back (the heights at the
# wall were taken from the rim columns of the resampled mask), which moved the posterior Genant line onto the steep
# posterior rim of the superior endplate (test_walls_do_not_follow_the_resampled_rim).
RESAMPLED_FAIL: dict = {}
FAST_RESAMPLED = [(2, 5), (1, 20)]


#: measure_volumes of the resampled scan per rotation, shared by the tests below (each resampling and measurement
#: takes seconds; three tests read the same rotations)
_ROTATED: dict = {}


def _resampled_measure(bundled, axis, deg):
    if (axis, deg) not in _ROTATED:
        _ROTATED[axis, deg] = measure_volumes(*_resampled(bundled, _rotation(axis, deg)))
    return _ROTATED[axis, deg]


def _resampled_marks(r):
    marks = [] if r in FAST_RESAMPLED else [pytest.mark.slow]
    if r in RESAMPLED_FAIL:
        marks.append(pytest.mark.xfail(strict=True, reason=RESAMPLED_FAIL[r]))
    return marks


@pytest.mark.parametrize("axis,deg", [pytest.param(*r, marks=_resampled_marks(r)) for r in ROTATIONS])
def test_resampled_rotation_gives_the_same_heights_and_grades(bundled, unrotated, axis, deg):
    """The voxels resampled onto a rotated grid (not only the affine): every height of L1..L5 within one voxel
    (3 mm, the CT's spacing and the new grid's) and the same Genant grade and type."""
    voxel_mm = float(np.max(np.linalg.norm(bundled[0].affine_mm[:3, :3], axis=0)))
    rot = _resampled_measure(bundled, axis, deg)
    for name in LUMBAR:
        a, b = unrotated[name], rot[name]
        assert b.evaluable, (name, b.reason)
        for key in ("anterior", "middle", "posterior"):
            got, want = getattr(b, f"height_{key}_mm"), getattr(a, f"height_{key}_mm")
            assert abs(got - want) <= voxel_mm, (name, key, want, got)
        assert (b.genant_grade, b.genant_type) == (a.genant_grade, a.genant_type), (name, b.deformity)


@pytest.mark.parametrize("deg", [pytest.param(d, marks=() if d == 20 else pytest.mark.slow) for d in (5, 10, 20)])
def test_walls_do_not_follow_the_resampled_rim(bundled, unrotated, deg):
    """The mechanism of the last grade flip: a rotation about the spine's (S-I) axis keeps the slices and only
    re-interpolates the mask in-plane, so the body's depth between its walls must stay put: within a third of a voxel
    for every lumbar level (the median walls of the central lines with the wall heights taken from the rim columns
    moved L1's by 1.50 mm at 20 deg and L3's at 10 deg, on the 0.75 mm sampling grid; the wall curve across the central
    half of the width, read half a voxel inside the rim, moves them by 0.70 mm or less)."""
    voxel_mm = float(np.max(np.linalg.norm(bundled[0].affine_mm[:3, :3], axis=0)))
    rot = _resampled_measure(bundled, 2, deg)
    for name in LUMBAR:
        assert abs(rot[name].ap_depth_mm - unrotated[name].ap_depth_mm) <= voxel_mm / 3, (
            name, unrotated[name].ap_depth_mm, rot[name].ap_depth_mm)


@pytest.mark.parametrize(
    "axis,deg", [pytest.param(*r, marks=() if r == (2, 10) else pytest.mark.slow) for r in ROTATIONS]
)
def test_resampled_rotation_stays_within_the_stated_uncertainty(bundled, unrotated, axis, deg):
    """Where a resampled rotation changes a grade, the change is one the stated uncertainty allows: every deformity
    moves by at most twice the combined standard uncertainty, and a changed grade is one flagged borderline."""
    rot = _resampled_measure(bundled, axis, deg)
    for name in LUMBAR:
        a, b = unrotated[name], rot[name]
        u = np.hypot(a.deformity_uncertainty, b.deformity_uncertainty)
        assert abs(b.deformity - a.deformity) <= 2 * u, (name, a.deformity, b.deformity, u)
        if b.genant_grade != a.genant_grade:
            assert a.grade_borderline or b.grade_borderline, (name, a.deformity, b.deformity)


def test_resampling_without_rotation_is_exact(bundled):
    """The check of the resampler itself: the identity gives back the same voxels on the same grid."""
    same = _resampled(bundled, np.eye(4))
    for before, after in zip(bundled, same):
        assert np.array_equal(before.affine_mm, after.affine_mm)
        assert np.allclose(before.data, after.data, atol=1e-3)


def test_frame_comes_from_the_canal_and_the_spine_axis(unrotated):
    for name in LUMBAR:
        m = unrotated[name]
        assert m.anterior_axis_source == "canal centre to body centroid"
        assert m.height_axis_source.startswith("spine axis")
        assert np.dot(m.anterior_axis, (0.0, 1.0, 0.0)) > 0.85  # supine scan: near +y (L5 tilts with the lordosis)
        assert m.body_source == BODY_FROM_MAP


def test_bundled_ct_without_body_map_matches_with_it(bundled, unrotated):
    ct, seg, _ = bundled
    without = measure_volumes(ct, seg, None)
    for name in LUMBAR:
        a, b = unrotated[name], without[name]
        assert b.body_source == BODY_FROM_CANAL
        assert b.ap_depth_mm == pytest.approx(a.ap_depth_mm, abs=3.0), name  # no pedicles counted as body
        for key in ("anterior", "middle"):
            assert getattr(b, f"height_{key}_mm") == pytest.approx(getattr(a, f"height_{key}_mm"), abs=1.6), (name, key)
        # no false fracture where the body map says none
        if a.genant_grade == 0:
            assert b.genant_grade == 0, (name, b.genant_type, b.deformity)


def test_second_patient_without_body_map_has_no_false_fracture():
    """TPTBox L3 (VerSe labels, P-I-R, 1.5 mm, no body map): L3 is intact and measures as such."""
    ct = load_ct(TPTBOX / "sub-ct_label-22_ct.nii.gz")
    seg = load_labels(TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz", ct)
    m = measure_volumes(ct, seg, None, "verse")["L3"]
    assert m.evaluable and m.body_source == BODY_FROM_CANAL
    assert m.genant_grade == 0
    assert 30.0 < m.ap_depth_mm < 45.0  # a lumbar body, not body + pedicles (the opening gave up to 84 mm at L1)
    assert m.anterior_axis_source == "canal centre to body centroid"


# (slice mm, slice offsets mm): every 0.5 mm shift of the slice lattice against the anatomy
SLICE_CASES = [(1.0, (0.0, 0.5)), (2.0, (0.0, 0.5, 1.0, 1.5)), (3.0, (0.0, 0.5, 1.0, 1.5, 2.0, 2.5))]


def _slice_phantom(kind: str, slice_mm: float, offset_mm: float):
    """A grade-2 L1 (non-integer heights: wedge Ha 16.88, Hm 20.94 mm) on 1 mm in-plane voxels and ``slice_mm`` slices
    shifted by ``offset_mm``: the CT through a Gaussian slice profile of FWHM one slice, labels at the voxel centres;
    a 0.35 mm endplate (Silva 1994) on 150 HU trabecular bone."""
    return make_phantom(fracture=kind, grade=2, spacing_mm=1.0, slice_mm=slice_mm, slice_offset_mm=offset_mm,
                        partial_volume=True, endplate_mm=0.35, trabecular_hu=150.0)


def _height_errors(ph, endplates: str) -> list[float]:
    m = measure_volumes(ph.ct, ph.labels, ph.body, endplates=endplates)["L1"]
    truth = ph.truth["levels"]["L1"]
    return [getattr(m, f"height_{k}_mm") - truth[f"height_{k}_mm"] for k in ("anterior", "middle", "posterior")]


@pytest.mark.parametrize("slice_mm,offsets", [pytest.param(*c, marks=pytest.mark.slow) for c in SLICE_CASES])
def test_ct_endplates_are_within_a_third_of_the_slice(slice_mm, offsets):
    """Sub-voxel endplates per line (endplates="ct"): on 1, 2 and 3 mm slices at every 0.5 mm offset, each height within a third of
    the slice spacing; the mask's faces, quantised to the slices, are off by more at 2 and 3 mm."""
    worst = {"ct": 0.0, "mask": 0.0}
    for offset in offsets:
        ph = _slice_phantom("wedge", slice_mm, offset)
        for method in worst:
            worst[method] = max(worst[method], max(abs(e) for e in _height_errors(ph, method)))
    assert worst["ct"] < slice_mm / 3, worst
    if slice_mm > 1.0:
        assert worst["mask"] > worst["ct"], worst


@pytest.mark.parametrize("kind,offset", [("crush", 1.5), ("biconcave", 1.0)])
def test_ct_endplates_on_3mm_slices_every_type(kind, offset):
    """endplates="ct" (per line) on 3 mm slices (the bundled CT's), a crush and a biconcave grade-2 L1: heights within 1 mm, grade and type right,
    each height's stated uncertainty positive and below half a slice."""
    ph = _slice_phantom(kind, 3.0, offset)
    m = measure_volumes(ph.ct, ph.labels, ph.body, endplates="ct")["L1"]
    truth = ph.truth["levels"]["L1"]
    assert m.endplate_method == "CT edge"
    for key in ("anterior", "middle", "posterior"):
        assert abs(getattr(m, f"height_{key}_mm") - truth[f"height_{key}_mm"]) < 1.0, key
        assert 0 < getattr(m, f"height_{key}_uncertainty_mm") < 1.5, key
    assert (m.genant_grade, m.genant_type) == (2, kind)


# The default endplates="surface" (anatomy/endplates.py) on the 3 mm slice phantoms: the crush, biconcave and wedge
# cases below and the steep grade-3 wedge that bench_morphometry.py (--n 20 --slice-mm 3, seed 0, #3) read as grade 2
# while the walls were the median line ends at the body's mid-height (16.6 / 21.5 / 25.0 mm, deformity 0.336; truth
# 12.5 / 18.75 / 25.0): its anterior wall lies below that height. With each wall read at its own mid-height it reads
# 12.55 / 19.12 / 24.41 mm, grade 3.
STEEP_WEDGE = {"fracture": "wedge", "grade": 3, "trabecular_hu": 116.9452592021031, "noise_hu": 12.680616635929754,
               "endplate_mm": 0.3684077862445509, "spacing_mm": 1.0, "slice_mm": 3.0,
               "slice_offset_mm": 0.37247697966919313, "partial_volume": True, "seed": 1162779116}


@pytest.mark.parametrize("kind,offset", [("crush", 1.5), ("biconcave", 1.0), ("steep", None)] + [
    pytest.param(*c, marks=pytest.mark.slow) for c in (("wedge", 1.0), ("wedge", 2.0), ("biconcave", 0.0))])
def test_surface_endplates_on_3mm_slice_phantoms(kind, offset):
    """The default (endplate surfaces) on the 3 mm slice phantoms: heights within 1 mm, grade and type right, each
    stated uncertainty positive and below half a slice."""
    ph = make_phantom(**STEEP_WEDGE) if kind == "steep" else _slice_phantom(kind, 3.0, offset)
    m = measure_volumes(ph.ct, ph.labels, ph.body)["L1"]
    truth = ph.truth["levels"]["L1"]
    assert m.endplate_method.startswith("CT surface")
    for key in ("anterior", "middle", "posterior"):
        assert abs(getattr(m, f"height_{key}_mm") - truth[f"height_{key}_mm"]) < 1.0, key
        assert 0 < getattr(m, f"height_{key}_uncertainty_mm") < 1.5, key
    want = ("wedge", 3) if kind == "steep" else (kind, 2)
    assert (m.genant_type, m.genant_grade) == want


@pytest.mark.parametrize(
    "axis,deg", [pytest.param(*r, marks=() if r == (0, 20) else pytest.mark.slow) for r in ROTATIONS]
)
def test_line_endplates_resampled_heights_within_one_voxel(bundled, axis, deg):
    """endplates="ct" (the per-line CT edge fit): every height of L1..L5 within one voxel (3 mm) under every
    resampled rotation. Measured: largest change 2.26 mm (L1's anterior height at 5 deg sagittal); before the line's
    fit stopped half-way to the next vertebra and the Genant positions were taken from the median walls, 5.70 mm (L1's
    posterior height at 20 deg sagittal: its edge fit reached across the thin posterior disc into T12's endplate, failed,
    and fell back to the resampled mask's stepped rim, where the outermost voxel had moved the line). L1's grade is
    not asserted: it reads 0.250 +- 0.060 unrotated, on the 0.25 band edge."""
    voxel_mm = float(np.max(np.linalg.norm(bundled[0].affine_mm[:3, :3], axis=0)))
    base = measure_volumes(*bundled, endplates="ct")
    rot = measure_volumes(*_resampled(bundled, _rotation(axis, deg)), endplates="ct")
    for name in LUMBAR:
        a, b = base[name], rot[name]
        assert b.evaluable and b.endplate_method.startswith("CT edge"), (name, b.reason, b.endplate_method)
        for key in ("anterior", "middle", "posterior"):
            got, want = getattr(b, f"height_{key}_mm"), getattr(a, f"height_{key}_mm")
            assert abs(got - want) <= voxel_mm, (name, key, want, got)
