"""The learning-history file (HDF5): writing, reading, checks, and GPU-resident training windows.

File layout (shared with earlier AD code in this line, so its files load):
    /<env index>/states        (T, n_stream, 2) int32
                 actions       (T, n_stream)    int32
                 rewards       (T, n_stream)    int32
                 next_states   (T, n_stream, 2) int32
                 dones         (T, n_stream)    bool
                 compress_markers (T, n_stream) int32: 1 first / 2 last transition of a PPO rollout, else 0
    file attrs:  schema_version, config (YAML text of the full collect config)
    group attrs: goal (row, col), env_idx
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from model.layout import IGNORE, TRANSITION, compressed_window, next_type_targets, stream_tokens
from utils import UserError, atomic_path, dataset_path

SCHEMA_VERSION = 1
FIELDS = ('states', 'actions', 'rewards', 'next_states', 'dones', 'compress_markers')
DTYPES = {'states': np.int32, 'actions': np.int32, 'rewards': np.int32, 'next_states': np.int32,
          'dones': np.bool_, 'compress_markers': np.int32}


class HistoryWriter:
    """Write a history file atomically: use as a context manager, ``add`` one goal at a time.

    The data goes to a temporary file beside the target and is renamed onto it only when the block
    ends without error, so an interrupted or failed collect leaves no partial file.
    """

    def __init__(self, path: str | Path, config: dict):
        self.path, self.config = Path(path), config
        self._atomic = atomic_path(self.path, suffix='.hdf5')

    def __enter__(self):
        tmp = self._atomic.__enter__()
        self.file = h5py.File(tmp, 'w')
        self.file.attrs['schema_version'] = SCHEMA_VERSION
        self.file.attrs['config'] = yaml.safe_dump(dict(self.config), sort_keys=False)
        return self

    def add(self, env_idx: int, goal, history: dict[str, np.ndarray]) -> None:
        group = self.file.create_group(str(env_idx))
        group.attrs['goal'] = np.asarray(goal, dtype=np.int32)
        group.attrs['env_idx'] = env_idx
        for name in FIELDS:
            group.create_dataset(name, data=np.asarray(history[name], dtype=DTYPES[name]),
                                 compression='gzip', compression_opts=1)

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        return self._atomic.__exit__(exc_type, exc, tb)


def missing_dataset_error(path: Path) -> UserError:
    return UserError(f"Dataset '{path}' not found. Run 'python collect.py' first (with the same config "
                     f"overrides, e.g. --quick) to create it, or set datasets_dir to where it lives.")


def open_history(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise missing_dataset_error(path)
    try:
        return h5py.File(path, 'r')
    except OSError as exc:
        raise UserError(f"Dataset '{path}' cannot be read as HDF5 ({exc}). Run 'python collect.py --force' "
                        f"to write it again.") from None


def file_config(f: h5py.File) -> dict:
    """The collect config stored in the file ({} for files written by older code)."""
    text = f.attrs.get('config')
    return yaml.safe_load(text) if text else {}


def check_dataset(f: h5py.File, config: dict, env_indices: list[int], compressed: bool) -> dict:
    """Check that the file fits the config before any training work. Returns facts about the file."""
    path = f.filename
    missing = [i for i in env_indices if str(i) not in f]
    if missing:
        raise UserError(f"Dataset '{path}' has no group for env indices {missing[:8]}"
                        f"{' ...' if len(missing) > 8 else ''}. It was collected for another grid or split; "
                        f"run 'python collect.py --force' with this config.")
    for i in env_indices:
        lacking = [name for name in ('states', 'actions', 'rewards') if name not in f[str(i)]]
        if lacking:
            raise UserError(f"Dataset '{path}': group '{i}' has no {', '.join(lacking)}. The file is incomplete or "
                            f"not a history file; run 'python collect.py --force' to write it again.")
    stored = file_config(f)
    if stored.get('grid_size', config['grid_size']) != config['grid_size']:
        raise UserError(f"Dataset '{path}' was collected on a {stored['grid_size']}x{stored['grid_size']} grid "
                        f"but grid_size={config['grid_size']}. Use a matching grid_size or collect again.")
    first = f[str(env_indices[0])]
    max_coord = int(np.max(first['states'][:])) if 'states' in first else 0
    if max_coord >= config['grid_size']:
        raise UserError(f"Dataset '{path}' holds positions up to {max_coord}, outside a grid of size "
                        f"{config['grid_size']}. Use a matching grid_size or collect again.")
    T = first['actions'].shape[0]
    info = {'T': T, 'n_stream': first['actions'].shape[1], 'n_steps': stored.get('n_steps')}
    if compressed:
        if 'compress_markers' not in first:
            raise UserError(f"No compression markers found in '{path}': it was written by older code. "
                            f"Compressed mode needs them; run collect.py again "
                            f"('python collect.py --force') to regenerate the dataset with markers.")
        markers = first['compress_markers'][:, 0]
        opens = np.flatnonzero(markers == 1)
        n_steps = info['n_steps'] or (int(opens[1] - opens[0]) if len(opens) > 1 else T)
        info['n_steps'] = n_steps
        if config['compress_interval'] != n_steps:
            raise UserError(f"compress_interval={config['compress_interval']} but the dataset's PPO n_steps is "
                            f"{n_steps}: regions would not match the rollouts. Set compress_interval={n_steps} "
                            f"(e.g. 'python train.py compress_interval={n_steps}') or collect with n_steps="
                            f"{config['compress_interval']}.")
    return info


def read_streams(f: h5py.File, env_indices: list[int], n_timesteps: int, n_stream: int = 0) -> dict[str, np.ndarray]:
    """Read goals ``env_indices``: dict of stream-major arrays (n_goals * n_stream, T, ...)."""
    out = {name: [] for name in ('states', 'actions', 'rewards', 'compress_markers')}
    for i in env_indices:
        group = f[str(i)]
        streams = slice(None, n_stream or None)
        for name in out:
            if name in group:
                out[name].append(np.swapaxes(group[name][:n_timesteps, streams], 0, 1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def check_markers(markers: np.ndarray, region_len: int, path: str) -> None:
    """markers (N, T) with T a multiple of ``region_len``: regions must be whole and aligned."""
    N, T = markers.shape
    expected = np.zeros(region_len, dtype=markers.dtype)
    expected[0], expected[-1] = 1, 2
    bad = np.argwhere(markers != np.tile(expected, T // region_len))
    if len(bad):
        stream, t = bad[0]
        raise UserError(f"Dataset '{path}': compression markers are not on {region_len}-step rollout boundaries "
                        f"(first mismatch in stream {stream} at step {t}). Run 'python collect.py --force'.")


class WindowSampler:
    """Training windows built on the device by index arithmetic (no DataLoader, no per-sample Python).

    Holds every stream of the chosen goals as (N, T) token-field tensors. ``sample(B, generator)``
    returns a batch dict of (B, L) tensors: types, cell, prev_action, prev_reward, action targets
    (``IGNORE`` at markers) and, in compressed mode, next-token-type targets.
    """

    def __init__(self, streams: dict[str, np.ndarray], config: dict, device, source: str = 'the dataset'):
        self.device = device
        self.compressed = config['use_compressed_context']
        T = streams['actions'].shape[1]
        if self.compressed:
            R = config['compress_interval']
            T = T - T % R
            if T < 2 * R:
                raise UserError(f"Compressed mode needs at least two whole regions of {R} steps per stream; the "
                                f"dataset gives {streams['actions'].shape[1]} (train_source_timesteps). Collect "
                                f"longer histories or lower compress_interval.")
            check_markers(streams['compress_markers'][:, :T], R, source)
            types, offsets = compressed_window(R)
            self.types, self.offsets = types.to(device), offsets.clamp(min=0).to(device)
            self.is_transition = self.types == TRANSITION
            self.type_targets = next_type_targets(self.types)
            self.n_starts = T // R - 1  # region pairs (j, j+1)
            self.stride = R
        else:
            L = config['n_transit']
            if T < L:
                raise UserError(f"n_transit={L} is longer than the histories ({T} steps per stream). Lower n_transit "
                                f"or collect with a larger train_source_timesteps.")
            self.offsets = torch.arange(L, device=device)
            self.n_starts = T - L + 1
            self.stride = 1
        tensors = {k: torch.as_tensor(v[:, :T]) for k, v in streams.items() if k != 'compress_markers'}
        tokens = stream_tokens(tensors['states'], tensors['actions'], tensors['rewards'],
                               config['grid_size'], config['num_actions'])
        # compact dtypes keep the whole training set resident on the device
        self.tokens = {'cell': tokens['cell'].to(torch.int16), 'prev_action': tokens['prev_action'].to(torch.int8),
                       'prev_reward': tokens['prev_reward'].to(torch.float16), 'action': tokens['action'].to(torch.int8)}
        self.tokens = {k: v.to(device) for k, v in self.tokens.items()}
        self.n_seq, self.T = self.tokens['action'].shape
        self.window_len = len(self.offsets)

    def targets_per_window(self) -> int:
        return int(self.is_transition.sum()) if self.compressed else self.window_len

    def windows(self, seq: torch.Tensor, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows of sequences ``seq`` (B,) beginning at steps ``start`` (B,)."""
        t = start[:, None] + self.offsets  # (B, L)
        rows = seq[:, None]
        g = {k: v[rows, t] for k, v in self.tokens.items()}
        B, L = t.shape
        batch = {'cell': g['cell'].long(), 'prev_action': g['prev_action'].long(),
                 'prev_reward': g['prev_reward'].float(), 'action': g['action'].long()}
        if self.compressed:
            batch['types'] = self.types.expand(B, L)
            batch['action'] = torch.where(self.is_transition, batch['action'], IGNORE)
            batch['type_target'] = self.type_targets.expand(B, L)
        else:
            batch['types'] = torch.full((B, L), TRANSITION, dtype=torch.long, device=self.device)
        return batch

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        seq = torch.randint(self.n_seq, (batch_size,), device=self.device, generator=generator)
        start = torch.randint(self.n_starts, (batch_size,), device=self.device, generator=generator) * self.stride
        return self.windows(seq, start)


def goal_split(config: dict) -> tuple[list[int], list[int]]:
    """(training env indices, held-out env indices); both must be non-empty."""
    from env import split_env_indices
    n = config['grid_size'] ** 2
    train, test = split_env_indices(n, config['env_split_seed'], config['train_env_ratio'])
    if not train or not test:
        raise UserError(f"train_env_ratio={config['train_env_ratio']} splits the {n} goals into {len(train)} training "
                        f"and {len(test)} held-out goals; both need at least one. The default is 0.9 (73 / 8).")
    return train, test


def load_samplers(config: dict, device) -> tuple[WindowSampler, WindowSampler, dict]:
    """Check the dataset against ``config`` and load train / held-out goals as device-resident samplers."""
    path = dataset_path(config)
    train_idx, test_idx = goal_split(config)
    with open_history(path) as f:
        info = check_dataset(f, config, train_idx + test_idx, config['use_compressed_context'])
        n_timesteps = min(config['train_source_timesteps'], info['T'])
        train = read_streams(f, train_idx, n_timesteps, config['train_n_stream'])
        test = read_streams(f, test_idx, n_timesteps)
    return WindowSampler(train, config, device, str(path)), WindowSampler(test, config, device, str(path)), info


def ppo_source_curve(config: dict, test_idx: list[int]) -> np.ndarray | None:
    """The PPO source's mean episode return per episode over the test goals' streams (None if no dataset)."""
    path = dataset_path(config)
    if not path.exists():
        return None
    with open_history(path) as f:
        curves = []
        for i in test_idx:
            if str(i) not in f:
                return None
            curves.append(episode_returns(f[str(i)]['rewards'][:], config['horizon']).mean(1))
    return np.mean(curves, axis=0)


def episode_returns(rewards: np.ndarray, horizon: int) -> np.ndarray:
    """rewards (T, n_stream) -> returns of the complete episodes (T // horizon, n_stream)."""
    T = rewards.shape[0] - rewards.shape[0] % horizon
    return rewards[:T].reshape(T // horizon, horizon, -1).sum(1)


def rollout_returns(rewards: np.ndarray, n_steps: int, horizon: int) -> np.ndarray:
    """Mean episode return in each PPO rollout: rewards (T, n_stream) -> (T // n_steps,)."""
    per_rollout = rewards[: rewards.shape[0] - rewards.shape[0] % n_steps].reshape(-1, n_steps, rewards.shape[1])
    return per_rollout.sum(1).mean(1) * horizon / n_steps

