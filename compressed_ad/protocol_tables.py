"""The tables of a protocol, read from what train.py and evaluate.py stored: modes x training seeds x goal splits.

``gather`` reads each evaluated run (``train_summary.json``, ``eval_summary.json``, ``eval_result.npy``) into a
record; ``aggregate`` turns each mode's records into rliable estimates over the (seeds x splits) score matrix and
each paired comparison into differences and ratios (``compressed_ad.comparison``); ``by_distance`` and
``per_goal_table`` break the returns down by task; ``report`` and ``curves_figure`` write comparison.md and
comparison.png. example_compressed_training.py runs the protocol and calls these.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compressed_ad import comparison as stats
from compressed_ad.env import ENVS, task_split
from compressed_ad.history_file import ppo_source_curve
from compressed_ad.plots import plot_in_context_curves
from compressed_ad.run_files import EVAL_RESULT, EVAL_SUMMARY, TRAIN_SUMMARY, last_tenth
from compressed_ad.utils import UserError


def read_run(run: Path, eval_dir: Path, seed: int, split: int) -> dict:
    """One run's record: its training summary, its evaluation (``eval_dir``: where evaluate.py wrote the setting the
    comparison needs) and the returns (goal-major (goals x rollouts, episodes)) with their per-task means."""
    try:
        train_summary = json.loads((run / TRAIN_SUMMARY).read_text())
        eval_summary = json.loads((eval_dir / EVAL_SUMMARY).read_text())
        returns = np.load(eval_dir / EVAL_RESULT)
    except FileNotFoundError as exc:
        raise UserError(f"'{run}' has no results yet ({Path(exc.filename).name} missing). Run "
                        f"'python example_compressed_training.py --mode all' (with the same options).") from None
    per_goal = returns.reshape(len(eval_summary['goals']), -1, returns.shape[1])
    return {
        'run': str(run), 'seed': seed, 'split': split, 'returns': returns,
        'mean': eval_summary['mean_return'], 'last10': eval_summary['mean_return_last_10pct'],
        'std': eval_summary['std_return'], 'oracle_mean': eval_summary['oracle_mean'],
        'goals': [tuple(g) for g in eval_summary['goals']], 'oracle': eval_summary['oracle_return_per_goal'],
        'goal_mean': per_goal.mean((1, 2)), 'goal_last10': last_tenth(per_goal).mean((1, 2)),
        'steps_per_s': train_summary['steps_per_s'], 'peak_mib': train_summary['peak_mib'],
        'peak_kind': train_summary['peak_kind'], 'device': train_summary['device'],
        'train_seconds': train_summary['seconds'], 'eval_seconds': eval_summary['seconds'],
        'test_acc_action': train_summary['final_test']['acc_action']}


def gather(runs: dict[str, list[tuple[int, int, Path, Path]]]) -> dict[str, list[dict]]:
    """Per mode, the records of its runs, given as (seed, split, run directory, evaluation directory) in the same
    (seed, split) order for every mode, so that runs pair up."""
    return {mode: [read_run(run, eval_dir, seed, split) for seed, split, run, eval_dir in entries]
            for mode, entries in runs.items()}


def serialise(agg: dict, distances: dict, rows: dict) -> dict:
    """comparison.json: the aggregate, the returns by path length and every run's record without its arrays."""
    return {'aggregate': agg, 'by_distance': {m: {str(d): v for d, v in t.items()} for m, t in distances.items()},
            'runs': {m: [{k: v for k, v in r.items() if k not in ('returns', 'goal_mean', 'goal_last10')}
                         | {'goal_mean': list(map(float, r['goal_mean'])),
                            'goal_last10': list(map(float, r['goal_last10']))} for r in rs]
                     for m, rs in rows.items()}}


def quick_start_table(rows: dict) -> str:
    """The quick-start's "Expected Results" rows, measured: means over runs (95% stratified-bootstrap intervals over
    training seeds within each goal split, with several seeds)."""
    s, c = rows['standard'], rows['compressed']

    def cell(records, key, digits):
        return stats.format_estimate(stats.estimate(stats.score_matrix(records, key)), digits)

    def ratio(key):
        return stats.format_estimate(stats.paired_ratio(stats.score_matrix(c, key), stats.score_matrix(s, key)), 2,
                                     'x')
    kind = s[0]['peak_kind']
    lines = ['| Metric | Standard AD | Compressed AD | Compressed / Standard |', '|---|---|---|---|',
             f"| Training speed (steps/s) | {cell(s, 'steps_per_s', 1)} | {cell(c, 'steps_per_s', 1)} | "
             f"{ratio('steps_per_s')} |",
             f"| Peak memory (MiB, {kind}) | {cell(s, 'peak_mib', 0)} | {cell(c, 'peak_mib', 0)} | "
             f"{ratio('peak_mib')} |",
             f"| Test accuracy (test/acc_action) | {cell(s, 'test_acc_action', 3)} | {cell(c, 'test_acc_action', 3)} | "
             f"{ratio('test_acc_action')} |",
             f"| Eval reward (mean ± std) | {s[0]['mean']:.2f} ± {s[0]['std']:.2f} | {c[0]['mean']:.2f} ± "
             f"{c[0]['std']:.2f} | {c[0]['mean'] / max(s[0]['mean'], 1e-9):.2f}x |" if len(s) == 1 else
             f"| Eval reward (mean over runs) | {cell(s, 'mean', 2)} | {cell(c, 'mean', 2)} | {ratio('mean')} |",
             f"| Oracle return | {np.mean([r['oracle_mean'] for r in s]):.2f} | "
             f"{np.mean([r['oracle_mean'] for r in c]):.2f} | |"]
    return '\n'.join(lines)


def aggregate(rows: dict, pairs: tuple[tuple[str, str], ...]) -> dict:
    """Per-mode rliable estimates over the (seeds x splits) score matrix of the runs, and the paired comparisons
    (``pairs`` whose two modes are compared); intervals: stratified bootstrap over seeds within splits (``comparison``)."""
    out = {'modes': {}, 'n_runs': len(next(iter(rows.values()))), 'paired': {}}
    for mode, records in rows.items():
        def est(value, statistic='mean', records=records):
            return stats.estimate(stats.score_matrix(records, value), statistic)
        out['modes'][mode] = {
            'mean_return': est('mean'),
            'iqm_return': est('mean', 'iqm'),
            'last10_return': est('last10'),
            'fraction_of_oracle': est(lambda r: r['mean'] / r['oracle_mean']),
            'last10_fraction_of_oracle': est(lambda r: r['last10'] / r['oracle_mean']),
            'test_acc_action': est('test_acc_action'),
            'steps_per_s': est('steps_per_s'),
            'peak_mib': est('peak_mib'),
            'train_seconds': est('train_seconds'),
            'eval_seconds': est('eval_seconds'),
        }
    pick = stats.score_matrix  # (records, key) -> (n_seeds, n_splits), the same order for every mode
    for candidate, baseline in compared_pairs(rows, pairs):
        b, c = rows[baseline], rows[candidate]
        out['paired'][f'{candidate} vs {baseline}'] = {
            'difference_mean_return': stats.paired_difference(pick(c, 'mean'), pick(b, 'mean')),
            'difference_last10_return': stats.paired_difference(pick(c, 'last10'), pick(b, 'last10')),
            'probability_of_improvement': stats.probability_of_improvement(pick(c, 'mean'), pick(b, 'mean')),
            'steps_per_s_ratio': stats.paired_ratio(pick(c, 'steps_per_s'), pick(b, 'steps_per_s')),
            'peak_memory_ratio': stats.paired_ratio(pick(c, 'peak_mib'), pick(b, 'peak_mib')),
            'eval_seconds_ratio': stats.paired_ratio(pick(c, 'eval_seconds'), pick(b, 'eval_seconds')),
        }
    return out


def compared_pairs(rows: dict, pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(c, b) for c, b in pairs if c in rows and b in rows]


def by_distance(rows: dict, env: str, grid_size: int) -> dict:
    """Per mode and length of the shortest path that solves a task (Dark Room: the goal's L1 distance from the
    start): per run, the mean (last-10%) return over that run's tasks of that length; then the mean of those over
    the runs (seeds x the splits that hold such tasks, ``comparison.estimate``) with its stratified-bootstrap
    interval over seeds within splits. The goals of one run share a model, so runs, not goals, are resampled.
    Each length: {'runs', 'n' (tasks x runs), 'mean', 'last10'}."""
    spec = ENVS[env]
    table = {}
    for mode, records in rows.items():
        per_distance: dict[int, list] = {}  # d -> one (run, its goals at d: mean returns, last-10% returns) per run
        for r in records:
            at: dict[int, tuple[list, list]] = {}
            for goal, value, last in zip(r['goals'], r['goal_mean'], r['goal_last10']):
                cell = at.setdefault(spec.distance(goal, grid_size), ([], []))
                cell[0].append(value)
                cell[1].append(last)
            for d, (values, lasts) in at.items():
                per_distance.setdefault(d, []).append((r, values, lasts))
        table[mode] = {}
        for d, runs in sorted(per_distance.items()):
            records_d = [{'seed': r['seed'], 'split': r['split'], 'mean': np.mean(values), 'last10': np.mean(lasts)}
                         for r, values, lasts in runs]
            table[mode][d] = {'runs': len(runs), 'n': sum(len(values) for _, values, _ in runs),
                              'mean': stats.estimate(stats.score_matrix(records_d, 'mean')),
                              'last10': stats.estimate(stats.score_matrix(records_d, 'last10'))}
    return table


def per_goal_table(rows: dict, split: int) -> str:
    """Mean return per held-out goal of one goal split over its runs (training seeds), with the 95% bootstrap
    interval over those runs when there are several."""
    records = {mode: [r for r in rs if r['split'] == split] for mode, rs in rows.items()}
    modes = list(rows)
    goals, oracle = records[modes[0]][0]['goals'], records[modes[0]][0]['oracle']
    head = '| goal | oracle | ' + ' | '.join(f'{m} (all / last 10%)' for m in modes) + ' |'
    lines = [head, '|---|---|' + '---|' * len(modes)]

    def cell(mode, key, i):
        return stats.format_estimate(stats.estimate([r[key][i] for r in records[mode]]))  # (n_seeds,): one split
    for i, (goal, o) in enumerate(zip(goals, oracle)):
        cells = [f"{cell(m, 'goal_mean', i)} / {cell(m, 'goal_last10', i)}" for m in modes]
        lines.append(f'| {goal} | {o} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def report(rows: dict, agg: dict, distances: dict, timings: dict, command: str, seeds: list[int],
           splits: list[int], notes: list[str] = ()) -> str:
    """comparison.md: the quick-start's table (with standard and compressed AD), per-mode estimates, each paired
    comparison, returns by the length of the task's shortest path, per task of the first split, any ``notes`` (such
    as where a budget came from) and the wall time of each stage (``timings``: title -> seconds, None if reused)."""
    fmt = stats.format_estimate
    modes, n = list(rows), agg['n_runs']
    parts = [f"# {' vs '.join(modes)} AD\n\nMeasured by `{command}` (training on {rows[modes[0]][0]['device']}; "
             f"{n} run(s) per mode: training seeds {seeds} x goal splits {splits}). Estimates as rliable "
             f"computes them over the (seeds x splits) score matrix; brackets: 95% percentile intervals of the "
             f"stratified bootstrap over training seeds within each goal split (none with one seed per split).\n"]
    if 'standard' in rows and 'compressed' in rows:
        parts.append(quick_start_table(rows))
    lines = ['| per mode | ' + ' | '.join(modes) + ' |', '|---|' + '---|' * len(modes)]
    for key, title, digits in (('mean_return', 'mean return, all episodes', 2), ('iqm_return', 'IQM return', 2),
                               ('last10_return', 'mean return, last 10% of episodes', 2),
                               ('fraction_of_oracle', 'fraction of oracle, all episodes', 3),
                               ('last10_fraction_of_oracle', 'fraction of oracle, last 10%', 3),
                               ('test_acc_action', 'test/acc_action', 3), ('steps_per_s', 'training steps/s', 1),
                               ('peak_mib', f"peak memory (MiB, {rows[modes[0]][0]['peak_kind']})", 0),
                               ('train_seconds', 'training wall time (s)', 0),
                               ('eval_seconds', 'evaluation wall time (s)', 1)):
        lines.append(f'| {title} | ' + ' | '.join(fmt(agg['modes'][m][key], digits) for m in modes) + ' |')
    parts.append('\n'.join(lines))
    for pair, p in agg['paired'].items():
        candidate, baseline = pair.split(' vs ')
        parts.append('\n'.join([
            f'| {candidate} against {baseline} (paired by seed and split) | value |', '|---|---|',
            f"| difference in mean return | {fmt(p['difference_mean_return'])} |",
            f"| difference in last-10% return | {fmt(p['difference_last10_return'])} |",
            f"| probability of improvement (mean return, per split, averaged over splits) | "
            f"{fmt(p['probability_of_improvement'], 2)} |",
            f"| training steps/s ratio | {fmt(p['steps_per_s_ratio'], 2, 'x')} |",
            f"| peak memory ratio | {fmt(p['peak_memory_ratio'], 2, 'x')} |",
            f"| evaluation wall time ratio | {fmt(p['eval_seconds_ratio'], 2, 'x')} |"]))
    head = ' | '.join(f'{m}: all / last 10%' for m in modes)
    lines = [f'| shortest path length | runs | tasks x runs | {head} |', '|---|---|---|' + '---|' * len(modes)]
    for d in distances[modes[0]]:
        cells = [f"{fmt(distances[m][d]['mean'])} / {fmt(distances[m][d]['last10'])}" for m in modes]
        lines.append(f"| {d} | {distances[modes[0]][d]['runs']} | {distances[modes[0]][d]['n']} | "
                     + ' | '.join(cells) + ' |')
    parts.append('Returns by the length of the shortest path that solves the task (Dark Room: the goal\'s L1 '
                 'distance from the start): per run, the mean over its held-out tasks of that length; brackets: '
                 'intervals over runs (seeds within splits), not over tasks:\n\n' + '\n'.join(lines))
    parts.extend(notes)
    first_split = splits[0]
    parts.append(f'Per held-out task (goal), split {first_split}, mean over training seeds (brackets: 95% bootstrap '
                 f'intervals over those seeds):\n\n'
                 f'{per_goal_table(rows, first_split)}')
    if timings:
        stage = ['| Stage | Wall time |', '|---|---|'] + [
            f"| {title} | {'reused' if s is None else f'{s:.1f} s'} |" for title, s in timings.items()]
        parts.append("Wall time of this invocation's stages:\n\n" + '\n'.join(stage))
    return '\n\n'.join(parts) + '\n'


def curves_figure(rows: dict, configs: list[dict], file: Path) -> None:
    """comparison.png: each mode's mean in-context curve over its runs with a 95% band, beside the PPO source on the
    same held-out tasks (the mean over ``configs``, one per goal split, when every dataset holds its curve)."""
    bands = {f'{mode} AD': stats.curve_band([r['returns'].mean(0) for r in records])
             for mode, records in rows.items()}
    ppo = [ppo_source_curve(config, task_split(config)[1]) for config in configs]
    ppo = np.mean(ppo, axis=0) if all(c is not None for c in ppo) else None
    first = next(iter(rows.values()))
    oracle = np.mean([r['oracle_mean'] for r in first])
    n = len(first)
    plot_in_context_curves(file, bands, oracle, ppo, f"In-context learning: {' vs '.join(rows)} AD ({n} run(s) "
                           f"per mode)", 'mean over runs, 95% bootstrap band' if n > 1 else 'mean over rollouts')
