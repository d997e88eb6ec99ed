"""Where a training run keeps its files: run-directory naming, checkpoints, and finding runs.

A run directory ``{runs_dir}/{model}-{env}[-compressed]-seed{env_split_seed}`` holds ``config.yaml``,
checkpoints ``ckpt-{step}.pt``, TensorBoard event files, ``train_summary.json`` and the evaluation outputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

from utils import UserError, atomic_path

CONFIG_FILE = 'config.yaml'
TRAIN_SUMMARY = 'train_summary.json'
EVAL_RESULT, EVAL_SUMMARY, EVAL_CURVE = 'eval_result.npy', 'eval_summary.json', 'in_context_curve.png'


def run_dir(config: dict) -> Path:
    """``{runs_dir}/{model}-{env}[-compressed]-seed{env_split_seed}``."""
    mode = '-compressed' if config['use_compressed_context'] else ''
    return Path(config['runs_dir']) / f"{config['model']}-{config['env']}{mode}-seed{config['env_split_seed']}"


def read_run_config(run: str | os.PathLike) -> dict:
    """The config a run was trained with (its ``config.yaml``)."""
    return yaml.safe_load((Path(run) / CONFIG_FILE).read_text()) or {}


def checkpoint_path(run: str | os.PathLike, step: int) -> Path:
    return Path(run) / f'ckpt-{step}.pt'


def checkpoints(run: str | os.PathLike) -> list[tuple[int, Path]]:
    """``ckpt-{step}.pt`` files of a run directory as (step, path), oldest first."""
    found = []
    for p in Path(run).glob('ckpt-*.pt'):
        try:
            found.append((int(p.stem.split('-', 1)[1]), p))
        except ValueError:
            continue
    return sorted(found)


def run_finished(run: str | os.PathLike, config: dict) -> bool:
    """True when the run has a checkpoint at (or past) ``train_timesteps``."""
    found = checkpoints(run)
    return bool(found) and found[-1][0] >= config['train_timesteps']


def find_latest_run(runs_dir: Path) -> Path:
    """The run directory under ``runs_dir`` whose newest checkpoint was written last."""
    candidates = [(ckpts[-1][1].stat().st_mtime, d) for d in runs_dir.glob('*')
                  if d.is_dir() and (d / CONFIG_FILE).exists() and (ckpts := checkpoints(d))]
    if not candidates:
        raise UserError(f"No trained run found under '{runs_dir}'. Train one first ('python train.py'), or pass "
                        f"run directories: 'python evaluate.py runs/AD-darkroom-seed0'.")
    return max(candidates)[1]


def save_checkpoint(run: str | os.PathLike, step: int, state: dict) -> Path:
    """Write ``ckpt-{step}.pt`` atomically (a crash mid-write leaves the previous checkpoints intact)."""
    path = checkpoint_path(run, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
