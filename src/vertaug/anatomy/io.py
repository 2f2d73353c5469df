"""Reading CT volumes and label maps into canonical RAS+ arrays.

Conventions (see docs/file_formats.md):

* Arrays are in canonical RAS+ orientation (``nibabel.as_closest_canonical``): index ``i`` increases toward the
  patient's Right, ``j`` toward Anterior, ``k`` toward Superior (up to the closest-axis approximation of oblique scans).
* ``affine_mm`` maps voxel indices to RAS+ world coordinates in millimetres (the NIfTI convention).
* CT values are Hounsfield units (float32) after the DICOM rescale slope/intercept.

Any problem with a file raises :class:`vertaug.errors.FileFormatError` (or another :class:`InputError`) naming the
file and the fix.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import FileFormatError, GridMismatchError, InvalidValueError

__all__ = ["Volume", "load_ct", "load_labels", "load_nifti", "load_dicom_series", "save_nifti", "check_same_grid"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Grids are the same when affines agree to this many mm (translation) and this relative amount (rotation/zoom).
GRID_ATOL_MM = 1e-2
GRID_RTOL = 1e-4


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image on a regular grid in canonical RAS+ orientation.

    data: the voxel values, shape (ni, nj, nk).
    affine_mm: 4x4 voxel index -> RAS+ world position in mm.
    source: where it came from (a path or 'phantom'), for messages and provenance.
    """

    data: np.ndarray
    affine_mm: np.ndarray
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine_mm[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine_mm[:3, :3])))

    def with_data(self, data: np.ndarray) -> "Volume":
        return Volume(data=data, affine_mm=self.affine_mm, source=self.source)


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _not_found(path: Path, what: str) -> FileFormatError:
    return FileFormatError(
        f"{what} file '{path}' does not exist.",
        "check the path; a CT is a .nii/.nii.gz file or a folder of DICOM slices.",
    )


def load_nifti(path: str | Path, what: str = "image") -> Volume:
    """Load a NIfTI file, reorient it to canonical RAS+ and return its data (float64 or ints as stored)."""
    path = Path(path)
    if not path.exists():
        raise _not_found(path, what)
    if path.is_dir():
        raise FileFormatError(f"{what} '{path}' is a folder, not a NIfTI file.", "give the .nii or .nii.gz file.")
    if not _is_nifti(path):
        raise FileFormatError(
            f"{what} file '{path}' is not a NIfTI file (expected .nii or .nii.gz).",
            "convert it to NIfTI (e.g. with dcm2niix) or give a DICOM series folder for a CT.",
        )
    try:
        img = nib.load(str(path))
        img = nib.as_closest_canonical(img)
        data = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise FileFormatError(
            f"{what} file '{path}' could not be read as NIfTI ({type(exc).__name__}: {exc}).",
            "the file is truncated or not a NIfTI image: copy or export it again.",
        ) from None
    data = _as_3d(data, path, what)
    return Volume(data=data, affine_mm=np.asarray(img.affine, dtype=float), source=str(path))


def _as_3d(data: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3 or min(data.shape) < 2:
        raise InvalidValueError(
            f"{what} '{path}' has shape {tuple(data.shape)}: a 3-D volume with at least 2 voxels per axis is needed.",
            "give the full 3-D scan (not a single slice, a 2-D image or a 4-D series).",
        )
    return data


def _check_finite(data: np.ndarray, path: Path | str, what: str) -> None:
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad:
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise InvalidValueError(
                f"{what} '{path}' has {n_bad} NaN or infinite voxels (first at index {first}).",
                "replace them (e.g. with -1024 HU for air) or crop them away before running vertaug.",
            )


def load_ct(path: str | Path) -> Volume:
    """Load a CT from a NIfTI file or a folder of DICOM slices; HU as float32 in canonical RAS+."""
    path = Path(path)
    if not path.exists():
        raise _not_found(path, "CT")
    vol = load_dicom_series(path) if path.is_dir() else load_nifti(path, "CT")
    hu = np.asarray(vol.data, dtype=np.float32)
    _check_finite(hu, path, "CT")
    return vol.with_data(hu)


def load_labels(path: str | Path, reference: Volume | None = None, what: str = "label map") -> Volume:
    """Load an integer label map (NIfTI) in canonical RAS+; if ``reference`` is given, check it shares its grid."""
    vol = load_nifti(path, what)
    data = vol.data
    if np.issubdtype(data.dtype, np.floating):
        _check_finite(data, path, what)
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise InvalidValueError(
                f"{what} '{path}' holds non-integer values; a label map must hold integer labels.",
                "give the segmentation output (e.g. TotalSegmentator's multilabel file), not a probability map.",
            )
        data = rounded
    if data.min() < 0 or data.max() > 65535:
        raise InvalidValueError(f"{what} '{path}' has labels outside 0..65535.", "give a TotalSegmentator label map.")
    vol = vol.with_data(data.astype(np.uint16))
    if reference is not None:
        check_same_grid(reference, vol)
    return vol


def check_same_grid(reference: Volume, other: Volume) -> None:
    """Raise GridMismatchError unless both volumes have the same shape and voxel-to-world affine."""
    if reference.shape != other.shape:
        raise GridMismatchError(
            f"'{other.source}' has shape {other.shape} but the CT '{reference.source}' has {reference.shape}: "
            "they are not on the same voxel grid.",
            "use the segmentation made from this CT, or resample it onto the CT grid (e.g. nearest-neighbour in 3D Slicer).",
        )
    if not np.allclose(reference.affine_mm, other.affine_mm, atol=GRID_ATOL_MM, rtol=GRID_RTOL):
        diff = float(np.max(np.abs(reference.affine_mm - other.affine_mm)))
        raise GridMismatchError(
            f"'{other.source}' has the same shape as the CT '{reference.source}' but a different position or spacing "
            f"(affines differ by up to {diff:.3g} mm).",
            "use the segmentation made from this CT, or resample it onto the CT grid.",
        )


def save_nifti(data: np.ndarray, affine_mm: np.ndarray, path: str | Path) -> Path:
    """Write a 3-D array as NIfTI with the given RAS+ affine (mm)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine_mm, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------- DICOM

#: Relative spread of slice gaps above which a series is taken to have missing or duplicated slices.
SLICE_GAP_RTOL = 0.05


def load_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """Read one CT series from a folder of DICOM files.

    Slices are sorted by their position along the slice normal (ImagePositionPatient projected on the cross product
    of the two ImageOrientationPatient vectors), HU = stored value * RescaleSlope + RescaleIntercept, and the affine
    is built from position, orientation and spacing in DICOM's LPS frame and converted to RAS+ (x and y negated).
    If the folder holds several series, ``series_uid`` selects one; otherwise the series with most slices is used.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"DICOM folder '{folder}' is not a folder.", "give the folder that holds the slices.")
    slices = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=False)
        except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError, KeyError, TypeError):
            continue
        if "PixelData" not in ds or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        slices.append(ds)
    if not slices:
        raise FileFormatError(
            f"Folder '{folder}' holds no readable DICOM image slices.",
            "give the folder of one CT series (files with pixel data and ImagePositionPatient).",
        )
    by_series: dict[str, list] = {}
    for ds in slices:
        by_series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append(ds)
    if series_uid is not None:
        if series_uid not in by_series:
            raise FileFormatError(
                f"Series {series_uid} is not in '{folder}'.", f"choose one of: {', '.join(sorted(by_series))}."
            )
        chosen = by_series[series_uid]
    else:
        chosen = max(by_series.values(), key=len)
    if len(chosen) < 2:
        raise InvalidValueError(
            f"DICOM folder '{folder}' holds a single slice: a 3-D volume needs at least 2.",
            "give the folder with the whole series.",
        )

    orient = np.array(chosen[0].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array([np.array(ds.ImagePositionPatient, dtype=float) for ds in chosen])
    order = np.argsort(positions @ normal)
    chosen = [chosen[i] for i in order]
    positions = positions[order]
    gaps = np.diff(positions @ normal)
    if np.any(gaps <= 1e-6) or (gaps.max() - gaps.min()) > SLICE_GAP_RTOL * abs(np.median(gaps)):
        raise InvalidValueError(
            f"DICOM series in '{folder}' has uneven slice positions (gaps {gaps.min():.3g}..{gaps.max():.3g} mm): "
            "slices are missing or duplicated.",
            "export the complete series again, one series per folder.",
        )
    shape0 = (int(chosen[0].Rows), int(chosen[0].Columns))
    planes = []
    for ds in chosen:
        if (int(ds.Rows), int(ds.Columns)) != shape0:
            raise InvalidValueError(f"DICOM slices in '{folder}' differ in size.", "give one series per folder.")
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        planes.append(ds.pixel_array.astype(np.float32) * slope + intercept)
    # pixel_array is [row, column]; column index runs along row_dir, row index along col_dir.
    data = np.stack([p.T for p in planes], axis=-1)
    row_spacing, col_spacing = (float(v) for v in chosen[0].PixelSpacing)
    step = (positions[-1] - positions[0]) / (len(chosen) - 1)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine_ras))
    return Volume(data=np.asarray(img.dataobj, dtype=np.float32), affine_mm=np.asarray(img.affine), source=str(folder))
