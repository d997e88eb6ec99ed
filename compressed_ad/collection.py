"""Collecting the PPO learning histories: one learner per task, in a local process pool or as Ray tasks, every
finished task kept at once (``history_file.TaskShards``) so that a collect stopped for any reason resumes with the
tasks it lacks.

Task ``i`` is trained with seed ``alg_seed + i`` and one torch thread wherever it runs, so both backends, and a
collect resumed any number of times, write the same file: the shards are copied into it in env-index order.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from compressed_ad import cluster
from compressed_ad.config_schema import collect_keys
from compressed_ad.env import env_spec, task_indices, tasks_of
from compressed_ad.history_file import TaskShards, dataset_path, open_history, rollout_returns
from compressed_ad.utils import UserError


def collect_task(job: tuple) -> tuple:
    """One task's PPO learner, in a worker: job (task_idx, task, config) -> (task_idx, its shard's bytes, seconds), or
    (task_idx, error text, None) when PPO raised. The worker compresses the history, so the process that keeps the
    shards only writes bytes, however many workers feed it."""
    task_idx, task, config = job
    from compressed_ad.algorithm.ppo import learn_task, set_single_thread
    set_single_thread()
    start = time.time()
    try:
        log_dir = os.path.join(config['ppo_log_dir'], f'task{task_idx:02d}') if config['ppo_log_dir'] else None
        history = learn_task(task, config, seed=config['alg_seed'] + task_idx, tensorboard_log=log_dir)
    except Exception as exc:  # reported with the task by the driver, which then stops the collect
        return task_idx, f'{type(exc).__name__}: {exc}', None
    return task_idx, TaskShards.encode(task_idx, task, history, config), time.time() - start


# ----------------------------------------------------------------------------- backends
@contextmanager
def local_results(jobs: list[tuple], n_process: int) -> Iterator[Iterator[tuple]]:
    """``collect_task`` over ``jobs`` in ``n_process`` forked workers (in this process with one); yields its results
    in the order they finish."""
    pool = mp.get_context('fork').Pool(n_process) if n_process > 1 else None
    try:
        yield pool.imap_unordered(collect_task, jobs) if pool else map(collect_task, jobs)
    finally:
        if pool:
            pool.terminate()
            pool.join()


@contextmanager
def ray_results(ray, jobs: list[tuple]) -> Iterator[Iterator[tuple]]:
    """``collect_task`` over ``jobs`` as one Ray task each (one CPU); yields its results in the order they finish, a
    task Ray lost (its worker crashed, say) as (task_idx, error text, None)."""
    tasks = cluster.RayTasks(ray, collect_task, num_cpus=1)
    for job in jobs:
        tasks.submit(job[0], job)
    try:
        yield (result if error is None else (task_idx, error, None) for task_idx, result, error in tasks.finished())
    finally:
        tasks.cancel()


# ----------------------------------------------------------------------------- the collect
@dataclass
class CollectPlan:
    """What one invocation collects: every task of the config, those already kept, and where the work runs."""
    config: dict
    path: Path
    shards: TaskShards
    indices: list[int]
    done: list[int]
    workers: str                       # for people: '2 worker process(es)', 'one Ray task each (16 CPUs ...)'
    ray: object = None                 # the ray module, with the Ray backend
    n_process: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[int]:
        done = set(self.done)
        return [i for i in self.indices if i not in done]


def plan_collect(config: dict, force: bool) -> CollectPlan:
    """Check what may be written and join the backend, before anything on disk changes: a finished dataset is kept
    unless ``force``; finished tasks of this config are resumed, those of another config refused; ``force``
    discards them."""
    path = dataset_path(config)
    shards = TaskShards(path)
    done = shards.finished()
    if path.exists() and not force and not done:
        raise UserError(f"Dataset '{path}' already exists and was kept. Pass --force to collect it again "
                        f"(the old file is replaced only when the new one is complete), or set datasets_dir "
                        f"or alg_seed to write elsewhere.")
    if done and not force:
        refuse_another_collect(shards, config, len(done))
    indices = task_indices(config)
    if config['collect_backend'] == 'ray':
        ray = cluster.connect('collect_backend=ray')
        plan = CollectPlan(config, path, shards, indices, done, f'one Ray task each ({cluster.describe_cluster(ray)})',
                           ray=ray)
    else:
        n_process = min(config['n_process'] or os.cpu_count() or 1, len(indices))
        plan = CollectPlan(config, path, shards, indices, done, f'{n_process} worker process(es)', n_process=n_process)
    if done and force:
        plan.notes.append(f"--force: discarding the {len(done)} finished task(s) in '{shards.dir}' and starting over.")
        shards.discard()
        plan.done = []
    elif done:
        plan.notes.append(f"Resuming: {len(done)} of {len(indices)} tasks are already collected in '{shards.dir}'"
                          + (f"; '{path}' is replaced when the collect completes." if path.exists() else '.'))
    return plan


def refuse_another_collect(shards: TaskShards, config: dict, n_done: int) -> None:
    """Finished tasks collected under other values of the keys that decide the data cannot join this collect."""
    stored = shards.stored_config()
    changed = [f'{key}: {stored.get(key)!r} there, {config[key]!r} here' for key in sorted(collect_keys(config['env']))
               if stored.get(key) != config[key]]
    if changed:
        raise UserError(f"'{shards.dir}' holds {n_done} finished task(s) of a collect with another config "
                        f"({'; '.join(changed)}). Run collect.py with that collect's values to resume it, pass "
                        f"--force to discard those tasks and start over, or set datasets_dir to collect elsewhere.")


def run_collect(plan: CollectPlan) -> list[float]:
    """Collect the missing tasks, keeping each as it finishes, then write the dataset from all of them.

    Returns the seconds of each task collected now. A failed task stops the collect with a ``UserError`` naming it;
    whatever stops it, the tasks already finished stay kept and no dataset is written.
    """
    config = plan.config
    tasks = dict(zip(plan.indices, tasks_of(config, plan.indices)))
    job_config = dict(config)  # the workers' copy, which each shard stores
    if config['ppo_log_dir']:  # workers on other nodes start elsewhere: give them the driver's folder
        job_config['ppo_log_dir'] = str(Path(config['ppo_log_dir']).resolve())
    jobs = [(i, tasks[i], job_config) for i in plan.missing]
    seconds = []
    results = ray_results(plan.ray, jobs) if plan.ray else local_results(jobs, plan.n_process)
    try:
        with results as finished:
            for task_idx, shard, elapsed in tqdm(finished, total=len(plan.indices), initial=len(plan.done),
                                                 desc='tasks', unit='task', mininterval=1.0):
                if elapsed is None:
                    raise UserError(f"PPO on task {task_idx} {env_spec(config).describe(tasks[task_idx])} failed "
                                    f"({shard}); no dataset was written. {kept_note(plan)}")
                plan.shards.keep(task_idx, shard)
                seconds.append(elapsed)
    except KeyboardInterrupt:
        print(kept_note(plan), file=sys.stderr)
        raise
    plan.shards.assemble(config, plan.indices)
    return seconds


def kept_note(plan: CollectPlan) -> str:
    n_kept = len(plan.shards.finished())
    if not n_kept:
        return 'No task had finished.'
    return (f"The {n_kept} finished task(s) are kept in '{plan.shards.dir}': run collect.py again without --force "
            f"to continue with the {len(plan.indices) - n_kept} missing one(s).")


def ppo_learning(path: Path, config: dict) -> tuple[float, float]:
    """The mean over tasks of PPO's first and last rollout's mean episode return, read from the dataset."""
    first, last = [], []
    with open_history(path) as f:
        for i in task_indices(config):
            curve = rollout_returns(f[str(i)]['rewards'][:], config['n_steps'], config['horizon'])
            first.append(curve[0])
            last.append(curve[-1])
    return float(np.mean(first)), float(np.mean(last))
