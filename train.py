"""Train the AD transformer on PPO learning histories, standard or compressed-context AD. Re-running resumes an
unfinished run from its newest checkpoint; a finished run is left as it is.
    python train.py [--config config/model/ad_dr_compressed.yaml] [--cpu | --quick] [KEY=VALUE ...]"""
import argparse
import json
import time

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from compressed_ad.config_schema import (RUN_KEYS, add_config_args, base_config, finalize_config, format_config,
                                         get_config, presets_of)
from compressed_ad.dataset import load_samplers
from compressed_ad.model import build_model, training
from compressed_ad.run_files import (CONFIG_CHANGES, TRAIN_SUMMARY, checkpoints, read_run_config, record_config_changes,
                                     run_dir, run_finished, save_checkpoint, write_run_config)
from compressed_ad.utils import (UserError, atomic_write_text, parse_args, peak_memory_mib, reset_peak_memory, run_main,
                                 seconds_to_text)


def read_config(args):
    config = base_config(args.env)  # config/env/darkroom.yaml, then config/algorithm/ppo_darkroom.yaml
    config.update(get_config('./config/model/ad_dr.yaml'))  # the model config: edit this line or use --config
    if args.config is not None:
        config.update(get_config(args.config))
    return finalize_config(config, presets_of(args), args.overrides)


# keys a resumed run may change on purpose, e.g. a smaller batch after running out of memory; each change is
# announced and recorded in the run directory. Every other key of config_schema.RUN_KEYS must keep its value.
RESUMABLE_KEYS = {'train_batch_size'}
assert RESUMABLE_KEYS <= RUN_KEYS
CPU_ADVICE_SECONDS = 3600  # above this estimated training time on a CPU, suggest the CPU setting


def check_run_dir(out, config) -> dict:
    """Compare ``config`` with the run already in ``out``: refuse a different run; return the resumable changes
    as {key: (old, new)}."""
    saved = read_run_config(out)
    if not saved:
        return {}
    diff = [k for k in config if k in RUN_KEYS - RESUMABLE_KEYS and saved.get(k) != config[k]]
    if diff:
        shown = ', '.join(f'{k}: {saved.get(k)!r} -> {config[k]!r}' for k in diff[:5])
        raise UserError(f"Run directory '{out}' already holds a run with a different config ({shown}). "
                        f"Delete it to start over, or set runs_dir to train elsewhere.")
    return {k: (saved[k], config[k]) for k in RESUMABLE_KEYS if k in saved and saved[k] != config[k]}


def load_checkpoint(path, device) -> dict:
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
        if not all(k in ckpt for k in ('model', 'optimizer', 'scheduler', 'step', 'rng')):
            raise KeyError('missing entries')
        return ckpt
    except Exception as exc:  # any unreadable checkpoint gets the same advice
        raise UserError(f"Checkpoint '{path}' cannot be read to resume ({type(exc).__name__}: {exc}). Delete it to "
                        f"resume from the previous checkpoint, or delete the run directory to start over.") from None


def rank_rng_states(ckpt: dict) -> list[dict]:
    """Each rank's random streams saved in a checkpoint: [{'torch', 'cuda', 'sampler'}] in rank order."""
    rng = ckpt['rng']
    if 'ranks' in rng:
        return rng['ranks']
    # checkpoints of earlier versions: rank 0's torch state and every rank's sampler state
    return [{'torch': rng['torch'], 'cuda': rng.get('cuda'), 'sampler': s} for s in rng['sampler']]


def restore_rng(state: dict, gen: torch.Generator, device) -> None:
    torch.set_rng_state(state['torch'])
    if device.type == 'cuda' and state.get('cuda') is not None:
        torch.cuda.set_rng_state(state['cuda'], device)
    gen.set_state(state['sampler'])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None, help='model config YAML (default: config/model/ad_dr.yaml)')
    add_config_args(parser)
    args = parse_args(parser)
    config = read_config(args)
    if args.print_config:
        print(format_config(config))
        return 0
    rank, world, device = training.setup_distributed(config)
    main_process = rank == 0
    out = run_dir(config)
    changes = check_run_dir(out, config)

    done = checkpoints(out)
    if run_finished(out, config):
        if main_process:
            print(f"Run '{out}' is already finished (checkpoint at step {done[-1][0]} of "
                  f"{config['train_timesteps']}); nothing to do. Evaluate it with 'python evaluate.py {out}'.")
        return 0

    train_sampler, test_sampler, _ = load_samplers(config, device)
    torch.manual_seed(config['seed'] + rank)
    model = build_model(config).to(device)
    optimizer = training.make_optimizer(model, config)
    scheduler = training.make_scheduler(optimizer, config)
    gen = torch.Generator(device=device)
    gen.manual_seed(config['seed'] * 1000 + rank)
    test_gen = torch.Generator(device=device)
    test_gen.manual_seed(config['seed'] + 12345)
    test_batches = [test_sampler.sample(config['test_batch_size'], test_gen) for _ in range(config['test_n_batches'])]

    step = 0
    before = {'seconds': 0.0, 'action_targets': 0, 'peak_mib': 0.0, 'segments': 0, 'complete': True}
    if done:
        ckpt = load_checkpoint(done[-1][1], device)
        states = rank_rng_states(ckpt)
        if len(states) != world:
            raise UserError(f"Run '{out}' was trained by {len(states)} process(es) and is resumed by {world}: each "
                            f"process draws its own batches, so the run could not continue as it would have. Resume "
                            f"it with the same number of processes (torchrun --nproc_per_node {len(states)}, or "
                            f"plain python for 1), or train a new run (e.g. runs_dir=...).")
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        step = ckpt['step']
        # checkpoints written before 'progress' existed: the earlier segments' time is unknown
        before = ckpt.get('progress', dict(before, complete=False))
        restore_rng(states[rank], gen, device)
        if main_process:
            print(f"Resuming '{out}' from step {step}.")
    if changes and main_process:
        shown = ', '.join(f'{k} {old} -> {new}' for k, (old, new) in changes.items())
        record_config_changes(out, step, changes)
        print(f"Changed on resume at step {step}: {shown} (allowed for {', '.join(sorted(RESUMABLE_KEYS))}; "
              f"recorded in {out / CONFIG_CHANGES}).")

    net = training.wrap_for_training(model, config, device, world)
    writer = None
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, config)
        writer = SummaryWriter(str(out), purge_step=step if step else None)
        n_params = sum(p.numel() for p in model.parameters())
        mode = 'compressed' if config['use_compressed_context'] else 'standard'
        print(f"Training {mode} AD ({n_params / 1e6:.2f}M parameters) on {device} x{world}: "
              f"{train_sampler.n_seq} training streams, windows of {train_sampler.window_len} tokens, "
              f"{train_sampler.targets_per_window()} action targets each -> {out}")
        if device.type == 'cpu':
            warn_cpu_time(training.estimate_step_seconds(model, train_sampler, config, device),
                          config['train_timesteps'] - step)

    def progress(at_step) -> dict:
        """Whole-run figures up to ``at_step``: every earlier segment (from the checkpoint resumed) plus this one."""
        peak, peak_kind = peak_memory_mib(device)
        return {'seconds': before['seconds'] + time.time() - t0,
                'action_targets': before['action_targets'] + (at_step - step0) * targets_per_step,
                'peak_mib': max(before['peak_mib'], peak), 'peak_kind': peak_kind,
                'segments': before['segments'] + 1, 'complete': before['complete']}

    def write_checkpoint(at_step):
        mine = {'torch': torch.get_rng_state(), 'sampler': gen.get_state(),
                'cuda': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None}
        states = training.gather_from_ranks(mine, world)
        if main_process:
            save_checkpoint(out, at_step, {
                'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
                'step': at_step, 'config': dict(config), 'rng': {'world_size': world, 'ranks': states},
                'progress': progress(at_step)})

    model.train()
    total = config['train_timesteps']
    last_test: dict = {}
    bar = tqdm(total=total, initial=step, desc='train', unit='step', disable=not main_process, mininterval=1.0)
    t0, step0 = time.time(), step
    targets_per_step = config['train_batch_size'] * world * train_sampler.targets_per_window()
    reset_peak_memory(device)
    try:
        while step < total:
            batch = train_sampler.sample(config['train_batch_size'], gen)
            log_now = (step + 1) % config['summary_interval'] == 0 or step + 1 == total
            losses = training.train_step(net, model, batch, optimizer, scheduler, config, with_metrics=log_now)
            step += 1
            bar.update(1)
            if log_now and main_process:
                values = {k: float(v.detach()) for k, v in losses.items()}
                for k, v in values.items():
                    writer.add_scalar(f'train/{k}', v, step)
                writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
                bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['acc_action']:.3f}")
            if (step % config['eval_interval'] == 0 or step == total) and main_process:
                last_test = training.evaluate_batches(model, test_batches, config)
                for k, v in last_test.items():
                    if k != 'loss':
                        writer.add_scalar(f'test/{k}', v, step)
            if step % config['ckpt_interval'] == 0 or step == total:
                write_checkpoint(step)
    except torch.cuda.OutOfMemoryError:
        smaller = max(1, config['train_batch_size'] // 2)
        raise UserError(f"CUDA ran out of memory at train_batch_size={config['train_batch_size']}. Run the same "
                        f"command again with train_batch_size={smaller} added: the run resumes from its last "
                        f"checkpoint with the smaller batch, and the change is recorded in {out / CONFIG_CHANGES}."
                        ) from None
    finally:
        bar.close()
    elapsed = time.time() - t0
    if world > 1 and not training.ranks_in_sync(model, world):
        raise RuntimeError('DDP replicas diverged: parameters differ between ranks')
    if main_process:
        if world > 1:
            print(f'DDP: parameters identical on all {world} ranks.')
        writer.close()
        whole = progress(step)
        # whole-run figures (every segment of a resumed run; time lost after a checkpoint before a stop is not
        # counted, as those steps were trained again), then this segment's own
        summary = {'steps': step, 'seconds': whole['seconds'], 'steps_per_s': step / max(whole['seconds'], 1e-9),
                   'action_targets_per_s': whole['action_targets'] / max(whole['seconds'], 1e-9),
                   'peak_mib': whole['peak_mib'], 'peak_kind': whole['peak_kind'], 'segments': whole['segments'],
                   'whole_run_timed': whole['complete'],
                   'last_segment': {'first_step': step0, 'steps': step - step0, 'seconds': elapsed},
                   'device': str(device), 'world_size': world, 'final_test': last_test}
        atomic_write_text(out / TRAIN_SUMMARY, json.dumps(summary, indent=2))
        print(f"Finished {step} steps in {summary['seconds']:.1f} s of training ({summary['steps_per_s']:.1f} "
              f"steps/s{'' if whole['segments'] == 1 else ', ' + str(whole['segments']) + ' segments'}); "
              f"test acc_action {summary['final_test']['acc_action']:.3f}. Next: python evaluate.py {out}")
    training.teardown_distributed(world)
    return 0


def warn_cpu_time(step_seconds: float, steps_left: int) -> None:
    """On a CPU, say before the first step how long the run will take, and what to run instead when it is long."""
    total = step_seconds * steps_left
    print(f"On this CPU a step should take about {step_seconds:.2f} s: {steps_left} steps in about "
          f"{seconds_to_text(total)}.")
    if total > CPU_ADVICE_SECONDS:
        print("This setting is sized for a GPU. On a CPU, stop it (Ctrl-C; it resumes from its last checkpoint "
              "if you come back to it) and run 'python train.py --cpu' (with --config as before): a model and "
              "schedule for 2 CPU cores that learns in context in about 10 minutes.")


if __name__ == '__main__':
    run_main(main)
