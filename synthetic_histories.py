"""Synthetic learning histories with every field of the history file, for the tests and the benchmark.

A scripted learner walks towards its goal with a probability that grows over the stream (else it acts at
random), all streams stepped at once with Dark Room's own dynamics; markers open and close a region every
``n_steps`` transitions, as the PPO collector writes them.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from env import MOVES, all_goals, start_position, step_positions
from history_file import HistoryWriter, expected_markers


def synthetic_streams(goals: np.ndarray, n_stream: int, T: int, n_steps: int, grid_size: int,
                      horizon: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Stream-major histories (N = goals * n_stream, T, ...) of ``n_stream`` streams per goal (goals (G, 2))."""
    rng = np.random.default_rng(seed)
    goal = np.repeat(np.asarray(goals), n_stream, axis=0)  # (N, 2)
    N = len(goal)
    start = np.tile(start_position(grid_size), (N, 1))
    pos = start.copy()
    states = np.empty((N, T, 2), np.int32)
    next_states = np.empty((N, T, 2), np.int32)
    actions = np.empty((N, T), np.int32)
    rewards = np.empty((N, T), np.int32)
    for t in range(T):  # the learner's steps are sequential by nature; streams are one batch
        d = goal - pos
        toward = np.select([d[:, 0] > 0, d[:, 0] < 0, d[:, 1] > 0, d[:, 1] < 0], [0, 1, 2, 3], 4)
        action = np.where(rng.random(N) < t / T, toward, rng.integers(0, 5, N))
        states[:, t], actions[:, t] = pos, action
        pos, rewards[:, t] = step_positions(pos, action, goal, MOVES, grid_size)
        next_states[:, t] = pos
        if (t + 1) % horizon == 0:
            pos = start.copy()
    dones = np.tile((np.arange(T) + 1) % horizon == 0, (N, 1))
    return {'states': states, 'actions': actions, 'rewards': rewards, 'next_states': next_states, 'dones': dones,
            'compress_markers': np.tile(expected_markers(T, n_steps), (N, 1))}


def synthetic_history(goal, n_stream: int, T: int, n_steps: int, grid_size: int = 9, horizon: int = 20,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """One goal's history in the file's time-major layout (T, n_stream, ...)."""
    streams = synthetic_streams(np.asarray([goal]), n_stream, T, n_steps, grid_size, horizon, seed)
    return {k: np.swapaxes(v, 0, 1) for k, v in streams.items()}


def write_synthetic_file(path: Path, config: dict, markers: bool = True, attrs: bool = True) -> Path:
    """A history file for every goal of the config's grid. ``attrs=False`` mimics files of older code
    (no file or group attributes), ``markers=False`` files without ``compress_markers``."""
    goals = all_goals(config['grid_size'])
    histories = (synthetic_history(g, config['n_stream'], config['train_source_timesteps'], config['n_steps'],
                                   config['grid_size'], config['horizon'], seed=i) for i, g in enumerate(goals))
    if attrs and markers:
        with HistoryWriter(path, config) as w:
            for i, (g, h) in enumerate(zip(goals, histories)):
                w.add(i, g, h)
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as f:
        for i, h in enumerate(histories):
            group = f.create_group(str(i))
            for name, data in h.items():
                if name != 'compress_markers' or markers:
                    group.create_dataset(name, data=data)
    return path

