"""Collect PPO learning histories on every task (Dark Room goal) into one HDF5 file.

    python collect.py                   # 81 goals x 100 streams -> datasets/history_darkroom_PPO_alg-seed42.hdf5
    python collect.py --quick           # tiny setting for 2 CPU cores
    python collect.py --env darkkeytodoor   # Dark Key-to-Door: a sample of n_tasks (key, door) tasks
    python collect.py --force n_process=4 n_stream=50

One stable-baselines3 PPO learner per task, its streams stepped as one numpy VecEnv, tasks spread over
``n_process`` worker processes (one torch thread each). An SB3 callback records every transition and
marks the PPO rollout boundaries (``compress_markers``).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
from tqdm import tqdm

from compressed_ad.config_schema import add_config_args, config_from_args, format_config
from compressed_ad.env import env_spec, oracle_returns, task_indices, tasks_of
from compressed_ad.history_file import HistoryWriter, dataset_path, rollout_returns
from compressed_ad.utils import UserError, parse_args, run_main


def collect_task(job):
    """Worker: PPO on one task. Returns (env_idx, history, seconds) or (env_idx, error text, None)."""
    env_idx, task, config = job
    from compressed_ad.algorithm.ppo import learn_task, set_single_thread
    set_single_thread()
    start = time.time()
    try:
        log_dir = os.path.join(config['ppo_log_dir'], f'task{env_idx:02d}') if config['ppo_log_dir'] else None
        history = learn_task(task, config, seed=config['alg_seed'] + env_idx, tensorboard_log=log_dir)
    except Exception as exc:  # reported with the task by the parent, which then aborts the whole run
        return env_idx, f'{type(exc).__name__}: {exc}', None
    return env_idx, history, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--force', action='store_true', help='overwrite an existing dataset')
    add_config_args(parser)
    args = parse_args(parser)
    config = config_from_args(args)
    if args.print_config:
        print(format_config(config))
        return 0

    path = dataset_path(config)
    if path.exists() and not args.force:
        raise UserError(f"Dataset '{path}' already exists and was kept. Pass --force to collect it again "
                        f"(the old file is replaced only when the new one is complete), or set datasets_dir "
                        f"or alg_seed to write elsewhere.")
    spec = env_spec(config)
    indices = task_indices(config)
    tasks = dict(zip(indices, tasks_of(config, indices)))
    oracle = dict(zip(indices, oracle_returns(config, indices)))
    n_process = min(config['n_process'] or os.cpu_count() or 1, len(indices))
    jobs = [(i, tasks[i], dict(config)) for i in indices]
    print(f"Collecting PPO histories on {spec.name}: {len(indices)} tasks x {config['n_stream']} streams, "
          f"{config['train_source_timesteps']} steps per stream (rollouts of {config['n_steps']}), "
          f"{n_process} worker process(es) -> {path}")

    first, last, seconds = [], [], []
    start = time.time()
    with HistoryWriter(path, config) as writer:
        pool = mp.get_context('fork').Pool(n_process) if n_process > 1 else None
        try:
            results = pool.imap_unordered(collect_task, jobs) if pool else map(collect_task, jobs)
            for env_idx, history, elapsed in tqdm(results, total=len(jobs), desc='tasks', unit='task', mininterval=1.0):
                if elapsed is None:
                    raise UserError(f"PPO on task {env_idx} {spec.describe(tasks[env_idx])} failed "
                                    f"({history}); no dataset was written.")
                writer.add(env_idx, tasks[env_idx], history)
                curve = rollout_returns(history['rewards'], config['n_steps'], config['horizon'])
                first.append(curve[0])
                last.append(curve[-1])
                seconds.append(elapsed)
        finally:
            if pool:
                pool.terminate()
                pool.join()
    wall = time.time() - start
    print(f"Wrote {path} ({len(indices)} groups) in {wall:.1f} s "
          f"({np.mean(seconds):.2f} s per task per core).")
    print(f"PPO mean episode return over all tasks: first rollout {np.mean(first):.2f}, "
          f"last rollout {np.mean(last):.2f}, oracle {np.mean(list(oracle.values())):.2f}.")


if __name__ == '__main__':
    run_main(main)
