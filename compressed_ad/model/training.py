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


class TrainingBatches:
    """The batches of one training process, and what carries over from one step to the next.

    Random windows from ``sampler`` (``train_batch_size`` of them per step); or, for a mode whose rows walk whole
    streams (memory mode, ``WindowTemplate.walk``), S = ``train_batch_size`` / K rows that each take the next
    K windows of their stream at every step, reading the memory their previous step wrote (truncated
    backpropagation through time: the gradient crosses the K - 1 hand-offs inside a step, the memory carried in is
    detached), as recurrent-memory transformers are trained on long documents. A row starts from the initial memory
    only at a stream's first window, as the in-context rollout does (with ``memory_walk_start: random``, at a random
    window of each new stream instead). The rows start at random windows of random
    streams; their memory there is built by running their stream's earlier windows once, without gradients.
    The walk and the carried memory are part of the training state (``state`` / ``load_state``), for exact resume.
    A run resumed with another ``train_batch_size`` keeps its first rows, which go on as they were, and drops the
    others or adds new ones placed and built as a new run's are.
    """

    def __init__(self, sampler, model, config, generator: torch.Generator):
        self.sampler, self.model, self.config, self.gen = sampler, model, config, generator
        self.memory = None  # (S, m, D): what each walking row's last window wrote

    def start(self) -> None:
        """A new run: place the walking rows and build their memory up to where they start."""
        if not self.sampler.walks:
            return
        self.sampler.start_walks(self.n_rows(), self.gen)
        self.memory = self.burn_in()

    def n_rows(self) -> int:
        """Walking rows: S = ``train_batch_size`` / K, each taking K windows a step."""
        return self.config['train_batch_size'] // self.sampler.unroll

    @torch.no_grad()
    def burn_in(self, first_row: int = 0) -> torch.Tensor:
        """The memory every walking row from ``first_row`` on has at its starting window: its stream's earlier
        windows, in order, from the window where its memory starts (``walk_from``: its stream's first, or with
        random starts, this one). (S - first_row, m, D)."""
        rows = slice(first_row, None)
        start, origin = self.sampler.walk_pos[rows], self.sampler.walk_from[rows]  # (S - first_row,)
        memory = self.model.initial_memory(len(start)).detach().clone()
        device = memory.device
        with autocast(device, self.config['bf16']):
            for j in range(int(origin.min()), int(start.max())):
                needed = (origin <= j) & (j < start)  # rows whose memory at their start passes window j
                if not needed.any():  # e.g. random starts: every row's memory starts where the row does
                    continue
                window = self.sampler.walk_windows(torch.full_like(start, j), rows)
                written = self.model.forward_tokens(window['types'], window['obs'], window['prev_action'],
                                                    window['prev_reward'], memory)[2]
                memory = torch.where(needed[:, None, None], written.float(), memory)
        return memory

    def next(self) -> dict[str, torch.Tensor]:
        """The batch of the next optimizer step."""
        if not self.sampler.walks:
            return self.sampler.sample(self.config['train_batch_size'], self.gen)
        return dict(self.sampler.walk(self.gen), memory=self.memory)

    def after_step(self, losses: dict) -> None:
        """Keep the memory the step wrote (it leaves ``losses``, which then holds only losses and metrics)."""
        memory = losses.pop('memory', None)
        if self.sampler.walks:
            self.memory = memory.float()

    def state(self) -> dict | None:
        if not self.sampler.walks:
            return None
        return {'walk': self.sampler.walk_state(), 'memory': self.memory.cpu()}

    def load_state(self, state: dict | None) -> None:
        """Resume the walk and the carried memory; a checkpoint without them (written before rows walked) starts
        new walks."""
        if not self.sampler.walks:
            return
        if not state:
            self.start()
            return
        self.sampler.load_walk_state(state['walk'])
        self.memory = state['memory'].to(self.sampler.device)
        if len(self.memory) != self.n_rows():  # resumed with another train_batch_size
            self.resize_rows()

    def resize_rows(self) -> None:
        """Fit the walking rows to ``train_batch_size``: the first rows keep their walk and their memory, rows
        beyond the new count are dropped, and new rows start as a new run's (``start``) do."""
        kept = self.sampler.resize_walks(self.n_rows(), self.gen)
        self.memory = self.memory[:kept]
        if kept < self.n_rows():
            self.memory = torch.cat([self.memory, self.burn_in(first_row=kept)])


@torch.no_grad()
def evaluate_batches(model, batches: list[dict], config) -> dict[str, float]:
    """Mean losses and metrics of ``model`` over fixed batches (e.g. the held-out goals' windows)."""
    model.eval()
    sums: dict[str, float] = {}
    for batch in batches:
        with autocast(batch['obs'].device, config['bf16']):
            out = ad_losses(model, batch, config['token_type_loss_weight'], with_metrics=True)
        out.pop('memory', None)
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
    """The module the training step calls: compiled (``torch.compile``, on any device) when ``compile`` is set,
    DDP-wrapped under torchrun.

    Compiling costs its time once, at the first step (tens of seconds on a CPU, less where inductor's cache already
    holds the graphs), and gives the same losses within rounding (fused kernels round the last bits differently).
    On a CPU the compiled step has measured slower than eager (``python -m bench.bench --compare-compile``), hence
    eager by default.
    """
    net = torch.compile(model) if config['compile'] else model
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
        # every rank done with its collectives before any tears gloo down: a rank that exits while another still
        # talks to it can abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
