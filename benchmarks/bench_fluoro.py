"""Fluoroscopy frames: time and memory for all frames of one procedure, accuracy on the cylinder+rod phantom.

Ours: the CT DRR once per view (Joseph), each frame adds the projection of its object fields on the model grid and
the analytic cannula chords (imaging/fluoro.py). Peer (measured in the same run): the textbook ray-casting DRR, which
re-renders every frame by marching each ray through the CT and the object field at a fixed step with trilinear
sampling (scipy map_coordinates, order 1) -- the method of most DRR tutorials and of DeepDRR-style projectors.

Run:  python benchmarks/bench_fluoro.py [--out DIR]   (about a minute on 2 cores; prints our figure, the peer's and the ratio;
wall time and tracemalloc peak of the numpy/Python allocations, plus the process's max RSS)
"""

from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np
from scipy import ndimage

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.demo import example_paths
from vertaug.model.vertebra import vertebra_from_ct
from vertaug.imaging import drr, fluoro

STEP_MM = 1.0  # peer's marching step (the frames' pixel size)
PEER_FRAMES = 2  # frames (per view) the peer renders: its cost per frame does not depend on the frame


def march(fields, rays: drr.Rays, t0: float, t1: float, step_mm: float = STEP_MM) -> np.ndarray:
    """Peer: sum over t of trilinear samples of each (data, affine) field along every ray, times the step."""
    ts = np.arange(t0, t1, step_mm) + step_mm / 2
    out = np.zeros(rays.origins.shape[0])
    for data, aff in fields:
        inv = np.linalg.inv(aff)
        o = rays.origins @ inv[:3, :3].T + inv[:3, 3]
        d = rays.directions @ inv[:3, :3].T
        for chunk in np.array_split(np.arange(len(ts)), max(1, len(ts) // 32)):
            p = o[:, None, :] + ts[chunk][None, :, None] * d[:, None, :]
            vals = ndimage.map_coordinates(data, p.reshape(-1, 3).T, order=1, mode="grid-constant", cval=0.0)
            out += vals.reshape(p.shape[:2]).sum(axis=1)
    return (out * step_mm).reshape(rays.shape)


def peer_frames(ct, grid, frames, pf) -> float:
    """Re-render the given frames in every view by ray marching; returns seconds."""
    mu_ct = drr.mu_from_hu(ct.data)
    d_cem = drr.CEMENT_PMMA_BASO4.mu_per_mm() - drr.mu_water_per_mm()
    d_bal = drr.contrast_material().mu_per_mm() - drr.mu_water_per_mm()
    d_steel = drr.STAINLESS_STEEL.mu_per_mm() - drr.mu_water_per_mm()
    t = time.perf_counter()
    for g in pf.geometry.values():
        rays = drr.make_rays(g)
        for fr in frames:
            delta = np.zeros(grid.shape, dtype=np.float32)
            if fr.cement_fraction is not None:
                delta += d_cem * fr.cement_fraction
            if isinstance(fr.balloon, np.ndarray):
                delta += d_bal * fr.balloon
            line = march([(mu_ct, ct.affine_mm), (delta, grid.affine_mm)], rays, 1000.0 - 250.0, 1000.0 + 250.0)
            for c in fr.cannulas:  # the peer has no analytic chords either: a voxelised cannula is worse; be kind
                line += d_steel * drr.tube_chord_mm(rays, c.entry_mm, c.tip_mm, c.outer_diameter_mm / 2,
                                                    c.inner_diameter_mm / 2)
    return time.perf_counter() - t


def cylinder_accuracy() -> tuple[float, float]:
    """Max relative error (our Joseph, peer marching) on the water cylinder + rod, lateral, 0.5 mm voxels."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_fluoro import MU_W, _cylinder_rod_volume  # the test's phantom

    R, r, rod_y, mu_rod = 40.0, 6.0, 15.0, 0.1
    mu, aff = _cylinder_rod_volume(R=R, r=r, rod_y=rod_y, mu_rod=mu_rod)
    g = drr.Geometry(view="lateral", size_mm=(80.0, 10.0), pixel_mm=0.5)
    rays = drr.make_rays(g)
    s = rays.origins.reshape(g.shape + (3,))[g.shape[0] // 2][:, 1]
    exact = MU_W * 2 * np.sqrt(np.maximum(R**2 - s**2, 0)) + (mu_rod - MU_W) * 2 * np.sqrt(
        np.maximum(r**2 - (s - rod_y) ** 2, 0))
    inner = (np.abs(s) < R - 2.0) & (np.abs(np.abs(s - rod_y) - r) > 0.5)
    ours = drr.project_volume(mu, aff, rays)[g.shape[0] // 2]
    peer = march([(mu, aff)], rays, 1000.0 - 50.0, 1000.0 + 50.0, step_mm=0.5)[g.shape[0] // 2]
    def err(x):
        return float(np.max(np.abs(x[inner] - exact[inner]) / exact[inner]))

    return err(ours), err(peer)


def main(out: str | None = None) -> None:
    p = example_paths()
    ct = load_ct(p["ct"])
    seg = load_labels(p["seg"], ct)
    body = load_labels(p["body"], ct)
    v = vertebra_from_ct(ct, seg, "L1", body, spacing_mm=1.0)
    grid = fluoro.OverlayGrid.from_vertebra(v)
    timelines = {k: fluoro.synthetic_timeline(v, k, volume_ml=4.0, leak_ml=0.3) for k in ("VP", "KP")}
    print(f"model grid {v.shape} at 1 mm; CT {ct.shape} at {ct.spacing_mm[0]:g} mm; frames 180 mm at 1 mm pixels")
    fluoro.render_procedure(ct, grid, timelines["VP"][:1])  # warm-up (imports, caches)
    for name, frames in timelines.items():
        for projection in ("parallel", "perspective"):
            tracemalloc.start()
            t = time.perf_counter()
            pf = fluoro.render_procedure(ct, grid, frames, name=name, projection=projection)
            ours = time.perf_counter() - t
            peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            n = sum(len(x) for x in pf.images.values())
            line = (f"{name} {projection:11s}: {n:2d} frames (2 views)  ours {ours:5.2f} s "
                    f"({ours / n:.3f} s/frame)  peak {peak_mb:5.1f} MB")
            if projection == "parallel":
                sub = frames[-PEER_FRAMES:]  # the peer re-renders everything per frame: time a few and compare per frame
                peer = peer_frames(ct, grid, sub, pf) / (2 * len(sub))
                line += f"  | peer ray-marching {peer:.3f} s/frame  ratio peer/ours {peer / (ours / n):5.1f}x"
            print(line)
    ours_e, peer_e = cylinder_accuracy()
    print(f"cylinder+rod max relative error: ours {ours_e:.4f}  peer (0.5 mm marching) {peer_e:.4f}  "
          f"ratio {peer_e / max(ours_e, 1e-12):.2f}")
    print(f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if out:
        paths = fluoro.write_fluoro(out, ct, {k: (grid, f) for k, f in timelines.items()})
        paths["drr"] = fluoro.write_drr_png(ct, f"{out}/drr_parallel.png")
        paths["drr_perspective"] = fluoro.write_drr_png(ct, f"{out}/drr_perspective.png", projection="perspective")
        for k, v_ in paths.items():
            print(f"wrote {k}: {v_}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the showcase DRRs, GIFs and key-frame grid (synthetic timelines) here")
    main(ap.parse_args().out)
