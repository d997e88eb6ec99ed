"""Statistics for comparing training modes over several runs (training seeds x goal splits).

A run's score is one number (e.g. its mean episode return over every rollout and episode). Uncertainty is
over runs, by the percentile bootstrap of ``scipy.stats.bootstrap``; the interquartile mean (IQM, the mean of
the middle 50% of runs) and the probability of improvement follow Agarwal et al. 2021, "Deep RL at the Edge
of the Statistical Precipice". With few runs the intervals are wide; that is the honest answer.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000


def iqm(x, axis=-1):
    """Interquartile mean: the mean after cutting the lowest and the highest 25% along ``axis``."""
    return stats.trim_mean(x, 0.25, axis=axis)


def _bootstrap(samples: tuple, statistic, paired: bool, seed: int) -> tuple[float, float]:
    n = len(samples[0])
    if n < 2 or np.ptp(np.concatenate([np.ravel(s) for s in samples])) == 0:
        value = float(statistic(*samples, axis=-1))
        return value, value  # nothing to resample: one run, or all runs equal
    res = stats.bootstrap(samples, statistic, paired=paired, vectorized=True, confidence_level=CONFIDENCE,
                          n_resamples=N_RESAMPLES, method='percentile', random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def estimate(scores, statistic=np.mean, seed: int = 0) -> dict:
    """Point estimate and 95% bootstrap interval of ``statistic`` over runs. scores (n_runs,)."""
    scores = np.asarray(scores, dtype=float)
    low, high = _bootstrap((scores,), statistic, paired=False, seed=seed)
    return {'value': float(statistic(scores, axis=-1)), 'low': low, 'high': high, 'n': len(scores)}


def paired_difference(a, b, seed: int = 0) -> dict:
    """Mean of a - b over paired runs (same seed and split), with its 95% bootstrap interval. a, b (n_pairs,)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return estimate(a - b, np.mean, seed)


def paired_ratio(a, b, seed: int = 0) -> dict:
    """Mean of a / b over paired runs, with its 95% bootstrap interval. a, b (n_pairs,) positive."""
    return estimate(np.asarray(a, dtype=float) / np.asarray(b, dtype=float), np.mean, seed)


def probability_of_improvement(a, b, seed: int = 0) -> dict:
    """P(a run of A scores higher than a run of B), ties counting half (the Mann-Whitney U statistic / n_a n_b),
    with its 95% bootstrap interval (runs of A and B resampled independently)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)

    def statistic(x, y, axis=-1):
        x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
        diff = x[..., :, None] - y[..., None, :]
        return ((diff > 0) + 0.5 * (diff == 0)).mean((-2, -1))

    low, high = _bootstrap((a, b), statistic, paired=False, seed=seed)
    return {'value': float(statistic(a, b)), 'low': low, 'high': high, 'n': (len(a), len(b))}


def curve_band(curves, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve over runs and its pointwise 95% bootstrap band. curves (n_runs, n_points) -> 3 x (n_points,)."""
    curves = np.asarray(curves, dtype=float)
    mean = curves.mean(0)
    if len(curves) < 2:
        return mean, mean, mean
    res = stats.bootstrap((curves,), np.mean, axis=0, vectorized=True, confidence_level=CONFIDENCE,
                          n_resamples=2_000, method='percentile', random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return mean, np.where(np.isnan(low), mean, low), np.where(np.isnan(high), mean, high)


def format_estimate(e: dict, digits: int = 2, suffix: str = '') -> str:
    """'12.34 [11.00, 13.50]' (the 95% interval in brackets; just the value for a single run)."""
    value = f"{e['value']:.{digits}f}{suffix}"
    if e['low'] == e['high'] == e['value']:
        return value
    return f"{value} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
