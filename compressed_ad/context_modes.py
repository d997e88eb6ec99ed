"""The context modes AD is trained and evaluated in: their registry, and the one rule that turns a config into its
mode.

The interface every mode implements (``ContextMode``, ``RolloutContext``, ``WindowTemplate``) is
``compressed_ad/modes/base.py``, re-exported here for modes defined outside the library; the built-in modes live in
``compressed_ad/modes/``: standard.py, compressed.py, memory.py, sliding.py.

A config selects its mode by ``context_mode``: a registered name, or ``some.module:ClassName``, a mode defined
outside the library, imported (from the project root or PYTHONPATH) and registered on first use. Left empty (the
default, and every config written before the key existed), two keys choose: ``use_compressed_context`` (compressed
mode) and ``memory_tokens`` (compressed mode with memory when > 0).
"""
from __future__ import annotations

import importlib

from compressed_ad.modes.base import ContextMode, RolloutContext, WindowTemplate
from compressed_ad.modes.compressed import CompressedMode
from compressed_ad.modes.memory import MemoryMode
from compressed_ad.modes.sliding import SlidingMode
from compressed_ad.modes.standard import StandardMode
from compressed_ad.utils import ConfigError

__all__ = ['MODES', 'ContextMode', 'RolloutContext', 'WindowTemplate', 'checked_mode', 'imported_mode', 'mode_of',
           'model_configs', 'register']

MODES: dict[str, ContextMode] = {}


def register(mode: ContextMode) -> ContextMode:
    """Make ``mode`` known by its name (``context_mode: NAME``, ``--modes``, ``model_configs()``)."""
    MODES[mode.name] = mode
    return mode


for _mode in (StandardMode(), CompressedMode(), MemoryMode(), SlidingMode()):
    register(_mode)


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


def checked_mode(config) -> ContextMode:
    """The mode ``config`` (a ``config_schema.Config``) selects, once it has checked that the config can run in it
    (``ContextMode.check``; a ``ConfigError`` names the keys otherwise)."""
    mode = mode_of(config)
    mode.check(config)
    return mode


def model_configs() -> dict[str, str]:
    """{mode name: its model config file}."""
    return {name: mode.model_config for name, mode in MODES.items()}
