"""Compressed AD: the context is ``<c> previous region </c> <c> current region so far`` (``model/layout.py``).

Training windows are two consecutive regions, ``[<c> region j </c> <c> region j+1 </c>]``, windows starting at
every region. In the rollout positions are stable inside a region pair, so each step decodes one token against the
KV cache (per-row lengths on the device, ``ctx_len`` and ``filled``). When a region closes (every
``compress_interval`` steps, or when the token-type head predicts ``</c>``), the older region is dropped: the
context becomes ``<c> closed region </c> <c>`` and only that prefix is re-encoded. ``RegionContext`` also carries
the memory of ``modes/memory.py`` (``memory_tokens`` = m > 0; here m = 0).
"""
from __future__ import annotations

import torch

from compressed_ad.model.layout import (CLOSE, MEMORY, OPEN, WRITE, compressed_window, first_transition,
                                        kept_region_markers, region_prefix_len)
from compressed_ad.modes import COMPRESSED_MODEL_CONFIG
from compressed_ad.modes.base import ContextMode, RolloutContext, WindowTemplate
from compressed_ad.utils import ConfigError


class RegionContext(RolloutContext):
    """``[memory] <c> previous region </c> [write] <c> current region so far``, per-row lengths on the device."""

    def __init__(self, rollout, config: dict):
        super().__init__(rollout, config)
        self.region_len, self.m = config['compress_interval'], config['memory_tokens']
        B, device = rollout.B, rollout.device
        self._closed: list[torch.Tensor] = []  # lengths of the closed regions, one tensor per close event
        if self.m:
            # ``memory``: what each row's memory tokens hold now; ``written``: what its write tokens wrote, which
            # becomes the memory at the next close (before the first close nothing has been dropped yet)
            self.memory = rollout.model.initial_memory(B).detach().clone().float()
            self.written = self.memory.clone()
        start = first_transition(self.m)  # [memory] <c>
        self.ctx_len = torch.full((B,), start, dtype=torch.long, device=device)
        self.filled = torch.zeros(B, dtype=torch.long, device=device)
        self._max_ctx_len = torch.tensor(start, device=device)

    def start(self) -> None:
        types = self.r.ctx['types']
        types[:, :self.m] = MEMORY
        types[:, self.m] = OPEN
        if self.r.use_cache:
            with self.r.autocast:
                self._prefill(self.r.rows, first_transition(self.m))

    def append(self, token: dict[str, torch.Tensor]) -> bool:
        ctx = self.r.ctx
        for f in ctx:
            ctx[f][self.r.rows, self.ctx_len] = token[f].to(ctx[f].dtype)
        self.ctx_len += 1
        self._max_ctx_len = torch.maximum(self._max_ctx_len, self.ctx_len.max())
        return False

    def last_positions(self) -> tuple[int, torch.Tensor]:
        return int(self.ctx_len.max()), self.ctx_len - 1

    def memory_of(self, rows: torch.Tensor) -> torch.Tensor | None:
        return self.memory[rows] if self.m else None

    @property
    def max_ctx_len(self) -> int:
        return int(self._max_ctx_len)

    @property
    def closed_region_lengths(self) -> list[torch.Tensor]:
        return [x.cpu() for x in self._closed]

    def _prefill(self, rows: torch.Tensor, width: int):
        """Re-encode the first ``width`` context tokens of ``rows`` into the cache; returns what they wrote."""
        fields = [v[rows, :width] for v in self.r.ctx.values()]
        return self.r.model.prefill(*fields, cache=self.r.cache, rows=rows, lengths=self.ctx_len[rows],
                                    memory=self.memory_of(rows))[2]

    def keep_closed_region(self, rows: torch.Tensor, n: torch.Tensor, width: int) -> int:
        """Rows ``rows``, whose current region of ``n`` (n,) transitions (at most ``width``) just closed: the context
        becomes ``[memory] <c> closed region </c> [write] <c>``. Returns the width of the prefix to re-encode."""
        ctx, device = self.r.ctx, self.r.device
        start = self.ctx_len[rows] - n  # first transition of the current region
        src = (start[:, None] + torch.arange(width, device=device)).clamp(max=ctx['types'].shape[1] - 1)
        first = first_transition(self.m)
        for f in ctx:
            ctx[f][rows, first:first + width] = ctx[f][rows[:, None], src]
        close, write, reopen = kept_region_markers(n, self.m)  # n varies per row with the model trigger
        ctx['types'][rows, self.m] = OPEN
        ctx['types'][rows, close] = CLOSE
        if self.m:
            ctx['types'][rows[:, None], write[:, None] + torch.arange(self.m, device=device)] = WRITE
            self.memory[rows] = self.written[rows]  # the dropped region now lives in the memory
        ctx['types'][rows, reopen] = OPEN
        self.ctx_len[rows] = region_prefix_len(n, self.m)
        return region_prefix_len(width, self.m)

    def _close_regions(self, rows: torch.Tensor, width: int) -> None:
        """Close the current region of ``rows`` (at most ``width`` transitions: known on the host for the fixed
        trigger), keep what the mode keeps and re-encode it."""
        self._closed.append(self.filled[rows])
        width = self.keep_closed_region(rows, self.filled[rows], width)
        self.filled[rows] = 0
        if self.r.use_cache:
            written = self._prefill(rows, width)
        elif self.m:
            written = self.r.model.window(*[v[rows, :width] for v in self.r.ctx.values()],
                                          memory=self.memory_of(rows))[2]
        if self.m:
            self.written[rows] = written.float()

    def end_step(self, type_logits) -> None:
        """Close the regions that end here."""
        self.filled += 1
        if self.r.trigger == 'model':
            closing = (self.filled >= self.region_len) | (type_logits.argmax(-1) == CLOSE)
            rows = closing.nonzero().squeeze(1)  # the one device->host sync per step this trigger needs
            if len(rows):
                self._close_regions(rows, int(self.filled[rows].max()))
        elif self.r.t % self.region_len == 0:
            self._close_regions(self.r.rows, self.region_len)


class CompressedMode(ContextMode):
    name, model_config, run_suffix = 'compressed', COMPRESSED_MODEL_CONFIG, '-compressed'
    type_head = regions = True
    memory = False  # memory tokens: modes/memory.py

    def check(self, config) -> None:
        c = config
        if c['n_transit'] < 2 * c['compress_interval']:
            raise ConfigError(
                f"Compressed mode needs n_transit >= 2 * compress_interval, got n_transit={c['n_transit']} "
                f"({c.source('n_transit')}) and compress_interval={c['compress_interval']} "
                f"({c.source('compress_interval')}). Set n_transit to {2 * c['compress_interval']}.")

    def max_context_len(self, config: dict) -> int:
        return 2 * config['compress_interval'] + 4 + 2 * config['memory_tokens']

    def unroll(self, config: dict) -> int:
        """Consecutive windows per training sequence."""
        return 1

    def window(self, config: dict) -> WindowTemplate:
        region_len = config['compress_interval']
        types, offsets = compressed_window(region_len, config['memory_tokens'])
        return WindowTemplate(types, offsets, stride=region_len, unroll=self.unroll(config), align=region_len,
                              walk=self.memory, walk_start=config['memory_walk_start'])

    def short_history_message(self, config: dict, T: int, template: WindowTemplate) -> str:
        region_len = config['compress_interval']
        return (f"Compressed mode needs at least {template.span // region_len} whole regions of {region_len} steps "
                f"per stream; the dataset gives {T} (train_source_timesteps). Collect longer histories or lower "
                f"compress_interval (or memory_unroll).")

    def rollout_context(self, rollout, config: dict) -> RegionContext:
        return RegionContext(rollout, config)
