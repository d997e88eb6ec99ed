"""The AD transformer, its context layout, loss and cached in-context rollout (no stable-baselines3 here)."""
from compressed_ad.model.loss import ad_losses, balanced_accuracy
from compressed_ad.model.transformer import ADTransformer, KVCache, ModelConfig, build_model

__all__ = ['ADTransformer', 'KVCache', 'ModelConfig', 'ad_losses', 'balanced_accuracy', 'build_model']
