"""Benchmark: building the voxel model of L1 of the bundled CT at 1 mm and 0.5 mm (issue 4 targets: < 10 s, < 1 GB).

Peer measured in the same run: nibabel.processing.resample_from_to of the CT crop onto the same 0.5 mm grid (the field's
standard resampling, one volume, trilinear), i.e. the cost of the one step every model builder must do; our build
resamples four volumes and derives every label and material field.

Each configuration runs in a fresh subprocess so that peak RSS (ru_maxrss) is the configuration's own.
Run: python benchmarks/bench_model.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from vertaug.anatomy.io import load_ct, load_labels
from vertaug.demo import example_paths
what, spacing = sys.argv[1], float(sys.argv[2])
p = example_paths()
ct = load_ct(p["ct"]); seg = load_labels(p["seg"], ct); body = load_labels(p["body"], ct)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if what == "vertaug":
    from vertaug.model.vertebra import vertebra_from_ct
    v = vertebra_from_ct(ct, seg, "L1", body=body, spacing_mm=spacing)
    n = int(np.prod(v.shape))
else:
    import nibabel as nib
    from nibabel.processing import resample_from_to
    m = seg.data == 31
    idx = np.argwhere(m); lo = idx.min(0) - 3; hi = idx.max(0) + 4
    crop = ct.data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    aff = ct.affine_mm.copy(); aff[:3, 3] = aff[:3, :3] @ lo + aff[:3, 3]
    img = nib.Nifti1Image(crop, aff)
    shape = tuple(int(round(s * 3.0 / spacing)) for s in crop.shape)
    out_aff = aff.copy(); out_aff[:3, :3] = np.diag([spacing] * 3)
    out = resample_from_to(img, (shape, out_aff), order=1)
    n = int(np.prod(shape))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"what": what, "spacing_mm": spacing, "seconds": dt, "peak_rss_mb": peak / 1024,
                  "added_rss_mb": (peak - base) / 1024, "voxels": n}))
"""


def run(what: str, spacing: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(spacing)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"{'spacing':>8} {'ours s':>8} {'peer s':>8} {'ratio':>7} {'ours peak MB':>13} {'bytes/voxel':>12} {'voxels':>10}")
    for spacing in (1.0, 0.5):
        ours = run("vertaug", spacing)
        peer = run("nibabel", spacing)
        bpv = ours["added_rss_mb"] * 2**20 / ours["voxels"]
        print(f"{spacing:>8g} {ours['seconds']:>8.2f} {peer['seconds']:>8.2f} {ours['seconds'] / peer['seconds']:>7.1f} "
              f"{ours['peak_rss_mb']:>13.0f} {bpv:>12.0f} {ours['voxels']:>10d}")
    print("targets (issue 4): 0.5 mm model < 10 s and < 1 GB. Peer: one-volume nibabel resample_from_to onto the same grid.")


if __name__ == "__main__":
    main()
