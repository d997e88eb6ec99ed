"""The context modes AD is trained and evaluated in, in one table: each mode's name, model config and run-name suffix.

A config selects its mode through two keys: ``use_compressed_context`` (compressed mode) and ``memory_tokens``
(compressed mode with memory when > 0). Training windows and the token layout of each mode are in
``dataset.py`` and ``model/layout.py``, the rollout context in ``model/rollout.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from compressed_ad.config_schema import COMPRESSED_MODEL_CONFIG, MEMORY_MODEL_CONFIG, MODEL_CONFIG


@dataclass(frozen=True)
class ContextMode:
    name: str          # how scripts, tables and summaries call it
    model_config: str  # the model config file that selects it
    run_suffix: str    # inserted after {model}-{env} in its run directories' names


MODES = {mode.name: mode for mode in (
    ContextMode('standard', MODEL_CONFIG, ''),
    ContextMode('compressed', COMPRESSED_MODEL_CONFIG, '-compressed'),
    ContextMode('memory', MEMORY_MODEL_CONFIG, '-compressed-memory'),
)}


def mode_of(config: dict) -> ContextMode:
    """The context mode a config selects."""
    if not config['use_compressed_context']:
        return MODES['standard']
    return MODES['memory'] if config['memory_tokens'] else MODES['compressed']


def model_configs() -> dict[str, str]:
    """{mode name: its model config file}."""
    return {name: mode.model_config for name, mode in MODES.items()}
