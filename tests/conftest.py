"""Shared fixtures: a tiny synthetic learning history, written in the real HDF5 layout."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)

from bench.bench import synthetic_streams  # noqa: E402
from dataset import HistoryWriter  # noqa: E402
from env import all_goals  # noqa: E402
from utils import dataset_path  # noqa: E402

# a small but complete setting: all 81 goals (the split needs them), short regions
TINY = ['n_stream=3', 'n_steps=8', 'train_source_timesteps=48', 'compress_interval=8',
        'tf_n_embd=32', 'tf_n_layer=2', 'tf_n_head=2', 'tf_dim_feedforward=64', 'tf_dropout=0.0',
        'train_batch_size=8', 'test_batch_size=8', 'test_n_batches=1', 'num_warmup_steps=2',
        'summary_interval=2', 'eval_interval=4', 'ckpt_interval=4', 'train_timesteps=8',
        'eval_episodes=3', 'eval_streams_per_goal=2', 'ppo_batch_size=8', 'device=cpu']
TINY_STANDARD = TINY + ['n_transit=20']
TINY_COMPRESSED = TINY + ['n_transit=16']


def synthetic_history(goal, n_stream: int, T: int, n_steps: int, grid_size: int = 9, horizon: int = 20,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """One goal's history in the file's time-major layout (T, n_stream, ...), from the benchmark's generator:
    a learner that walks towards the goal with a probability growing over time; markers every n_steps."""
    streams = synthetic_streams(np.asarray([goal]), n_stream, T, n_steps, grid_size, horizon, seed)
    return {k: np.swapaxes(v, 0, 1) for k, v in streams.items()}


def write_synthetic(path: Path, config: dict, markers: bool = True, attrs: bool = True) -> Path:
    """Write a synthetic history file for every goal. ``attrs=False`` mimics files of older code."""
    goals = all_goals(config['grid_size'])
    if attrs:
        with HistoryWriter(path, config) as w:
            for i, g in enumerate(goals):
                w.add(i, g, synthetic_history(g, config['n_stream'], config['train_source_timesteps'],
                                              config['n_steps'], config['grid_size'], seed=i))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as f:
        for i, g in enumerate(goals):
            h = synthetic_history(g, config['n_stream'], config['train_source_timesteps'], config['n_steps'],
                                  config['grid_size'], seed=i)
            grp = f.create_group(str(i))
            for k, v in h.items():
                if k == 'compress_markers' and not markers:
                    continue
                grp.create_dataset(k, data=v)
    return path


@pytest.fixture
def workdir(tmp_path):
    """Overrides that keep datasets and runs inside a temporary directory."""
    return ['datasets_dir=' + str(tmp_path / 'datasets'), 'runs_dir=' + str(tmp_path / 'runs'),
            'ppo_log_dir=' + str(tmp_path / 'ppo')]


@pytest.fixture
def tiny_dataset(tmp_path, workdir):
    from utils import load_config
    config = load_config(overrides=TINY_STANDARD + workdir)
    return write_synthetic(dataset_path(config), config)


def run_script(*args, timeout=600, env_extra=None) -> subprocess.CompletedProcess:
    """Run a project script the way a user does; returns the completed process (text output)."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A clean failure: non-zero exit, the message, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f'{needle!r} not in: {proc.stderr}'
