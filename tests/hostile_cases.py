"""Hostile inputs for the command line: small generated files, each a case of one kind of problem.

Each case is ``name -> function(tmp_path) -> argv`` (the arguments of ``vertaug``). The files are a few kB; the
"bomb" cases declare gigabytes in their headers. Used by tests/test_hostile_inputs.py and by the before/after count in
docs/errors.md (``python3 tests/hostile_cases.py``).
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

# NIfTI-1 header byte offsets (nifti1.h)
_DIM, _DATATYPE, _BITPIX, _PIXDIM = 40, 70, 72, 76


def _nifti(path: Path, data=None, affine=None) -> Path:
    data = np.zeros((6, 6, 6), np.int16) if data is None else data
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    nib.save(img, str(path))
    return path


def _patch(path: Path, offset: int, fmt: str, *values) -> Path:
    raw = bytearray(Path(path).read_bytes())
    struct.pack_into("<" + fmt, raw, offset, *values)
    Path(path).write_bytes(bytes(raw))
    return path


def _pair(tmp: Path, ct: Path | None = None) -> list[str]:
    """argv of ``morpho CT SEG`` with a good segmentation unless the CT is the hostile part."""
    seg = _nifti(tmp / "seg.nii", np.zeros((6, 6, 6), np.uint16))
    return ["morpho", str(ct), str(seg)]


def _header_only(path: Path, dims, datatype=4, bitpix=16, gz=False, extra=b"") -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    raw = bytearray(hdr.binaryblock)
    struct.pack_into("<8h", raw, _DIM, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<hh", raw, _DATATYPE, datatype, bitpix)
    struct.pack_into("<8f", raw, _PIXDIM, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", raw, 108, 352.0)
    blob = bytes(raw) + b"\0" * 4 + extra
    if gz:
        path.write_bytes(gzip.compress(blob, 9))
    else:
        path.write_bytes(blob)
    return path


# ----------------------------------------------------------------------------------------------------- NIfTI files


def _pixdim(t, zooms) -> Path:
    """A CT whose only geometry is pixdim (qform and sform codes 0), set to ``zooms``."""
    p = _patch(_nifti(t / "ct.nii"), 252, "hh", 0, 0)
    return _patch(p, _PIXDIM, "4f", 1.0, *zooms)


def spacing_zero(t):
    return _pair(t, _pixdim(t, (0.0, 0.0, 0.0)))


def spacing_tiny(t):
    return _pair(t, _nifti(t / "ct.nii", affine=np.diag([1e-6, 1e-6, 1e-6, 1.0])))


def spacing_30mm_slices(t):
    return _pair(t, _nifti(t / "ct.nii", affine=np.diag([0.8, 0.8, 30.0, 1.0])))


def spacing_nan(t):
    return _pair(t, _pixdim(t, (float("nan"), 1.0, 1.0)))


def unknown_dtype_code(t):
    return _pair(t, _patch(_nifti(t / "ct.nii"), _DATATYPE, "h", 1999))


def rgb_image(t):
    return _pair(t, _patch(_nifti(t / "ct.nii", np.zeros((6, 6, 6), np.int16)), _DATATYPE, "hh", 128, 24))


def complex_image(t):
    return _pair(t, _nifti(t / "ct.nii", np.zeros((6, 6, 6), np.complex64)))


def dims_32767_cubed(t):
    return _pair(t, _header_only(t / "ct.nii", (32767, 32767, 32767)))


def header_88_bytes_claims_8gib(t):
    p = _header_only(t / "ct.nii.gz", (2048, 2048, 1024), datatype=256, bitpix=8, gz=True)
    return _pair(t, p)


def gzip_bomb(t):
    # a valid header for 1 GiB of uint8 and 1 GiB of zeros, compressed to ~1 MB; streamed so the test stays small
    p = t / "ct.nii.gz"
    hdr = _header_only(t / "h.nii", (1024, 1024, 1024), datatype=2, bitpix=8).read_bytes()
    member = gzip.compress(b"\0" * (1 << 24), 9)  # gzip members concatenate: 64 x 16 MiB of zeros
    with open(p, "wb") as fh:
        fh.write(gzip.compress(hdr))
        fh.writelines([member] * 64)
    return _pair(t, p)


def truncated_data(t):
    p = _nifti(t / "ct.nii", np.zeros((40, 40, 40), np.int16))
    p.write_bytes(p.read_bytes()[:2000])
    return _pair(t, p)


def truncated_gzip(t):
    p = t / "ct.nii.gz"
    _nifti(p, np.random.default_rng(0).integers(-1000, 1000, (30, 30, 30)).astype(np.int16))
    p.write_bytes(p.read_bytes()[:3000])
    return _pair(t, p)


def empty_file(t):
    (t / "ct.nii").write_bytes(b"")
    return _pair(t, t / "ct.nii")


def random_bytes_gz(t):
    (t / "ct.nii.gz").write_bytes(bytes(range(7, 256)) * 16)
    return _pair(t, t / "ct.nii.gz")


def not_nifti_suffix(t):
    (t / "ct.png").write_bytes(b"\x89PNG\r\n")
    return _pair(t, t / "ct.png")


def image_2d(t):
    return _pair(t, _nifti(t / "ct.nii", np.zeros((8, 8), np.int16)))


def image_4d(t):
    return _pair(t, _nifti(t / "ct.nii", np.zeros((6, 6, 6, 3), np.int16)))


def hu_1e33(t):
    d = np.zeros((6, 6, 6), np.float32)
    d[2, 2, 2] = 1e33
    return _pair(t, _nifti(t / "ct.nii", d))


def nan_voxels(t):
    d = np.zeros((6, 6, 6), np.float32)
    d[1, 1, 1] = np.nan
    return _pair(t, _nifti(t / "ct.nii", d))


def ct_missing(t):
    return _pair(t, t / "nowhere.nii.gz")


def seg_rgb(t):
    ct = _nifti(t / "ct.nii")
    seg = _patch(_nifti(t / "s.nii", np.zeros((6, 6, 6), np.int16)), _DATATYPE, "hh", 128, 24)
    return ["morpho", str(ct), str(seg)]


def seg_other_grid(t):
    ct = _nifti(t / "ct.nii")
    seg = _nifti(t / "s.nii", np.zeros((7, 6, 6), np.uint16))
    return ["morpho", str(ct), str(seg)]


def seg_probabilities(t):
    ct = _nifti(t / "ct.nii")
    seg = _nifti(t / "s.nii", np.full((6, 6, 6), 0.5, np.float32))
    return ["morpho", str(ct), str(seg)]


def seg_dims_bomb(t):
    ct = _nifti(t / "ct.nii")
    return ["morpho", str(ct), str(_header_only(t / "s.nii", (32767, 32767, 32767)))]


# ----------------------------------------------------------------------------------------------------------- DICOM


def _dicom_series(folder: Path, n=3, rows=8, cols=8, spacing=("0.7", "0.7"), uid="1.2.3.4", pixel_bytes=None,
                  start=0.0):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.Modality = "CT"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImagePositionPatient = [0.0, 0.0, start + 2.0 * i]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        if spacing is not None:
            ds.PixelSpacing = list(spacing)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = pixel_bytes if pixel_bytes is not None else np.zeros((rows, cols), np.int16).tobytes()
        ds.save_as(str(folder / f"{uid}-{i:03d}.dcm"), enforce_file_format=True)
    return folder


def dicom_no_pixel_spacing(t):
    return _pair(t, _dicom_series(t / "dcm", spacing=None))


def dicom_zero_pixel_spacing(t):
    return _pair(t, _dicom_series(t / "dcm", spacing=("0", "0")))


def dicom_40000_rows(t):
    return _pair(t, _dicom_series(t / "dcm", rows=40000, cols=40000, pixel_bytes=b"\0" * 128))


def dicom_short_pixel_data(t):
    return _pair(t, _dicom_series(t / "dcm", pixel_bytes=b"\0" * 10))


def dicom_two_equal_series(t):
    _dicom_series(t / "dcm", uid="1.2.3.4")
    _dicom_series(t / "dcm", uid="1.2.3.5", start=100.0)
    return _pair(t, t / "dcm")


def dicom_empty_folder(t):
    (t / "dcm").mkdir()
    (t / "dcm" / "notes.txt").write_text("no images here")
    return _pair(t, t / "dcm")


# ----------------------------------------------------------------------------------------------- output paths


def _good_pair(t):
    """A CT and segmentation that load (the run itself may still stop later, e.g. on an empty label map)."""
    ct = _nifti(t / "ct.nii", np.full((6, 6, 6), -1000, np.int16))
    seg = _nifti(t / "seg.nii", np.zeros((6, 6, 6), np.uint16))
    return str(ct), str(seg)


def json_on_folder(t):
    (t / "folder").mkdir()
    return ["morpho", *_good_pair(t), "--json", str(t / "folder")]


def json_under_file(t):
    (t / "afile").write_text("x")
    return ["morpho", *_good_pair(t), "--json", str(t / "afile" / "m.json")]


def json_read_only(t):
    ro = t / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ["morpho", *_good_pair(t), "--json", str(ro / "m.json")]


_PHANTOM_FAST = ["--phantom", "wedge:2", "--level", "L1", "--spacing", "2", "--no-thermal", "--no-mechanics"]


def compare_out_existing_file(t):
    (t / "report").write_text("an earlier file")
    return ["compare", *_PHANTOM_FAST, "--out", str(t / "report")]


def compare_out_under_file(t):
    (t / "afile").write_text("x")
    return ["compare", *_PHANTOM_FAST, "--out", str(t / "afile" / "report")]


def compare_out_read_only(t):
    ro = t / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ["compare", *_PHANTOM_FAST, "--out", str(ro / "report")]


def fracture_out_existing_file(t):
    (t / "out").write_text("x")
    ct, seg = _good_pair(t)
    return ["fracture", ct, seg, "--level", "L1", "--out", str(t / "out")]


def cohort_out_existing_file(t):
    (t / "out").write_text("x")
    return ["cohort", str(_manifest(t)), "--out", str(t / "out"), "--scheduler", "serial", "--no-progress"]


def validate_out_existing_file(t):
    (t / "out").write_text("x")
    return ["validate", "--quick", "--case", "no-such-case", "--out", str(t / "out")]


# ------------------------------------------------------------------------------------------------- parameters


def compare_spacing_zero(t):
    return ["compare", "--phantom", "wedge:2", "--level", "L1", "--spacing", "0", "--out", str(t / "r")]


def compare_spacing_nan(t):
    return ["compare", "--phantom", "wedge:2", "--level", "L1", "--spacing", "nan", "--out", str(t / "r")]


def compare_workers_zero(t):
    return ["compare", *_PHANTOM_FAST, "--workers", "0", "--out", str(t / "r")]


def compare_unknown_level(t):
    return ["compare", "--phantom", "wedge:2", "--level", "L9", "--out", str(t / "r")]


def compare_bad_phantom(t):
    return ["compare", "--phantom", "wedge", "--level", "L1", "--out", str(t / "r")]


def morpho_unknown_numbering(t):
    return ["morpho", *_good_pair(t), "--numbering", "v9"]


def path_with_markup(t):
    return ["morpho", str(t / "[/]" / "[link=file:x.invalid]ct.nii.gz"), str(t / "seg.nii")]


def path_with_ansi(t):
    return ["morpho", str(t / "\x1b[31mred\x1b[0m.nii.gz"), str(t / "seg.nii")]


# ---------------------------------------------------------------------------------------------------- cohort


def _manifest(t, text=None, encoding="utf-8") -> Path:
    p = t / "cohort.csv"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text or "case_id,level,phantom\nA,L1,fracture=wedge;grade=2;spacing_mm=2\n", encoding=encoding)
    return p


def _cohort(t, manifest, *extra):
    return ["cohort", str(manifest), "--out", str(t / "out"), "--scheduler", "serial", "--no-progress", *extra]


def cohort_samples_1e9(t):
    return _cohort(t, _manifest(t), "--samples", "1000000000")


def cohort_samples_float_text(t):
    return _cohort(t, _manifest(t), "--samples", "1e9")


def manifest_latin1(t):
    return _cohort(t, _manifest(t, "case_id,level,ct,seg\nMüller,L1,ct.nii,seg.nii\n", encoding="latin-1"))


def manifest_binary(t):
    return _cohort(t, _manifest(t, bytes(range(256)) * 2))


def manifest_nul_bytes(t):
    return _cohort(t, _manifest(t, b"case_id,level,phantom\nA,L1,fracture=wedge\0\n"))


def manifest_spacing_zero(t):
    return _cohort(t, _manifest(t, "case_id,level,phantom,spacing_mm\nA,L1,fracture=wedge;grade=2,0\n"))


def manifest_phantom_spacing_zero(t):
    return _cohort(t, _manifest(t, "case_id,level,phantom\nA,L1,fracture=wedge;grade=2;spacing_mm=0\n"))


def manifest_empty(t):
    return _cohort(t, _manifest(t, b""))


def manifest_is_folder(t):
    (t / "m").mkdir()
    return _cohort(t, t / "m")


def cohort_json_corrupt(t):
    (t / "out").mkdir()
    (t / "out" / "cohort.json").write_text('{"samples": 1, "se')
    return _cohort(t, _manifest(t), "--samples", "1")


def cohort_json_not_object(t):
    (t / "out").mkdir()
    (t / "out" / "cohort.json").write_text("[1, 2, 3]")
    return _cohort(t, _manifest(t), "--samples", "1")


def cohort_scheduler_not_address(t):
    return _cohort(t, _manifest(t))[:-3] + ["--no-progress", "--scheduler", "[bold]nonsense"]


def cohort_unknown_task(t):
    return _cohort(t, _manifest(t), "--task", "nowhere:nothing")


CASES = {name: fn for name, fn in dict(globals()).items()
         if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", None) == __name__}
#: A word (lower case) the error line must hold: it names this problem, not another one met first.
EXPECT = {
    "spacing_zero": "spacing", "spacing_tiny": "spacing", "spacing_30mm_slices": "spacing", "spacing_nan": "spacing",
    "unknown_dtype_code": "voxel type", "rgb_image": "rgb", "complex_image": "complex",
    "dims_32767_cubed": "declares", "header_88_bytes_claims_8gib": "declares", "gzip_bomb": "declares",
    "truncated_data": "truncated", "truncated_gzip": "could not be read", "empty_file": "could not be read",
    "random_bytes_gz": "could not be read", "not_nifti_suffix": "not a nifti", "image_2d": "3-d volume",
    "image_4d": "3-d volume", "hu_1e33": "hounsfield", "nan_voxels": "nan", "ct_missing": "does not exist",
    "seg_rgb": "rgb", "seg_other_grid": "same voxel grid", "seg_probabilities": "non-integer",
    "seg_dims_bomb": "declares", "dicom_no_pixel_spacing": "pixelspacing", "dicom_zero_pixel_spacing": "spacing",
    "dicom_40000_rows": "declares", "dicom_short_pixel_data": "pixel data", "dicom_two_equal_series": "ambiguous",
    "dicom_empty_folder": "no readable dicom", "json_on_folder": "is a folder", "json_under_file": "is a file",
    "json_read_only": "not writable", "compare_out_existing_file": "existing file",
    "compare_out_under_file": "is a file", "compare_out_read_only": "not writable",
    "fracture_out_existing_file": "existing file", "cohort_out_existing_file": "existing file",
    "validate_out_existing_file": "existing file", "compare_spacing_zero": "spacing",
    "compare_spacing_nan": "spacing", "compare_workers_zero": "workers", "compare_unknown_level": "l9",
    "compare_bad_phantom": "type:grade", "morpho_unknown_numbering": "v9", "path_with_markup": "does not exist",
    "path_with_ansi": "does not exist", "cohort_samples_1e9": "samples", "cohort_samples_float_text": "samples",
    "manifest_latin1": "utf-8", "manifest_binary": "utf-8", "manifest_nul_bytes": "nul",
    "manifest_spacing_zero": "spacing_mm", "manifest_phantom_spacing_zero": "spacing_mm",
    "manifest_empty": "manifest", "manifest_is_folder": "manifest", "cohort_json_corrupt": "cohort.json",
    "cohort_json_not_object": "cohort.json", "cohort_scheduler_not_address": "scheduler",
    "cohort_unknown_task": "cannot be imported",
}
#: Cases whose run is one end-to-end step of a fast phantom chain if the check under test were missing.
SLOW_IF_BROKEN = {"compare_out_existing_file", "compare_out_under_file", "compare_out_read_only"}


def run_case(name: str, tmp: Path):
    """Invoke the CLI in-process on case ``name``; (exit code, output, exception or None, peak traced MB)."""
    import tracemalloc

    from typer.testing import CliRunner

    from vertaug.cli import app

    argv = CASES[name](tmp)
    tracemalloc.start()
    try:
        r = CliRunner().invoke(app, argv)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    exc = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    return r.exit_code, r.output, exc, peak_mb


def classify(name: str, code: int, out: str, exc, peak_mb: float) -> str:
    """What a user sees: 'traceback', 'exit N', 'another problem named', 'several lines', 'over memory' or 'clean'."""
    if exc is not None:
        return "traceback"
    if code != 2:
        return f"exit {code}"
    if EXPECT[name] not in out.lower():
        return "another problem named"
    if not out.startswith("Usage:") and len([ln for ln in out.splitlines() if ln.strip()]) != 1:
        return "several lines"
    return "over memory" if peak_mb >= 500 else "clean"


if __name__ == "__main__":  # the before/after table of docs/errors.md: one line per case
    import sys
    import tempfile
    import time

    only = sys.argv[1:] or sorted(CASES)
    for name in only:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            code, out, exc, mb = run_case(name, Path(d))
            print(json.dumps({"case": name, "result": classify(name, code, out, exc, mb), "code": code,
                              "peak_mb": round(mb, 1), "wall_s": round(time.perf_counter() - t0, 2),
                              "exc": None if exc is None else f"{type(exc).__name__}: {str(exc)[:120]}"}), flush=True)
