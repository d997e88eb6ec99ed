"""Synthetic learning histories with every field of the history file, for the tests and the benchmark.

A scripted learner walks towards its task's next waypoint (the goal; or the key, then the door) with a
probability that grows over the stream, and acts at random otherwise; all streams are stepped at once with the
environment's own dynamics, and markers open and close a region every ``region_len`` transitions, as the PPO
collector writes them.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from compressed_ad.env import MOVES, env_spec, task_indices, tasks_of
from compressed_ad.history_file import HistoryWriter, expected_markers


def synthetic_streams(config: dict, tasks: np.ndarray, n_stream: int, T: int, region_len: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """Stream-major histories (N = tasks * n_stream, T, ...) of ``n_stream`` streams per task (tasks (G, task_dim))."""
    spec, grid_size, horizon = env_spec(config), config['grid_size'], config['horizon']
    rng = np.random.default_rng(seed)
    task = np.repeat(np.asarray(tasks, dtype=np.int64), n_stream, axis=0)  # (N, task_dim)
    N = len(task)
    start = np.tile(np.array(spec.start_state(grid_size), dtype=np.int64), (N, 1))
    state = start.copy()
    states = np.empty((N, T, start.shape[1]), np.int32)
    next_states = np.empty_like(states)
    actions = np.empty((N, T), np.int32)
    rewards = np.empty((N, T), np.int32)
    for t in range(T):  # the learner's steps are sequential by nature; streams are one batch
        d = spec.waypoint(state, task) - state[:, :2]
        toward = np.select([d[:, 0] > 0, d[:, 0] < 0, d[:, 1] > 0, d[:, 1] < 0], [0, 1, 2, 3], 4)
        action = np.where(rng.random(N) < t / T, toward, rng.integers(0, 5, N))
        states[:, t], actions[:, t] = state, action
        state, rewards[:, t] = spec.step(state, action, task, MOVES, grid_size)
        next_states[:, t] = state
        if (t + 1) % horizon == 0:
            state = start.copy()
    dones = np.tile((np.arange(T) + 1) % horizon == 0, (N, 1))
    return {'states': states, 'actions': actions, 'rewards': rewards, 'next_states': next_states, 'dones': dones,
            'compress_markers': np.tile(expected_markers(T, region_len), (N, 1))}


def synthetic_history(config: dict, task, n_stream: int, T: int, region_len: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """One task's history in the file's time-major layout (T, n_stream, ...)."""
    streams = synthetic_streams(config, np.asarray([task]), n_stream, T, region_len, seed)
    return {k: np.swapaxes(v, 0, 1) for k, v in streams.items()}


def write_synthetic_file(path: Path, config: dict, markers: bool = True, attrs: bool = True) -> Path:
    """A history file for every task of the config. ``attrs=False`` mimics files of older code (no file or group
    attributes), ``markers=False`` files without ``compress_markers``."""
    indices = task_indices(config)
    histories = (synthetic_history(config, task, config['n_stream'], config['train_source_timesteps'],
                                   config['n_steps'], seed=i) for i, task in zip(indices, tasks_of(config, indices)))
    if attrs and markers:
        with HistoryWriter(path, config) as w:
            for i, task, h in zip(indices, tasks_of(config, indices), histories):
                w.add(i, task, h)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as f:
        for i, h in zip(indices, histories):
            group = f.create_group(str(i))
            for name, data in h.items():
                if name != 'compress_markers' or markers:
                    group.create_dataset(name, data=data)
    return path
