"""The context modes AD is trained and evaluated in: their registry, and the one rule that turns a config into its
mode.

The interface every mode implements (``ContextMode``, ``RolloutContext``, ``WindowTemplate``, and the
``RolloutState`` a rollout shares with its mode) is ``compressed_ad/modes/base.py``, re-exported here for modes
defined outside the library; the built-in modes live in ``compressed_ad/modes/``: standard.py, compressed.py,
memory.py, sliding.py.

The one rule (``mode_name``): ``context_mode`` names the mode, a registered name or ``some.module:ClassName`` (a mode
defined outside the library, imported from the project root or PYTHONPATH and registered on first use). Left empty
(the default), ``use_compressed_context: true``, the quick-start's switch (config/model/ad_dr_compressed.yaml), means
``context_mode: compressed``; otherwise the mode is standard. ``memory_tokens`` sizes the memory of a mode that has
one (``ContextMode.memory``: the memory mode) and chooses no mode. ``checked_mode`` refuses a config whose keys
disagree: ``use_compressed_context: true`` with a mode that is not compressed, ``memory_tokens`` > 0 in a mode
without memory, or none in a mode with memory. Runs saved before the memory mode was named by ``context_mode`` are
read through the same rule: ``config_schema.saved_config`` names it in their config.
"""
from __future__ import annotations

import importlib

from compressed_ad.modes.base import ContextMode, RolloutContext, RolloutState, WindowTemplate
from compressed_ad.modes.compressed import CompressedMode
from compressed_ad.modes.memory import MemoryMode
from compressed_ad.modes.sliding import SlidingMode
from compressed_ad.modes.standard import StandardMode
from compressed_ad.utils import ConfigError

__all__ = ['MODES', 'ContextMode', 'RolloutContext', 'RolloutState', 'WindowTemplate', 'check_mode_keys',
           'checked_mode', 'imported_mode', 'mode_name', 'mode_of', 'model_configs', 'register']

MODES: dict[str, ContextMode] = {}


def register(mode: ContextMode) -> ContextMode:
    """Make ``mode`` known by its name (``context_mode: NAME``, the example's ``--context-modes``,
    ``model_configs()``)."""
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


def mode_name(config: dict) -> str:
    """The name (or ``module:ClassName``) of the mode ``config`` selects: the one rule of the module docstring."""
    if config.get('context_mode', ''):
        return config['context_mode']
    return 'compressed' if config['use_compressed_context'] else 'standard'


def mode_of(config: dict) -> ContextMode:
    """The context mode ``config`` selects (``mode_name``), unchecked: see ``checked_mode``."""
    chosen = mode_name(config)
    if chosen in MODES:
        return MODES[chosen]
    if ':' in chosen:
        return imported_mode(chosen)
    raise ConfigError(f"context_mode '{chosen}' is not a registered mode ({', '.join(MODES)}) nor "
                      f"'module:ClassName'.")


def checked_mode(config) -> ContextMode:
    """The mode ``config`` (a ``config_schema.Config``) selects, once it has checked that the keys choosing it agree
    (``check_mode_keys``) and that the config can run in it (``ContextMode.check``)."""
    mode = mode_of(config)
    check_mode_keys(config, mode)
    mode.check(config)
    return mode


def check_mode_keys(config, mode: ContextMode) -> None:
    """Raise ``ConfigError`` when ``use_compressed_context`` or ``memory_tokens`` disagrees with ``mode``, the mode
    ``config`` selects."""
    c = config
    chosen = (f"context_mode={c['context_mode']} ({c.source('context_mode')})" if c['context_mode'] else
              f"use_compressed_context={str(c['use_compressed_context']).lower()} "
              f"({c.source('use_compressed_context')}) with context_mode empty")
    if c['use_compressed_context'] and not mode.regions:
        raise ConfigError(f"use_compressed_context=true ({c.source('use_compressed_context')}) asks for compressed "
                          f"context, but context_mode={c['context_mode']} ({c.source('context_mode')}) names the "
                          f"{mode.name} mode, which is not compressed. Set use_compressed_context=false to train "
                          f"the {mode.name} mode, or context_mode=compressed (or leave it empty).")
    if c['memory_tokens'] and not mode.memory:
        raise ConfigError(f"memory_tokens={c['memory_tokens']} ({c.source('memory_tokens')}) sizes the memory of "
                          f"a mode with memory tokens, but {chosen} selects the {mode.name} mode, which keeps no "
                          f"memory; memory_tokens chooses no mode. Set context_mode=memory (as "
                          f"{MODES['memory'].model_config} does), or memory_tokens=0.")
    if mode.memory and not c['memory_tokens']:
        raise ConfigError(f"{chosen} selects the {mode.name} mode, which carries the dropped regions in memory "
                          f"tokens, but memory_tokens=0 ({c.source('memory_tokens')}). Set memory_tokens > 0 (e.g. "
                          f"memory_tokens=4, as {MODES['memory'].model_config} does).")


def model_configs() -> dict[str, str]:
    """{mode name: its model config file}."""
    return {name: mode.model_config for name, mode in MODES.items()}
