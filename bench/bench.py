"""Throughput and memory of every context mode (standard, compressed, memory, sliding), side by side, in one command.

    python -m bench.bench                                   # every mode on cuda if present, else cpu
    python -m bench.bench --device cpu --json bench_cpu.json
    python -m bench.bench --batch 512                       # the equal-batch rows at 512 sequences
    python -m bench.bench --quick --device cpu              # tiny smoke run (seconds)
    python -m bench.bench --collect [--quick]               # PPO collection throughput instead
    python -m bench.bench tf_n_embd=256 tf_n_layer=8        # KEY=VALUE overrides apply to every mode
    python -m bench.bench --device cpu --env darkkeytodoor  # Dark Key-to-Door's contexts and regions
    python -m bench.bench --device cpu --compare-compile    # each mode compiled against eager, with compile times

Sizes suit the device: on CUDA the default (GPU-sized) configs; on a CPU the --cpu setting (config/cpu.yaml),
unless --full asks for the default configs there too (each such CPU row takes minutes). Rows: every registered
context mode (``context_modes.MODES``): standard (config/model/ad_dr.yaml), compressed
(config/model/ad_dr_compressed.yaml), compressed with memory (config/model/ad_dr_compressed_memory.yaml) and
sliding-window standard (config/model/ad_dr_sliding.yaml), each at its own ``train_batch_size`` (config 'default') and all at
the common ``--batch`` (config 'equal_batch', default: the standard config's ``train_batch_size``); a row that
would repeat another (same mode, same batch) is measured once. After each row the remaining time is estimated from the rows so far. Per row:

* train step time: the mean over ``--steps`` timed steps after ``--warmup`` untimed ones. One step is
  the whole training step of train.py: sample a batch of windows (``dataset.WindowSampler``) from
  device-resident synthetic histories (16 goals x 8 streams x 13 regions, from
  ``synthetic_histories.py``), forward + ``model.ad_losses`` (bf16 autocast on CUDA), backward, grad clip,
  AdamW (``model.training.make_optimizer``) and the LR scheduler, built as train.py builds them
  (``build.training_state``). The timed loop has no host syncs; on CUDA
  the clock is read after ``torch.cuda.synchronize``. ``compile=true`` compiles the model as train.py does, on any
  device (give it enough ``--warmup`` steps to compile).
* action targets/s = batch * targets per window / step time (the useful training signal per second). The
  batch counts windows of ``train_batch_size``; a sliding window of ``n_transit + sliding_tail`` transitions
  counts for ``(n_transit + sliding_tail) / n_transit`` of them (4/3 at its config), so its row shows more tokens
  per window than the windows it is counted in.
* peak memory of training: on CUDA ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` ('cuda_max_allocated', in-process); on CPU every row runs in a fresh
  subprocess and reports the growth of its ``ru_maxrss`` from the start of the row (after imports and
  data creation) to the end of training ('cpu_max_rss').
* evaluation steps/s: ``model.rollout.InContextRollout`` (KV cache, fixed compression trigger) on
  8 goals x 16 streams; one step = one env step of all 128 rollouts, timed over ``--eval-steps``
  after the context has reached its steady state (standard and sliding: the window full and sliding after
  ``n_transit`` steps; compressed: after the first region has closed). Transitions/s = steps/s * 128.

``compile=true`` also times the evaluation on the compiled static rollout (``model.static_rollout``: each kind of
step one compiled graph; on CUDA captured as a CUDA graph), after every kind of its step has compiled.

``--compare-compile`` adds to each row its training step compiled against eager (two copies of the row's model,
each with its own optimiser and batches) and its rollout step, the compiled static rollout against the eager
``InContextRollout``, each pair timed in turns in the same process (``COMPARE_ROUNDS`` rounds of ``--steps`` /
``--eval-steps`` over ``COMPARE_ROUNDS`` steps each, after ``--warmup`` untimed training steps of each), so both see
the same load; the compile time is the first compiled step(s) less as many compiled steps. It depends on
inductor's on-disk cache: the first run of a setting compiles cold, later ones mostly load.

Then the ratios compressed / standard, memory / compressed, sliding / standard and compressed / sliding at each
batch size they share. ``--json FILE``
writes the rows.

``--collect`` measures PPO collection instead: ``algorithm.ppo.learn_task`` on 2 tasks with the PPO
config (one torch thread) and reports seconds per goal per core.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch

from compressed_ad.build import TrainingState, training_state
from compressed_ad.config_schema import DEFAULT_ENV, load_config
from compressed_ad.context_modes import mode_of, model_configs
from compressed_ad.dataset import WindowSampler
from compressed_ad.env import ENVS, task_indices, task_split, tasks_of
from compressed_ad.model.rollout import InContextRollout, rollout_on_tasks
from compressed_ad.synthetic_histories import synthetic_streams
from compressed_ad.utils import (PROJECT_ROOT, UserError, atomic_write_text, peak_memory_mib, pick_device,
                                 process_max_rss_mib, reset_peak_memory, run_main, seconds_to_text)

MODES = model_configs()  # {mode name: model config file}
COMPARED = (('compressed', 'standard'), ('memory', 'compressed'), ('sliding', 'standard'),
            ('compressed', 'sliding'))  # (mode, against)
# synthetic history sizes: (tasks, streams per task, regions per stream)
DATA = (16, 8, 13)
QUICK_DATA = (4, 4, 6)
# --quick: a tiny model and short regions (applied on top of config/quick.yaml)
QUICK_OVERRIDES = ['tf_n_embd=32', 'tf_n_layer=2', 'tf_n_head=2', 'tf_dim_feedforward=64', 'compress_interval=16']
QUICK_N_TRANSIT = {'standard': 48, 'compressed': 32, 'memory': 32, 'sliding': 48}  # three / two regions, as in
#                                                                                  the full configs
EVAL_TASKS, EVAL_STREAMS = 8, 16
COLLECT_TASKS = 2
DEFAULT_COUNTS = {'steps': (20, 3), 'warmup': (5, 1), 'eval_steps': (200, 20)}  # (full, --quick)


# ----------------------------------------------------------------------------- configuration
def mode_config(mode: str, presets: list[str], overrides: list[str], batch: int | None = None,
                env: str = DEFAULT_ENV):
    """The config of one mode in environment ``env`` (+ the setting's presets, the bench's quick sizes, the user's
    overrides and the row's batch size)."""
    extra = []
    if 'quick' in presets:
        extra = QUICK_OVERRIDES + [f'n_transit={QUICK_N_TRANSIT[mode]}', f'sliding_tail={QUICK_N_TRANSIT[mode] // 3}']
    if batch is not None:
        overrides = list(overrides) + [f'train_batch_size={batch}']
    return load_config(MODES[mode], presets, extra + list(overrides), env)


def row_specs(args) -> list[dict]:
    """Each mode at its own batch size, then both at the common one, without repeating a (mode, batch) row."""
    modes = args.modes or list(MODES)
    defaults = {mode: mode_config(mode, args.presets, args.overrides, env=args.env)['train_batch_size'] for mode in MODES}
    equal = args.batch or defaults['standard']
    common = {'steps': args.steps, 'warmup': args.warmup, 'eval_steps': args.eval_steps, 'presets': args.presets,
              'overrides': args.overrides, 'device': args.device, 'env': args.env,
              'compare_compile': args.compare_compile}
    specs = [dict(common, mode=m, config='default', batch=defaults[m]) for m in modes]
    specs += [dict(common, mode=m, config='equal_batch', batch=equal) for m in modes if defaults[m] != equal]
    for spec in specs:
        mode_config(spec['mode'], args.presets, args.overrides, spec['batch'], args.env)  # config errors now, not in a child
    return specs


# ----------------------------------------------------------------------------- data
def make_sampler(config, device, quick: bool) -> WindowSampler:
    """Training windows from synthetic histories of training tasks, resident on ``device``."""
    n_train_tasks, n_stream, n_regions = QUICK_DATA if quick else DATA
    train_idx, _ = task_split(config)
    region_len = config['compress_interval']
    streams = synthetic_streams(config, tasks_of(config, train_idx[:n_train_tasks]), n_stream, n_regions * region_len,
                                region_len)
    return WindowSampler(streams, config, device)


# ----------------------------------------------------------------------------- measurements
def sync(device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def training_step_fn(state: TrainingState) -> Callable[[], object]:
    """A function that runs one end-to-end training step of ``state`` (sample, forward, backward, clip, AdamW, LR
    schedule; ``build.training_state``, compiled when ``compile`` is set), from new batches, as train.py does."""
    state.model.train()
    state.batches.start()  # as a new run's (memory: walking rows)
    return state.step


def seconds_per_call(fn: Callable[[], object], device, calls: int) -> float:
    """Mean wall seconds of ``calls`` calls of ``fn`` (on CUDA, up to the end of the kernels they launched)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls


def time_training(state: TrainingState, device, steps: int, warmup: int) -> float:
    """Mean seconds per end-to-end training step (``training_step_fn``) after ``warmup`` untimed ones."""
    step = training_step_fn(state)
    for _ in range(warmup):
        step()
    return seconds_per_call(step, device, steps)


COMPARE_ROUNDS = 4  # --compare-compile: eager and compiled timed in turn, this many times


def compiled_against_eager(eager_fn, compiled_fn, device, steps: int, warmup: int) -> dict:
    """Time ``compiled_fn`` against ``eager_fn`` in one process: the compiled function's first call (which
    compiles), ``warmup`` untimed calls of each, then ``COMPARE_ROUNDS`` rounds of ``steps / COMPARE_ROUNDS`` calls
    of each in turn, so that both see the same load. Returns {'eager_s', 'compiled_s' (seconds per call),
    'compile_s' (the first call less a compiled call)}."""
    first = seconds_per_call(compiled_fn, device, 1)
    for _ in range(warmup):
        eager_fn()
        compiled_fn()
    per_round = max(1, steps // COMPARE_ROUNDS)
    eager, compiled = [], []
    for _ in range(COMPARE_ROUNDS):
        eager.append(seconds_per_call(eager_fn, device, per_round))
        compiled.append(seconds_per_call(compiled_fn, device, per_round))
    eager_s, compiled_s = float(np.mean(eager)), float(np.mean(compiled))
    return {'eager_s': eager_s, 'compiled_s': compiled_s, 'compile_s': max(0.0, first - compiled_s)}


def compare_training(config, sampler, device, steps: int, warmup: int) -> dict:
    """Compiled against eager training steps (``compiled_against_eager``) of two copies of one model (built from
    one seed)."""
    eager = training_step_fn(training_state({**config, 'compile': False}, sampler, device))
    compiled = training_step_fn(training_state({**config, 'compile': True}, sampler, device))
    timed = compiled_against_eager(eager, compiled, device, steps, warmup)
    return {'compare_train_eager_ms': timed['eager_s'] * 1e3, 'compare_train_compiled_ms': timed['compiled_s'] * 1e3,
            'compare_train_speedup': timed['eager_s'] / timed['compiled_s'], 'train_compile_s': timed['compile_s']}


def eval_warmup_steps(config) -> int:
    """Env steps until the rollout context is in its steady state (see the module docstring)."""
    return config['compress_interval'] if mode_of(config).regions else config['n_transit']


def steady_rollout(model, config, device, compiled: bool = False) -> InContextRollout:
    """A cached in-context rollout on EVAL_TASKS held-out tasks (repeated when there are fewer) x EVAL_STREAMS, with
    the fixed compression trigger, run until its context is in its steady state. ``compiled``: the compiled static
    rollout (``model.static_rollout``; on CUDA captured as CUDA graphs), run one step further, so that every kind of
    its step has compiled (standard mode's first slide comes right after the window has filled)."""
    _, test_idx = task_split(config)
    tasks = tasks_of(config, np.resize(test_idx, EVAL_TASKS))
    rollout = rollout_on_tasks(model, config, tasks, EVAL_STREAMS, device, compress_trigger='fixed', static=compiled,
                               compile=compiled)
    for _ in range(eval_warmup_steps(config) + compiled):
        rollout.step()
    return rollout


def time_evaluation(model, config, device, steps: int) -> tuple[float, int]:
    """(env steps per second, rows) of ``steady_rollout``, compiled when ``compile`` is set."""
    rollout = steady_rollout(model, config, device, compiled=config['compile'])
    return 1 / seconds_per_call(rollout.step, device, steps), rollout.B


def compare_evaluation(model, config, device, steps: int) -> dict:
    """Rollout steps of the compiled static rollout against the eager one (``compiled_against_eager``): compiling
    is the static rollout's way to its steady state less as many compiled steps."""
    eager = steady_rollout(model, config, device)
    start = time.perf_counter()
    compiled = steady_rollout(model, config, device, compiled=True)
    sync(device)
    warm_s = time.perf_counter() - start
    warm_steps = eval_warmup_steps(config) + 1
    timed = compiled_against_eager(eager.step, compiled.step, device, steps, warmup=0)
    return {'compare_eval_eager_steps_per_s': 1 / timed['eager_s'],
            'compare_eval_compiled_steps_per_s': 1 / timed['compiled_s'],
            'compare_eval_speedup': timed['eager_s'] / timed['compiled_s'],
            'eval_compile_s': max(0.0, warm_s - warm_steps * timed['compiled_s'])}


def measure_row(spec: dict) -> dict:
    """One row, in this process: training (step time, peak memory), then evaluation."""
    device = torch.device(spec['device'])
    config = mode_config(spec['mode'], spec['presets'], spec['overrides'], spec['batch'], spec.get('env', DEFAULT_ENV))
    sampler = make_sampler(config, device, 'quick' in spec['presets'])
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        start_mib = torch.cuda.memory_allocated(device) / 2 ** 20
    else:
        start_mib = process_max_rss_mib()
    reset_peak_memory(device)
    state = training_state(config, sampler, device)
    step_s = time_training(state, device, spec['steps'], spec['warmup'])
    peak_abs, measure = peak_memory_mib(device)
    peak = peak_abs
    if device.type != 'cuda':  # a process's max RSS includes the interpreter and imports: report the growth
        peak, measure = peak_abs - start_mib, 'cpu_max_rss'
    eval_steps_per_s, eval_rows = time_evaluation(state.model, config, device, spec['eval_steps'])
    targets = sampler.targets_per_window()
    compared = {}
    if spec.get('compare_compile'):
        compared = compare_training(config, sampler, device, spec['steps'], spec['warmup'])
        compared |= compare_evaluation(state.model, config, device, spec['eval_steps'])
    return compared | {
        'mode': spec['mode'], 'config': spec['config'], 'batch': spec['batch'],
        'tokens': sampler.window_len, 'targets_per_window': targets,
        'step_ms': step_s * 1e3, 'steps_per_s': 1 / step_s, 'action_targets_per_s': spec['batch'] * targets / step_s,
        'peak_mib': peak, 'peak_measure': measure, 'mem_start_mib': start_mib, 'mem_peak_abs_mib': peak_abs,
        'eval_steps_per_s': eval_steps_per_s, 'eval_transitions_per_s': eval_steps_per_s * eval_rows,
        'eval_rows': eval_rows, 'eval_steps': spec['eval_steps'], 'eval_warmup_steps': eval_warmup_steps(config),
        'steps': spec['steps'], 'warmup': spec['warmup'],
        'n_params': sum(p.numel() for p in state.model.parameters()),
        'device': str(device), 'device_name': device_name(device), 'threads': torch.get_num_threads(),
        'presets': spec['presets'], 'overrides': list(spec['overrides']), 'env': spec.get('env', DEFAULT_ENV),
    }


def measure_row_in_subprocess(spec: dict) -> dict:
    """CPU rows: a fresh process per row, so one row's peak RSS cannot hide the next one's."""
    cmd = [sys.executable, '-m', 'bench.bench', '--row', json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)  # stderr passes through
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {spec['mode']}/{spec['config']} failed (exit code {proc.returncode}); "
                           f"see its error above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- provenance
def device_name(device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else 'unknown'


def provenance() -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {'torch': torch.__version__, 'date': now.isoformat(timespec='seconds'), 'commit': git_commit(),
            'cpu_count': os.cpu_count()}


# ----------------------------------------------------------------------------- report
COLUMNS = [('mode', 'mode', '{}'), ('config', 'config', '{}'), ('batch', 'batch', '{}'), ('tokens', 'tokens', '{}'),
           ('targets_per_window', 'targets/win', '{}'), ('step_ms', 'step ms', '{:.1f}'),
           ('steps_per_s', 'steps/s', '{:.2f}'), ('action_targets_per_s', 'targets/s', '{:,.0f}'),
           ('peak_mib', 'peak MiB', '{:,.0f}'), ('eval_steps_per_s', 'eval steps/s', '{:.1f}'),
           ('eval_transitions_per_s', 'eval trans/s', '{:,.0f}')]


def format_table(rows: list[dict]) -> str:
    head = [title for _, title, _ in COLUMNS]
    body = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]

    def line(cells):  # text columns left-aligned, numbers right-aligned
        return '  '.join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    r = rows[0]
    title = (f"device {r['device']} ({r['device_name']}, {r['threads']} threads), torch {r['torch']}, commit "
             f"{r['commit']}; {r['steps']} timed steps after {r['warmup']} warmup; peak memory = {r['peak_measure']}"
             + (' growth over the row' if r['peak_measure'] == 'cpu_max_rss' else '')
             + f"; eval over {r['eval_steps']} steps of {r['eval_rows']} rollouts")
    return '\n'.join([title, line(head), line(['-' * w for w in widths])] + [line(b) for b in body])


COMPILED_COLUMNS = [('mode', 'mode', '{}'), ('batch', 'batch', '{}'),
                    ('compare_train_eager_ms', 'train: eager step ms', '{:.1f}'),
                    ('compare_train_compiled_ms', 'compiled step ms', '{:.1f}'),
                    ('compare_train_speedup', 'compiled speed', '{:.2f}x'), ('train_compile_s', 'compile s', '{:.1f}'),
                    ('compare_eval_eager_steps_per_s', 'eval: eager steps/s', '{:.1f}'),
                    ('compare_eval_compiled_steps_per_s', 'compiled static steps/s', '{:.1f}'),
                    ('compare_eval_speedup', 'compiled speed', '{:.2f}x'), ('eval_compile_s', 'compile s', '{:.1f}')]


def format_compiled(rows: list[dict]) -> str:
    """--compare-compile: per row, the training step and the rollout step eager and compiled (timed in turns in
    one process), the compiled step's speed relative to eager's and its compile time."""
    lines = ['compiled (torch.compile) against eager, timed in turns in one process; compiled speed = eager step '
             'time / compiled step time; compile s: with inductor\'s cache as it was (cold: set '
             'TORCHINDUCTOR_FORCE_DISABLE_CACHES=1):']
    for r in rows:
        lines.append('  ' + ', '.join(f'{title} {fmt.format(r[key])}' for key, title, fmt in COMPILED_COLUMNS
                                      if key in r))
    return '\n'.join(lines)


def ratio(a: float, b: float) -> str:
    return f'{a / b:.2f}x' if b > 0 else 'n/a'


def format_ratios(rows: list[dict]) -> str:
    """Each pair of ``COMPARED`` (mode / against), at every batch size both were measured at, then at their
    default batches when those differ."""
    lines = []
    for mode, against in COMPARED:
        pairs = []
        for batch in sorted({r['batch'] for r in rows}):
            at = {r['mode']: r for r in rows if r['batch'] == batch}
            if mode in at and against in at:
                pairs.append((f'equal batch {batch}', at[against], at[mode]))
        default = {r['mode']: r for r in rows if r['config'] == 'default'}
        if mode in default and against in default and default[mode]['batch'] != default[against]['batch']:
            pairs.append((f"default batches ({default[against]['batch']} / {default[mode]['batch']})",
                          default[against], default[mode]))
        for label, s, c in pairs:
            lines.append(f"{label}: {mode} / {against}: {ratio(c['steps_per_s'], s['steps_per_s'])} steps/s, "
                         f"{ratio(c['peak_mib'], s['peak_mib'])} peak memory, "
                         f"{ratio(c['action_targets_per_s'], s['action_targets_per_s'])} action targets/s, "
                         f"{ratio(c['eval_steps_per_s'], s['eval_steps_per_s'])} eval steps/s")
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- PPO collection
def measure_collect(args) -> dict:
    """Seconds per task of ``learn_task`` on one core (single torch thread), over COLLECT_TASKS tasks."""
    from compressed_ad.algorithm.ppo import learn_task, rollouts_needed, set_single_thread
    config = load_config(presets=[p for p in args.presets if p == 'quick'], overrides=args.overrides)
    set_single_thread()
    train_idx, _ = task_split(config)
    seconds = []
    for idx, task in zip(train_idx[:COLLECT_TASKS], tasks_of(config, train_idx[:COLLECT_TASKS])):
        start = time.perf_counter()
        learn_task(task, config, seed=config['alg_seed'] + idx, tensorboard_log=None)
        seconds.append(time.perf_counter() - start)
    per_task = float(np.mean(seconds))
    transitions = rollouts_needed(config) * config['n_steps'] * config['n_stream']
    cores = config['n_process'] or os.cpu_count() or 1
    return {'mode': 'ppo_collect', 'goals': COLLECT_TASKS, 'seconds': seconds, 'seconds_per_goal_per_core': per_task,
            'transitions_per_goal': transitions, 'env_steps_per_s_per_core': transitions / per_task,
            'n_stream': config['n_stream'], 'n_steps': config['n_steps'], 'ppo_n_epochs': config['ppo_n_epochs'],
            'ppo_batch_size': config['ppo_batch_size'], 'cores': cores,
            'estimated_full_collect_s': per_task * len(task_indices(config)) / cores,
            'device': 'cpu', 'device_name': device_name(torch.device('cpu')), 'threads': 1, 'presets': args.presets,
            **provenance()}


def format_collect(r: dict) -> str:
    steps = r['transitions_per_goal'] // r['n_stream']
    return (f"PPO collection ({r['goals']} goals, {r['n_stream']} streams x {steps} steps, one torch thread, "
            f"torch {r['torch']}, commit {r['commit']}):\n"
            f"  {r['seconds_per_goal_per_core']:.1f} s per goal per core "
            f"({r['env_steps_per_s_per_core']:,.0f} env steps/s per core; goals took "
            f"{', '.join(f'{s:.1f}' for s in r['seconds'])} s)\n"
            f"  estimated full collect.py on {r['cores']} core(s): {r['estimated_full_collect_s'] / 60:.1f} min")


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto = cuda when available, else cpu')
    parser.add_argument('--json', metavar='FILE', help='write the rows as a JSON list')
    parser.add_argument('--steps', type=int, help='timed training steps per row (default 20; --quick 3)')
    parser.add_argument('--warmup', type=int, help='untimed training steps first (default 5; --quick 1)')
    parser.add_argument('--batch', type=int, help="equal batch size for every mode (default: the standard "
                                                  "config's train_batch_size)")
    parser.add_argument('--eval-steps', type=int, help='timed in-context env steps per row (default 200; --quick 20)')
    parser.add_argument('--collect', action='store_true', help='measure PPO collection (seconds per goal per core) '
                                                               'instead of training and evaluation')
    parser.add_argument('--quick', action='store_true', help='tiny sizes for a smoke run (config/quick.yaml + a '
                                                             'smaller model, short regions, few steps)')
    parser.add_argument('--cpu', action='store_true', help='the --cpu setting (config/cpu.yaml); the default on a CPU')
    parser.add_argument('--full', action='store_true', help='the default (GPU-sized) configs, also on a CPU')
    parser.add_argument('--compare-compile', action='store_true',
                        help='also time each mode compiled (torch.compile) against eager in the same process, in '
                             'turns, with the compile time')
    parser.add_argument('--row', help=argparse.SUPPRESS)  # internal: measure one row (JSON spec) and print it
    parser.add_argument('--modes', type=lambda text: [m for m in text.split(',') if m], metavar='MODE,MODE,...',
                        help=f"measure these modes only (default: all of {', '.join(MODES)})")
    parser.add_argument('--env', default=DEFAULT_ENV, choices=sorted(ENVS),
                        help="the environment whose configs (and config/env/NAME/ overlays) the rows use")
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE', help='override any config key in every mode')
    args = parser.parse_intermixed_args(argv)
    for name, (full, quick) in DEFAULT_COUNTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick + args.cpu + args.full > 1:
        raise UserError('--quick, --cpu and --full choose the sizes to measure; pass at most one.')
    for name in ('steps', 'eval_steps', 'batch'):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    if args.warmup < 0:
        raise UserError(f'--warmup must be >= 0, got {args.warmup}.')
    if args.modes is not None and (not args.modes or set(args.modes) - set(MODES)):
        raise UserError(f"--modes {','.join(args.modes)}: choose among {', '.join(MODES)} (e.g. --modes "
                        f"sliding,compressed).")
    return args


def choose_presets(args) -> list[str]:
    """The setting to measure: --quick / --cpu / --full as asked, else the default on CUDA and --cpu on a CPU."""
    if args.quick:
        return ['quick']
    if args.cpu or (args.device == 'cpu' and not args.full):
        return ['cpu']
    return []


def write_json(path: str, rows: list[dict]) -> None:
    atomic_write_text(path, json.dumps(rows, indent=2) + '\n')
    print(f'Wrote {len(rows)} row(s) to {path}')


def main():
    args = parse_args()
    if args.row:  # child process of a CPU run: one row as one JSON line on stdout
        print(json.dumps(measure_row(json.loads(args.row))))
        return 0
    args.device = pick_device(args.device).type
    args.presets = choose_presets(args)
    if args.collect:
        row = measure_collect(args)
        print(format_collect(row))
        if args.json:
            write_json(args.json, [row])
        return 0
    specs = row_specs(args)
    meta = provenance()
    rows = []
    print(f"Measuring {len(specs)} rows on {args.device} with the "
          f"{' '.join('--' + p for p in args.presets) or 'default'} setting.", file=sys.stderr, flush=True)
    for i, spec in enumerate(specs):
        print(f"measuring {spec['mode']:>10} {spec['config']:<11} batch {spec['batch']} on {args.device} ...",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            row = measure_row(spec) if args.device == 'cuda' else measure_row_in_subprocess(spec)
        except torch.cuda.OutOfMemoryError:
            raise UserError(f"CUDA ran out of memory in the {spec['mode']} {spec['config']} row at batch "
                            f"{spec['batch']}. Lower --batch (or train_batch_size=...).") from None
        rows.append(dict(row, row_seconds=time.perf_counter() - start, **meta))
        left = len(specs) - i - 1
        if left:
            mean_row = np.mean([r['row_seconds'] for r in rows])
            print(f"  row took {rows[-1]['row_seconds']:.0f} s; about {seconds_to_text(mean_row * left)} for the "
                  f"{left} remaining row(s)", file=sys.stderr, flush=True)
    print(format_table(rows))
    print()
    print(format_ratios(rows))
    if args.compare_compile:
        print()
        print(format_compiled(rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == '__main__':
    run_main(main)
