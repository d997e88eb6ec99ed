"""The context modes AD is trained and evaluated in: the interface every mode implements, and their registry.

A mode is one object (``ContextMode``) that says everything that differs between modes: its name, model config
file and run-name suffix, its config checks, the longest context it gives the model, whether the model has the
token-type head, its training windows (``WindowTemplate``, cut by ``dataset.WindowSampler``) and what the
in-context rollout keeps in the context (``RolloutContext``, driven by ``model.rollout.InContextRollout``).
The built-in modes live in ``compressed_ad/modes/``: standard.py, compressed.py, memory.py, sliding.py.

A config selects its mode by ``context_mode``: a registered name, or ``some.module:ClassName``, a mode defined
outside the library, imported (from the project root or PYTHONPATH) and registered on first use. Left empty (the
default, and every config written before the key existed), two keys choose: ``use_compressed_context`` (compressed
mode) and ``memory_tokens`` (compressed mode with memory when > 0).
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import torch

from compressed_ad.config_schema import ConfigError


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

    It reads and writes the rollout's token buffer ``rollout.ctx`` (fields (B, max_len)) and re-encodes it into
    ``rollout.cache`` when positions change. ``rollout.t`` counts the transitions appended before the current one.
    """

    def __init__(self, rollout, config: dict):
        self.r = rollout

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
        """The kind of static step that runs next, decided on the host from ``rollout.t`` (and the compress
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
    #                          evaluation chooses a compress trigger
    positions: str = 'absolute'  # the model's positions: 'absolute' (a learned table) or 'rope' (relative)

    def attention_window(self, config: dict) -> int:
        """Tokens each token attends to (itself included); 0 = every earlier token of the sequence."""
        return 0

    def check(self, config) -> None:
        """Raise ``ConfigError`` when ``config`` (a ``config_schema.Config``) cannot run in this mode."""

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
    def rollout_context(self, rollout, config: dict) -> RolloutContext:
        """The context policy of an in-context rollout of this mode."""


# ----------------------------------------------------------------------------- the registry
MODES: dict[str, ContextMode] = {}


def register(mode: ContextMode) -> ContextMode:
    """Make ``mode`` known by its name (``context_mode: NAME``, ``--modes``, ``model_configs()``)."""
    MODES[mode.name] = mode
    return mode


def imported_mode(spec: str) -> ContextMode:
    """The mode ``some.module:ClassName`` names, imported and registered (once)."""
    module, _, cls = spec.partition(':')
    try:
        mode_class = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"context_mode '{spec}': cannot import {cls} from {module} ({exc}). Give a registered "
                        f"mode ({', '.join(MODES)}) or 'module:ClassName' importable from the project root or "
                        f"PYTHONPATH.") from None
    known = MODES.get(mode_class.name)
    return known if isinstance(known, mode_class) else register(mode_class())


def mode_of(config: dict) -> ContextMode:
    """The context mode a config selects (see the module docstring)."""
    chosen = config.get('context_mode', '')
    if chosen:
        if chosen in MODES:
            return MODES[chosen]
        if ':' in chosen:
            return imported_mode(chosen)
        raise ConfigError(f"context_mode '{chosen}' is not a registered mode ({', '.join(MODES)}) nor "
                        f"'module:ClassName'.")
    if not config['use_compressed_context']:
        return MODES['standard']
    return MODES['memory'] if config['memory_tokens'] else MODES['compressed']


def model_configs() -> dict[str, str]:
    """{mode name: its model config file}."""
    return {name: mode.model_config for name, mode in MODES.items()}


# the built-in modes; each module imports the interface above
from compressed_ad.modes.compressed import CompressedMode  # noqa: E402
from compressed_ad.modes.memory import MemoryMode  # noqa: E402
from compressed_ad.modes.sliding import SlidingMode  # noqa: E402
from compressed_ad.modes.standard import StandardMode  # noqa: E402

for _mode in (StandardMode(), CompressedMode(), MemoryMode(), SlidingMode()):
    register(_mode)
