"""The AD model: ``transformer.py`` (the transformer and its KV cache), ``layout.py`` (the token layout),
``loss.py``, ``training.py`` (optimiser, schedule, training step), ``rollout.py`` (the in-context rollout),
``rollout_state.py`` (what the rollout shares with its context mode), ``static_rollout.py`` (its static-shape twin).

Importing this package loads none of them, so that importing ``model.layout`` loads no transformer. The transformer,
the layout, the loss and the rollout state import only torch and each other; ``compressed_ad.build`` makes a model
from a config.
"""
