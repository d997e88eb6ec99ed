"""Training windows: every stream of the chosen goals resident on the device, batches built by index arithmetic.

The history file itself (schema, checks, reading) is ``history_file.py``; where each token of a window goes is
``model/layout.py``, shared with the in-context rollout so training and evaluation can never disagree.
"""
from __future__ import annotations

import numpy as np
import torch

from compressed_ad.env import env_spec, task_split
from compressed_ad.history_file import (check_dataset, check_markers, dataset_path, open_history, read_streams,
                                        training_steps)
from compressed_ad.model.layout import IGNORE, TRANSITION, compressed_window, next_type_targets, stream_tokens
from compressed_ad.utils import UserError


class WindowSampler:
    """Training windows built on the device by index arithmetic (no DataLoader, no per-sample Python).

    Holds every stream of the chosen goals as (N, T) token-field tensors. ``sample(B, generator)``
    returns a batch dict of (B, L) tensors: types, obs, prev_action, prev_reward, action targets
    (``IGNORE`` at markers) and, in compressed mode, next-token-type targets. With memory (``memory_tokens`` > 0)
    the B windows come as B / K sequences of K = ``memory_unroll`` consecutive region pairs: (B / K, K, L).
    """

    def __init__(self, streams: dict[str, np.ndarray], config: dict, device, source: str = 'the dataset'):
        self.device = device
        self.compressed = config['use_compressed_context']
        self.unroll = config['memory_unroll'] if config['memory_tokens'] else 1
        T = streams['actions'].shape[1]
        if self.compressed:
            R = config['compress_interval']
            T = T - T % R
            if T < (1 + self.unroll) * R:
                raise UserError(f"Compressed mode needs at least {1 + self.unroll} whole regions of {R} steps per "
                                f"stream; the dataset gives {streams['actions'].shape[1]} (train_source_timesteps). "
                                f"Collect longer histories or lower compress_interval (or memory_unroll).")
            check_markers(streams['compress_markers'][:, :T], R, source)
            types, offsets = compressed_window(R, config['memory_tokens'])
            self.types, self.offsets = types.to(device), offsets.clamp(min=0).to(device)
            self.is_transition = self.types == TRANSITION
            self.type_targets = next_type_targets(self.types)
            self.n_starts = T // R - self.unroll  # first region pairs (j, j+1) of the K pairs from j
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
                               env_spec(config).obs_sizes(config['grid_size']), config['num_actions'])
        # compact dtypes keep the whole training set resident on the device
        self.tokens = {'obs': tokens['obs'].to(torch.int16), 'prev_action': tokens['prev_action'].to(torch.int8),
                       'prev_reward': tokens['prev_reward'].to(torch.float16),
                       'action': tokens['action'].to(torch.int8)}
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
        batch = {'obs': g['obs'].long(), 'prev_action': g['prev_action'].long(),
                 'prev_reward': g['prev_reward'].float(), 'action': g['action'].long()}
        if self.compressed:
            batch['types'] = self.types.expand(B, L)
            batch['action'] = torch.where(self.is_transition, batch['action'], IGNORE)
            batch['type_target'] = self.type_targets.expand(B, L)
        else:
            batch['types'] = torch.full((B, L), TRANSITION, dtype=torch.long, device=self.device)
        return batch

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniformly random windows: (sequence (B,), first step (B,)). Every window can be drawn: standard starts
        0 .. T - n_transit, compressed region pairs (0, 1) .. (T / R - 2, T / R - 1); with memory, sequences of K
        pairs starting at (0, 1) .. (T / R - 1 - K, T / R - K)."""
        seq = torch.randint(self.n_seq, (batch_size,), device=self.device, generator=generator)
        start = torch.randint(self.n_starts, (batch_size,), device=self.device, generator=generator) * self.stride
        return seq, start

    def sequences(self, seq: torch.Tensor, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Memory mode: K consecutive region pairs of sequences ``seq`` (S,) from steps ``start`` (S,): (S, K, L)."""
        K = self.unroll
        starts = start[:, None] + self.stride * torch.arange(K, device=self.device)  # (S, K)
        flat = self.windows(seq.repeat_interleave(K), starts.reshape(-1))
        return {k: v.reshape(len(seq), K, *v.shape[1:]) for k, v in flat.items()}

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` windows: (B, L) fields, or with memory (B / K, K, L)."""
        if self.unroll > 1:
            return self.sequences(*self.draw(batch_size // self.unroll, generator))
        return self.windows(*self.draw(batch_size, generator))


def load_samplers(config: dict, device) -> tuple[WindowSampler, WindowSampler, dict]:
    """Check the dataset against ``config`` and load train / held-out goals as device-resident samplers."""
    path = dataset_path(config)
    train_idx, test_idx = task_split(config)
    with open_history(path) as f:
        info = check_dataset(f, config, train_idx + test_idx, config['use_compressed_context'])
        n_timesteps = training_steps(info['T'], config['train_source_timesteps'], info['n_steps'])
        train = read_streams(f, train_idx, n_timesteps, config['train_n_stream'])
        test = read_streams(f, test_idx, n_timesteps)
    return WindowSampler(train, config, device, str(path)), WindowSampler(test, config, device, str(path)), info
