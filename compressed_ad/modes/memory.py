"""Compressed AD with memory: ``[memory] <c> previous region </c> [write] <c> current region so far``
(``model/layout.py``).

Compressed mode (``modes/compressed.py``) with m = ``memory_tokens`` > 0 memory and write tokens: at a region
close the write tokens' outputs become the memory that stands for the dropped region. A training sequence is
``memory_unroll`` consecutive region pairs, the memory handed on between them.
"""
from __future__ import annotations

from compressed_ad.modes import MEMORY_MODEL_CONFIG
from compressed_ad.modes.compressed import CompressedMode
from compressed_ad.utils import ConfigError


class MemoryMode(CompressedMode):
    name, model_config, run_suffix = 'memory', MEMORY_MODEL_CONFIG, '-compressed-memory'
    memory = True

    def check(self, config) -> None:
        super().check(config)
        c = config
        for key in ('train_batch_size', 'test_batch_size'):
            if c[key] % c['memory_unroll']:
                raise ConfigError(f"{key}={c[key]} ({c.source(key)}) must be a multiple of memory_unroll="
                                  f"{c['memory_unroll']} ({c.source('memory_unroll')}): a batch holds sequences of "
                                  f"memory_unroll consecutive windows.")

    def unroll(self, config: dict) -> int:
        return config['memory_unroll']
