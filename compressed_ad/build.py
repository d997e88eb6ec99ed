"""What a config builds: the model of its context mode (``model_config``, ``build_model``).

The one place that turns config keys into a ``model.transformer.ModelConfig``: the model itself knows no config,
context mode or environment.
"""
from __future__ import annotations

from compressed_ad.context_modes import ContextMode, mode_of
from compressed_ad.env import env_spec
from compressed_ad.model.transformer import ADTransformer, ModelConfig


def model_config(config: dict, mode: ContextMode | None = None) -> ModelConfig:
    """The model ``config`` describes, in its context ``mode`` (by default the one the config selects)."""
    c, mode = config, mode or mode_of(config)
    return ModelConfig(obs_sizes=tuple(env_spec(c).obs_sizes(c['grid_size'])), num_actions=c['num_actions'],
                       n_embd=c['tf_n_embd'], n_layer=c['tf_n_layer'], n_head=c['tf_n_head'],
                       dim_feedforward=c['tf_dim_feedforward'], dropout=c['tf_dropout'],
                       max_len=mode.max_context_len(c), compressed=mode.type_head, memory_tokens=c['memory_tokens'],
                       positions=mode.positions, attn_window=mode.attention_window(c))


def build_model(config: dict, mode: ContextMode | None = None) -> ADTransformer:
    """A freshly initialised model for ``config`` (drawing from torch's global random stream)."""
    return ADTransformer(model_config(config, mode))
