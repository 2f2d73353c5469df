"""Resolution check of the untreated FE state of the demo level: stiffness and strength at several voxel sizes.

The numbers set the numerical uncertainty of the FE rows in the report (``vertaug.report.uncertainty``: the largest
change between the 1 mm model and the finer ones). Measured 2026-11-30 (loaded machine, times not comparable):
1.5 mm 42322 N/mm, 4511 N; 1 mm 54858 N/mm, 5559 N; 0.75 mm 53775 N/mm, 5559 N; 0.5 mm 55105 N/mm, 5645 N (32 min
on the loaded machine). Coarser than 1 mm the one-voxel cortex shell thickens and the stiffness drops: not a convergence
check. Usage: ``PYTHONPATH=src python3 scripts/resolution_check.py [SPACINGS_MM ...]``.
"""

from __future__ import annotations

import sys
import time

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.demo import DEMO_LEVEL, example_paths
from vertaug.model.vertebra import vertebra_from_ct
from vertaug.procedures.stiffness import state_mechanics


def main(spacings_mm: list[float]) -> None:
    p = example_paths()
    ct = load_ct(p["ct"])
    seg = load_labels(p["seg"], ct, "segmentation")
    body = load_labels(p["body"], ct, "vertebrae_body segmentation")
    for s in spacings_mm:
        t0 = time.perf_counter()
        v = vertebra_from_ct(ct, seg, DEMO_LEVEL, body=body, spacing_mm=s)
        st = state_mechanics(v, None, field=False)
        print(f"{DEMO_LEVEL} {s:g} mm {v.shape}: stiffness {st.stiffness_n_per_mm:.0f} N/mm, strength "
              f"{st.strength_n:.0f} N ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [1.0, 0.75, 0.5])
