"""Statistics for comparing training modes over runs, computed with ``rliable`` (Agarwal et al. 2021, "Deep RL at
the Edge of the Statistical Precipice").

Scores follow rliable's convention: a score matrix has shape ``(n_seeds, n_splits)``, one row per training seed
(the runs) and one column per goal split (``env_split_seed``, rliable's "tasks"); ``score_matrix`` builds one from
the per-run records of ``example_compressed_training.py``. A 1-D array ``(n_runs,)`` is read as one split.

- ``estimate``: an aggregate over the matrix (``'mean'``: ``rliable.metrics.aggregate_mean``, the mean over splits
  of the mean over seeds; ``'iqm'``: ``aggregate_iqm``, the mean of the middle 50% of all runs; ``'median'``) with
  its 95% percentile interval from rliable's stratified bootstrap (``rliable.library.get_interval_estimates``):
  the seeds are resampled with replacement within each split, the splits are kept.
- ``paired_difference`` / ``paired_ratio``: candidate - baseline (candidate / baseline), paired by seed and split;
  the matrix of differences (ratios) is treated as scores: its mean, with the same stratified bootstrap interval.
- ``probability_of_improvement``: ``rliable.metrics.probability_of_improvement``, P(a run of A beats a run of B)
  computed per split (ties count 1/2) and averaged over splits, never pooled across splits of different
  difficulty; its interval resamples the seeds of A and of B independently within each split
  (rliable's ``StratifiedIndependentBootstrap``).

The bootstraps draw ``N_RESAMPLES`` (10,000) replications, ``N_RESAMPLES_POI`` (2,000) for the probability of
improvement. Intervals need at least 2 seeds per split: with fewer there is nothing to resample and an estimate's
interval is its value (so too where the seeds of every split score the same; ``format_estimate`` then prints just
the value). With few seeds the intervals are wide; that is the
honest answer. rliable draws its resamples from ``np.random``: each call seeds it (``seed``, default 0) and
restores the caller's global state afterwards, so every result is deterministic. ``curve_band`` (pointwise bands of
curves over runs) uses ``scipy.stats.bootstrap``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import numpy as np
from rliable import library as rly
from rliable import metrics
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000  # bootstrap replications of the aggregates and paired statistics
N_RESAMPLES_POI = 2_000  # of the probability of improvement (one Mann-Whitney U per split and replication)
AGGREGATES: dict[str, Callable] = {'mean': metrics.aggregate_mean, 'iqm': metrics.aggregate_iqm,
                                   'median': metrics.aggregate_median}


@contextmanager
def seeded(seed: int):
    """Seed ``np.random`` (which rliable's bootstraps draw from) and restore the caller's state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def as_matrix(scores) -> np.ndarray:
    """scores (n_seeds, n_splits), or (n_runs,) read as one split -> float array (n_seeds, n_splits)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f'expected a non-empty score matrix (n_seeds, n_splits), got shape {scores.shape}')
    return scores


def score_matrix(records: list[dict], value) -> np.ndarray:
    """The runs' scores as an (n_seeds, n_splits) matrix: rows = training seeds, columns = goal splits, both sorted.

    records: one dict per run with keys 'seed' and 'split', every (seed, split) once; value: a record key, or a
    function record -> float."""
    get = value if callable(value) else (lambda r: r[value])
    seeds, splits = sorted({r['seed'] for r in records}), sorted({r['split'] for r in records})
    cells = {}
    for r in records:
        if (r['seed'], r['split']) in cells:
            raise ValueError(f"run seed={r['seed']} split={r['split']} appears twice")
        cells[r['seed'], r['split']] = float(get(r))
    missing = [(s, t) for s in seeds for t in splits if (s, t) not in cells]
    if missing:
        raise ValueError(f'the runs do not cover every seed x split: missing (seed, split) {missing}')
    return np.array([[cells[s, t] for t in splits] for s in seeds])


def iqm(scores) -> float:
    """Interquartile mean (rliable ``aggregate_iqm``): the mean of the middle 50% of all runs of the matrix."""
    return float(metrics.aggregate_iqm(as_matrix(scores)))


def _interval(score_dict_value, func, reps: int, seed: int) -> tuple[float, float, float]:
    """rliable's point estimate and stratified-bootstrap percentile interval of ``func``."""
    with seeded(seed):
        point, interval = rly.get_interval_estimates({'x': score_dict_value}, func, method='percentile', reps=reps,
                                                     confidence_interval_size=CONFIDENCE)
    low, high = np.ravel(interval['x'])
    return float(np.ravel(point['x'])[0]), float(low), float(high)


def estimate(scores, statistic: str = 'mean', seed: int = 0) -> dict:
    """An aggregate of an (n_seeds, n_splits) score matrix ('mean', 'iqm' or 'median', see ``AGGREGATES``) and
    its 95% stratified-bootstrap interval (seeds resampled within each split).

    Returns {'value', 'low', 'high', 'n' (runs), 'n_seeds', 'n_splits'}; low = high = value with < 2 seeds, or
    where the seeds of every split score the same (every resample then gives the value)."""
    scores = as_matrix(scores)
    aggregate = AGGREGATES[statistic]
    n_seeds, n_splits = scores.shape
    if n_seeds < 2 or not np.ptp(scores, axis=0).any():  # nothing to resample: one seed, or seeds all equal
        value = float(aggregate(scores))
        low = high = value
    else:
        value, low, high = _interval(scores, lambda x: np.array([aggregate(x)]), N_RESAMPLES, seed)
    return {'value': value, 'low': low, 'high': high, 'n': scores.size, 'n_seeds': n_seeds, 'n_splits': n_splits}


def paired_difference(a, b, seed: int = 0) -> dict:
    """Mean of a - b, paired by seed and split, with its 95% stratified-bootstrap interval: the difference matrix
    is treated as scores. a, b (n_seeds, n_splits), in the same seed and split order."""
    a, b = as_matrix(a), as_matrix(b)
    _same_shape(a, b)
    return estimate(a - b, 'mean', seed)


def paired_ratio(a, b, seed: int = 0) -> dict:
    """Mean of a / b, paired by seed and split, with its 95% stratified-bootstrap interval. a, b (n_seeds,
    n_splits), positive."""
    a, b = as_matrix(a), as_matrix(b)
    _same_shape(a, b)
    return estimate(a / b, 'mean', seed)


def probability_of_improvement(a, b, seed: int = 0) -> dict:
    """P(a run of A scores higher than a run of B on the same split), ties counting half, averaged over splits
    (``rliable.metrics.probability_of_improvement``), with its 95% stratified-bootstrap interval (the seeds of A
    and B resampled independently within each split). a (n_seeds_a, n_splits), b (n_seeds_b, n_splits).

    Returns {'value', 'low', 'high', 'n': (runs of A, runs of B)}; low = high = value if A or B has < 2 seeds."""
    a, b = as_matrix(a), as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f'A and B must cover the same splits: shapes {a.shape} and {b.shape}')
    if min(len(a), len(b)) < 2:
        value = float(metrics.probability_of_improvement(a, b))
        low = high = value
    else:
        value, low, high = _interval([a, b], lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
                                     N_RESAMPLES_POI, seed)
    return {'value': value, 'low': low, 'high': high, 'n': (a.size, b.size)}


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f'paired statistics need matrices of the same (n_seeds, n_splits): {a.shape} vs {b.shape}')


def curve_band(curves, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve over runs and its pointwise 95% percentile-bootstrap band (``scipy.stats.bootstrap``, runs
    resampled). curves (n_runs, n_points) -> 3 x (n_points,)."""
    curves = np.asarray(curves, dtype=float)
    mean = curves.mean(0)
    if len(curves) < 2:
        return mean, mean, mean
    res = stats.bootstrap((curves,), np.mean, axis=0, vectorized=True, confidence_level=CONFIDENCE,
                          n_resamples=2_000, method='percentile', random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return mean, np.where(np.isnan(low), mean, low), np.where(np.isnan(high), mean, high)


def format_estimate(e: dict, digits: int = 2, suffix: str = '') -> str:
    """'12.34 [11.00, 13.50]' (the 95% interval in brackets; just the value when there is no interval)."""
    value = f"{e['value']:.{digits}f}{suffix}"
    if e['low'] == e['high'] == e['value']:
        return value
    return f"{value} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
