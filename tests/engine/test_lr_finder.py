"""The learning-rate finder's rule on synthetic loss curves (no training), and its cost: a
small share of the run."""

import numpy as np
import pytest

pytest.importorskip("torch")

from dl_engine.train import lr_finder as lf  # noqa: E402


def sweep(n):
    return lf.START * (lf.END / lf.START) ** (np.arange(n) / (n - 1))


def typical(lrs):
    """Flat until 1e-4, steepest near 3e-3, lowest near 3e-2, then it blows up."""
    x = np.log10(lrs)
    y = 0.3 + 0.8 / (1 + np.exp((x + 2.5) * 3))
    return np.where(x > -1.5, y + (x + 1.5) ** 2 * 3, y)


@pytest.mark.parametrize("n", [20, 40, 100])
def test_steepest_descent_before_the_minimum(n):
    lrs = sweep(n)
    s = lf.suggest(lrs, typical(lrs))
    assert not s.fallback
    assert 1e-3 <= s.lr <= 5e-3, s  # on the steep part, a decade below the lowest loss
    assert "steepest descent" in s.reason and "lowest loss" in s.reason


@pytest.mark.parametrize("n", [20, 40, 100])
def test_a_noisy_curve(n):
    lrs = sweep(n)
    picks = []
    for seed in range(20):
        noisy = typical(lrs) * (1 + 0.15 * np.random.default_rng(seed).standard_normal(n))
        picks.append(lf.suggest(lrs, noisy).lr)
    # one batch's noise is not a descent: the picks stay on the steep part
    assert sum(5e-4 <= p <= 6e-3 for p in picks) >= 18, picks
    assert max(picks) < lf.MAX_LR


@pytest.mark.parametrize("n", [20, 100])
def test_a_flat_curve_falls_back_to_the_default(n):
    lrs = sweep(n)
    s = lf.suggest(lrs, 1.0 + 0.02 * np.random.default_rng(0).standard_normal(n))
    assert s.fallback and s.lr == lf.DEFAULT_LR
    assert "did not fall" in s.reason and "safe default" in s.reason
    s = lf.suggest(lrs, np.linspace(1.0, 1.3, n))  # rises from the start
    assert s.fallback and s.lr == lf.DEFAULT_LR


def test_minimum_at_the_cap_is_never_taken():
    """Still falling at the end of the sweep (the loss never turned up): neither the last
    rate nor the cap; the default, and the log says why."""
    lrs = sweep(60)
    x = np.log10(lrs)
    s = lf.suggest(lrs, 0.3 + 0.8 / (1 + np.exp((x + 1) * 3)))
    assert s.lr == lf.DEFAULT_LR and s.fallback
    assert "at or above" in s.reason
    # a curve whose minimum is at the end but whose steep part is low: the steep part
    s = lf.suggest(lrs, 0.3 + 0.8 / (1 + np.exp((x + 3.5) * 3)) - 0.01 * (x + 6))
    assert not s.fallback and 1e-4 <= s.lr <= 1e-3, s
    assert s.lr < lf.MAX_LR


def test_divergence_and_short_curves():
    lrs = sweep(40)
    y = typical(lrs)
    y[30:] = np.nan  # diverged: the non-finite tail is left out
    s = lf.suggest(lrs, y)
    assert not s.fallback and 1e-3 <= s.lr <= 5e-3
    s = lf.suggest(lrs[:5], typical(lrs[:5]))
    assert s.fallback and "too few" in s.reason
    # a descent from the very start: raised to MIN_LR at least
    s = lf.suggest(lrs, np.linspace(2.0, 0.5, 40) + np.where(np.arange(40) > 20, 5.0, 0.0))
    assert s.lr >= lf.MIN_LR


def test_cost_is_a_small_share_of_the_run():
    assert lf.finder_steps(100_000) == lf.MAX_STEPS == 100
    assert lf.finder_steps(500) == 50  # 10 %
    assert lf.finder_steps(200) == 20
    assert lf.finder_steps(150) == 0  # too short to spend 20 steps in 10 %: skipped
    assert lf.finder_steps(0) == 0
