"""The learning-history file (HDF5): its schema and marker values, the region rule, writing (a collect's finished
tasks kept as shards until it completes), reading, checks and the return statistics read from it.

File layout (shared with earlier AD code in this line, so its files load):
    /<env index>/states        (T, n_stream, k) int32   k = the state's components: Dark Room (row, col),
                                                         Key-to-Door (row, col, stage)
                 actions       (T, n_stream)    int32
                 rewards       (T, n_stream)    int32
                 next_states   (T, n_stream, k) int32
                 dones         (T, n_stream)    bool
                 compress_markers (T, n_stream) int32: MARK_OPEN on the first / MARK_CLOSE on the last
                                  transition of a PPO rollout, MARK_NONE elsewhere
    file attrs:  schema_version (SCHEMA_VERSION; files without it are earlier AD code's, read as version 1),
                 config (YAML text of the full collect config)
    group attrs: goal (the task: Dark Room (row, col), Key-to-Door (key row, key col, door row, door col)), env_idx

The region rule: a region is exactly one PPO rollout, ``region_len`` = ``n_steps`` transitions of one stream,
collected under one policy, so a correct stream's markers are MARK_OPEN, region_len - 2 x MARK_NONE, MARK_CLOSE,
repeated.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import yaml

from compressed_ad.utils import UserError, atomic_path

SCHEMA_VERSION = 1
FIELDS = ('states', 'actions', 'rewards', 'next_states', 'dones', 'compress_markers')
DTYPES = {'states': np.int32, 'actions': np.int32, 'rewards': np.int32, 'next_states': np.int32,
          'dones': np.bool_, 'compress_markers': np.int32}
MARK_NONE, MARK_OPEN, MARK_CLOSE = 0, 1, 2  # compress_markers values: inside, <compress>, </compress>


def dataset_path(config: dict) -> Path:
    """``{datasets_dir}/history_{env}_{alg}_alg-seed{alg_seed}.hdf5``."""
    return Path(config['datasets_dir']) / f"history_{config['env']}_{config['alg']}_alg-seed{config['alg_seed']}.hdf5"


# ----------------------------------------------------------------------------- the region rule
def expected_markers(T: int, region_len: int) -> np.ndarray:
    """The markers of a correct stream of length T: (T,) MARK_OPEN every region_len, MARK_CLOSE just before the next."""
    t = np.arange(T) % region_len
    return np.where(t == 0, MARK_OPEN, np.where(t == region_len - 1, MARK_CLOSE, MARK_NONE)).astype(np.int32)


def marker_problems(markers: np.ndarray, region_len: int) -> np.ndarray:
    """Misplaced or missing markers in stream-major (S, T): rows (stream, step, expected, found), by stream, step."""
    expected = expected_markers(markers.shape[1], region_len)
    stream, t = np.nonzero(markers != expected)
    return np.stack([stream, t, expected[t], markers[stream, t]], axis=1)


def find_regions(markers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regions in stream-major markers (S, T): a MARK_OPEN followed, as the next marker of its stream, by a MARK_CLOSE.

    Returns (stream, start, end) arrays, one entry per region, ``end`` inclusive.
    """
    stream, t = np.nonzero(markers)  # row-major: sorted by stream, then time
    value = markers[stream, t]
    pair = (value[:-1] == MARK_OPEN) & (value[1:] == MARK_CLOSE) & (stream[:-1] == stream[1:])
    i = np.flatnonzero(pair)
    return stream[i], t[i], t[i + 1]


def infer_region_len(markers: np.ndarray) -> int | None:
    """The most common spacing of one stream's MARK_OPEN markers, (T,) -> int (None with fewer than two)."""
    opens = np.flatnonzero(markers == MARK_OPEN)
    if len(opens) < 2:
        return None
    return int(np.bincount(np.diff(opens)).argmax())


def region_length(f: h5py.File) -> tuple[int | None, str]:
    """(region_len, where it came from): the file's stored config (its PPO ``n_steps``), else the marker spacing of
    its first stream."""
    stored = file_config(f).get('n_steps')
    if stored:
        return int(stored), "the file's stored config"
    groups = env_groups(f)
    if groups and 'compress_markers' in f[str(groups[0])]:
        inferred = infer_region_len(f[str(groups[0])]['compress_markers'][:, 0])
        if inferred:
            return inferred, f'the spacing of the <compress> markers of env {groups[0]} stream 0'
    return None, 'nowhere (the file stores no config and its markers give no spacing)'


def training_steps(T: int, train_source_timesteps: int, region_len: int | None) -> int:
    """How many steps of each stream every context mode trains and tests on: the whole PPO rollouts (regions)
    that cover ``train_source_timesteps``, within the file's T steps.

    One number for every mode, so no mode learns from transitions the others never see: standard windows could
    use any step, but compressed windows need whole regions, and a partial last rollout would be standard's
    alone. ``region_len`` None (an old file with neither a stored config nor markers): ``min(T,
    train_source_timesteps)``, there being no region to align to.
    """
    if not region_len:
        return min(T, train_source_timesteps)
    wanted = -(-train_source_timesteps // region_len) * region_len  # collect.py writes whole rollouts covering it
    usable = min(T, wanted)
    return usable - usable % region_len


def check_markers(markers: np.ndarray, region_len: int, path: str) -> None:
    """Stream-major markers (N, T) with T a multiple of ``region_len``: every region must be whole and aligned."""
    bad = marker_problems(markers, region_len)
    if len(bad):
        stream, t = bad[0, :2]
        raise UserError(f"Dataset '{path}': compression markers are not on {region_len}-step rollout boundaries "
                        f"(first mismatch in stream {stream} at step {t}). Run 'python collect.py --force'.")


# ----------------------------------------------------------------------------- writing
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

    def add(self, task_idx: int, goal, history: dict[str, np.ndarray]) -> None:
        """One goal's history: time-major arrays (T, n_stream, ...) keyed by ``FIELDS``."""
        group = self.file.create_group(str(task_idx))
        group.attrs['goal'] = np.asarray(goal, dtype=np.int32)
        group.attrs['env_idx'] = task_idx
        for name in FIELDS:
            group.create_dataset(name, data=np.asarray(history[name], dtype=DTYPES[name]),
                                 compression='gzip', compression_opts=1)

    def copy(self, group: h5py.Group) -> None:
        """A goal's group that ``add`` wrote into another history file (a ``TaskShards`` shard), copied as stored:
        its attributes, and its datasets' compressed chunks without decoding them."""
        self.file.copy(group, self.file, name=group.name.lstrip('/'))

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        return self._atomic.__exit__(exc_type, exc, tb)


class TaskShards:
    """The finished tasks of a collect that has not completed, kept so that it resumes: one history file per task
    (``{dataset}.partial/task{task_idx}.hdf5``, written by ``HistoryWriter``: each atomic, in the one schema).

    ``assemble`` copies them in env-index order into the dataset and removes the folder. A collect goes through the
    shards whether or not it was interrupted, so a resumed collect writes the same bytes as an uninterrupted one.
    """

    def __init__(self, dataset: str | Path):
        self.dataset = Path(dataset)
        self.dir = self.dataset.with_name(self.dataset.name + '.partial')

    def shard(self, task_idx: int) -> Path:
        return self.dir / f'task{task_idx}.hdf5'

    def finished(self) -> list[int]:
        """The task indices kept, ascending (a write cut short leaves only a temporary file, which is not one)."""
        if not self.dir.is_dir():
            return []
        names = (p.name for p in self.dir.iterdir())
        return sorted(int(n[4:-5]) for n in names if n.startswith('task') and n.endswith('.hdf5') and n[4:-5].isdigit())

    def stored_config(self) -> dict:
        """The config of the collect that wrote the shards ({} when none is kept)."""
        done = self.finished()
        if not done:
            return {}
        with open_history(self.shard(done[0])) as f:
            return file_config(f)

    @staticmethod
    def encode(task_idx: int, goal, history: dict[str, np.ndarray], config: dict) -> bytes:
        """One task's shard as bytes, compressed where the task ran (a worker), for the process that keeps it."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / 'shard.hdf5'
            with HistoryWriter(path, config) as writer:
                writer.add(task_idx, goal, history)
            return path.read_bytes()

    def keep(self, task_idx: int, shard: bytes) -> None:
        """Keep the shard ``encode`` made, atomically."""
        with atomic_path(self.shard(task_idx), suffix='.hdf5') as tmp:
            tmp.write_bytes(shard)

    def assemble(self, config: dict, indices: list[int]) -> None:
        """Write the dataset from the shards of ``indices`` (all must be kept), then remove the folder."""
        with HistoryWriter(self.dataset, config) as writer:
            for i in sorted(indices):
                with open_history(self.shard(i)) as f:
                    writer.copy(f[str(i)])
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- reading and checks
def missing_dataset_error(path: Path) -> UserError:
    return UserError(f"Dataset '{path}' not found. Run 'python collect.py' first (with the same config "
                     f"overrides, e.g. --quick) to create it, or set datasets_dir to where it lives.")


def no_markers_error(path, consequence: str) -> UserError:
    return UserError(f"No compression markers found in '{path}' (it was written by older code, without "
                     f"'compress_markers'): {consequence}; run collect.py again ('python collect.py --force') to "
                     f"regenerate the dataset with markers.")


def open_history(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise missing_dataset_error(path)
    try:
        f = h5py.File(path, 'r')
    except OSError as exc:
        raise UserError(f"Dataset '{path}' cannot be read as HDF5 ({exc}). Run 'python collect.py --force' "
                        f"to write it again.") from None
    version = int(f.attrs.get('schema_version', 1))  # earlier AD code wrote no version: its layout is version 1
    if version != SCHEMA_VERSION:
        f.close()
        newer = version > SCHEMA_VERSION
        raise UserError(f"Dataset '{path}' has history-file schema version {version}, and this code reads version "
                        f"{SCHEMA_VERSION}. " + ("It was written by newer code: update this checkout, or " if newer
                                                 else "It was written by older code: ")
                        + "run 'python collect.py --force' to write it again with this code.")
    return f


def file_config(f: h5py.File) -> dict:
    """The collect config stored in the file ({} for files written by older code)."""
    text = f.attrs.get('config')
    return yaml.safe_load(text) if text else {}


def env_groups(f: h5py.File) -> list[int]:
    """The task indices the file holds, ascending."""
    return sorted(int(k) for k in f.keys() if k.isdigit())


def check_dataset(f: h5py.File, config: dict, indices: list[int], compressed: bool) -> dict:
    """Check that the file fits the config before any training work. Returns facts about the file."""
    path = f.filename
    stored = file_config(f)
    # which tasks the file holds, and the rollout length its regions follow (a file of another n_steps would train
    # the run on data its config.yaml does not describe)
    for key in ('env', 'n_tasks', 'task_seed', 'n_steps'):
        if key in stored and stored[key] != config[key]:
            raise UserError(f"Dataset '{path}' was collected with {key}={stored[key]!r} but the config has "
                            f"{key}={config[key]!r}. Use {key}={stored[key]!r}, or collect for this config "
                            f"('python collect.py --force' with the same options).")
    missing = [i for i in indices if str(i) not in f]
    if missing:
        raise UserError(f"Dataset '{path}' has no group for task indices {missing[:8]}"
                        f"{' ...' if len(missing) > 8 else ''}. It was collected for another grid or other tasks; "
                        f"run 'python collect.py --force' with this config.")
    for i in indices:
        lacking = [name for name in ('states', 'actions', 'rewards') if name not in f[str(i)]]
        if lacking:
            raise UserError(f"Dataset '{path}': group '{i}' has no {', '.join(lacking)}. The file is incomplete or "
                            f"not a history file; run 'python collect.py --force' to write it again.")
    if stored.get('grid_size', config['grid_size']) != config['grid_size']:
        raise UserError(f"Dataset '{path}' was collected on a {stored['grid_size']}x{stored['grid_size']} grid "
                        f"but grid_size={config['grid_size']}. Use a matching grid_size or collect again.")
    first = f[str(indices[0])]
    max_coord = int(np.max(first['states'][:])) if 'states' in first else 0
    if max_coord >= config['grid_size']:
        raise UserError(f"Dataset '{path}' holds positions up to {max_coord}, outside a grid of size "
                        f"{config['grid_size']}. Use a matching grid_size or collect again.")
    T = first['actions'].shape[0]
    info = {'T': T, 'n_stream': first['actions'].shape[1], 'region_len': region_length(f)[0]}
    if compressed:
        if any('compress_markers' not in f[str(i)] for i in indices):
            raise no_markers_error(path, 'compressed mode needs them (standard mode still trains on this file)')
        region_len = info['region_len'] = info['region_len'] or T
        if config['compress_interval'] != region_len:
            raise UserError(f"compress_interval={config['compress_interval']} but the dataset's PPO n_steps is "
                            f"{region_len}: regions would not match the rollouts. Set compress_interval={region_len} "
                            f"(e.g. 'python train.py compress_interval={region_len}') or collect with n_steps="
                            f"{config['compress_interval']}.")
    return info


def read_streams(f: h5py.File, indices: list[int], n_timesteps: int, n_stream: int = 0) -> dict[str, np.ndarray]:
    """Read goals ``indices``: dict of stream-major arrays (n_goals * n_stream, T, ...)."""
    out = {name: [] for name in ('states', 'actions', 'rewards', 'compress_markers')}
    for i in indices:
        group = f[str(i)]
        streams = slice(None, n_stream or None)
        for name in out:
            if name in group:
                out[name].append(np.swapaxes(group[name][:n_timesteps, streams], 0, 1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


# ----------------------------------------------------------------------------- return statistics
def episode_returns(rewards: np.ndarray, horizon: int) -> np.ndarray:
    """rewards (T, n_stream) -> returns of the complete episodes (T // horizon, n_stream)."""
    T = rewards.shape[0] - rewards.shape[0] % horizon
    return rewards[:T].reshape(T // horizon, horizon, -1).sum(1)


def rollout_returns(rewards: np.ndarray, n_steps: int, horizon: int) -> np.ndarray:
    """Mean return of the episodes that end in each PPO rollout: rewards (T, n_stream) -> (T // n_steps,).

    NaN for a rollout in which no episode ends (only when n_steps < horizon).
    """
    returns = episode_returns(rewards, horizon).mean(1)  # (episodes,)
    rollout = (np.arange(1, len(returns) + 1) * horizon - 1) // n_steps  # the rollout each episode ends in
    n_rollouts = rewards.shape[0] // n_steps
    keep = rollout < n_rollouts
    total = np.bincount(rollout[keep], weights=returns[keep], minlength=n_rollouts)
    count = np.bincount(rollout[keep], minlength=n_rollouts)
    with np.errstate(invalid='ignore'):
        return total / count


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
