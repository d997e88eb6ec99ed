"""Sliding-window standard AD: every token attends to the last ``n_transit`` transitions, at relative positions.

The context is the stream itself, ``[x_0, x_1, ...]``, one token per transition as in standard mode, but each
token attends only to itself and the ``n_transit - 1`` tokens before it, and positions are rotary (relative), so
no token depends on where its sequence started. Then:

* Training windows are ``n_transit + sliding_tail`` consecutive transitions: the first ``n_transit`` are trained
  with the short contexts an evaluation starts with (causal attention), the last ``sliding_tail`` with a full
  attention window of ``n_transit`` keys in every layer. That is less than an evaluation step has behind it: each
  layer reaches ``n_transit - 1`` transitions further back, so with ``n_layer`` layers a token's output depends on
  its last ``n_layer * (n_transit - 1) + 1`` transitions (``receptive_field``: 479 at the ``--cpu`` setting's 2
  layers and 240, against windows of 320), and in a training window the keys of later layers near its start were
  computed from contexts cut at the window's first step. Position p of a window (from 0) has its whole receptive
  field only when p >= ``n_layer * (n_transit - 1)``; ``bench/sliding_reach.py`` measures how much a trained
  model's actions depend on the part no training window holds. A window counts for
  ``(n_transit + sliding_tail) / n_transit`` of ``train_batch_size``'s windows, so a step trains on as many action
  targets as a standard step. A short tail keeps the cost per action target near standard AD's (the band of
  full-window queries is the costly part: more keys per query, and a masked kernel instead of the fused causal
  one); ``sliding_tail: -1`` is ``n_transit``, windows of 2 x ``n_transit``.
* The in-context rollout decodes every step against a ring KV cache of ``n_transit`` slots: constant cost per
  step, and exact, since a token's keys and values are those a full pass over the whole stream would give it.
  Without the cache (the reference the tests compare against) each step re-encodes the last
  ``n_layer * (n_transit - 1) + 1`` tokens, the receptive field of the last one.
"""
from __future__ import annotations

from fractions import Fraction

import torch

from compressed_ad.model.layout import TRANSITION
from compressed_ad.modes import SLIDING_MODEL_CONFIG
from compressed_ad.modes.base import ContextMode, RolloutContext, RolloutState, WindowTemplate
from compressed_ad.utils import ConfigError


def tail_steps(config: dict) -> int:
    """Transitions of a training window after its first ``n_transit``: each attends to a full window of keys."""
    return config['n_transit'] if config['sliding_tail'] < 0 else config['sliding_tail']


def train_window_len(config: dict) -> int:
    return config['n_transit'] + tail_steps(config)


def batch_share(config: dict) -> Fraction:
    """How many of ``train_batch_size``'s windows one training window counts for (its targets / n_transit)."""
    return Fraction(train_window_len(config), config['n_transit'])


def receptive_field(config: dict) -> int:
    """Tokens the last token's output depends on: each layer reaches ``n_transit - 1`` tokens further back."""
    return config['tf_n_layer'] * (config['n_transit'] - 1) + 1


class RollingWindow(RolloutContext):
    """Every row holds its whole stream implicitly: the ring KV cache has the last ``n_transit`` tokens' keys and
    values. ``shared.ctx`` (used only without the cache) keeps the last ``receptive_field`` tokens."""

    def __init__(self, shared: RolloutState, config: dict):
        super().__init__(shared, config)
        self.n_transit, self.keep = config['n_transit'], receptive_field(config)

    def append(self, token: dict[str, torch.Tensor]) -> bool:
        if self.shared.use_cache:
            return False  # the ring cache is the context
        ctx, t = self.shared.ctx, self.shared.t
        for f in ctx:
            if t >= self.keep:
                ctx[f][:, :-1] = ctx[f][:, 1:].clone()
            ctx[f][:, min(t, self.keep - 1)] = token[f].to(ctx[f].dtype)
        return False

    def last_positions(self) -> tuple[int, torch.Tensor]:
        width = min(self.shared.t, self.keep)
        return width, torch.full((self.shared.batch,), width - 1, device=self.shared.device)

    @property
    def max_ctx_len(self) -> int:
        return min(self.shared.t, self.n_transit)  # tokens any one token attends to

    # the static step: every token is decoded against the ring cache (``shared.ctx`` is not kept)
    static = True

    def static_kind(self) -> str:
        return 'decode'

    def static_forward(self, kind: str, token: dict[str, torch.Tensor]):
        return self.shared.model.decode(*[token[f] for f in self.shared.ctx], cache=self.shared.cache)

    def static_end_step(self, kind: str, type_logits) -> None:
        pass


class SlidingMode(ContextMode):
    name, model_config, run_suffix = 'sliding', SLIDING_MODEL_CONFIG, '-sliding'
    positions = 'rope'

    def check(self, config) -> None:
        c = config
        share = batch_share(c)
        for key in ('train_batch_size', 'test_batch_size'):
            if c[key] % share.numerator:
                step = share.numerator  # B / share windows are whole when B is a multiple of this
                raise ConfigError(
                    f"{key}={c[key]} ({c.source(key)}) does not make whole training windows in the sliding mode: a "
                    f"window of n_transit + sliding_tail = {train_window_len(c)} transitions counts for {share} of "
                    f"{key}'s windows of {c['n_transit']}, so {key} must be a multiple of {step}. Use "
                    f"{key}={max(step, c[key] // step * step)}, or another sliding_tail.")

    def attention_window(self, config: dict) -> int:
        return config['n_transit']

    def max_context_len(self, config: dict) -> int:
        # the longest sequence the model is given: a training window, or the rollout's reference re-encoding
        return max(train_window_len(config), receptive_field(config))

    def window(self, config: dict) -> WindowTemplate:
        L = train_window_len(config)
        return WindowTemplate(torch.full((L,), TRANSITION), torch.arange(L), batch_share=batch_share(config))

    def short_history_message(self, config: dict, T: int, template: WindowTemplate) -> str:
        return (f"The sliding mode trains on windows of n_transit + sliding_tail = {template.span} transitions, "
                f"longer than the histories ({T} steps per stream). Lower n_transit or sliding_tail, or collect "
                f"with a larger train_source_timesteps.")

    def rollout_context(self, shared: RolloutState, config: dict) -> RollingWindow:
        return RollingWindow(shared, config)
