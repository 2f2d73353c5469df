"""Reading CT volumes and label maps into canonical RAS+ arrays.

Conventions (see docs/file_formats.md):

* Arrays are in canonical RAS+ orientation (``nibabel.as_closest_canonical``): index ``i`` increases toward the
  patient's Right, ``j`` toward Anterior, ``k`` toward Superior (up to the closest-axis approximation of oblique scans).
* ``affine_mm`` maps voxel indices to RAS+ world coordinates in millimetres (the NIfTI convention).
* CT values are Hounsfield units (float32) after the DICOM rescale slope/intercept.

Any problem with a file raises :class:`vertaug.errors.FileFormatError` (or another :class:`InputError`) naming the
file and the fix. The header is checked before any voxel is read (docs/errors.md): real-number voxel type, a 3-D
shape of at most :data:`MAX_VOXELS` voxels whose in-memory size fits the free memory, voxel spacing within
[:data:`SPACING_MIN_MM`, :data:`SPACING_MAX_MM`] mm, and (uncompressed NIfTI) a file long enough for the data its
header declares. A 1 MB gzip declaring 1 GiB of voxels, or an 88-byte header declaring 8 GiB, is refused in
milliseconds without decompressing anything.
"""

from __future__ import annotations

import gzip
import os
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
#: Largest image read: 512 x 512 x 2048 voxels (a whole-body CT at 0.5 mm slices is 512 x 512 x ~2000). As float32
#: HU that is 2 GiB; larger scans are cropped to the spine first.
MAX_VOXELS = 512 * 512 * 2048
#: Bytes of memory held per voxel while a volume is read: the stored value, nibabel's float64 after scaling and the
#: float32 copy, rounded up. The declared size times this must fit the free memory.
READ_BYTES_PER_VOXEL = 16
#: Accepted voxel spacing (mm): clinical CT is 0.3-5 mm, specimen micro-CT down to ~0.02 mm; a spacing of 0 or 1e-6
#: mm is a broken header and 30 mm slices cannot resolve a vertebral body (~25 mm high).
SPACING_MIN_MM = 0.01
SPACING_MAX_MM = 10.0
#: Accepted CT values (HU): CT stores 12-16-bit integers (air -1024, padding down to -3024, metal up to ~30000 with
#: extended scales); values beyond this are not Hounsfield units (raw floats, a wrong rescale).
HU_MIN = -32768.0
HU_MAX = 65535.0


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
    unreadable = (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError, nib.filebasedimages.ImageFileError,
                  nib.spatialimages.HeaderDataError)
    try:
        img = nib.load(str(path))
    except nib.spatialimages.HeaderDataError as exc:
        if "data code" in str(exc):
            raise _voxel_type_error(None, path, what, str(exc)) from None
        raise FileFormatError(f"{what} file '{path}' has a broken NIfTI header ({exc}).",
                              "export the image again (e.g. with dcm2niix).") from None
    except unreadable as exc:
        raise _read_error(path, what, exc) from None
    _check_header(img, path, what)
    try:
        img = nib.as_closest_canonical(img)
        data = np.asanyarray(img.dataobj)
    except unreadable as exc:
        raise _read_error(path, what, exc) from None
    data = _as_3d(data, path, what)
    return Volume(data=data, affine_mm=np.asarray(img.affine, dtype=float), source=str(path))


def _read_error(path: Path, what: str, exc: BaseException) -> FileFormatError:
    return FileFormatError(f"{what} file '{path}' could not be read as NIfTI ({type(exc).__name__}: {exc}).",
                           "the file is truncated or not a NIfTI image: copy or export it again.")


def _check_header(img, path: Path, what: str) -> None:
    """Voxel type, shape, size and spacing from the header alone (nothing of the voxel data is read)."""
    hdr = img.header
    try:
        dtype = np.dtype(hdr.get_data_dtype())
    except (TypeError, ValueError, KeyError):
        dtype = None
    if dtype is None or dtype.fields is not None or dtype.kind not in "biuf":
        raise _voxel_type_error(dtype, path, what, f"NIfTI datatype code {int(hdr['datatype'])}")
    shape = tuple(int(v) for v in img.shape)
    check_declared_size(shape, dtype.itemsize, path, what)
    try:
        affine = np.asarray(img.affine, dtype=float)
    except (np.linalg.LinAlgError, nib.spatialimages.HeaderDataError, ValueError):
        affine = np.full((4, 4), np.nan)
    _check_spacing(affine, path, what)
    if not _is_gz(path):
        need = int(hdr.get_data_offset()) + int(np.prod(shape)) * dtype.itemsize
        have = path.stat().st_size
        if have < need:
            raise FileFormatError(
                f"{what} file '{path}' is truncated: its header declares {need} bytes of data, the file has {have}.",
                "copy or export the image again (the transfer or the export stopped early).")


def _voxel_type_error(dtype, path: Path, what: str, detail: str) -> InvalidValueError:
    kind = {"c": "complex numbers", "V": "RGB/colour or structured voxels"}.get(getattr(dtype, "kind", ""),
                                                                                  "an unknown voxel type")
    return InvalidValueError(
        f"{what} '{path}' holds {kind} ({detail}): vertaug needs one real number per voxel.",
        "export the scan as greyscale integers or floats (a CT in HU, labels as integers), e.g. with dcm2niix; "
        "for a complex MR image take its magnitude.")


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def available_memory_bytes() -> int:
    """Memory this process may still allocate (psutil's 'available'; sysconf where psutil is missing)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with dask.distributed
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_declared_size(shape: tuple[int, ...], itemsize: int, path: Path | str, what: str) -> None:
    """Refuse an image whose header declares more than :data:`MAX_VOXELS` voxels or more than the free memory."""
    dims = [s for s in shape if s != 1] if len(shape) > 3 else list(shape)
    if len(dims) != 3 or min(dims) < 2:
        raise InvalidValueError(
            f"{what} '{path}' has shape {tuple(shape)}: a 3-D volume with at least 2 voxels per axis is needed.",
            "give the full 3-D scan (not a single slice, a 2-D image or a 4-D series).")
    n = int(np.prod(np.asarray(dims, dtype=object)))
    need = n * max(READ_BYTES_PER_VOXEL, itemsize + 12)
    if n > MAX_VOXELS or need > available_memory_bytes():
        raise InvalidValueError(
            f"{what} '{path}' declares {' x '.join(map(str, dims))} voxels ({need / 2**30:.3g} GiB to read; "
            f"limit {MAX_VOXELS} voxels and the {available_memory_bytes() / 2**30:.3g} GiB of free memory).",
            "crop the scan to the spine region of interest (e.g. in 3D Slicer), or check that the header is not "
            "corrupt.")


def _check_spacing(affine_mm: np.ndarray, path: Path | str, what: str) -> None:
    zooms = np.linalg.norm(affine_mm[:3, :3], axis=0)
    ok = np.all(np.isfinite(affine_mm)) and np.all((zooms >= SPACING_MIN_MM) & (zooms <= SPACING_MAX_MM))
    if not ok or abs(np.linalg.det(affine_mm[:3, :3])) < SPACING_MIN_MM**3 / 1e3:
        raise InvalidValueError(
            f"{what} '{path}' has voxel spacing {', '.join(f'{z:.3g}' for z in zooms)} mm: outside "
            f"{SPACING_MIN_MM:g}..{SPACING_MAX_MM:g} mm, not finite, or with collinear axes.",
            "the header's pixdim/sform is broken or this is not a patient CT: export the scan again "
            "(e.g. with dcm2niix) or use a reconstruction with slices of at most 10 mm.")


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


def load_ct(path: str | Path, series_uid: str | None = None) -> Volume:
    """Load a CT from a NIfTI file or a folder of DICOM slices (``series_uid``: which series of the folder); HU as
    float32 in canonical RAS+."""
    path = Path(path)
    if not path.exists():
        raise _not_found(path, "CT")
    if series_uid is not None and not path.is_dir():
        raise FileFormatError(f"--series {series_uid} was given but the CT '{path}' is a file, not a DICOM folder.",
                              "leave --series out for a NIfTI CT.")
    vol = load_dicom_series(path, series_uid) if path.is_dir() else load_nifti(path, "CT")
    hu = np.asarray(vol.data, dtype=np.float32)
    _check_finite(hu, path, "CT")
    lo, hi = float(hu.min()), float(hu.max())
    if lo < HU_MIN or hi > HU_MAX:
        raise InvalidValueError(
            f"CT '{path}' holds values {lo:.3g}..{hi:.3g}: not Hounsfield units (accepted {HU_MIN:g}..{HU_MAX:g}).",
            "give the CT in HU (DICOM rescale slope and intercept applied), not raw floats or another modality.")
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
    If the folder holds several series, ``series_uid`` selects one; otherwise the series with most slices is used (two
    largest of equal size: an error listing them). Headers are checked (size, spacing) before pixel data are read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"DICOM folder '{folder}' is not a folder.", "give the folder that holds the slices.")
    chosen = _choose_series(_dicom_headers(folder), folder, series_uid)
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
    if any((int(ds.Rows), int(ds.Columns)) != shape0 for ds in chosen):
        raise InvalidValueError(f"DICOM slices in '{folder}' differ in size.", "give one series per folder.")
    check_declared_size((shape0[1], shape0[0], len(chosen)), 2, folder, "DICOM series")
    row_spacing, col_spacing = _pixel_spacing(chosen[0], folder)
    step = (positions[-1] - positions[0]) / (len(chosen) - 1)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = step
    affine_lps[:3, 3] = positions[0]
    _check_spacing(affine_lps, folder, "DICOM series")
    # pixel_array is [row, column]; column index runs along row_dir, row index along col_dir.
    data = np.stack([_hu_plane(ds, folder).T for ds in chosen], axis=-1)
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine_ras))
    return Volume(data=np.asarray(img.dataobj, dtype=np.float32), affine_mm=np.asarray(img.affine), source=str(folder))


def _dicom_headers(folder: Path) -> list:
    """Headers of the image slices under ``folder``; pixel data are deferred (read only for the chosen series)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(str(f), defer_size="1 KB")
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
    return slices


def _choose_series(slices: list, folder: Path, series_uid: str | None) -> list:
    """The slices of ``series_uid``, or of the largest series; two largest of equal size are an error."""
    by_series: dict[str, list] = {}
    for ds in slices:
        by_series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append(ds)
    listing = ", ".join(f"{uid} ({len(v)} slices, {getattr(v[0], 'SeriesDescription', '') or 'no description'})"
                        for uid, v in sorted(by_series.items()))
    if series_uid is not None:
        if series_uid not in by_series:
            raise FileFormatError(f"Series {series_uid} is not in '{folder}'.", f"choose one of: {listing}.")
        chosen = by_series[series_uid]
    else:
        sizes = sorted((len(v) for v in by_series.values()), reverse=True)
        if len(sizes) > 1 and sizes[0] == sizes[1]:
            raise FileFormatError(
                f"DICOM folder '{folder}' holds {len(by_series)} series and the largest two have {sizes[0]} slices "
                f"each, so which one is the CT is ambiguous: {listing}.",
                "give --series UID (compare, fracture), or copy the series you mean into a folder of its own.")
        chosen = max(by_series.values(), key=len)
    if len(chosen) < 2:
        raise InvalidValueError(
            f"DICOM folder '{folder}' holds a single slice: a 3-D volume needs at least 2.",
            "give the folder with the whole series.",
        )
    return chosen


def _pixel_spacing(ds, folder: Path) -> tuple[float, float]:
    try:
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        raise FileFormatError(
            f"DICOM series in '{folder}' has no usable PixelSpacing (0028,0030): the in-plane voxel size is unknown.",
            "export the original CT series from the PACS (secondary captures and some anonymisers drop it), or "
            "convert it with dcm2niix and give the NIfTI file.") from None
    return row_spacing, col_spacing


def _hu_plane(ds, folder: Path) -> np.ndarray:
    """One slice in HU (float32): stored value * RescaleSlope + RescaleIntercept."""
    try:
        plane = ds.pixel_array
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    except (ValueError, TypeError, AttributeError, NotImplementedError, RuntimeError, OSError) as exc:
        raise FileFormatError(
            f"DICOM slice '{getattr(ds, 'filename', '?')}' in '{folder}' has unreadable pixel data "
            f"({type(exc).__name__}: {str(exc)[:120]}).",
            "export the series again; compressed transfer syntaxes may need pylibjpeg or gdcm installed.") from None
    if plane.ndim != 2:
        raise InvalidValueError(
            f"DICOM slice '{getattr(ds, 'filename', '?')}' in '{folder}' has pixel data of shape {plane.shape}, "
            "not one greyscale plane (colour or multi-frame).", "give a CT series of single greyscale slices.")
    return plane.astype(np.float32) * slope + intercept
