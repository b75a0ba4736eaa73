"""The equivalence verdict against values worked out by hand (Student-t quantiles from a printed table)."""

from __future__ import annotations

import numpy as np
import pytest

from debench.report.equivalence import measured_verdict, next_seed, seeds_to_settle, trained_verdict
from debench.report.tolerance import Tolerance

HALF_POINT = Tolerance(0.5, relative=False)


def test_the_issue_counterexample_is_inconclusive_not_reproduced():
    # seeds 7.0 and 9.0: mean 8.0, std 1.414, t(0.975, 1) = 12.706 -> CI [-4.71, 20.71]. The old rule
    # ("published inside the CI") called this reproduced against He et al.'s 6.61.
    eq = trained_verdict([7.0, 9.0], 6.61, HALF_POINT)
    assert eq.verdict == "inconclusive"
    assert "spread too wide" in eq.reason and "-4.71 to 20.7" in eq.reason
    # |8.0 - 6.61| - 0.5 = 0.89 must exceed t(n-1) * 1.414 / sqrt(n):
    # n = 12: 2.2010 * 1.414 / 3.464 = 0.8986 (no); n = 13: 2.1788 * 1.414 / 3.606 = 0.8546 (yes)
    assert eq.seeds_needed == 13 and "about 13 seeds" in eq.reason


def test_a_tight_three_seed_set_0_6_points_off_is_not_reproduced():
    # 7.20, 7.21, 7.22: mean 7.21 (0.6 above 6.61), std 0.01, CI 7.21 ± 4.303 * 0.01 / 1.732 = [7.185, 7.235]
    eq = trained_verdict([7.20, 7.21, 7.22], 6.61, HALF_POINT)
    assert eq.verdict == "not reproduced" and "wholly outside" in eq.reason and eq.seeds_needed is None


def test_a_tight_three_seed_set_inside_the_band_is_reproduced():
    # 6.90, 6.91, 6.92: CI [6.885, 6.935], inside 6.61 ± 0.5 = [6.11, 7.11]
    eq = trained_verdict([6.90, 6.91, 6.92], 6.61, HALF_POINT)
    assert eq.verdict == "reproduced" and "inside" in eq.reason


def test_more_noise_never_turns_a_miss_into_a_pass():
    # the same mean (7.21, outside the band) with a wider spread: inconclusive, never reproduced
    assert trained_verdict([7.20, 7.21, 7.22], 6.61, HALF_POINT).verdict == "not reproduced"
    assert trained_verdict([6.21, 7.21, 8.21], 6.61, HALF_POINT).verdict == "inconclusive"


def test_too_few_seeds_says_so_and_how_many_would_settle_it():
    # 7.0, 7.2, 7.4: mean 7.2, std 0.2, half-width 4.303 * 0.2 / 1.732 = 0.497 < 0.5: the spread fits
    # the band, n does not. margin |7.2 - 6.61| - 0.5 = 0.09:
    # n = 21: 2.0860 * 0.2 / 4.583 = 0.0910 (no); n = 22: 2.0796 * 0.2 / 4.690 = 0.0887 (yes)
    eq = trained_verdict([7.0, 7.2, 7.4], 6.61, HALF_POINT)
    assert eq.verdict == "inconclusive" and "n = 3 too small" in eq.reason and eq.seeds_needed == 22


def test_one_seed_is_inconclusive_and_no_seed_is_not_reproduced():
    assert trained_verdict([6.61], 6.61, HALF_POINT).verdict == "inconclusive"
    # a second seed x = 6.61 + d: mean 6.61 + d/2, half-width 12.706 * (|d| / sqrt 2) / sqrt 2 = 6.353 |d|,
    # so the CI's far end is 0.5 |d| + 6.353 |d| = 6.853 |d| from 6.61: inside 6.11 to 7.11 for |d| <= 0.0730
    reason = trained_verdict([6.61], 6.61, HALF_POINT).reason
    assert "a 2nd seed settles it: reproduced if it lands in 6.54 to 6.68" in reason
    assert trained_verdict([], 6.61, HALF_POINT).verdict == "not reproduced"


def test_a_mean_on_the_band_edge_never_settles():
    assert seeds_to_settle(7.11, 0.3, 6.61, 0.5) is None
    assert seeds_to_settle(7.0, 0.0, 6.61, 0.5) == 2   # no spread: two seeds settle it


def test_a_relative_tolerance_scales_with_the_published_value():
    # 5% of 20.0 is 1.0: CI of 20.5, 20.6, 20.7 is [20.35, 20.85], inside [19, 21]
    assert trained_verdict([20.5, 20.6, 20.7], 20.0, Tolerance(5.0, relative=True)).verdict == "reproduced"
    assert trained_verdict([20.5, 20.6, 20.7], 20.0, Tolerance(1.0, relative=True)).verdict == "not reproduced"


@pytest.mark.parametrize(("measured", "published", "tol", "verdict"), [
    (0.2723, 0.27, Tolerance(2.0, True), "reproduced"),      # 0.0023 <= 0.0054
    (0.50, 0.46, Tolerance(2.0, True), "not reproduced"),    # 0.04 > 0.0092
    (7.3, 6.97, Tolerance(0.5, False), "reproduced"),        # 0.33 <= 0.5
    (7.5, 6.97, Tolerance(0.5, False), "not reproduced"),    # 0.53 > 0.5
])
def test_a_single_deterministic_measurement_compares_the_difference(measured, published, tol, verdict):
    assert measured_verdict(measured, published, tol).verdict == verdict


def test_no_third_resnet20_seed_can_settle_the_campaign_row():
    # the CPU campaign's seeds 1 and 0 (8.49, 8.31) against He et al.'s 8.75 ± 0.5. With x the third
    # seed, t(0.975, 2) = 4.303: the CI's lower end peaks near x = 8.44 at about 8.18 (mean 8.413,
    # std 0.0907, half 0.225), below the band's 8.25, so whatever seed 2 gives the row stays inconclusive
    nxt = next_seed([8.49, 8.31], 8.75, 0.5)
    assert not nxt.can_settle and nxt.reproduced is None and nxt.not_reproduced == ()
    eq = trained_verdict([8.49, 8.31], 8.75, HALF_POINT)
    assert eq.verdict == "inconclusive" and eq.reason.endswith("no value of a 3rd seed alone can settle it")
    # the best case by hand: 8.31, 8.49, 8.44 -> mean 8.4133, std 0.09292, half 4.3027 * 0.09292 / 1.7321
    assert trained_verdict([8.49, 8.31, 8.44], 8.75, HALF_POINT).reason.startswith("n = 3 too small: the 95% CI 8.18 to")


def test_the_next_seed_that_settles_a_row_is_named_with_its_range():
    # 7.20, 7.22 (CI 7.08 to 7.34 against the band 6.11 to 7.11): a third seed of 7.21 gives the CI
    # 7.185 to 7.235 (worked out above), wholly outside: not reproduced; 6.9 gives mean 7.107, std
    # 0.1823, half 0.4529: 6.65 to 7.56, inconclusive
    nxt = next_seed([7.20, 7.22], 6.61, 0.5)
    assert nxt.reproduced is None and len(nxt.not_reproduced) == 1
    (lo, hi), = nxt.not_reproduced
    assert lo < 7.21 < hi and not lo < 6.9 < hi
    eq = trained_verdict([7.20, 7.22], 6.61, HALF_POINT)
    assert eq.reason.endswith(f"a 3rd seed settles it: not reproduced if it lands in {lo:.3g} to {hi:.3g}")
    # the same seeds far from zero (a metric in the thousands) give the same ranges, shifted
    far = next_seed([1007.20, 1007.22], 1006.61, 0.5)
    assert far.not_reproduced[0] == pytest.approx((lo + 1000, hi + 1000), abs=1e-9)
    assert not next_seed([float("nan")], 6.61, 0.5).can_settle


def _verdicts_by_hand(values, xs, published, bound):
    """The rule of the module docstring, written out again over many next values at once."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    allv = np.concatenate([np.broadcast_to(v, (len(xs), len(v))), xs[:, None]], axis=1)
    n = allv.shape[1]
    half = stats.t.ppf(0.975, n - 1) * allv.std(axis=1, ddof=1) / np.sqrt(n)
    lo, hi = allv.mean(axis=1) - half, allv.mean(axis=1) + half
    inside = (lo >= published - bound) & (hi <= published + bound)
    outside = (hi < published - bound) | (lo > published + bound)
    return np.where(inside, "reproduced", np.where(outside, "not reproduced", "inconclusive"))


@pytest.mark.parametrize("case", range(20))
def test_next_seed_ranges_agree_with_the_verdict_of_every_next_value(case):
    # the ranges against brute force: every value of a fine grid gets the verdict its range says,
    # by the rule written out again; just inside and just outside each range's ends, by trained_verdict
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 6))
    published, bound = 10.0, float(rng.uniform(0.1, 1.0))
    values = list(published + rng.normal(rng.uniform(-1, 1), rng.uniform(0.01, 0.6), n))
    nxt = next_seed(values, published, bound)
    ranges = ([(nxt.reproduced, "reproduced")] if nxt.reproduced else []) + [(r, "not reproduced") for r in nxt.not_reproduced]

    xs = np.linspace(published - 6, published + 6, 4001)
    expected = np.full(xs.shape, "inconclusive", dtype=object)
    for (lo, hi), verdict in ranges:
        expected[(xs > lo) & (xs < hi)] = verdict
    far = np.array([all(abs(x - e) > 1e-7 for r, _ in ranges for e in r) for x in xs])
    got = _verdicts_by_hand(values, xs, published, bound)
    assert (got[far] == expected[far]).all(), (values, bound, nxt)

    tol = Tolerance(bound, relative=False)
    for (lo, hi), verdict in ranges:
        step = 1e-6 * max(1.0, hi - lo)
        assert trained_verdict(values + [lo + step], published, tol).verdict == verdict
        assert trained_verdict(values + [hi - step], published, tol).verdict == verdict
        assert trained_verdict(values + [lo - step], published, tol).verdict == "inconclusive"
        assert trained_verdict(values + [hi + step], published, tol).verdict == "inconclusive"
