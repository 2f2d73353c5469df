"""Loading CTs and label maps: NIfTI, DICOM, and every kind of bad input named in the foundation issue."""

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

from vertaug.anatomy.io import load_ct, load_dicom_series, load_labels, save_nifti
from vertaug.anatomy.morphometry import measure_spine
from vertaug.errors import (
    EmptyMaskError,
    FileFormatError,
    GridMismatchError,
    InputError,
    InvalidValueError,
    LevelNotFoundError,
)


def test_nifti_ct_is_canonical_ras_in_hu(example):
    ct = load_ct(example["ct"])
    assert ct.shape == (122, 101, 112)
    assert ct.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    assert nib.aff2axcodes(ct.affine_mm) == ("R", "A", "S")
    assert ct.data.dtype == np.float32
    assert -1300 < ct.data.min() < -900  # air
    assert 1500 < ct.data.max() < 4000  # cortical bone / contrast


def test_dicom_series_geometry_and_hu(example):
    ct = load_dicom_series(example["dicom"])
    assert ct.shape == (512, 512, 20)
    assert ct.spacing_mm[0] == pytest.approx(0.9765625)
    assert ct.spacing_mm[1] == pytest.approx(0.9765625)
    # slice step from ImagePositionPatient, not SliceThickness
    assert ct.spacing_mm[2] == pytest.approx(2.0, abs=1e-3)
    assert nib.aff2axcodes(ct.affine_mm) == ("R", "A", "S")
    assert ct.data.min() == pytest.approx(-1024.0)  # rescale intercept applied: air outside the bore
    air = np.mean(ct.data[:20, :20, :])  # corner of the field: air
    assert air < -900
    assert 1000 < ct.data.max() < 4000


def test_dicom_to_nifti_round_trip(example, tmp_path):
    ct = load_ct(example["dicom"])
    path = save_nifti(ct.data, ct.affine_mm, tmp_path / "from_dicom.nii.gz")
    back = load_ct(path)
    assert back.shape == ct.shape
    np.testing.assert_allclose(back.affine_mm, ct.affine_mm, atol=1e-4)
    np.testing.assert_array_equal(back.data, ct.data)


def test_dicom_slice_order_does_not_depend_on_file_names(example, tmp_path):
    files = sorted(example["dicom"].iterdir())
    for i, f in enumerate(reversed(files)):
        shutil.copy(f, tmp_path / f"x{i:03d}.dcm")
    a = load_dicom_series(example["dicom"])
    b = load_dicom_series(tmp_path)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine_mm, b.affine_mm)


def test_dicom_missing_slice_is_an_error(example, tmp_path):
    files = sorted(example["dicom"].iterdir())
    for f in files[:8] + files[9:]:
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(InvalidValueError, match="uneven slice positions"):
        load_dicom_series(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        load_ct(tmp_path / "nope.nii.gz")


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(FileFormatError, match="not a NIfTI"):
        load_ct(p)
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"this is not gzip")
    with pytest.raises(FileFormatError, match="could not be read"):
        load_ct(fake)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(FileFormatError, match="no readable DICOM"):
        load_ct(tmp_path)


def test_truncated_nifti(example, tmp_path):
    raw = example["ct"].read_bytes()
    p = tmp_path / "truncated.nii.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        load_ct(p)


def test_mismatched_grids(example, tmp_path):
    ct = load_ct(example["ct"])
    seg = nib.load(str(example["seg"]))
    cropped = nib.Nifti1Image(np.asanyarray(seg.dataobj)[:-2], seg.affine)
    nib.save(cropped, str(tmp_path / "cropped.nii.gz"))
    with pytest.raises(GridMismatchError, match="not on the same voxel grid"):
        load_labels(tmp_path / "cropped.nii.gz", ct)
    shifted = seg.affine.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asanyarray(seg.dataobj), shifted), str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(GridMismatchError, match="different position"):
        load_labels(tmp_path / "shifted.nii.gz", ct)


def test_label_map_without_vertebrae(example, tmp_path):
    ct = nib.load(str(example["ct"]))
    empty = np.zeros(ct.shape, dtype=np.uint8)
    empty[10:20, 10:20, 10:20] = 5  # liver, not a vertebra
    nib.save(nib.Nifti1Image(empty, ct.affine), str(tmp_path / "novert.nii.gz"))
    with pytest.raises(EmptyMaskError, match="no vertebra labels"):
        measure_spine(example["ct"], tmp_path / "novert.nii.gz")


def test_requested_level_not_present(example):
    spine = measure_spine(example["ct"], example["seg"], body=example["body"])
    with pytest.raises(LevelNotFoundError, match="C3 is not in the segmentation"):
        spine["C3"]


def test_two_d_image(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((64, 64), dtype=np.int16), np.eye(4)), str(tmp_path / "slice.nii.gz"))
    with pytest.raises(InvalidValueError, match="3-D volume"):
        load_ct(tmp_path / "slice.nii.gz")


def test_nan_voxels(tmp_path):
    data = np.zeros((8, 8, 8), dtype=np.float32)
    data[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(InvalidValueError, match=r"1 NaN or infinite voxels \(first at index \(2, 3, 4\)\)"):
        load_ct(tmp_path / "nan.nii.gz")


def test_every_error_is_an_input_error_with_a_fix(tmp_path):
    with pytest.raises(InputError) as info:
        load_ct(tmp_path / "nope.nii")
    assert "Fix:" in str(info.value)


def test_gzip_of_garbage_is_reported(tmp_path):
    p = tmp_path / "garbage.nii.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x00" * 100)
    with pytest.raises(FileFormatError):
        load_ct(p)
