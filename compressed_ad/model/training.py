"""Training machinery shared by train.py and the benchmark: the optimiser, the schedule, one training step, the
held-out loss, a step-time estimate, and the plumbing for several processes under torchrun (DDP)."""
from __future__ import annotations

import math
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from compressed_ad.model.loss import ad_losses
from compressed_ad.utils import autocast, pick_device


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
    device = batch['obs'].device
    with autocast(device, config['bf16']):
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
        with autocast(batch['obs'].device, config['bf16']):
            out = ad_losses(model, batch, config['token_type_loss_weight'], with_metrics=True)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    model.train()
    return {k: v / len(batches) for k, v in sums.items()}


def estimate_step_seconds(model, sampler, config, device, probe_batch: int = 8) -> float:
    """Seconds one training step of ``train_batch_size`` windows should take, from timing a small probe batch.

    Forward and backward only, in eval mode (no dropout draws) and with a private generator, then the gradients
    are dropped: the model, the optimiser and every random stream are left exactly as they were.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    batch = sampler.sample(probe_batch, gen)
    model.eval()
    timings = []
    for _ in range(2):  # the first pass pays one-off allocation costs
        start = time.perf_counter()
        with autocast(device, config['bf16']):
            ad_losses(model, batch, config['token_type_loss_weight'])['loss'].backward()
        timings.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    model.train()
    return timings[-1] * config['train_batch_size'] / probe_batch


# ----------------------------------------------------------------------------- several processes (torchrun)
def setup_distributed(config) -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Under torchrun: one process per GPU (NCCL) or per CPU process (gloo)."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    if world == 1:
        return 0, 1, pick_device(config['device'])
    use_cuda = torch.cuda.is_available() and config['device'] != 'cpu'
    dist.init_process_group('nccl' if use_cuda else 'gloo')
    local = int(os.environ.get('LOCAL_RANK', 0))
    if use_cuda:
        torch.cuda.set_device(local)
    return dist.get_rank(), world, torch.device(f'cuda:{local}' if use_cuda else 'cpu')


def wrap_for_training(model, config, device, world: int):
    """The module the training step calls: compiled on CUDA when ``compile`` is set, DDP-wrapped under torchrun."""
    net = torch.compile(model) if config['compile'] and device.type == 'cuda' else model
    if world > 1:
        net = DDP(net, device_ids=[device.index] if device.type == 'cuda' else None)
    return net


def gather_from_ranks(obj, world: int) -> list:
    """Every rank's ``obj`` (any picklable value), in rank order, on every rank."""
    if world == 1:
        return [obj]
    objs = [None] * world
    dist.all_gather_object(objs, obj)
    return objs


@torch.no_grad()
def ranks_in_sync(model, world: int) -> bool:
    """DDP keeps replicas identical; check it cheaply (two parameter checksums compared across ranks)."""
    flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), device=flat.device) % 9973).sum()])
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    return all(torch.equal(everyone[0], other) for other in everyone[1:])


def teardown_distributed(world: int) -> None:
    if world > 1:
        dist.destroy_process_group()
