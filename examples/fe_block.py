"""The voxel finite-element solver on a block with an exact answer: uniaxial stiffness K = E A / L.

Frictionless platens (``lateral="free"``) on a homogeneous block give uniaxial stress, so the apparent stiffness is
exactly E A / L whatever the mesh; bonded platens (``"fixed"``) add the lateral constraint and make it stiffer.
Run: ``python examples/fe_block.py``.
"""

import numpy as np

from vertaug.physics.mechanics import compression_between_end_caps, solve_stiffness


def main(n: int = 12, e_pa: float = 1.0e9, spacing_m: float = 1.0e-3) -> dict[str, float]:
    e = np.full((n, n, 2 * n), e_pa)
    area_m2, length_m = (n * spacing_m) ** 2, 2 * n * spacing_m
    exact = e_pa * area_m2 / length_m / 1e3  # N/mm
    free = solve_stiffness(e, (spacing_m,) * 3, nu=0.3, load_case=compression_between_end_caps(lateral="free"))
    fixed = solve_stiffness(e, (spacing_m,) * 3, nu=0.3, load_case=compression_between_end_caps(lateral="fixed"))
    return {"exact_n_per_mm": exact, "free_n_per_mm": free.stiffness_n_per_mm,
            "fixed_n_per_mm": fixed.stiffness_n_per_mm, "iterations_free": float(free.iterations)}


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key:18s} {value:12.3f}")
