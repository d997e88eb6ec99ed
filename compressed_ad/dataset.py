"""Training windows: every stream of the chosen tasks resident on the device, batches built by index arithmetic.

The history file itself (schema, checks, reading) is ``history_file.py``; which tokens a window holds is the
context mode's window template (``context_modes.WindowTemplate``, one per mode in ``compressed_ad/modes/``), laid
out through ``model/layout.py``, shared with the in-context rollout so training and evaluation can never disagree.
"""
from __future__ import annotations

import numpy as np
import torch

from compressed_ad.context_modes import ContextMode, mode_of
from compressed_ad.env import env_spec, task_split
from compressed_ad.history_file import (check_dataset, check_markers, dataset_path, open_history, read_streams,
                                        training_steps)
from compressed_ad.model.layout import IGNORE, TRANSITION, next_type_targets, stream_tokens
from compressed_ad.utils import UserError


class WindowSampler:
    """Training windows built on the device by index arithmetic (no DataLoader, no per-sample Python).

    Holds every stream of the chosen tasks as (N, T) token-field tensors. ``sample(B, generator)``
    returns a batch dict of (B, L) tensors laid out by the context mode's window template: types, obs,
    prev_action, prev_reward, action targets (``IGNORE`` at markers) and, for modes with the token-type head,
    next-token-type targets. When a training sequence is K = ``unroll`` consecutive windows (memory mode:
    ``memory_unroll`` region pairs) the B windows come as B / K sequences: (B / K, K, L).
    """

    def __init__(self, streams: dict[str, np.ndarray], config: dict, device, source: str = 'the dataset',
                 mode: ContextMode | None = None):
        self.device = device
        mode = mode or mode_of(config)
        template = mode.window(config)
        T = streams['actions'].shape[1]
        T = T - T % template.align
        if T < template.span:
            raise UserError(mode.short_history_message(config, streams['actions'].shape[1], template))
        if mode.regions:
            check_markers(streams['compress_markers'][:, :T], config['compress_interval'], source)
        self.types, self.offsets = template.types.to(device), template.offsets.clamp(min=0).to(device)
        self.is_transition = self.types == TRANSITION
        self.type_targets = next_type_targets(self.types) if mode.type_head else None
        self.stride, self.unroll, self.span = template.stride, template.unroll, template.span
        self.batch_share = template.batch_share
        self.walks, self.walk_random = template.walk, template.walk_start == 'random'
        # walking rows (memory mode): every window of a stream in turn, ``n_windows`` of them
        self.n_windows = (T - (int(template.offsets.max()) + 1)) // self.stride + 1
        # (S,) each walking row's stream, next window, and the window where its memory started, once started
        self.walk_seq = self.walk_pos = self.walk_from = None
        self.n_starts = (T - self.span) // self.stride + 1  # the K windows from every start fit in the stream
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
        """Action targets per window of ``train_batch_size`` (a window that counts for several shares them)."""
        return int(self.is_transition.sum()) // self.batch_share

    def windows(self, seq: torch.Tensor, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows of sequences ``seq`` (B,) beginning at steps ``start`` (B,)."""
        t = start[:, None] + self.offsets  # (B, L)
        rows = seq[:, None]
        g = {k: v[rows, t] for k, v in self.tokens.items()}
        B, L = t.shape
        batch = {'obs': g['obs'].long(), 'prev_action': g['prev_action'].long(),
                 'prev_reward': g['prev_reward'].float(), 'types': self.types.expand(B, L),
                 'action': torch.where(self.is_transition, g['action'].long(), IGNORE)}
        if self.type_targets is not None:
            batch['type_target'] = self.type_targets.expand(B, L)
        return batch

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniformly random windows: (sequence (B,), first step (B,)). Every window can be drawn: standard starts
        0 .. T - n_transit; compressed region pairs (0, 1) .. (N - 2, N - 1) of the N = T / region_len regions;
        with memory, sequences of K pairs starting at (0, 1) .. (N - 1 - K, N - K)."""
        seq = torch.randint(self.n_seq, (batch_size,), device=self.device, generator=generator)
        start = torch.randint(self.n_starts, (batch_size,), device=self.device, generator=generator) * self.stride
        return seq, start

    def sequences(self, seq: torch.Tensor, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """K = ``unroll`` consecutive windows of sequences ``seq`` (S,) from steps ``start`` (S,): (S, K, L)."""
        K = self.unroll
        starts = start[:, None] + self.stride * torch.arange(K, device=self.device)  # (S, K)
        flat = self.windows(seq.repeat_interleave(K), starts.reshape(-1))
        return {k: v.reshape(len(seq), K, *v.shape[1:]) for k, v in flat.items()}

    # ------------------------------------------------------------------ rows that walk whole streams (memory mode)
    def start_walks(self, n_rows: int, generator: torch.Generator) -> None:
        """Put ``n_rows`` walking rows on random streams at random windows, so that the rows' positions in their
        streams are spread out (their memory at those windows is the training loop's to build: ``model.training``;
        with random starts, a row's memory starts there)."""
        self.walk_seq, self.walk_pos, self.walk_from = self.new_walks(n_rows, generator)

    def new_walks(self, n_rows: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where ``n_rows`` new walking rows start, as ``start_walks`` places them: (stream, window, window where
        the memory starts), (n_rows,) each."""
        seq = torch.randint(self.n_seq, (n_rows,), device=self.device, generator=generator)
        pos = torch.randint(self.n_windows, (n_rows,), device=self.device, generator=generator)
        return seq, pos, (pos.clone() if self.walk_random else torch.zeros_like(pos))

    def resize_walks(self, n_rows: int, generator: torch.Generator) -> int:
        """Keep the first ``n_rows`` walking rows, adding new ones (``new_walks``) where there are fewer; returns
        how many rows were kept. The rows kept go on walking exactly where they were."""
        kept = min(n_rows, len(self.walk_seq))
        walks = [w[:kept] for w in (self.walk_seq, self.walk_pos, self.walk_from)]
        if n_rows > kept:
            walks = [torch.cat([w, new]) for w, new in zip(walks, self.new_walks(n_rows - kept, generator))]
        self.walk_seq, self.walk_pos, self.walk_from = walks
        return kept

    def walk(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The next K = ``unroll`` windows of every walking row: (S, K, L) fields and ``fresh`` (S, K), true at a
        stream's first window (where the memory restarts from the initial one). A row that reaches the end of its
        stream moves on to the first window of a new random stream, within the same K windows if need be; with
        random starts (``walk_start: random``) it starts at a random window of the new stream instead, with the
        initial memory there (``fresh``), early enough for its K windows to fit; since it then walks to the stream's
        end, a stream's later windows are trained more often than its first ones."""
        K, S = self.unroll, len(self.walk_seq)
        new_seq = torch.randint(self.n_seq, (S,), device=self.device, generator=generator)
        new_from = (torch.randint(max(1, self.n_windows - K + 1), (S,), device=self.device, generator=generator)
                    if self.walk_random else torch.zeros_like(new_seq))
        window = self.walk_pos[:, None] + torch.arange(K, device=self.device)  # (S, K)
        moved = window >= self.n_windows
        seq = torch.where(moved, new_seq[:, None], self.walk_seq[:, None])
        origin = torch.where(moved, new_from[:, None], self.walk_from[:, None])
        window = torch.where(moved, window - self.n_windows + new_from[:, None], window)
        self.walk_seq, self.walk_pos, self.walk_from = seq[:, -1], window[:, -1] + 1, origin[:, -1]
        return self.window_grid(seq, window, origin)

    def window_grid(self, seq: torch.Tensor, window: torch.Tensor, origin: torch.Tensor | int = 0
                    ) -> dict[str, torch.Tensor]:
        """Window ``window`` (S, K) of streams ``seq`` (S, K): (S, K, L) fields and ``fresh`` (S, K), true where
        the memory starts from the initial one: at window ``origin`` (S, K), a stream's first window by default."""
        flat = self.windows(seq.reshape(-1), (window * self.stride).reshape(-1))
        batch = {k: v.reshape(*seq.shape, *v.shape[1:]) for k, v in flat.items()}
        batch['fresh'] = window == origin
        return batch

    def walk_windows(self, j: torch.Tensor, rows: slice = slice(None)) -> dict[str, torch.Tensor]:
        """Window ``j`` (S,) of the current stream of each walking row of ``rows`` (S of them, by default all):
        (S, L) fields."""
        return self.windows(self.walk_seq[rows], j * self.stride)

    def walk_state(self) -> dict[str, torch.Tensor]:
        return {'seq': self.walk_seq.cpu(), 'pos': self.walk_pos.cpu(), 'from': self.walk_from.cpu()}

    def load_walk_state(self, state: dict[str, torch.Tensor]) -> None:
        self.walk_seq, self.walk_pos = state['seq'].to(self.device), state['pos'].to(self.device)
        self.walk_from = state['from'].to(self.device) if 'from' in state else torch.zeros_like(self.walk_pos)

    def whole_streams(self, n_streams: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every window of ``n_streams`` random streams, in order: (n, n_windows, L) fields and ``fresh``."""
        seq = torch.randint(self.n_seq, (n_streams,), device=self.device, generator=generator)
        window = torch.arange(self.n_windows, device=self.device).expand(n_streams, -1)
        return self.window_grid(seq[:, None].expand(-1, self.n_windows), window)

    def held_out_batches(self, batch_size: int, n_batches: int, generator: torch.Generator) -> list[dict]:
        """The fixed batches of the held-out loss: random windows, or whole streams when rows walk (as many
        streams as ``batch_size`` windows fill, at least one), so the memory is built as the rollout builds it."""
        if self.walks:
            return [self.whole_streams(max(1, batch_size // self.n_windows), generator) for _ in range(n_batches)]
        return [self.sample(batch_size, generator) for _ in range(n_batches)]

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` windows: (B, L) fields, or in sequences of K windows (B / K, K, L); windows that count
        for several (``WindowTemplate.batch_share``) come B / share at a time."""
        if self.unroll > 1:
            return self.sequences(*self.draw(batch_size // self.unroll, generator))
        return self.windows(*self.draw(batch_size // self.batch_share, generator))


def load_samplers(config: dict, device, mode: ContextMode | None = None) -> tuple[WindowSampler, WindowSampler, dict]:
    """Check the dataset against ``config`` and load train / held-out tasks as device-resident samplers (``mode``:
    the context mode, by default the one ``config`` selects)."""
    mode = mode or mode_of(config)
    path = dataset_path(config)
    train_idx, test_idx = task_split(config)
    with open_history(path) as f:
        info = check_dataset(f, config, train_idx + test_idx, mode.regions)
        n_timesteps = training_steps(info['T'], config['train_source_timesteps'], info['region_len'])
        train = read_streams(f, train_idx, n_timesteps, config['train_n_stream'])
        test = read_streams(f, test_idx, n_timesteps)
    return (WindowSampler(train, config, device, str(path), mode), WindowSampler(test, config, device, str(path), mode),
            info)
