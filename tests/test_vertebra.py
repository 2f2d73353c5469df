"""The voxel vertebra model from the real CT and from phantoms."""

import numpy as np
import pytest

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import InputError, LevelNotFoundError, ParameterError
from vertaug.model.labels import LABELS
from vertaug.model.vertebra import label_counts, vertebra_from_ct, vertebra_from_phantom


@pytest.fixture(scope="module")
def real(example):
    ct = load_ct(example["ct"])
    return ct, load_labels(example["seg"], ct), load_labels(example["body"], ct)


def test_real_l1_model_at_1mm(real, tmp_path):
    ct, seg, body = real
    v = vertebra_from_ct(ct, seg, "L1", body=body, spacing_mm=1.0)
    assert v.spacing_m == pytest.approx((1e-3,) * 3)
    counts = label_counts(v)
    for name in ("trabecular", "cortex", "endplate", "canal", "basivertebral", "segmental", "disc"):
        assert counts[name] > 0, name
    # body volume within 5 % of the segmentation's (3 mm voxels) volume
    assert v.body_volume_ml == pytest.approx(v.morphometry.volume_ml, rel=0.05)
    trab = v.labels == LABELS["trabecular"]
    k = v.k[trab]
    assert 1e-9 < np.median(k) < 1e-7  # measured vertebral range (Nauman 1999, Baroud 2004)
    assert 50e6 < np.median(v.E[trab]) < 2000e6
    assert np.all(v.k[v.labels == LABELS["cortex"]] == 0)
    assert v.posterior_mask.sum() > 1000  # pedicles and arch kept for trajectories
    from vertaug.report.figures import model_slices_figure

    assert model_slices_figure(v, tmp_path / "m.png").stat().st_size > 20_000


@pytest.mark.parametrize("spacing_mm", [1.5, 2.0])
def test_coarse_model_keeps_a_shell_and_vein_exits(real, spacing_mm):
    """Voxels coarser than the 1 mm shell label still get one shell layer (else no vein exits: no marrow outflow)."""
    ct, seg, body = real
    counts = label_counts(vertebra_from_ct(ct, seg, "L1", body=body, spacing_mm=spacing_mm))
    for name in ("cortex", "endplate", "basivertebral", "segmental"):
        assert counts[name] > 0, name


def test_model_maps_back_onto_ct_world(real):
    ct, seg, body = real
    v = vertebra_from_ct(ct, seg, "L2", body=body, spacing_mm=1.0)
    c = np.array(v.landmarks.centroid_ijk)
    world = v.affine_mm[:3, :3] @ c + v.affine_mm[:3, 3]
    assert np.linalg.norm(world - np.array(v.morphometry.centroid_mm)) < 2.0  # mm


@pytest.mark.parametrize("kind,grade", [("none", 0), ("wedge", 2), ("crush", 3)])
def test_phantom_model_reproduces_construction(kind, grade):
    ph = make_phantom(fracture=kind, grade=grade, cortical_defect=True)
    v = vertebra_from_phantom(ph)
    t = ph.truth["levels"]["L1"]
    s = 1.0
    # fractured height along the mid-sagittal anterior column (85 % of the depth)
    body = v.body_mask
    i = int(round(v.landmarks.centroid_ijk[0]))
    j_post = int(round(v.landmarks.posterior_wall_ijk[1]))
    j = j_post + int(round(0.85 * t["ap_depth_mm"] / s))
    assert abs(body[i, j, :].sum() * s - t["height_anterior_mm"]) <= s
    # cortex shell: 1 mm thick (one voxel) on the lateral wall, 4 mm below mid-height (clear of the vein exits)
    k = int(round(v.landmarks.centroid_ijk[2])) - 4
    row = v.labels[:, int(round(v.landmarks.centroid_ijk[1])), k]
    assert row[np.flatnonzero(row)[0]] == LABELS["cortex"] and row[np.flatnonzero(row)[0] + 1] == LABELS["trabecular"]
    assert label_counts(v)["defect"] > 0


def test_bad_model_inputs(real):
    ct, seg, body = real
    with pytest.raises(LevelNotFoundError, match="C5 is not in the segmentation"):
        vertebra_from_ct(ct, seg, "C5", body=body)
    with pytest.raises(LevelNotFoundError, match="cannot be modelled"):
        vertebra_from_ct(ct, seg, "T12", body=body)
    with pytest.raises(ParameterError, match="spacing_mm"):
        vertebra_from_ct(ct, seg, "L1", body=body, spacing_mm=0.0)
    with pytest.raises(InputError, match="cortical_defect"):
        vertebra_from_ct(ct, seg, "L1", body=body, cortical_defect="upwards")
