"""One training step, its optimiser and schedule, and the held-out loss; shared by train.py and the benchmark."""
from __future__ import annotations

import math

import torch

from model.loss import ad_losses
from utils import autocast


def make_optimizer(model, config) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases and norm gains); fused on CUDA."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{'params': decay, 'weight_decay': config['weight_decay']}, {'params': no_decay, 'weight_decay': 0.0}]
    return torch.optim.AdamW(groups, lr=config['lr'], betas=(config['beta1'], config['beta2']),
                             fused=next(model.parameters()).is_cuda)


def make_scheduler(optimizer, config) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to ``lr`` over ``num_warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    warmup, total, floor = config['num_warmup_steps'], config['train_timesteps'], config['min_lr_ratio']

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(net, model, batch, optimizer, scheduler, config, with_metrics: bool = False) -> dict:
    """Forward (``net``: the model, compiled or DDP-wrapped), backward, clip, AdamW and schedule step.

    Returns the losses (device tensors; no host sync here).
    """
    device = batch['cell'].device
    with autocast(device):
        losses = ad_losses(net, batch, config['token_type_loss_weight'], config['label_smoothing'],
                           with_metrics=with_metrics)
    optimizer.zero_grad(set_to_none=True)
    losses['loss'].backward()
    if config['grad_clip'] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config['grad_clip'])
    optimizer.step()
    scheduler.step()
    return losses


@torch.no_grad()
def evaluate_batches(model, batches: list[dict], config) -> dict[str, float]:
    """Mean losses and metrics of ``model`` over fixed batches (e.g. the held-out goals' windows)."""
    model.eval()
    sums: dict[str, float] = {}
    for batch in batches:
        with autocast(batch['cell'].device):
            out = ad_losses(model, batch, config['token_type_loss_weight'], with_metrics=True)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    model.train()
    return {k: v / len(batches) for k, v in sums.items()}
