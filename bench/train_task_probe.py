"""Does a trained run learn in context, or remember its training tasks? Its rollout on training tasks beside held-out.

    python -m bench.train_task_probe runs/cpu/AD-darkkeytodoor-compressed-seed0 --tasks 10 --episodes 100

A diagnosis, not an evaluation: it rolls the run's model out, as ``evaluate.py`` does, on the first ``--tasks`` of
its training tasks and on its held-out tasks, and prints the mean return of each by fifths of the episodes. A model
that scores well on the training tasks and badly, or worse with experience, on the held-out ones has remembered its
tasks instead of learning to find them. It writes nothing: evaluations of a run only ever use its held-out tasks.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compressed_ad.env import task_split, tasks_of
from compressed_ad.model.rollout import rollout_on_tasks
from compressed_ad.run_files import load_run_model, read_run_config
from compressed_ad.utils import UserError, pick_device, run_main


def rollout_returns(model, config, indices, streams: int, episodes: int, device) -> np.ndarray:
    """Returns (len(indices) * streams, episodes) of in-context rollouts on the given tasks."""
    rollout = rollout_on_tasks(model, config, tasks_of(config, indices), streams, device)
    return rollout.run(episodes, lambda i, returns: None).cpu().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run', type=Path, help='a trained run directory')
    parser.add_argument('--tasks', type=int, default=10, help='training tasks to roll out on (the first ones)')
    parser.add_argument('--streams', type=int, default=4, help='rollouts per task')
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--device', default='auto')
    args = parser.parse_args()
    if args.episodes < 5 or args.tasks < 1 or args.streams < 1:
        raise UserError('--episodes must be at least 5 (they are reported by fifths), --tasks and --streams at '
                        'least 1.')
    config = read_run_config(args.run)
    device = pick_device(args.device)
    model, step = load_run_model(args.run, config, device)
    train_idx, test_idx = task_split(config)
    print(f"'{args.run}' (checkpoint step {step}): mean return by fifths of {args.episodes} episodes, "
          f"{args.streams} rollouts per task")
    for name, idx in (('training tasks', train_idx[:args.tasks]), ('held-out tasks', test_idx)):
        returns = rollout_returns(model, config, idx, args.streams, args.episodes, device).mean(0)  # (episodes,)
        fifths = ' '.join(f'{part.mean():.2f}' for part in np.array_split(returns, 5))
        print(f'{len(idx):3d} {name:15s} all {returns.mean():.2f}   by fifths {fifths}')


if __name__ == '__main__':
    run_main(main)
