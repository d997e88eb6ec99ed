"""Where a training run keeps its files: run-directory naming and checks, checkpoints, and finding runs.

A run directory ``{runs_dir}/{model}-{env}[-compressed[-memory]|-sliding]-seed{env_split_seed}[-trainseed{seed}]`` holds
``config.yaml``, checkpoints ``ckpt-{step}.pt``, TensorBoard event files, ``train_summary.json`` and the evaluation
outputs: the run's own evaluation in the directory itself, any other in an ``eval-{setting}`` sub-directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml

from compressed_ad.build import build_model
from compressed_ad.config_schema import RESUMABLE_KEYS, RUN_KEYS, Config, saved_config
from compressed_ad.context_modes import ContextMode, mode_of
from compressed_ad.utils import UserError, atomic_path, atomic_write_text, pick_device

CONFIG_FILE = 'config.yaml'
TRAIN_SUMMARY = 'train_summary.json'
CONFIG_CHANGES = 'config_changes.yaml'  # keys changed on resume (e.g. a smaller batch after running out of memory)
EVAL_RESULT, EVAL_SUMMARY, EVAL_CURVE = 'eval_result.npy', 'eval_summary.json', 'in_context_curve.png'
EVAL_EVENTS_SUFFIX = '.eval'  # TensorBoard event file of an evaluation (replaced by each re-evaluation)


def last_tenth(returns):
    """The last 10% of the episodes (at least one) of returns (..., episodes): what a run has learned in context,
    reported as "last 10%" beside the mean over all episodes."""
    return returns[..., -max(1, returns.shape[-1] // 10):]


def run_dir(config: dict, mode: ContextMode | None = None) -> Path:
    """``{runs_dir}/{model}-{env}[-compressed[-memory]|-sliding]-seed{env_split_seed}[-trainseed{seed}]``.

    ``seed{N}`` is the goal split (``env_split_seed``), as the quick-start names runs; the training seed is named only when it
    is not the default 0, so ``runs/AD-darkroom-seed0`` stays the default run's name. ``mode``: the context mode,
    by default the one ``config`` selects.
    """
    suffix = (mode or mode_of(config)).run_suffix
    train_seed = f"-trainseed{config['seed']}" if config['seed'] != 0 else ''
    name = f"{config['model']}-{config['env']}{suffix}-seed{config['env_split_seed']}{train_seed}"
    return Path(config['runs_dir']) / name


def read_run_config(run: str | os.PathLike) -> Config:
    """The config a run was trained with (its ``config.yaml``, keys added since filled with their defaults; empty
    when there is none yet)."""
    path = Path(run) / CONFIG_FILE
    if not path.exists():
        return Config()
    return saved_config(yaml.safe_load(path.read_text()) or {}, str(path))


def check_run_dir(run: str | os.PathLike, config: dict) -> dict:
    """Compare ``config`` with the run already in ``run`` (none: nothing to compare): refuse a different run (a
    ``UserError`` naming the keys); return the changes a resume may make (``RESUMABLE_KEYS``) as {key: (old, new)}."""
    saved = read_run_config(run)
    if not saved:
        return {}
    if shown := changed_run_keys(saved, config):
        raise UserError(f"Run directory '{run}' already holds a run with a different config ({shown}). "
                        f"Delete it to start over, or set runs_dir to train elsewhere.")
    return {k: (saved[k], config[k]) for k in RESUMABLE_KEYS if k in saved and saved[k] != config[k]}


def changed_run_keys(saved: dict, config: dict) -> str:
    """The keys a trained run fixes (``RUN_KEYS`` but ``RESUMABLE_KEYS``) whose value in ``config`` differs from
    the run's saved config ``saved`` (``read_run_config``), the first five as 'key: old (trained) -> new
    (wanted)'; empty when none differs."""
    keys = [k for k in config if k in RUN_KEYS - RESUMABLE_KEYS and saved.get(k) != config[k]]
    return ', '.join(f'{k}: {saved.get(k)!r} (trained) -> {config[k]!r} (wanted)' for k in keys[:5])


def write_run_config(run: str | os.PathLike, config: dict) -> None:
    atomic_write_text(Path(run) / CONFIG_FILE, yaml.safe_dump(dict(config), sort_keys=False))


def record_config_changes(run: str | os.PathLike, step: int, changes: dict) -> None:
    """Append ``{key: (old, new)}`` changes made when resuming at ``step`` to the run's ``config_changes.yaml``."""
    path = Path(run) / CONFIG_CHANGES
    log = (yaml.safe_load(path.read_text()) or []) if path.exists() else []
    log += [{'step': step, 'key': k, 'old': old, 'new': new} for k, (old, new) in changes.items()]
    atomic_write_text(path, yaml.safe_dump(log, sort_keys=False))


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


def device_type(device) -> str:
    """The kind of ``device`` ('cpu', 'cuda' or 'mps'): a ``torch.device``, a name such as 'cuda:1', or 'auto',
    resolved as ``utils.pick_device`` resolves it on this machine."""
    if isinstance(device, torch.device):
        return device.type
    return pick_device('auto').type if device == 'auto' else str(device).split(':', 1)[0]


def trained_device_type(run: str | os.PathLike) -> str:
    """The kind of device a run was trained on (its ``train_summary.json``); where that does not say, the one
    ``device: auto`` gives here."""
    try:
        device = json.loads((Path(run) / TRAIN_SUMMARY).read_text()).get('device')
    except (OSError, ValueError, AttributeError):
        device = None
    return device_type(device or 'auto')


def eval_setting(config: dict, greedy: bool, device=None, mode: ContextMode | None = None) -> dict:
    """What decides an evaluation's results (besides the checkpoint): its size, seed, sampling, trigger and the
    kind of device it runs on (their random streams differ). ``device``: the device used, by default the one
    ``config['device']`` names (evaluate.py's rule: ``auto`` unless told); ``mode``: the context mode, by default
    the one ``config`` selects."""
    setting = {'episodes': config['eval_episodes'], 'streams_per_goal': config['eval_streams_per_goal'],
               'seed': config['eval_seed'], 'greedy': greedy}
    mode = mode or mode_of(config)
    if mode.regions:
        setting['compress_trigger'] = config['eval_compress_trigger']
    if mode.memory and config['eval_memory_reset']:  # absent when 0, so the settings of earlier evaluations hold
        setting['memory_reset'] = config['eval_memory_reset']
    setting['device'] = device_type(config['device'] if device is None else device)
    return setting


def own_eval_setting(run: str | os.PathLike) -> dict:
    """The run's own evaluation: its config.yaml's evaluation keys, actions sampled, on the kind of device it was
    trained on. Its results are the ones in the run directory itself (eval_result.npy, eval_summary.json)."""
    return eval_setting(read_run_config(run), greedy=False, device=trained_device_type(run))


def eval_output_dir(run: str | os.PathLike, setting: dict) -> Path:
    """Where an evaluation with ``setting`` writes: the run directory itself for the run's own setting
    (``own_eval_setting``), else ``eval-{greedy|sampled}-{E}ep-{S}x-seed{seed}[-{trigger}][-reset{N}]-{device}`` inside it."""
    run = Path(run)
    if setting == own_eval_setting(run):
        return run
    tag = (f"{'greedy' if setting['greedy'] else 'sampled'}-{setting['episodes']}ep-{setting['streams_per_goal']}x-"
           f"seed{setting['seed']}" + (f"-{setting['compress_trigger']}" if 'compress_trigger' in setting else '')
           + (f"-reset{setting['memory_reset']}" if 'memory_reset' in setting else '')
           + (f"-{setting['device']}" if 'device' in setting else ''))
    return run / f'eval-{tag}'


def save_checkpoint(run: str | os.PathLike, step: int, state: dict) -> Path:
    """Write ``ckpt-{step}.pt`` atomically (a crash mid-write leaves the previous checkpoints intact)."""
    path = checkpoint_path(run, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


RESUME_ENTRIES = ('model', 'optimizer', 'scheduler', 'step', 'rng')  # what train.py writes and a resume needs


def load_checkpoint(path: str | os.PathLike, map_location='cpu', entries: tuple[str, ...] = RESUME_ENTRIES) -> dict:
    """The dict a checkpoint file holds (``save_checkpoint``), its tensors on ``map_location``, with ``entries``.

    A file that cannot be read or lacks one of them (e.g. damaged by a crash outside ``save_checkpoint``'s atomic
    write) is a ``UserError`` saying which file and what to do.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
        missing = [k for k in entries if k not in ckpt]
        if missing:
            raise KeyError(f"missing entries {', '.join(missing)}")
        return ckpt
    except Exception as exc:  # any unreadable checkpoint gets the same advice
        raise UserError(f"Checkpoint '{path}' cannot be loaded: '{path.name}' cannot be read ({type(exc).__name__}: "
                        f"{exc}). Delete it: train.py then resumes from the previous checkpoint and evaluate.py "
                        f"evaluates that one; or delete the run directory to start over.") from None


def load_run_model(run: Path, config: dict, device, mode: ContextMode | None = None):
    """The model of ``run``'s last checkpoint, in eval mode, and its step (``mode``: as ``build_model``'s)."""
    found = checkpoints(run)
    if not found:
        raise UserError(f"Run '{run}' has no checkpoint (ckpt-*.pt). Train it first: "
                        f"'python train.py' with the same config, which resumes where it stopped.")
    step, path = found[-1]
    ckpt = load_checkpoint(path, map_location=device, entries=('model',))
    try:
        model = build_model(config, mode).to(device)
        model.load_state_dict(ckpt['model'])
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"Checkpoint '{path}' cannot be loaded with the run's config.yaml ({first}). It does not fit "
                        f"the config: retrain the run, or restore its config.yaml.") from None
    return model.eval(), step
