"""The one observed-order-of-accuracy helper of the test suite (after discretize's ``assert_expected_order``).

A convergence test runs a discretisation at several step sizes ``h`` (grid spacing or time step), measures an error
against an exact answer at each, and asserts the *rate* at which the error falls, not one number. For errors
``e_i ~ C h_i^p`` the observed order between successive runs is

    p_i = log(e_i / e_{i-1}) / log(h_i / h_{i-1}),

and the least-squares slope of log e against log h over all runs is the fitted order. Without an exact answer, the
differences of successive solutions serve as errors: ``|S(h) - S(h/2)| ~ C h^p`` (pass ``h`` of the coarser run of
each pair).

``kind`` says which property is asserted (bounds strict, ``tol`` absolute, on the order):

* ``"all"``: every successive order within ``tol`` of ``expected`` (discretize's "all");
* ``"min"``: every successive order above ``expected - tol``;
* ``"mean"``: the mean of the successive orders within ``tol``;
* ``"last"``: the finest pair's order within ``tol``;
* ``"fit"``: the least-squares slope within ``tol``;
* ``"fit_at_least"``: the least-squares slope above ``expected - tol``.

The failure message is the table of h, error, error ratio and order, as discretize prints it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KINDS", "observed_orders", "fitted_order", "order_table", "assert_expected_order"]

KINDS = ("all", "min", "mean", "last", "fit", "fit_at_least")


def _check(h, errors) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(h, dtype=float)
    e = np.asarray(errors, dtype=float)
    if h.ndim != 1 or h.shape != e.shape or h.size < 2:
        raise ValueError(f"need two or more (h, error) pairs of equal length, got {h.shape} and {e.shape}")
    if not (np.all(np.isfinite(h)) and np.all(h > 0)):
        raise ValueError(f"step sizes must be finite and positive: {h}")
    if np.any(np.diff(h) == 0):
        raise ValueError(f"successive step sizes must differ: {h}")
    if not (np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError(f"errors must be finite and positive (an exact zero has no order): {e}")
    return h, e


def observed_orders(h, errors) -> np.ndarray:
    """Orders between successive runs, ``log(e_i / e_{i-1}) / log(h_i / h_{i-1})`` (length ``len(h) - 1``)."""
    h, e = _check(h, errors)
    return np.log(e[1:] / e[:-1]) / np.log(h[1:] / h[:-1])


def fitted_order(h, errors) -> float:
    """Least-squares slope of log(error) against log(h) over all runs."""
    h, e = _check(h, errors)
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def order_table(h, errors) -> str:
    """h, error, e(i-1)/e(i) and the observed order of each run, then the fitted order, as text."""
    h, e = _check(h, errors)
    orders = observed_orders(h, e)
    lines = ["      h      |    error    | e(i-1)/e(i) |  order", "-------------+-------------+-------------+--------"]
    lines.append(f" {h[0]:11.4e} | {e[0]:11.4e} |             |")
    for i in range(1, h.size):
        lines.append(f" {h[i]:11.4e} | {e[i]:11.4e} | {e[i - 1] / e[i]:11.4f} | {orders[i - 1]:6.3f}")
    lines.append(f" fitted order (least squares over all runs): {fitted_order(h, e):.3f}")
    return "\n".join(lines)


def assert_expected_order(h, errors, expected: float, tol: float, kind: str = "all") -> np.ndarray:
    """Assert the observed order of ``errors`` at step sizes ``h`` against ``expected`` +/- ``tol``.

    Returns the successive orders (for ``"fit"``/``"fit_at_least"`` a one-element array holding the fitted order),
    so a test can print or check more.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if kind in ("fit", "fit_at_least"):
        orders = np.array([fitted_order(h, errors)])
    else:
        orders = observed_orders(h, errors)
    tested = {"mean": orders.mean(keepdims=True), "last": orders[-1:]}.get(kind, orders)
    if kind in ("min", "fit_at_least"):
        ok = bool(np.all(tested > expected - tol))
        want = f"> {expected - tol:g}"
    else:
        ok = bool(np.all(np.abs(tested - expected) < tol))
        want = f"{expected:g} +/- {tol:g}"
    assert ok, f"observed order ({kind}) {np.round(tested, 3).tolist()}, expected {want}\n" + order_table(h, errors)
    return orders
