"""Benchmark: CPU of the height measurements on the bundled CT, before/after a change, with the numbers compared.

Runs the same three measurements in one child process per source tree (``--src``, each a ``src`` folder; default:
this checkout's), with OPENBLAS_NUM_THREADS=1 and the process clock, each from a cold start (no heights kept from the
step before, as in a fresh process):

1. ``measure_volumes`` of the bundled CT (the whole-scan morphometry: every level's heights, grade, wedge angle);
2. ``fracture_level`` of L1 with the demo's DEMO_FRACTURE (two whole-scan morphometries and the amplitude search);
3. ``measure_body_heights`` of the demo's fractured L1 voxel model at 1 mm (model/heights.py, the model's own heights).

Prints each tree's CPU and wall seconds with the load average beside them, and the largest difference of every float
(mm, degrees, fractions) between the first tree and each other one; integers, strings and the fractured CT's digest
must be equal.

Run: python benchmarks/bench_heights.py [--src /path/to/before/src --src src] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

CHILD = r"""
import dataclasses, hashlib, json, sys, time
import numpy as np
from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.morphometry import measure_volumes
from vertaug.anatomy.fracture import fracture_level
from vertaug.demo import DEMO_FRACTURE, DEMO_LEVEL, example_paths
from vertaug.model.vertebra import vertebra_from_ct
from vertaug.model import heights as H

def flat(obj, pre, out):
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            flat(getattr(obj, f.name), f"{pre}.{f.name}", out)
    elif isinstance(obj, (tuple, list)):
        for i, v in enumerate(obj):
            flat(v, f"{pre}[{i}]", out)
    elif isinstance(obj, (bool, str, type(None), int, float, np.floating, np.integer)):
        out[pre] = obj.item() if isinstance(obj, np.generic) else obj

def spine(s, pre, out):
    for name, m in s.levels.items():
        flat(m, f"{pre}.{name}", out)

def clock(fn):
    import vertaug.anatomy.morphometry as M
    getattr(M, "_KEPT_HEIGHTS", {}).clear()  # each step from a cold start, as in a fresh process
    c, w = time.process_time(), time.perf_counter()
    got = fn()
    return got, time.process_time() - c, time.perf_counter() - w

p = example_paths()
ct = load_ct(p["ct"]); seg = load_labels(p["seg"], ct, "seg"); body = load_labels(p["body"], ct, "body")
vals, times = {}, {}
s, *times["measure_volumes"] = clock(lambda: measure_volumes(ct, seg, body))
spine(s, "volumes", vals)
fr, *times["fracture_level"] = clock(lambda: fracture_level(ct, seg, DEMO_LEVEL, body=body, **DEMO_FRACTURE))
vals["fracture.ct_digest"] = hashlib.blake2b(np.ascontiguousarray(fr.ct.data).tobytes(), digest_size=16).hexdigest()
for f in ("deformity_measured", "amplitude", "notes"):
    flat(getattr(fr, f), f"fracture.{f}", vals)
spine(fr.spine_before, "fracture.before", vals)
spine(fr.spine_after, "fracture.after", vals)
model = vertebra_from_ct(fr.ct, fr.seg, DEMO_LEVEL, body=fr.body, spacing_mm=1.0, fracture_zone=fr.zone,
                         spine=fr.spine_after)
hb, *times["measure_body_heights"] = clock(lambda: H._measure(model, model.labels, np.asarray(model.hu, np.float32)))
flat(hb, "model_heights", vals)
print(json.dumps({"vals": vals, "times": times}))
"""


def run_child(src: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ref: dict, got: dict) -> tuple[float, str, list[str]]:
    """Largest float difference (and its key) and the keys whose non-float values differ."""
    worst, where, bad = 0.0, "", []
    for k in sorted(set(ref) | set(got)):
        a, b = ref.get(k, "<absent>"), got.get(k, "<absent>")
        if isinstance(a, float) and isinstance(b, float):
            if math.isnan(a) and math.isnan(b):
                continue
            d = abs(a - b) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b else math.inf)
            if d > worst:
                worst, where = d, k
        elif a != b:
            bad.append(f"{k}: {a!r} != {b!r}")
    return worst, where, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", help="a src folder (repeat: the first is the reference)")
    args = ap.parse_args()
    srcs = args.src or [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")]
    results = []
    for src in srcs:
        load = os.getloadavg()
        t0 = time.perf_counter()
        r = run_child(src)
        results.append(r)
        print(f"{src}: (load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, child {time.perf_counter() - t0:.1f} s wall)")
        for name, (cpu, wall) in r["times"].items():
            print(f"  {name:22s} CPU {cpu:7.2f} s  wall {wall:7.2f} s")
    for src, r in zip(srcs[1:], results[1:]):
        worst, where, bad = compare(results[0]["vals"], r["vals"])
        print(f"{src} vs {srcs[0]}: {len(r['vals'])} values, largest float difference {worst:.3g} ({where or '-'}), "
              f"{len(bad)} other differences")
        for line in bad[:20]:
            print("  " + line)


if __name__ == "__main__":
    main()
