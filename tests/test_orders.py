"""The observed-order helper (tests/orders.py) on exact power laws: it measures the order and it can fail."""

import numpy as np
import pytest

from orders import KINDS, assert_expected_order, fitted_order, observed_orders, order_table

H = np.array([0.4, 0.2, 0.1, 0.05])


@pytest.mark.parametrize("p", [1.0, 2.0, 4.0])
def test_exact_power_law_gives_its_order(p):
    e = 3.7 * H**p
    assert np.allclose(observed_orders(H, e), p) and fitted_order(H, e) == pytest.approx(p)
    for kind in KINDS:
        assert_expected_order(H, e, expected=p, tol=1e-9, kind=kind)


def test_time_steps_in_any_order_and_difference_proxies():
    e = 2.0 * H**2
    assert np.allclose(observed_orders(H[::-1], e[::-1]), 2.0)  # refining or coarsening: same order
    s = 10.0 + 5.0 * H**2  # a converging quantity without an exact answer: S(h) - S(h/2) ~ h^2
    assert np.allclose(observed_orders(H[:-1], np.abs(np.diff(s))), 2.0)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_order_fails_with_the_table(kind):
    e = H**1.0
    with pytest.raises(AssertionError, match="e\\(i-1\\)/e\\(i\\)"):
        assert_expected_order(H, e, expected=2.0, tol=0.5, kind=kind)


def test_each_kind_tests_what_it_says():
    e = np.array([1.0, 0.25, 0.0625, 0.03125])  # orders 2, 2, 1
    assert_expected_order(H, e, 1.0, 0.05, kind="last")
    assert_expected_order(H, e, 1.0, 1.01, kind="min")  # all > -0.01
    with pytest.raises(AssertionError):
        assert_expected_order(H, e, 2.0, 0.5, kind="all")  # the last pair is off by 1
    assert_expected_order(H, e, 5 / 3, 0.01, kind="mean")


@pytest.mark.parametrize("h, e", [([0.1], [1.0]), ([0.1, 0.1], [1.0, 0.5]), ([0.1, 0.05], [1.0, 0.0]),
                                  ([0.1, -0.05], [1.0, 0.5]), ([0.1, 0.05], [1.0, np.nan])])
def test_bad_input_is_an_error(h, e):
    with pytest.raises(ValueError):
        observed_orders(h, e)


def test_table_lists_every_run():
    txt = order_table(H, H**2)
    assert txt.count("\n") == len(H) + 2 and "fitted order" in txt
