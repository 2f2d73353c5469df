"""model/heights.py: the model's heights before and after, measured the morphometry's way (sub-voxel CT endplates)."""

import numpy as np
import pytest

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.phantom import make_phantom
from vertaug.model.heights import height_change, model_heights, moved_hu
from vertaug.model.labels import is_body
from vertaug.model.vertebra import vertebra_from_ct, vertebra_from_phantom


@pytest.fixture(scope="module")
def bundled(example):
    ct = load_ct(example["ct"])
    return ct, load_labels(example["seg"], ct), load_labels(example["body"], ct)


def _insert(model, n: int):
    """Labels and HU of ``model`` with every body column cut at mid-height and its upper part (endplate, disc and
    what lies above) raised by ``n`` voxels along array axis 2: a rigid lift of the whole top, n voxels."""
    lab, hu = np.asarray(model.labels).copy(), np.asarray(model.hu, np.float32).copy()
    zs = np.arange(lab.shape[2])
    body = is_body(lab)
    top, bot = np.where(body, zs, -1).max(axis=2), np.where(body, zs, lab.shape[2]).min(axis=2)
    for i, j in np.argwhere(top >= 0):
        zm = (top[i, j] + bot[i, j]) // 2
        for arr in (lab, hu):
            arr[i, j, zm + n:] = arr[i, j, zm:-n].copy()
    return lab, hu


@pytest.mark.parametrize(("level", "spacing_mm"), [("L1", 1.0), ("L2", 1.0), ("L4", 1.5)])
def test_model_heights_before_are_the_morphometry_heights_within_a_scan_voxel(bundled, level, spacing_mm):
    """The model's heights before a procedure and the morphometry's of the same level, both with CT endplates, differ
    by less than one voxel of the scan (3 mm). Measured (model - morphometry, anterior / middle / posterior): L1 on
    1 mm -1.53 / -1.06 / -1.04, L2 on 1 mm -0.94 / +0.76 / +0.57, L4 on 1.5 mm -0.29 / 0.00 / +0.48 mm (the same fit on
    the model's own 1 mm grid: L2 +3.98 mm in the middle; mask faces on it: L1 +3.4 mm at the front)."""
    ct, seg, body = bundled
    v = vertebra_from_ct(ct, seg, level, body=body, spacing_mm=spacing_mm)
    assert v.extra["source_spacing_mm"] == ct.spacing_mm
    m, b = v.morphometry, model_heights(v)
    voxel = max(ct.spacing_mm)
    for key in ("anterior", "middle", "posterior"):
        assert getattr(b, f"{key}_mm") == pytest.approx(getattr(m, f"height_{key}_mm"), abs=voxel), key
    assert "CT edge" in b.endplate_method
    assert model_heights(v) is b  # measured once per model


def test_moved_hu_follows_a_lift_and_a_rigid_lift_is_measured():
    """On the phantom (its model grid is its scan), raising the top of every column by one voxel: the HU above the cut
    move with it, and every height grows by one voxel (1.5 mm) within a quarter voxel; nothing moved, nothing changes."""
    v = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=1.5))
    lab, hu = _insert(v, 1)
    moved = moved_hu(v, lab)
    zs = np.arange(lab.shape[2])
    top = np.where(is_body(lab), zs, -1).max(axis=2)
    i, j = np.argwhere(top >= 0)[0]
    assert np.array_equal(moved[i, j, top[i, j] - 2:], hu[i, j, top[i, j] - 2:])
    hc = height_change(v, lab)
    for key in ("anterior", "middle", "posterior"):
        assert getattr(hc.after, f"{key}_mm") - getattr(hc.before, f"{key}_mm") == pytest.approx(1.5, abs=0.375)
    same = height_change(v, np.asarray(v.labels).copy())
    assert same.restored_mm == 0.0 and same.after == same.before


@pytest.mark.slow
def test_rigid_lifts_of_a_ct_model_are_measured_within_a_scan_voxel(bundled):
    """The bundled L4 on 1.5 mm raised by 1, 2, 3 voxels (1.5, 3.0, 4.5 mm): each height grows by that within one
    voxel of the 3 mm scan the heights are measured on (measured: 0.60 / 0.77 / 1.12, 3.68 / 3.00 / 3.17,
    6.00 / 5.14 / 4.29 mm): the resolution of a post-operative CT of the same scanner, not of the model's lift."""
    ct, seg, body = bundled
    v = vertebra_from_ct(ct, seg, "L4", body=body, spacing_mm=1.5)
    for n in (1, 2, 3):
        hc = height_change(v, _insert(v, n)[0])
        for key in ("anterior", "middle", "posterior"):
            assert getattr(hc.after, f"{key}_mm") - getattr(hc.before, f"{key}_mm") == pytest.approx(1.5 * n, abs=3.0)


def test_a_copy_of_the_model_reuses_its_heights_and_other_content_does_not(monkeypatch):
    """The model's own heights are kept by content (heights.heights_key): a parameter sample's model (the same labels,
    HU and axes, other materials) and a pickled copy (a worker's) get them without a new measurement; the same labels
    given back (a procedure that moved nothing) too; other HU are measured again; heights kept in one process and
    handed to another (kept_heights, keep_heights) are not measured there."""
    import pickle
    from dataclasses import replace

    from vertaug.model import heights

    v = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=2.0))
    b = model_heights(v)
    calls = []
    real = heights._measure
    monkeypatch.setattr(heights, "_measure", lambda *a: calls.append(1) or real(*a))
    copies = (replace(v, extra=dict(v.extra)), pickle.loads(pickle.dumps(v)))
    assert all(model_heights(c) == b for c in copies)
    assert model_heights(v, np.asarray(v.labels).copy()) is b
    assert height_change(copies[1], np.asarray(v.labels).copy()).after is b
    assert calls == []
    other = replace(v, hu=np.asarray(v.hu, np.float32) + 50.0)
    assert heights.heights_key(other) != heights.heights_key(v)
    model_heights(other)
    assert calls == [1]
    kept = heights.kept_heights(v)  # passed to a worker process, whose caches start empty
    monkeypatch.setattr(heights, "_BY_KEY", {})
    heights.keep_heights(kept)
    assert model_heights(pickle.loads(pickle.dumps(v))) == b and calls == [1]
