"""Collect PPO learning histories on every task (Dark Room goal) into one HDF5 file.

    python collect.py                   # 81 goals x 100 streams -> datasets/history_darkroom_PPO_alg-seed42.hdf5
    python collect.py --quick           # tiny setting for 2 CPU cores
    python collect.py --env darkkeytodoor   # Dark Key-to-Door: a sample of n_tasks (key, door) tasks
    python collect.py --force n_process=4 n_stream=50
    python collect.py collect_backend=ray   # one Ray task per learner on the cluster at RAY_ADDRESS (pip install -e ".[ray]")

One stable-baselines3 PPO learner per task, its streams stepped as one numpy VecEnv, tasks spread over
``n_process`` worker processes (one torch thread each) or, with ``collect_backend=ray``, one Ray task (one CPU)
each. An SB3 callback records every transition and marks the PPO rollout boundaries (``compress_markers``).
Each finished task is kept at once in ``{dataset}.partial/``: a collect that stops (an error, Ctrl-C, a lost node)
resumes with the missing tasks when run again, and writes the file an uninterrupted collect writes; ``--force``
starts over.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from compressed_ad.collection import plan_collect, ppo_learning, run_collect
from compressed_ad.config_schema import add_config_args, config_from_args, format_config
from compressed_ad.env import env_spec, oracle_returns
from compressed_ad.utils import parse_args, run_main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--force', action='store_true',
                        help='collect every task again: overwrite an existing dataset (once the new one is complete) '
                             'and discard the finished tasks of an unfinished collect')
    add_config_args(parser)
    args = parse_args(parser)
    config = config_from_args(args, context_mode=False)  # trains no model: the context mode is train.py's to check
    if args.print_config:
        print(format_config(config))
        return 0

    plan = plan_collect(config, args.force)
    print(f"Collecting PPO histories on {env_spec(config).name}: {len(plan.indices)} tasks x {config['n_stream']} "
          f"streams, {config['train_source_timesteps']} steps per stream (rollouts of {config['n_steps']}), "
          f"{plan.workers} -> {plan.path}")
    for note in plan.notes:
        print(note)
    start = time.time()
    seconds = run_collect(plan)
    wall = time.time() - start
    rate = f"{np.mean(seconds):.2f} s per task per core" if seconds else 'no task was left to collect'
    if seconds and plan.done:
        rate += f' over the {len(seconds)} tasks collected now'
    print(f"Wrote {plan.path} ({len(plan.indices)} groups) in {wall:.1f} s ({rate}).")
    first, last = ppo_learning(plan.path, config)
    print(f"PPO mean episode return over all tasks: first rollout {first:.2f}, last rollout {last:.2f}, "
          f"oracle {np.mean(oracle_returns(config, plan.indices)):.2f}.")


if __name__ == '__main__':
    run_main(main)
