"""The context-mode interface: what every mode (``compressed_ad/modes/``) implements.

A mode is one object (``ContextMode``) that says everything that differs between modes: its name, model config
file and run-name suffix, its config checks, the longest context it gives the model, whether the model has the
token-type head, its training windows (``WindowTemplate``, cut by ``dataset.WindowSampler``) and what the
in-context rollout keeps in the context (``RolloutContext``, driven by ``model.rollout.InContextRollout``, which
shares with it a ``RolloutState``, re-exported here). The registry that turns a config into its mode is
``compressed_ad.context_modes``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import torch

from compressed_ad.model.rollout_state import RolloutState


@dataclass(frozen=True)
class WindowTemplate:
    """Where the tokens of a training window come from, the same for every window of a mode.

    ``types`` (L,): token types (``model.layout``); ``offsets`` (L,): the stream step of each transition counted
    from the window's first step (-1 at markers, memory and write tokens). Windows start every ``stride`` steps;
    a training sequence is ``unroll`` consecutive windows, each ``stride`` steps after the previous; streams are
    cut to a multiple of ``align`` steps (whole regions). ``batch_share``: how many of ``train_batch_size``'s
    windows one window of this template counts for, so that a mode with longer windows trains on as many action
    targets per step as the others (sliding: a window of ``n_transit + sliding_tail`` transitions counts for
    ``(n_transit + sliding_tail) / n_transit``; a fraction, with whole windows per batch). ``walk``: training rows
    walk whole streams, ``unroll`` windows per optimizer step from each stream's first window, and the model's
    memory is carried from one step to the next (memory mode; ``dataset.WindowSampler.walk``). ``walk_start``:
    where a walking row starts from the initial memory, 'stream' (its stream's first window) or 'random' (a random
    window of its stream).
    """
    types: torch.Tensor
    offsets: torch.Tensor
    stride: int = 1
    unroll: int = 1
    align: int = 1
    batch_share: Fraction = Fraction(1)
    walk: bool = False
    walk_start: str = 'stream'

    @property
    def span(self) -> int:
        """Stream steps one training sequence covers."""
        return int(self.offsets.max()) + 1 + (self.unroll - 1) * self.stride


class RolloutContext(ABC):
    """What an in-context rollout keeps in its model's context: the mode's side of ``InContextRollout``.

    The rollout hands it ``shared``, a ``RolloutState`` (``model/rollout_state.py``, where every field is
    documented), kept as ``self.shared``: all a mode uses of the rollout. It reads and writes the token buffer
    ``shared.ctx`` (fields (B, max_len)) and re-encodes it into ``shared.cache`` (a ``KVCache``, written through
    its methods) when positions change; it reads ``shared.t`` (the transitions appended: before the current one in
    ``append`` and the static methods, including it in ``end_step``), the model ``shared.model``, the rows
    (``batch``, ``rows``, ``device``) and the settings ``trigger``, ``use_cache`` and ``autocast``. Anything else it
    keeps (per-row context lengths, a memory) is its own.

    The rollout calls, at each step: ``append`` (the new token), then either decodes it against the cache or runs
    ``last_positions``' full pass, then steps the environment, then ``end_step``; ``start`` once before the first.
    """

    def __init__(self, shared: RolloutState, config: dict):
        self.shared = shared

    def start(self) -> None:
        """Write the initial context (and encode it into the cache); called once, before the first step."""

    @abstractmethod
    def append(self, token: dict[str, torch.Tensor]) -> bool:
        """Write one token (fields (B,)) per row at the end of its context. True when positions shifted, so the
        context must be re-encoded instead of decoding the new token against the cache."""

    @abstractmethod
    def last_positions(self) -> tuple[int, torch.Tensor]:
        """(width, last (B,)): the context tokens a full forward pass reads, and each row's last position."""

    def end_step(self, type_logits: torch.Tensor | None) -> None:
        """After an environment step: drop what the mode drops (e.g. close regions); ``type_logits`` (B, 3) or
        None: the token-type head's prediction for the next token."""

    def memory_of(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The memory (n, m, D) the context's memory tokens hold for ``rows``, or None."""
        return None

    @property
    @abstractmethod
    def max_ctx_len(self) -> int:
        """The longest context any row has held so far (tokens)."""

    @property
    def closed_region_lengths(self) -> list[torch.Tensor]:
        """Lengths of the regions closed so far, one (rows closing,) tensor per close event."""
        return []

    # The static-shape step (``model.static_rollout.StaticRollout``): a mode that sets ``static`` implements the
    # three methods below on the same buffers as its eager methods above, with fixed shapes, writes in place and
    # nothing read back to the host, so that each kind of step compiles whole (``fullgraph=True``) and can be
    # captured as a CUDA graph. The eager methods stay the reference. A mode without them is rolled out eagerly only.
    static = False

    def static_kind(self) -> str:
        """The kind of static step that runs next, decided on the host from ``shared.t`` (and the compress
        trigger) alone; one name per distinct computation, each compiled once."""
        raise NotImplementedError

    def static_forward(self, kind: str, token: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append ``token`` (fields (B,)) to every row's context; return the logits at it, (B, A) and (B, 3) or
        None."""
        raise NotImplementedError

    def static_end_step(self, kind: str, type_logits: torch.Tensor | None) -> None:
        """After the environment step, for every row at once: drop what the mode drops (a row that drops nothing
        keeps its context)."""


class ContextMode(ABC):
    """One context mode. Subclasses set the three names and implement the abstract methods."""
    name: str          # how scripts, tables and summaries call it
    model_config: str  # the model config file that selects it
    run_suffix: str    # inserted after {model}-{env} in its run directories' names
    type_head: bool = False  # the model predicts the next token's type (and is trained to)
    regions: bool = False    # the context is cut into compression regions: the dataset needs its markers and an
    #                          evaluation chooses a compress trigger; use_compressed_context: true asks for such a mode
    memory: bool = False     # the context holds memory tokens, as many as memory_tokens (> 0); without, it must be 0
    positions: str = 'absolute'  # the model's positions: 'absolute' (a learned table) or 'rope' (relative)

    def attention_window(self, config: dict) -> int:
        """Tokens each token attends to (itself included); 0 = every earlier token of the sequence."""
        return 0

    def check(self, config) -> None:
        """Raise ``ConfigError`` when ``config`` (a ``config_schema.Config``) cannot run in this mode. The keys that
        choose a mode are checked before, by ``context_modes.checked_mode``."""

    @abstractmethod
    def max_context_len(self, config: dict) -> int:
        """Longest sequence the model ever sees (sizes the position table)."""

    @abstractmethod
    def window(self, config: dict) -> WindowTemplate:
        """The template of this mode's training windows."""

    def short_history_message(self, config: dict, T: int, template: WindowTemplate) -> str:
        """Why streams of ``T`` steps are too short for one training sequence (``template.span`` steps)."""
        return (f"The {self.name} context mode needs streams of at least {template.span} steps; the dataset gives {T} "
                f"(train_source_timesteps).")

    @abstractmethod
    def rollout_context(self, shared: RolloutState, config: dict) -> RolloutContext:
        """The context policy of an in-context rollout of this mode, on the state the rollout shares with it."""
