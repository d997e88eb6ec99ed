"""The AD transformer, its context layout, loss and cached in-context rollout (no stable-baselines3 here)."""
from model.loss import ad_losses, balanced_accuracy
from model.transformer import ADTransformer, KVCache, ModelConfig, build_model

__all__ = ['ADTransformer', 'KVCache', 'ModelConfig', 'ad_losses', 'balanced_accuracy', 'build_model']
