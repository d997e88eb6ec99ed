"""Train the AD transformer on PPO learning histories: python train.py [--config MODEL_YAML] [--quick] [KEY=VALUE ...],
or under torchrun for DistributedDataParallel. Re-running resumes an unfinished run; a finished one is left as it is."""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from config_schema import add_config_args, base_config, config_to_yaml, finalize_config, get_config
from dataset import load_samplers
from model import build_model
from model.training import evaluate_batches, make_optimizer, make_scheduler, train_step
from run_files import CONFIG_FILE, TRAIN_SUMMARY, checkpoints, read_run_config, run_dir, run_finished, save_checkpoint
from utils import UserError, atomic_write_text, parse_args, peak_memory_mib, pick_device, reset_peak_memory, run_main


def read_config(args):
    config = base_config()  # config/env/darkroom.yaml, then config/algorithm/ppo_darkroom.yaml
    config.update(get_config('./config/model/ad_dr.yaml'))  # the model config: edit this line or use --config
    if args.config is not None:
        config.update(get_config(args.config))
    return finalize_config(config, args.quick, args.overrides)


# keys that do not change what is trained: a resumed run may differ in these
NON_TRAINING_KEYS = {'device', 'compile', 'runs_dir', 'datasets_dir', 'ppo_log_dir', 'n_process', 'summary_interval',
                     'eval_episodes', 'eval_streams_per_goal', 'eval_compress_trigger', 'eval_seed', 'ckpt_interval'}


def check_run_dir(out, config):
    """Refuse to resume into a run directory trained with a different config."""
    if not (out / CONFIG_FILE).exists():
        return
    saved = read_run_config(out)
    diff = [k for k in config if k not in NON_TRAINING_KEYS and saved.get(k) != config[k]]
    if diff:
        shown = ', '.join(f'{k}: {saved.get(k)!r} -> {config[k]!r}' for k in diff[:5])
        raise UserError(f"Run directory '{out}' already holds a run with a different config ({shown}). "
                        f"Delete it to start over, or set runs_dir to train elsewhere.")


def load_checkpoint(path, device) -> dict:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
        if not all(k in ckpt for k in ('model', 'optimizer', 'scheduler', 'step', 'rng')):
            raise KeyError('missing entries')
        return ckpt
    except Exception as exc:  # any unreadable checkpoint gets the same advice
        raise UserError(f"Checkpoint '{path}' cannot be read to resume ({type(exc).__name__}: {exc}). Delete it to "
                        f"resume from the previous checkpoint, or delete the run directory to start over.") from None


def setup_distributed(config):
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


def gather_generator_states(gen, world):
    state = gen.get_state()
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


@torch.no_grad()
def check_ranks_in_sync(model, world, main_process):
    """DDP keeps replicas identical; verify it (cheaply) at the end of training."""
    flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), device=flat.device) % 9973).sum()])
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    if any(not torch.equal(everyone[0], other) for other in everyone[1:]):
        raise RuntimeError('DDP replicas diverged: parameters differ between ranks')
    if main_process:
        print(f'DDP: parameters identical on all {world} ranks.')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None, help='model config YAML (default: config/model/ad_dr.yaml)')
    add_config_args(parser)
    args = parse_args(parser)
    config = read_config(args)
    rank, world, device = setup_distributed(config)
    main_process = rank == 0
    out = run_dir(config)
    check_run_dir(out, config)

    done = checkpoints(out)
    if run_finished(out, config):
        if main_process:
            print(f"Run '{out}' is already finished (checkpoint at step {done[-1][0]} of "
                  f"{config['train_timesteps']}); nothing to do. Evaluate it with 'python evaluate.py {out}'.")
        return 0

    train_sampler, test_sampler, _ = load_samplers(config, device)
    torch.manual_seed(config['seed'] + rank)
    model = build_model(config).to(device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    gen = torch.Generator(device=device)
    gen.manual_seed(config['seed'] * 1000 + rank)
    test_gen = torch.Generator(device=device)
    test_gen.manual_seed(config['seed'] + 12345)
    test_batches = [test_sampler.sample(config['test_batch_size'], test_gen) for _ in range(config['test_n_batches'])]

    step = 0
    if done:
        ckpt = load_checkpoint(done[-1][1], device)
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        step = ckpt['step']
        torch.set_rng_state(ckpt['rng']['torch'])
        if device.type == 'cuda' and ckpt['rng'].get('cuda') is not None:
            torch.cuda.set_rng_state(ckpt['rng']['cuda'], device)
        states = ckpt['rng']['sampler']
        if len(states) == world:
            gen.set_state(states[rank].cpu())
        if main_process:
            print(f"Resuming '{out}' from step {step}.")

    net = model
    if config['compile'] and device.type == 'cuda':
        net = torch.compile(model)
    if world > 1:
        net = DDP(net, device_ids=[device.index] if device.type == 'cuda' else None)
    writer = None
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / CONFIG_FILE, config_to_yaml(config))
        writer = SummaryWriter(str(out), purge_step=step if step else None)
        n_params = sum(p.numel() for p in model.parameters())
        mode = 'compressed' if config['use_compressed_context'] else 'standard'
        print(f"Training {mode} AD ({n_params / 1e6:.2f}M parameters) on {device} x{world}: "
              f"{train_sampler.n_seq} training streams, windows of {train_sampler.window_len} tokens, "
              f"{train_sampler.targets_per_window()} action targets each -> {out}")

    def write_checkpoint(at_step):
        states = gather_generator_states(gen, world)
        if not main_process:
            return
        ckpt = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'step': at_step, 'config': dict(config),
                'rng': {'torch': torch.get_rng_state(),
                        'cuda': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None,
                        'sampler': [s.cpu() for s in states]}}
        save_checkpoint(out, at_step, ckpt)

    model.train()
    total = config['train_timesteps']
    last_test: dict = {}
    bar = tqdm(total=total, initial=step, desc='train', unit='step', disable=not main_process, mininterval=1.0)
    t0, step0 = time.time(), step
    reset_peak_memory(device)
    try:
        while step < total:
            batch = train_sampler.sample(config['train_batch_size'], gen)
            log_now = (step + 1) % config['summary_interval'] == 0 or step + 1 == total
            losses = train_step(net, model, batch, optimizer, scheduler, config, with_metrics=log_now)
            step += 1
            bar.update(1)
            if log_now and main_process:
                values = {k: float(v.detach()) for k, v in losses.items()}
                for k, v in values.items():
                    writer.add_scalar(f'train/{k}', v, step)
                writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
                bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['acc_action']:.3f}")
            if (step % config['eval_interval'] == 0 or step == total) and main_process:
                last_test = evaluate_batches(model, test_batches, config)
                for k, v in last_test.items():
                    if k != 'loss':
                        writer.add_scalar(f'test/{k}', v, step)
            if step % config['ckpt_interval'] == 0 or step == total:
                write_checkpoint(step)
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"CUDA ran out of memory at train_batch_size={config['train_batch_size']}. Lower it, "
                        f"e.g. 'python train.py train_batch_size={max(1, config['train_batch_size'] // 2)}'; "
                        f"the run resumes from its last checkpoint.") from None
    finally:
        bar.close()
    elapsed = time.time() - t0
    if world > 1:
        check_ranks_in_sync(model, world, main_process)
    if main_process:
        writer.close()
        peak, peak_kind = peak_memory_mib(device)
        summary = {'steps': step - step0, 'seconds': elapsed, 'steps_per_s': (step - step0) / max(elapsed, 1e-9),
                   'action_targets_per_s': (step - step0) * config['train_batch_size'] * world
                   * train_sampler.targets_per_window() / max(elapsed, 1e-9),
                   'peak_mib': peak, 'peak_kind': peak_kind,
                   'device': str(device), 'world_size': world, 'final_test': last_test}
        atomic_write_text(out / TRAIN_SUMMARY, json.dumps(summary, indent=2))
        print(f"Finished {step} steps in {elapsed:.1f} s ({summary['steps_per_s']:.1f} steps/s); "
              f"test acc_action {summary['final_test']['acc_action']:.3f}. Next: python evaluate.py {out}")
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    run_main(main)
