"""What a config builds: the model of its context mode (``model_config``, ``build_model``) and the state of one
training process (``training_state``), the same for train.py and the benchmarks (``bench.bench``,
``bench.profile_step``).

The one place that turns config keys into a ``model.transformer.ModelConfig``: the model itself knows no config,
context mode or environment.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from compressed_ad.context_modes import ContextMode, mode_of
from compressed_ad.env import env_spec
from compressed_ad.model.training import (TrainingBatches, make_optimizer, make_scheduler, train_step,
                                          wrap_for_training)
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


@dataclass
class TrainingState:
    """What one training process trains with: the model, its optimiser and LR schedule, the generator of its
    batches and the batches (``model.training.TrainingBatches``: what carries over between steps).

    ``net``, the module a step calls (the model compiled when ``compile`` is set, DDP-wrapped under torchrun:
    ``model.training.wrap_for_training``), is made at the first step, once a resume has loaded the model.
    """
    config: dict
    mode: ContextMode
    model: ADTransformer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    batches: TrainingBatches
    device: torch.device
    world: int = 1
    _net: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self._net = wrap_for_training(self.model, self.config, self.device, self.world)
        return self._net

    def step(self, with_metrics: bool = False) -> dict:
        """One optimizer step on the next batch (``model.training.train_step``); returns its losses (device
        tensors), the memory it wrote kept in ``batches``."""
        losses = train_step(self.net, self.model, self.batches.next(), self.optimizer, self.scheduler, self.config,
                            with_metrics=with_metrics)
        self.batches.after_step(losses)
        return losses


def training_state(config: dict, sampler, device, rank: int = 0, world: int = 1,
                   mode: ContextMode | None = None) -> TrainingState:
    """The training state of process ``rank`` of ``world`` on ``device``, its windows from ``sampler``
    (``dataset.WindowSampler``), seeded as every run is: the model initialised from ``seed + rank`` (torch's global
    stream), the batches drawn from ``seed * 1000 + rank``. ``mode``: as ``build_model``'s.

    The batches are not started: a new run calls ``batches.start()``, a resumed one ``batches.load_state``.
    """
    mode = mode or mode_of(config)
    torch.manual_seed(config['seed'] + rank)
    model = build_model(config, mode).to(device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator(device=device)
    generator.manual_seed(config['seed'] * 1000 + rank)
    return TrainingState(config, mode, model, optimizer, make_scheduler(optimizer, config), generator,
                         TrainingBatches(sampler, model, config, generator), device, world)
