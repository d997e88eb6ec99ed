"""Return region by region: how an evaluated run's in-context return changes as its context hands on more regions.

A region is ``compress_interval`` steps of a rollout, i.e. ``compress_interval / horizon`` whole episodes (Dark
Room: 80 steps = 4 episodes of 20, so an evaluation of 200 episodes holds 50 regions). In compressed and memory AD a
region is the unit the context drops or hands on to the memory, so the return of region r shows how the model acts
after r - 1 region closes; training streams hold only ``training_regions`` of them (13 in Dark Room).

From an evaluation's ``eval_result.npy`` (goal-major (rollouts, episodes) returns) ``region_means`` gives one run's
mean episode return per region, averaged over all its rollouts (every held-out goal x stream). Over runs (training
seeds x goal splits) ``region_estimates`` gives each region's mean with its 95% interval from ``comparison.estimate``
(rliable's stratified bootstrap: seeds resampled within each split), and ``paired_region_differences`` the
difference between two modes, paired by seed and split (``comparison.paired_difference``); ``span_estimates`` and
``paired_span_differences`` do the same for the mean over a span of regions (e.g. those a training stream holds
and those beyond it). Runs are the unit resampled: the rollouts of one run share its model.
"""
from __future__ import annotations

import math

import numpy as np

from compressed_ad import comparison as stats
from compressed_ad.utils import UserError


def episodes_per_region(compress_interval: int, horizon: int) -> int:
    """Whole episodes in one region of ``compress_interval`` steps (episodes of ``horizon`` steps)."""
    if compress_interval % horizon:
        raise UserError(f"A region of compress_interval={compress_interval} steps is not a whole number of episodes "
                        f"of horizon={horizon} steps, so an evaluation's episode returns cannot be cut into regions. "
                        f"Give the episodes per region yourself (--region-episodes N).")
    return compress_interval // horizon


def training_regions(train_source_timesteps: int, n_steps: int, region_steps: int) -> int:
    """Regions of ``region_steps`` in one training stream: collect.py writes whole PPO rollouts of ``n_steps`` that
    cover ``train_source_timesteps`` (Dark Room: 1000 steps -> 13 rollouts of 80 = 13 regions of 80)."""
    return math.ceil(train_source_timesteps / n_steps) * n_steps // region_steps


def region_means(returns, episodes_per_region: int) -> np.ndarray:
    """returns (rollouts, episodes) episode returns -> (n_regions,): per region, the mean over every rollout and the
    region's ``episodes_per_region`` episodes. Only whole regions count: the episodes after the last whole region
    (e.g. the 65th of 65 episodes in regions of 4) are left out."""
    returns = np.asarray(returns, dtype=float)
    if returns.ndim != 2 or episodes_per_region < 1:
        raise ValueError(f'expected (rollouts, episodes) returns and episodes_per_region >= 1, got shape '
                         f'{returns.shape} and {episodes_per_region}')
    n_regions = returns.shape[1] // episodes_per_region
    if n_regions == 0:
        raise UserError(f'An evaluation of {returns.shape[1]} episodes holds no whole region of '
                        f'{episodes_per_region} episodes. Evaluate at least {episodes_per_region} episodes.')
    whole = returns[:, :n_regions * episodes_per_region]
    return whole.reshape(len(returns), n_regions, episodes_per_region).mean((0, 2))


def _regions_of(records: list[dict]) -> int:
    """The number of regions every record holds (one number per group of runs)."""
    counts = sorted({len(r['regions']) for r in records})
    if len(counts) != 1:
        raise UserError(f'The runs of one group hold different numbers of regions ({counts}): evaluate them with '
                        f'the same number of episodes (eval_episodes).')
    return counts[0]


def region_estimates(records: list[dict]) -> list[dict]:
    """Per region, the mean over runs of the runs' region means with its 95% interval (``comparison.estimate``).

    records: one dict per run with 'seed', 'split' and 'regions' ((n_regions,), ``region_means``), every (seed,
    split) once. Returns n_regions estimates {'value', 'low', 'high', ...}."""
    return [stats.estimate(stats.score_matrix(records, lambda r, i=i: r['regions'][i]))
            for i in range(_regions_of(records))]


def _paired(candidate: list[dict], baseline: list[dict]) -> None:
    """Refuse two groups of runs that do not pair up one to one by (seed, split)."""
    runs = [sorted((r['seed'], r['split']) for r in group) for group in (candidate, baseline)]
    if runs[0] != runs[1]:
        raise UserError(f'Paired differences need the same training seeds and goal splits in both groups; one has '
                        f'(seed, split) {runs[0]}, the other {runs[1]}.')


def paired_region_differences(candidate: list[dict], baseline: list[dict]) -> list[dict]:
    """Per region held by both groups, candidate - baseline paired by seed and split, with its 95% interval
    (``comparison.paired_difference``). candidate, baseline: records as ``region_estimates`` takes them."""
    _paired(candidate, baseline)
    n = min(_regions_of(candidate), _regions_of(baseline))
    return [stats.paired_difference(stats.score_matrix(candidate, lambda r, i=i: r['regions'][i]),
                                    stats.score_matrix(baseline, lambda r, i=i: r['regions'][i]))
            for i in range(n)]


def _span_mean(record: dict, first: int, last: int) -> float:
    """A run's mean over regions ``first`` .. ``last`` (1-based, inclusive) of its region means."""
    if not 1 <= first <= last <= len(record['regions']):
        raise ValueError(f"regions {first} .. {last} are not within the run's {len(record['regions'])} regions")
    return float(np.mean(record['regions'][first - 1:last]))


def span_estimates(records: list[dict], first: int, last: int) -> dict:
    """The runs' mean return over regions ``first`` .. ``last`` (1-based, inclusive; each region weighs the same),
    its mean over runs and 95% interval."""
    return stats.estimate(stats.score_matrix(records, lambda r: _span_mean(r, first, last)))


def paired_span_differences(candidate: list[dict], baseline: list[dict], first: int, last: int) -> dict:
    """candidate - baseline of the mean over regions ``first`` .. ``last``, paired by seed and split."""
    _paired(candidate, baseline)
    return stats.paired_difference(stats.score_matrix(candidate, lambda r: _span_mean(r, first, last)),
                                   stats.score_matrix(baseline, lambda r: _span_mean(r, first, last)))
