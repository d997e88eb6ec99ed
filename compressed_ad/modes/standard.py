"""Standard AD: the context is the last ``n_transit`` transitions of one stream, ``[x_0, x_1, ..., x_{L-1}]``.

Training windows are any ``n_transit`` consecutive transitions. In the rollout the window fills one token at a
time (each decoded against the KV cache); once full it slides, positions shift, and the whole window is
re-encoded (one full forward) per step: exact sliding-window semantics, as in training windows.
"""
from __future__ import annotations

import torch

from compressed_ad.model.layout import TRANSITION
from compressed_ad.modes import MODEL_CONFIG
from compressed_ad.modes.base import ContextMode, RolloutContext, RolloutState, WindowTemplate


class SlidingWindow(RolloutContext):
    """The last ``n_transit`` transitions, the same length in every row (a host-side count)."""

    def __init__(self, shared: RolloutState, config: dict):
        super().__init__(shared, config)
        self.n_transit = config['n_transit']

    def length(self) -> int:
        """Transitions in the window after ``shared.t`` steps."""
        return min(self.shared.t, self.n_transit)

    def append(self, token: dict[str, torch.Tensor]) -> bool:
        ctx, t = self.shared.ctx, self.shared.t
        slide = t >= self.n_transit
        for f in ctx:
            if slide:
                ctx[f][:, :-1] = ctx[f][:, 1:].clone()
            ctx[f][:, min(t, self.n_transit - 1)] = token[f].to(ctx[f].dtype)
        return slide

    def last_positions(self) -> tuple[int, torch.Tensor]:
        width = self.length()
        return width, torch.full((self.shared.batch,), width - 1, device=self.shared.device)

    @property
    def max_ctx_len(self) -> int:
        return self.length()

    # the static step: while the window fills, the token is decoded against the cache at the position the cache
    # holds on the device; once full, the window slides and is re-encoded whole, as in ``append``
    static = True

    def static_kind(self) -> str:
        return 'fill' if self.shared.t < self.n_transit else 'slide'

    def static_forward(self, kind: str, token: dict[str, torch.Tensor]):
        ctx, cache = self.shared.ctx, self.shared.cache
        if kind == 'fill':
            for f in ctx:
                ctx[f].scatter_(1, cache.length[:, None], token[f][:, None].to(ctx[f].dtype))
            return self.shared.model.decode(*[token[f] for f in ctx], cache=cache)  # ctx: in FIELDS order
        for f in ctx:
            ctx[f].copy_(torch.cat([ctx[f][:, 1:], token[f][:, None].to(ctx[f].dtype)], dim=1))
        action_logits, type_logits, _ = self.shared.model.forward_tokens(*ctx.values())
        return action_logits[:, -1], (type_logits[:, -1] if type_logits is not None else None)

    def static_end_step(self, kind: str, type_logits) -> None:
        pass


class StandardMode(ContextMode):
    name, model_config, run_suffix = 'standard', MODEL_CONFIG, ''

    def max_context_len(self, config: dict) -> int:
        return config['n_transit']

    def window(self, config: dict) -> WindowTemplate:
        L = config['n_transit']
        return WindowTemplate(torch.full((L,), TRANSITION), torch.arange(L))

    def short_history_message(self, config: dict, T: int, template: WindowTemplate) -> str:
        return (f"n_transit={config['n_transit']} is longer than the histories ({T} steps per stream). Lower "
                f"n_transit or collect with a larger train_source_timesteps.")

    def rollout_context(self, shared: RolloutState, config: dict) -> SlidingWindow:
        return SlidingWindow(shared, config)
