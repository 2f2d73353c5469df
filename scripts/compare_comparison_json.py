"""Compare two comparison.json files (a demo before and after a refactor): every number and every string.

    python scripts/compare_comparison_json.py BEFORE/comparison.json AFTER/comparison.json [--rel 1e-6]

Wall-clock fields (``timings_s``, ``solve_time_s``, ``created``) are skipped. Two numbers agree when they are equal,
within ``--rel`` of each other (relative), or both within ``--abs`` of zero (round-off quantities such as a mass
balance error of 4e-16). Prints each difference and a summary; exit status 1 if any number disagrees or any other
value or key differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

SKIP_KEYS = {"timings_s", "solve_time_s", "created"}


def walk(a, b, path, out, rel, abs_tol):
    """Append (path, before, after, kind) for each difference; return the number of leaves compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        n = 0
        for k in sorted(set(a) | set(b)):
            if k in SKIP_KEYS:
                continue
            if k not in a or k not in b:
                out.append((f"{path}/{k}", a.get(k, "<missing>"), b.get(k, "<missing>"), "key"))
                continue
            n += walk(a[k], b[k], f"{path}/{k}", out, rel, abs_tol)
        return n
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"len {len(a)}", f"len {len(b)}", "length"))
        return sum(walk(x, y, f"{path}[{i}]", out, rel, abs_tol) for i, (x, y) in enumerate(zip(a, b)))
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 1
        scale = max(abs(a), abs(b))
        if abs(a - b) > rel * scale and scale > abs_tol:
            out.append((path, a, b, f"rel {abs(a - b) / scale:.3g}"))
        else:
            out.append((path, a, b, "within tolerance"))
        return 1
    if a != b:
        out.append((path, a, b, "value"))
    return 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rel", type=float, default=1e-6)
    p.add_argument("--abs", dest="abs_tol", type=float, default=1e-12)
    args = p.parse_args(argv)
    with open(args.before) as f:
        a = json.load(f)
    with open(args.after) as f:
        b = json.load(f)
    diffs: list = []
    n = walk(a, b, "", diffs, args.rel, args.abs_tol)
    bad = [d for d in diffs if d[3] != "within tolerance"]
    for path, x, y, kind in diffs:
        print(f"{path}: {x!r} -> {y!r} ({kind})")
    print(f"{n} values compared; {n - len(diffs)} identical, {len(diffs) - len(bad)} within tolerance, "
          f"{len(bad)} different (rel {args.rel:g}, abs {args.abs_tol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
