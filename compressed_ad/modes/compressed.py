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
from compressed_ad.modes.base import ContextMode, RolloutContext, RolloutState, WindowTemplate
from compressed_ad.utils import ConfigError


class RegionContext(RolloutContext):
    """``[memory] <c> previous region </c> [write] <c> current region so far``, per-row lengths on the device."""

    def __init__(self, shared: RolloutState, config: dict):
        super().__init__(shared, config)
        self.region_len, self.m = config['compress_interval'], config['memory_tokens']
        B, device = shared.batch, shared.device
        self._closed: list[torch.Tensor] = []  # lengths of the closed regions, one tensor per close event
        if self.m:
            # ``memory``: what each row's memory tokens hold now; ``written``: what its write tokens wrote, which
            # becomes the memory at the next close (before the first close nothing has been dropped yet)
            self.memory = shared.model.initial_memory(B).detach().clone().float()
            self.written = self.memory.clone()
            self.initial = self.memory.clone()
            self.reset_every = config['eval_memory_reset']  # 0: the memory is carried through every close
            self.closes = torch.zeros(B, dtype=torch.long, device=device)  # region closes per row so far
        start = first_transition(self.m)  # [memory] <c>
        self.ctx_len = torch.full((B,), start, dtype=torch.long, device=device)
        self.filled = torch.zeros(B, dtype=torch.long, device=device)
        self._max_ctx_len = torch.tensor(start, device=device)
        self.closed_counts = torch.zeros(self.region_len + 1, dtype=torch.long, device=device)  # static step: closes
        #                                                                         by the closed region's length

    def start(self) -> None:
        types = self.shared.ctx['types']
        types[:, :self.m] = MEMORY
        types[:, self.m] = OPEN
        if self.shared.use_cache:
            with self.shared.autocast:
                self._prefill(self.shared.rows, first_transition(self.m))

    def append(self, token: dict[str, torch.Tensor]) -> bool:
        ctx = self.shared.ctx
        for f in ctx:
            ctx[f][self.shared.rows, self.ctx_len] = token[f].to(ctx[f].dtype)
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

    def carried_memory(self, rows: torch.Tensor, written: torch.Tensor,
                       closing: torch.Tensor | None = None) -> torch.Tensor:
        """The memory (n, m, D) that ``rows`` (n,) carry past the region close now happening: what their write
        tokens wrote (``written`` (n, m, D)), or the initial memory at every ``eval_memory_reset``-th close of a
        row. ``closing`` (n,) bool: the rows that close (the static step passes every row, all of them counted only
        where it is set)."""
        if not self.reset_every:
            return written
        self.closes[rows] += 1 if closing is None else closing.long()
        fresh = self.closes[rows] % self.reset_every == 0
        return torch.where(fresh[:, None, None], self.initial[rows], written)

    def _prefill(self, rows: torch.Tensor, width: int):
        """Re-encode the first ``width`` context tokens of ``rows`` into the cache; returns what they wrote."""
        fields = [v[rows, :width] for v in self.shared.ctx.values()]
        return self.shared.model.prefill(*fields, cache=self.shared.cache, rows=rows, lengths=self.ctx_len[rows],
                                         memory=self.memory_of(rows))[2]

    def keep_closed_region(self, rows: torch.Tensor, n: torch.Tensor, width: int) -> int:
        """Rows ``rows``, whose current region of ``n`` (n,) transitions (at most ``width``) just closed: the context
        becomes ``[memory] <c> closed region </c> [write] <c>``. Returns the width of the prefix to re-encode."""
        ctx, device = self.shared.ctx, self.shared.device
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
            self.memory[rows] = self.carried_memory(rows, self.written[rows])  # the dropped region lives on in it
        ctx['types'][rows, reopen] = OPEN
        self.ctx_len[rows] = region_prefix_len(n, self.m)
        return region_prefix_len(width, self.m)

    def _close_regions(self, rows: torch.Tensor, width: int) -> None:
        """Close the current region of ``rows`` (at most ``width`` transitions: known on the host for the fixed
        trigger), keep what the mode keeps and re-encode it."""
        self._closed.append(self.filled[rows])
        width = self.keep_closed_region(rows, self.filled[rows], width)
        self.filled[rows] = 0
        if self.shared.use_cache:
            written = self._prefill(rows, width)
        elif self.m:
            written = self.shared.model.forward_tokens(*[v[rows, :width] for v in self.shared.ctx.values()],
                                                       memory=self.memory_of(rows))[2]
        if self.m:
            self.written[rows] = written.float()

    def end_step(self, type_logits) -> None:
        """Close the regions that end here."""
        self.filled += 1
        if self.shared.trigger == 'model':
            closing = (self.filled >= self.region_len) | (type_logits.argmax(-1) == CLOSE)
            rows = closing.nonzero().squeeze(1)  # the one device->host sync per step this trigger needs
            if len(rows):
                self._close_regions(rows, int(self.filled[rows].max()))
        elif self.shared.t % self.region_len == 0:
            self._close_regions(self.shared.rows, self.region_len)

    # ---------------------------------------------------------------- the static step (model/static_rollout.py)
    # 'decode' appends and decodes; 'close' also closes the regions that end at this step, every row at once: the
    # rows the trigger closes take the kept context, re-encoded over the widest prefix (a full region's), the others
    # keep theirs. With the fixed trigger the host's step count decides when 'close' runs (every row closes); with
    # the model trigger it runs every step and a per-row mask (the cap or the head's </c>) decides on the device.
    static = True

    def static_kind(self) -> str:
        if self.shared.trigger == 'model':
            return 'close'
        return 'close' if (self.shared.t + 1) % self.region_len == 0 else 'decode'

    def static_forward(self, kind: str, token: dict[str, torch.Tensor]):
        ctx, cache = self.shared.ctx, self.shared.cache
        for f in ctx:
            ctx[f].scatter_(1, self.ctx_len[:, None], token[f][:, None].to(ctx[f].dtype))
        self.ctx_len += 1
        torch.maximum(self._max_ctx_len, self.ctx_len.max(), out=self._max_ctx_len)
        return self.shared.model.decode(*[token[f] for f in ctx], cache=cache)

    def static_end_step(self, kind: str, type_logits) -> None:
        self.filled += 1
        if kind != 'close':
            return
        closing = self.filled >= self.region_len
        if self.shared.trigger == 'model':
            closing = closing | (type_logits.argmax(-1) == CLOSE)
        self._static_close(closing)

    def _static_close(self, closing: torch.Tensor) -> None:
        """Close the current region of the rows ``closing`` (B,) marks, as ``_close_regions`` does for a list of
        rows, with every tensor keeping its shape."""
        ctx, cache, device = self.shared.ctx, self.shared.cache, self.shared.device
        n = self.filled.clamp(max=self.region_len)  # (B,) transitions of each row's current region
        src = (self.ctx_len - n)[:, None] + torch.arange(self.region_len, device=device)
        src = src.clamp(max=ctx['types'].shape[1] - 1)
        first = first_transition(self.m)
        kept = {}
        for f in ctx:
            kept[f] = torch.cat([ctx[f][:, :first], ctx[f].gather(1, src), ctx[f][:, first + self.region_len:]], 1)
        close, write, reopen = kept_region_markers(n, self.m)
        types = kept['types']
        types[:, self.m] = OPEN
        types.scatter_(1, close[:, None], CLOSE)
        if self.m:
            types.scatter_(1, write[:, None] + torch.arange(self.m, device=device), WRITE)
        types.scatter_(1, reopen[:, None], OPEN)
        for f in ctx:
            ctx[f].copy_(torch.where(closing[:, None], kept[f], ctx[f]))
        if self.m:
            carried = self.carried_memory(self.shared.rows, self.written, closing)
            self.memory.copy_(torch.where(closing[:, None, None], carried, self.memory))
        length = torch.where(closing, region_prefix_len(n, self.m), self.ctx_len)
        self.ctx_len.copy_(length)
        self.filled.copy_(torch.where(closing, 0, self.filled))
        self.closed_counts.index_add_(0, n, closing.long())
        width = region_prefix_len(self.region_len, self.m)
        kv: list = []
        written = self.shared.model.forward_tokens(*[v[:, :width] for v in ctx.values()],
                                                   memory=self.memory if self.m else None, kv_out=kv)[2]
        cache.write_prefix_where(closing, kv, length)
        if self.m:
            self.written.copy_(torch.where(closing[:, None, None], written.float(), self.written))


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

    def rollout_context(self, shared: RolloutState, config: dict) -> RegionContext:
        return RegionContext(shared, config)
