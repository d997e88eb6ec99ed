"""Evaluate trained AD runs in context on the held-out tasks (Dark Room goals, or Key-to-Door keys and doors).

    python evaluate.py                                  # the most recently trained run under runs/
    python evaluate.py runs/AD-darkroom-compressed-seed0 runs/AD-darkroom-seed0
    python evaluate.py RUN_DIR --greedy eval_episodes=100 eval_compress_trigger=model

Every held-out task x ``eval_streams_per_goal`` rollouts run as one batch on one device (CUDA when present, unless
``device=...`` is given) for ``eval_episodes`` episodes. With the run's own evaluation settings (those in its
config.yaml, actions sampled) the results go into the run directory: eval_result.npy (n_tasks * streams,
episodes) task-major episode returns, eval_summary.json, in_context_curve.png and eval/return_mean in
TensorBoard; the run's own setting also means the kind of device the run was trained on (train_summary.json).
Any other setting (--greedy, eval_* or device overrides) writes the same files into a sub-directory named after
the setting, e.g. RUN_DIR/eval-greedy-100ep-16x-seed0-cpu/, so results of different settings never mix. Keys the
run fixes (config_schema.RUN_KEYS: the data, the task split, the model, its training, bf16) cannot be overridden
with another value; keys that change no number (config_schema.IO_KEYS) may be.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from compressed_ad.config_schema import (EVAL_KEYS, PRESETS, RUN_KEYS, Config, add_config_args, apply_env_overlays,
                                         format_config, get_config, load_config, parse_overrides, presets_of)
from compressed_ad.context_modes import mode_of
from compressed_ad.env import env_spec, oracle_returns, task_split, tasks_of
from compressed_ad.history_file import ppo_source_curve
from compressed_ad.model.rollout import rollout_on_tasks
from compressed_ad.plots import plot_in_context_curves, std_band
from compressed_ad.run_files import (CONFIG_FILE, EVAL_CURVE, EVAL_EVENTS_SUFFIX, EVAL_RESULT, EVAL_SUMMARY,
                                     eval_output_dir, eval_setting, find_latest_run, last_tenth, load_run_model,
                                     read_run_config)
from compressed_ad.utils import UserError, atomic_path, atomic_write_text, parse_args, pick_device, run_main

# what the trained run fixes (its data, task split, model and training), the set train.py's resume check uses too;
# what an evaluation chooses is config_schema.EVAL_KEYS. Both come from the scopes of config_schema.SCHEMA.
FIXED_KEYS = RUN_KEYS
AUTO_DEVICE_SOURCE = 'evaluate.py (CUDA when present; override with device=...)'


def eval_config(run: Path, presets: list[str], overrides: list[str]) -> Config:
    """The run's saved config, with the device chosen here and evaluation keys from presets and overrides.

    Keys the run's config.yaml lacks (written by an earlier version) take their defaults. Presets apply only their
    evaluation keys; an override of a key the run fixes (``FIXED_KEYS``) is refused unless it repeats the run's own
    value; other keys change no number and are taken as given.
    """
    config = read_run_config(run)
    config.set('device', 'auto', AUTO_DEVICE_SOURCE)  # where the run was trained says nothing about this machine
    for name in presets:
        preset = get_config(PRESETS[name])
        apply_env_overlays(preset, config['env'])
        for key in EVAL_KEYS & set(preset):
            config.set(key, preset[key], PRESETS[name])
    probe = Config()
    parse_overrides(probe, overrides)  # checks each key and value
    for key in probe:
        if key in FIXED_KEYS and probe[key] != config[key]:
            saved, asked = _as_typed(config[key]), _as_typed(probe[key])
            raise UserError(
                f"'{key}' is fixed by the trained run '{run}': it was trained with {key}={saved} "
                f"({config.source(key)}), and {probe.source(key)} asks for {key}={asked}. It decides the run's data, "
                f"task split, model or training, so evaluating another value would not evaluate this run. To "
                f"evaluate {key}={asked}, train a new run with it ('python train.py ... {key}={asked}', then "
                f"'python evaluate.py' on that run); evaluation settings, which may be overridden, are --greedy and "
                f"{', '.join(sorted(EVAL_KEYS))}.")
        config.set(key, probe[key], probe.source(key))
    return config


def _as_typed(value) -> str:
    """A config value as it is written in a KEY=VALUE override (YAML)."""
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith('\n...') else text


def write_eval_events(out: Path, returns: np.ndarray) -> None:
    """eval/return_mean per episode, in an event file of its own that replaces the previous evaluation's
    (so re-evaluating never leaves duplicate points)."""
    old = list(out.glob(f'*{EVAL_EVENTS_SUFFIX}'))
    with SummaryWriter(str(out), filename_suffix=EVAL_EVENTS_SUFFIX) as writer:
        for i, value in enumerate(returns.mean(0)):
            writer.add_scalar('eval/return_mean', float(value), i + 1)
    for file in old:
        file.unlink(missing_ok=True)


def evaluate_run(run: Path, args, config: Config | None = None) -> dict:
    """Evaluate one run with ``config`` (by default ``eval_config`` of the command line) and write its results."""
    if config is None:
        config = eval_config(run, presets_of(args), args.overrides)
    if args.print_config:
        print(f'# {run}\n{format_config(config)}')
        return {}
    device = pick_device(config['device'])
    mode = mode_of(config)  # resolved once: the run's mode (its config.yaml)
    model, step = load_run_model(run, config, device, mode)
    _, test_idx = task_split(config)
    tasks = tasks_of(config, test_idx)  # (G, task_dim): the held-out tasks (Dark Room: goals)
    S, E = config['eval_streams_per_goal'], config['eval_episodes']
    setting = eval_setting(config, args.greedy, device, mode)
    out = eval_output_dir(run, setting)
    print(f"Evaluating '{run}' (checkpoint step {step}, {mode.name} AD) on {len(tasks)} held-out tasks x {S} "
          f"rollouts x {E} episodes on {device}" + (', greedy' if args.greedy else ''))
    rollout = rollout_on_tasks(model, config, tasks, S, device, greedy=args.greedy)  # task-major (G * S) rows
    bar = tqdm(total=E, desc='episodes', unit='ep', mininterval=1.0)
    running = []

    def on_episode(i, returns):
        running.append(returns.mean())
        if (i + 1) % 10 == 0 or i + 1 == E:
            bar.set_postfix(mean_return=f'{float(torch.stack(running).mean()):.2f}')
        bar.update(1)

    start = time.time()
    try:
        returns = rollout.run(E, on_episode).cpu().numpy()  # (G * S, E)
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"CUDA ran out of memory with {len(tasks)} tasks x eval_streams_per_goal={S} rollouts. "
                        f"Lower it, e.g. 'python evaluate.py {run} eval_streams_per_goal={max(1, S // 2)}'.") from None
    seconds = time.time() - start
    bar.close()

    oracle = oracle_returns(config, test_idx)
    per_task = returns.reshape(len(tasks), S, E).mean((1, 2))
    summary = {
        'run': str(run), 'checkpoint_step': step, 'mode': mode.name, 'device': str(device), 'setting': setting,
        'greedy': args.greedy,
        'compress_trigger': config['eval_compress_trigger'] if mode.regions else None,
        'episodes': E, 'streams_per_goal': S, 'seconds': seconds,
        'env': config['env'], 'goals': [[int(x) for x in task] for task in tasks], 'env_indices': [int(i) for i in test_idx],
        'mean_return_per_goal': [float(x) for x in per_task], 'oracle_return_per_goal': oracle,
        'mean_return': float(returns.mean()), 'std_return': float(returns.std()),
        'mean_return_last_10pct': float(last_tenth(returns).mean()),
        'oracle_mean': float(np.mean(oracle)),
        'max_context_tokens': rollout.max_ctx_len,
    }
    with atomic_path(out / EVAL_RESULT, suffix='.npy') as tmp:
        with open(tmp, 'wb') as fh:
            np.save(fh, returns.astype(np.float32))
    atomic_write_text(out / EVAL_SUMMARY, json.dumps(summary, indent=2))
    ppo = ppo_source_curve(config, test_idx)
    plot_in_context_curves(out / EVAL_CURVE, {f'{mode.name} AD (in context)': std_band(returns)},
                           summary['oracle_mean'], ppo, f'{run.name}: in-context learning on held-out tasks')
    write_eval_events(out, returns)

    names = [env_spec(config).describe(task) for task in tasks]
    width = max(8, *map(len, names))
    print(f"{env_spec(config).noun[:-1]:>{width}} {'mean return':>12} {'oracle':>7}")  # 'goal' or 'task'
    for name, r, o in zip(names, per_task, oracle):
        print(f"{name:>{width}} {r:12.2f} {o:7d}")
    print(f"{'all':>{width}} {summary['mean_return']:8.2f} ± {summary['std_return']:.2f} {summary['oracle_mean']:7.2f}"
          f"   ({E * config['horizon']} steps in {seconds:.1f} s; last 10% of episodes: "
          f"{summary['mean_return_last_10pct']:.2f})")
    print(f"Wrote {out / EVAL_RESULT}, {EVAL_SUMMARY} and {EVAL_CURVE}")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--greedy', action='store_true', help='take the most likely action instead of sampling')
    add_config_args(parser, overrides=False)  # --env: where to look for the latest run; a run knows its own
    parser.add_argument('items', nargs='*', metavar='RUN_DIR or KEY=VALUE')
    args = parse_args(parser)
    args.overrides = [a for a in args.items if '=' in a]
    runs = [Path(a) for a in args.items if '=' not in a]
    if not runs:
        base = load_config(presets=presets_of(args), env=args.env)
        for item in args.overrides:
            if item.startswith('runs_dir='):
                parse_overrides(base, [item])
        runs = [find_latest_run(Path(base['runs_dir']))]
        print(f"No run given: evaluating the most recently trained run, '{runs[0]}'.")
    for run in runs:
        if not (run / CONFIG_FILE).exists():
            raise UserError(f"'{run}' is not a run directory (no config.yaml). Pass a directory written by "
                            f"train.py, e.g. runs/AD-darkroom-seed0.")
    configs = [eval_config(run, presets_of(args), args.overrides) for run in runs]  # every refusal before any work
    for run, config in zip(runs, configs):
        evaluate_run(run, args, config)


if __name__ == '__main__':
    run_main(main)
