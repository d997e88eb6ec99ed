"""Side by side: evaluated runs' in-context curves on their held-out tasks, as one table and one figure.

    python -m bench.compare_runs --figure docs/runs.png sliding=runs/cpu/AD-darkkeytodoor-sliding-seed0 \
        compressed=runs/cpu/AD-darkkeytodoor-compressed-seed0

Each ``LABEL=RUN_DIR`` names a run that ``evaluate.py`` has evaluated at its own setting (its eval_result.npy and
eval_summary.json). For each it prints the mean return over all episodes and over the last 10% of them (evaluate.py's
numbers), by tenths of the episodes, the held-out action accuracy and the training seconds; ``--figure`` draws the
curves (mean ± 1 std over rollouts, or the means alone with ``--no-bands``) with the PPO source of every dataset
the runs were trained on, on the same held-out tasks (named by the first run trained on it when there are several).
One row per run: for single runs (a direction, not a comparison); example_compressed_training.py compares modes
over seeds and splits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compressed_ad.env import task_split
from compressed_ad.history_file import dataset_path, ppo_source_curve
from compressed_ad.plots import plot_in_context_curves, std_band
from compressed_ad.run_files import EVAL_RESULT, EVAL_SUMMARY, TRAIN_SUMMARY, read_run_config
from compressed_ad.utils import UserError, read_json, run_main


def parse_run(item: str) -> tuple[str, Path]:
    """'LABEL=RUN_DIR' -> (label, run directory), refusing a run without its own evaluation (evaluate.py writes
    eval_result.npy, then eval_summary.json)."""
    label, sep, path = item.partition('=')
    if not sep or not label or not path:
        raise UserError(f"'{item}': give each run as LABEL=RUN_DIR, e.g. sliding=runs/cpu/AD-darkroom-sliding-seed0.")
    run = Path(path)
    if not (run / EVAL_SUMMARY).is_file():
        raise UserError(f"{run}: no {EVAL_SUMMARY} there. Evaluate the run first: python evaluate.py {run}")
    return label, run


def table_row(label: str, curve: np.ndarray, evaluation: dict, run: Path) -> str:
    """One markdown row. curve: (episodes,) mean return per episode on the held-out tasks; evaluation: the run's
    eval_summary.json, whose mean and last-10% returns are evaluate.py's."""
    tenths = ' '.join(f'{part.mean():.2f}' for part in np.array_split(curve, min(10, len(curve))))
    train = read_json(run / TRAIN_SUMMARY) or {}
    acc = train.get('final_test', {}).get('acc_action')
    seconds = train.get('seconds')
    return (f"| {label} | {evaluation['mean_return']:.2f} | {evaluation['mean_return_last_10pct']:.2f} | {tenths} | "
            f"{'-' if acc is None else f'{acc:.3f}'} | {'-' if seconds is None else f'{seconds:.0f}'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='LABEL=RUN_DIR')
    parser.add_argument('--figure', help='write the curves to this PNG file')
    parser.add_argument('--title', default='in-context learning on held-out tasks, one run each')
    parser.add_argument('--no-bands', action='store_true', help='draw the mean curves only (for many runs)')
    args = parser.parse_args()
    runs = [parse_run(item) for item in args.runs]

    print('| run | mean return | last 10% | by tenths of the episodes | test/acc_action | training s |')
    print('|---|---|---|---|---|---|')
    bands, sources, oracle = {}, {}, []
    for label, run in runs:
        returns = np.load(run / EVAL_RESULT)                 # (rollouts, episodes)
        evaluation = read_json(run / EVAL_SUMMARY)
        mean = returns.mean(0)                               # (episodes,)
        print(table_row(label, mean, evaluation, run))
        bands[label] = (mean, mean, mean) if args.no_bands else std_band(returns)
        oracle.append(evaluation['oracle_mean'])
        config = read_run_config(run)
        held_out = task_split(config)[1]
        source = (str(dataset_path(config)), tuple(held_out))
        if source not in sources:  # the PPO source on these held-out tasks, named by the first run trained on it
            sources[source] = (label, ppo_source_curve(config, held_out))
    if args.figure:
        curves = [(label, curve) for label, curve in sources.values() if curve is not None]
        ppo = curves[0][1] if len(curves) == 1 else None
        if len(curves) > 1:  # several datasets: each source drawn as a line of its own, named by its first run
            bands.update({f'PPO source of {label}': (curve, curve, curve) for label, curve in curves})
        plot_in_context_curves(Path(args.figure), bands, float(np.mean(oracle)), ppo, args.title,
                               'mean over rollouts' if args.no_bands else 'mean ± 1 std over rollouts')
        print(f'Wrote {args.figure}')
    return 0


if __name__ == '__main__':
    run_main(main)
