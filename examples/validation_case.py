"""One published experiment rerun through the public API: Baroud & Steffen 2005, the cannula's share of the
delivery pressure in vertebroplasty, and what a wider proximal cannula saves.

``vertaug validate`` runs every case and writes docs/validation.md; this runs one, at the quick resolution.
Run: ``python examples/validation_case.py``.
"""

from vertaug.validate.run import run_validation


def main() -> dict[str, float]:
    records = run_validation(quick=True, names=["baroud_cannula"])
    out = {}
    for r in records:
        print(f"{r.quantity}: ours {r.ours:.3g} {r.unit}, published {r.published:.3g} +/- {r.spread:.3g} "
              f"({'within' if r.within else 'outside'} the spread)")
        out[r.quantity] = r.ours
    return out


if __name__ == "__main__":
    main()
