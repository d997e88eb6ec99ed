"""What an in-context rollout shares with its context mode: ``RolloutState``.

The rollout (``model.rollout.InContextRollout``, ``model.static_rollout.StaticRollout``) makes one and owns it; the
context mode's ``RolloutContext`` (``modes/base.py``) receives it and reads and writes only what it holds. This
module imports only torch (the model's types are named for type checkers alone), so the modes, which import no
model, can import it.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from compressed_ad.model.transformer import ADTransformer, KVCache


@dataclass(eq=False)
class RolloutState:
    """The rollout state a context mode may use, shared by reference: what a mode changes, the rollout sees.

    B rows (rollouts, one per task and stream) step in lock-step, one environment step (one transition token) at a
    time. The rollout sets every field when it is made and afterwards updates only ``t``; the tensors below keep
    their storage for the whole rollout (they are written in place, never replaced: the static rollout compiles its
    steps over them and may capture them in a CUDA graph). Compared by identity (``eq=False``).
    """

    # The model being rolled out, in eval mode. A mode calls its ``decode``, ``prefill``, ``forward_tokens`` and
    # ``initial_memory``; it changes no parameter. Set once.
    model: ADTransformer

    # Rows, B (int): how many rollouts the batch holds. Set once.
    batch: int

    # The device every tensor here (and the mode's own) lives on (torch.device). Set once.
    device: torch.device

    # Every row's index, (B,) long on ``device``: torch.arange(B), for indexing all rows at once. Set once; never
    # written.
    rows: torch.Tensor

    # The token buffer, the context as the model reads it: {'types', 'obs', 'prev_action', 'prev_reward'} (the
    # rollout's FIELDS, in that order, which is the model's argument order: ``*ctx.values()`` can be passed
    # positionally), each (B, model.cfg.max_len) on ``device``, long except 'prev_reward' (float32); one token per
    # position, laid out as in training (``model.layout``). Zeros when the rollout starts; from then on written by
    # the mode alone, in place (``start``, ``append``, ``end_step``, ``static_*``). Valid in each row up to its
    # context length, which the mode keeps (e.g. ``RegionContext.ctx_len``); a mode whose cache is its context
    # (the sliding mode, with ``use_cache``) need not keep it at all.
    ctx: dict[str, torch.Tensor]

    # The KV cache (``model.transformer.KVCache``): keys and values of the tokens in ``ctx`` (of the last
    # ``slots`` tokens for a ring), its ``length`` (B,) each row's next position. Written through its methods:
    # ``model.decode`` appends a token (called by the rollout, or by a mode's ``static_forward``), a mode re-encodes
    # prefixes with ``model.prefill`` or ``KVCache.write_prefix_where``. Used, and valid, only with ``use_cache``.
    cache: KVCache

    # Transitions (environment steps) the rollout has appended, a host int, the same for every row. Written by the
    # rollout alone, one step at a time. In ``append`` and ``static_kind`` / ``static_forward`` /
    # ``static_end_step``: the transitions appended before the current one (0 in the first step); in ``end_step``
    # and ``last_positions``: the transitions appended so far, the current one included.
    t: int = 0

    # The compress trigger: 'fixed' (a region closes every compress_interval steps) or 'model' (also where the
    # token-type head predicts </compress>); meaningful to modes with regions. Set once.
    trigger: str = 'fixed'

    # True: each step decodes one token against ``cache`` unless ``append`` says positions shifted. False (the
    # reference the tests compare against): every step runs one full pass over ``ctx`` (``last_positions``), and
    # the mode keeps ``ctx`` whole and fills no cache. Set once; the static rollout always uses the cache.
    use_cache: bool = True

    # The rollout's autocast context (a torch.autocast: bf16 on CUDA when the config's ``bf16`` is set, disabled
    # elsewhere), for the model calls a mode makes outside the rollout's own (e.g. the prefill of ``start``). The
    # static rollout enters one of its own inside every step. Set once.
    autocast: AbstractContextManager | None = None
