"""Train the AD transformer on PPO learning histories: python train.py [--config config/model/ad_dr_compressed.yaml]
[--cpu | --quick] [KEY=VALUE ...]. Re-running resumes an unfinished run; a finished run is left as it is."""
import argparse
import json
import time

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from compressed_ad import build, context_modes
from compressed_ad.config_schema import (CPU_CONFIG, RESUMABLE_KEYS, add_config_args, base_config, finalize_config,
                                         format_config, get_config, presets_of)
from compressed_ad.dataset import load_samplers
from compressed_ad.model import training
from compressed_ad.run_files import (CONFIG_CHANGES, TRAIN_SUMMARY, check_run_dir, checkpoints, load_checkpoint,
                                     record_config_changes, run_dir, run_finished, save_checkpoint, write_run_config)
from compressed_ad.utils import (UserError, atomic_write_text, parse_args, peak_memory_mib, reset_peak_memory, run_main,
                                 seconds_to_text)


def read_config(args):
    config = base_config(args.env)  # config/env/darkroom.yaml, then config/algorithm/ppo_darkroom.yaml
    config.update(get_config('./config/model/ad_dr.yaml'))  # the model config: edit this line or use --config
    if args.config is not None:
        config.update(get_config(args.config))
    return finalize_config(config, presets_of(args), args.overrides)


CPU_ADVICE_SECONDS = 3600  # above this estimated training time on a CPU, suggest the CPU setting


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
    mode = context_modes.mode_of(config)  # resolved once (read_config has checked it) and passed down
    rank, world, device = training.setup_distributed(config)
    out = run_dir(config, mode)
    changes = check_run_dir(out, config)
    if run_finished(out, config):
        if rank == 0:
            print(f"Run '{out}' is already finished (checkpoint at step {checkpoints(out)[-1][0]} of "
                  f"{config['train_timesteps']}); nothing to do. Evaluate it with 'python evaluate.py {out}'.")
        return 0

    run = Run(config, mode, out, rank, world, device)
    run.resume(changes)
    run.announce()
    run.train()
    run.finish()
    training.teardown_distributed(world)
    return 0


class Run:
    """One training run (one process of it under torchrun): data, model, optimiser, random streams, whole-run
    progress, logging. ``main`` drives it: resume, announce, train, finish."""

    def __init__(self, config, mode, out, rank: int, world: int, device):
        self.config, self.mode, self.out, self.rank, self.world, self.device = config, mode, out, rank, world, device
        self.main_process = rank == 0
        self.train_sampler, test_sampler, _ = load_samplers(config, device, mode)
        self.state = build.training_state(config, self.train_sampler, device, rank, world, mode)
        self.model, self.optimizer, self.scheduler = self.state.model, self.state.optimizer, self.state.scheduler
        self.gen, self.batches = self.state.generator, self.state.batches  # this rank's training batches
        test_gen = torch.Generator(device=device)  # the same held-out batches at every test evaluation
        test_gen.manual_seed(config['seed'] + 12345)
        self.test_batches = test_sampler.held_out_batches(config['test_batch_size'], config['test_n_batches'],
                                                          test_gen)
        self.step = 0
        # whole-run figures of the segments before this one (a run resumed from a checkpoint)
        self.before = {'seconds': 0.0, 'action_targets': 0, 'peak_mib': 0.0, 'segments': 0, 'complete': True}
        self.elapsed: float | None = None  # this segment's training seconds, once its loop has ended
        self.last_test: dict = {}
        self.writer = None

    def resume(self, changes: dict) -> None:
        """Continue from the newest checkpoint, if any, exactly as the run would have gone on."""
        done = checkpoints(self.out)
        if done:
            ckpt = load_checkpoint(done[-1][1])
            states = rank_rng_states(ckpt)
            if len(states) != self.world:
                raise UserError(f"Run '{self.out}' was trained by {len(states)} process(es) and is resumed by "
                                f"{self.world}: each process draws its own batches, so the run could not continue "
                                f"as it would have. Resume it with the same number of processes (torchrun "
                                f"--nproc_per_node {len(states)}, or plain python for 1), or train a new run (e.g. "
                                f"runs_dir=...).")
            self.model.load_state_dict(ckpt['model'])
            self.optimizer.load_state_dict(ckpt['optimizer'])
            self.scheduler.load_state_dict(ckpt['scheduler'])
            self.step = ckpt['step']
            # checkpoints written before 'progress' existed: the earlier segments' time is unknown
            self.before = ckpt.get('progress', dict(self.before, complete=False))
            restore_rng(states[self.rank], self.gen, self.device)
            self.batches.load_state(states[self.rank].get('batches'))
            if self.main_process:
                print(f"Resuming '{self.out}' from step {self.step}.")
        else:
            self.batches.start()
        if changes and self.main_process:
            shown = ', '.join(f'{k} {old} -> {new}' for k, (old, new) in changes.items())
            record_config_changes(self.out, self.step, changes)
            print(f"Changed on resume at step {self.step}: {shown} (allowed for {', '.join(sorted(RESUMABLE_KEYS))}; "
                  f"recorded in {self.out / CONFIG_CHANGES}).")

    def announce(self) -> None:
        """Main process: the run directory, its config, TensorBoard, and what is about to be trained."""
        if not self.main_process:
            return
        config, sampler = self.config, self.train_sampler
        self.out.mkdir(parents=True, exist_ok=True)
        write_run_config(self.out, config)
        self.writer = SummaryWriter(str(self.out), purge_step=self.step if self.step else None)
        n_params = sum(p.numel() for p in self.model.parameters())
        share = sampler.batch_share
        windows = (f"windows of {sampler.window_len} tokens, {sampler.targets_per_window() * share} action targets "
                   f"each" + (f" (one counts for {share} of train_batch_size)" if share > 1 else ''))
        print(f"Training {self.mode.name} AD ({n_params / 1e6:.2f}M parameters) on {self.device} "
              f"x{self.world}: {sampler.n_seq} training streams, {windows} -> {self.out}")
        if self.device.type == 'cpu':
            warn_cpu_time(training.estimate_step_seconds(self.model, sampler, config, self.device),
                          CPU_CONFIG in config.sources.values(),
                          config['train_timesteps'] - self.step)

    def train(self) -> None:
        """Optimizer steps up to ``train_timesteps``: train/* every summary_interval, test/* every eval_interval,
        a checkpoint every ckpt_interval and at the end."""
        config, total = self.config, self.config['train_timesteps']
        if config['compile'] and self.main_process:
            print(f"compile=true: the first step compiles the model with torch.compile on {self.device} (tens of "
                  f"seconds on a CPU; its time counts in the run's seconds).")
        self.model.train()
        bar = tqdm(total=total, initial=self.step, desc='train', unit='step', disable=not self.main_process,
                   mininterval=1.0)
        self.t0, self.step0 = time.time(), self.step
        self.targets_per_step = config['train_batch_size'] * self.world * self.train_sampler.targets_per_window()
        reset_peak_memory(self.device)
        try:
            while self.step < total:
                log_now = (self.step + 1) % config['summary_interval'] == 0 or self.step + 1 == total
                losses = self.state.step(with_metrics=log_now)
                self.step += 1
                bar.update(1)
                if log_now and self.main_process:
                    self.log_train(losses, bar)
                if (self.step % config['eval_interval'] == 0 or self.step == total) and self.main_process:
                    self.log_test()
                if self.step % config['ckpt_interval'] == 0 or self.step == total:
                    self.write_checkpoint()
        except torch.cuda.OutOfMemoryError:
            smaller = max(1, config['train_batch_size'] // 2)
            raise UserError(f"CUDA ran out of memory at train_batch_size={config['train_batch_size']}. Run the same "
                            f"command again with train_batch_size={smaller} added: the run resumes from its last "
                            f"checkpoint with the smaller batch, and the change is recorded in "
                            f"{self.out / CONFIG_CHANGES}.") from None
        except torch._dynamo.exc.BackendCompilerFailed as exc:  # e.g. no working C++ compiler for inductor
            reason = str(exc).strip().splitlines()[0]
            raise UserError(f"compile=true: torch.compile could not compile the model here ({reason}). Run the same "
                            f"command with compile=false (the default): the run resumes from its last checkpoint, "
                            f"and eager steps train the same model within rounding.") from None
        finally:
            bar.close()
        self.elapsed = time.time() - self.t0

    def log_train(self, losses: dict, bar) -> None:
        values = {k: float(v.detach()) for k, v in losses.items()}  # the only host sync, every summary_interval
        for k, v in values.items():
            self.writer.add_scalar(f'train/{k}', v, self.step)
        self.writer.add_scalar('train/lr', self.scheduler.get_last_lr()[0], self.step)
        bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['acc_action']:.3f}")

    def log_test(self) -> None:
        """The held-out tasks' histories: test/* scalars."""
        self.last_test = training.evaluate_batches(self.model, self.test_batches, self.config)
        for k, v in self.last_test.items():
            if k != 'loss':
                self.writer.add_scalar(f'test/{k}', v, self.step)

    def progress(self) -> dict:
        """Whole-run figures up to now: every earlier segment (from the checkpoint resumed) plus this one."""
        peak, peak_kind = peak_memory_mib(self.device)
        # the segment's clock stops with its training loop, so the summary (written after the logs are closed)
        # counts the same seconds as its last_segment
        seconds = self.elapsed if self.elapsed is not None else time.time() - self.t0
        return {'seconds': self.before['seconds'] + seconds,
                'action_targets': self.before['action_targets'] + (self.step - self.step0) * self.targets_per_step,
                'peak_mib': max(self.before['peak_mib'], peak), 'peak_kind': peak_kind,
                'segments': self.before['segments'] + 1, 'complete': self.before['complete']}

    def write_checkpoint(self) -> None:
        """Every rank's random streams and batch state (memory mode: its rows' walks and carried memory),
        gathered; the main process writes them with the model and optimiser."""
        mine = {'torch': torch.get_rng_state(), 'sampler': self.gen.get_state(),
                'cuda': torch.cuda.get_rng_state(self.device) if self.device.type == 'cuda' else None,
                'batches': self.batches.state()}
        states = training.gather_from_ranks(mine, self.world)
        if self.main_process:
            save_checkpoint(self.out, self.step, {
                'model': self.model.state_dict(), 'optimizer': self.optimizer.state_dict(),
                'scheduler': self.scheduler.state_dict(), 'step': self.step, 'config': dict(self.config),
                'rng': {'world_size': self.world, 'ranks': states}, 'progress': self.progress()})

    def finish(self) -> None:
        """Check the replicas agree (torchrun); main process: close the logs and write train_summary.json."""
        if self.world > 1 and not training.ranks_in_sync(self.model, self.world):
            raise RuntimeError('DDP replicas diverged: parameters differ between ranks')
        if not self.main_process:
            return
        if self.world > 1:
            print(f'DDP: parameters identical on all {self.world} ranks.')
        self.writer.close()
        whole = self.progress()
        # whole-run figures (every segment of a resumed run; time lost after a checkpoint before a stop is not
        # counted, as those steps were trained again), then this segment's own
        summary = {'steps': self.step, 'seconds': whole['seconds'],
                   'steps_per_s': self.step / max(whole['seconds'], 1e-9),
                   'action_targets_per_s': whole['action_targets'] / max(whole['seconds'], 1e-9),
                   'peak_mib': whole['peak_mib'], 'peak_kind': whole['peak_kind'], 'segments': whole['segments'],
                   'whole_run_timed': whole['complete'],
                   'last_segment': {'first_step': self.step0, 'steps': self.step - self.step0,
                                    'seconds': self.elapsed},
                   'device': str(self.device), 'world_size': self.world, 'final_test': self.last_test}
        atomic_write_text(self.out / TRAIN_SUMMARY, json.dumps(summary, indent=2))
        segments = '' if whole['segments'] == 1 else f", {whole['segments']} segments"
        print(f"Finished {self.step} steps in {summary['seconds']:.1f} s of training ({summary['steps_per_s']:.1f} "
              f"steps/s{segments}); test acc_action {summary['final_test']['acc_action']:.3f}. Next: python "
              f"evaluate.py {self.out}")


def warn_cpu_time(step_seconds: float, cpu_setting: bool, steps_left: int) -> None:
    """On a CPU, say before the first step how long the run will take, and what to run instead when it is long
    (``cpu_setting``: the --cpu preset is applied already)."""
    total = step_seconds * steps_left
    print(f"On this CPU a step should take about {step_seconds:.2f} s: {steps_left} steps in about "
          f"{seconds_to_text(total)}.")
    if total > CPU_ADVICE_SECONDS and cpu_setting:
        print("That is longer than the --cpu setting itself takes (about 10 minutes on 2 cores): the overrides or "
              "the environment make it so. Stopped (Ctrl-C), it resumes from its last checkpoint.")
    elif total > CPU_ADVICE_SECONDS:
        print("This setting is sized for a GPU. On a CPU, stop it (Ctrl-C; it resumes from its last checkpoint "
              "if you come back to it) and run 'python train.py --cpu' (with --config as before): a model and "
              "schedule for 2 CPU cores that learns in context in about 10 minutes.")


if __name__ == '__main__':
    run_main(main)
