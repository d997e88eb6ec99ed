"""The GPU path in one command: collect, benchmark, profile, train every mode, evaluate each, compare.

    python -m bench.device_run --out OUT_DIR                    # on a GPU machine (about 8 minutes on one H100)
    python -m bench.device_run --out /tmp/device_run --quick    # the same stages at the quick setting, on a CPU
    python -m bench.device_run --out OUT_DIR --keytodoor        # Dark Key-to-Door's protocol instead (below)
    python -m bench.device_run --out /tmp/device_run --tiny     # every stage in seconds on a CPU (what the tests run)

Stages, each timed, in order of what matters most should the time run out: collect the default dataset on every
core; ``python -m bench.bench --json`` (all modes side by side at the default batch); ``python -m
bench.profile_step`` (wall time against kernel time of a training and a rollout step); for each mode, train at the
default model, with one schedule for every mode: the largest step budget that fits ``--train-seconds`` for the slowest
mode (the bench's measured steps/s of that mode times the budget), and evaluate at the default 8 goals x 16 rollouts
x 500 episodes; the comparison of ``example_compressed_training.py``, given the same schedule (it compares only runs
trained with the config it is asked for); then the benchmark again with ``compile=true`` at ``--compiled-batch``
(its training steps compiled, its rollout steps those of the compiled static rollout, on CUDA captured as CUDA
graphs); last, ``train.py`` with ``compile=true`` end to end, compressed AD on the same schedule (into
``--work``/runs_compiled).
A stage that fails is recorded and the next one runs (the later stages that need its output fail in turn), so one
run reports everything that works. ``--budget-seconds`` bounds the whole command: a stage is cut off when the
budget is spent and the remaining ones are skipped. Each stage runs in a process group of its own, and a stage cut
off (or interrupted by Ctrl-C) is ended with every script it started (the example's train.py and evaluate.py
runs). ``--tiny`` runs every stage at tiny sizes (``TINY_DARK_ROOM``, ``TINY_KEYTODOOR``) on top of ``--quick``, in a
few minutes on 2 CPU cores (the compiled benchmark measures standard AD alone): a rehearsal of the stages, whose
numbers mean nothing. Everything measured goes into
OUT_DIR, rewritten after every stage: results.json (stage wall times and outcomes, training and evaluation
summaries, the projected wall time of a full 50k-step run per mode, the compiled training run's summary),
bench.json, bench_compiled.json, profile.json, comparison.md and comparison.png.

``--keytodoor`` runs Dark Key-to-Door's protocol at the scale RESULTS.md measured to reach the target, too slow for
2 CPU cores: ``--cpu``, which on Key-to-Door trains the ``--cpu`` model (0.1M parameters, batch 32) for 18,000 steps
(``KEYTODOOR_SCALE``, config/env/darkkeytodoor/cpu.yaml). It collects the default Key-to-Door dataset on every core (unless ``--work`` already holds a
dataset), then ``example_compressed_training.py`` trains standard AD's context (the sliding mode) and compressed AD
on 2 seeds x 3 splits, ``--jobs`` runs at a time, evaluates them on the held-out tasks and compares them. It writes
results.json (stage wall times and outcomes, every run's training and evaluation summary), comparison.md,
comparison.json and comparison.png. Not measured on a GPU yet: with no ``--budget-seconds`` it runs to the end, and
given the same ``--work`` again it reuses the dataset and the finished runs and resumes the unfinished ones.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from math import inf
from pathlib import Path

from compressed_ad.config_schema import EVAL_KEYS, load_config
from compressed_ad.context_modes import model_configs
from compressed_ad.run_files import EVAL_SUMMARY, TRAIN_SUMMARY, run_dir
from compressed_ad.utils import PROJECT_ROOT, UserError, atomic_write_text, read_json, run_main

MODES = model_configs()  # {mode name: model config file}
FULL_RUN_STEPS = 50_000
# Dark Key-to-Door's protocol: standard AD's context (the sliding mode, whose rolling-cache evaluation is what makes
# 200 episodes affordable) against compressed AD, 2 training seeds x 3 task splits each
KEYTODOOR = ['--env', 'darkkeytodoor', '--context-modes', 'sliding,compressed', '--seeds', '0,1',
             '--splits', '0,1,2']
KEYTODOOR_QUICK = ['--env', 'darkkeytodoor', '--context-modes', 'sliding,compressed', '--seeds', '0',
                   '--splits', '0,1']
# the scale that reached 1.84 of 2 over the last 10% of 200 episodes in one sliding run on 2 CPU cores (RESULTS.md):
# --cpu on Key-to-Door, the --cpu model trained for 18,000 steps (config/env/darkkeytodoor/cpu.yaml)
KEYTODOOR_SCALE = ['--cpu']
MIN_TRAIN_STEPS = 100  # the Dark Room runs' step budget, at least
# --tiny: sizes on top of --quick that keep every stage to seconds on a CPU, the same in every mode (12 tasks, short
# PPO histories, regions of 8 or 20 steps, a one-layer model, a few evaluation episodes)
_TINY_MODEL = ['tf_n_embd=16', 'tf_n_layer=1', 'tf_n_head=1', 'tf_dim_feedforward=32', 'train_batch_size=8',
               'test_batch_size=8', 'test_n_batches=1', 'summary_interval=2', 'memory_unroll=2', 'eval_episodes=2',
               'eval_streams_per_goal=2']
TINY_DARK_ROOM = ['n_tasks=12', 'n_stream=2', 'n_steps=8', 'train_source_timesteps=48', 'ppo_batch_size=8',
                  'ppo_n_epochs=1', 'compress_interval=8', 'n_transit=16', 'sliding_tail=16', *_TINY_MODEL]
TINY_KEYTODOOR = ['n_tasks=12', 'train_env_ratio=0.75', 'n_stream=2', 'n_steps=20', 'train_source_timesteps=80',
                  'ppo_batch_size=20', 'ppo_n_epochs=1', 'compress_interval=20', 'n_transit=40', 'sliding_tail=40',
                  *_TINY_MODEL, 'train_timesteps=12', 'num_warmup_steps=2', 'eval_interval=6', 'ckpt_interval=6']
TINY_BENCH_COUNTS = ['--steps', '1', '--warmup', '1', '--eval-steps', '2']
TINY_COMPILED_BATCH = 16
# --tiny: the benchmark stage at --quick's default batch (16 in every mode), so it times each mode once: the
# equal-batch rows would repeat the default ones and are left out
TINY_BENCH_BATCH = ['--batch', '16']
TINY_COMPILED_MODE = 'standard'  # --tiny: the one mode the compiled benchmark stage measures
COMPILED_RUNS = 'runs_compiled'  # --work's folder for the compile=true training run


def end_process_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """End every process of the group ``proc`` leads (it was started with ``start_new_session``): SIGTERM, then
    SIGKILL to whatever is left after ``grace_s`` seconds. Processes that outlived the leader are still in its
    group, so they are reached too; a group already empty is left as it is."""
    def signal_group(sig) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except ProcessLookupError:  # no process of the group is left
            return False

    if not signal_group(signal.SIGTERM):
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        if proc.poll() is None:
            time.sleep(0.1)
            continue
        if not signal_group(0):  # signal 0 only asks whether any member is left
            return
        time.sleep(0.1)
    signal_group(signal.SIGKILL)
    proc.wait()


MIN_STAGE_S = 5  # a stage starts only with this many seconds of the budget left (no stage does anything in less)


class Stages:
    """Runs project commands one after another within a time budget; records each one's wall time and outcome."""

    def __init__(self, budget_s: float):
        self.deadline = time.time() + budget_s
        self.timings: dict[str, float] = {}
        self.outcomes: dict[str, str] = {}

    def run(self, title: str, args: list[str]) -> bool:
        """``python ARGS`` in the project root; True when it exited 0 in time. A failure does not stop the run."""
        left = self.deadline - time.time()
        if left < MIN_STAGE_S:
            self.outcomes[title] = 'skipped: budget spent'
            print(f"\n=== {title}: skipped, the time budget is spent", flush=True)
            return False
        print(f"\n=== {title}: python {' '.join(args)}", flush=True)
        start = time.time()
        # a process group of its own: a stage's scripts start scripts of their own (the example runs train.py and
        # evaluate.py, --jobs of them at once), and cutting the stage off must end all of them, not only its first
        proc = subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED='1'))
        try:
            code = proc.wait(timeout=None if left == inf else left)
            self.outcomes[title] = 'ok' if code == 0 else f'failed: exit code {code}'
        except subprocess.TimeoutExpired:
            self.outcomes[title] = 'cut off: budget spent'
        finally:  # also on Ctrl-C of this command: nothing a stage started outlives it
            end_process_group(proc)
        self.timings[title] = round(time.time() - start, 1)
        print(f"=== {title}: {self.outcomes[title]} after {self.timings[title]} s", flush=True)
        return self.outcomes[title] == 'ok'


def gather_results(stages: Stages, budget: dict, steps_per_s: dict, presets: list[str], paths: list[str],
                   work: Path) -> dict:
    """What has been measured so far (missing parts are absent, not guessed)."""
    results = {'timings_s': stages.timings, 'outcomes': stages.outcomes, 'train_steps': budget,
               'bench_default_steps_per_s': steps_per_s, 'modes': {}}
    for mode, model_config in MODES.items():
        run = run_dir(load_config(model_config, presets, paths))
        train, evaluation = read_json(run / TRAIN_SUMMARY), read_json(run / EVAL_SUMMARY)
        entry = {}
        if train:
            entry['train'] = train
            entry['projected_full_run_s'] = FULL_RUN_STEPS / train['steps_per_s']
        if evaluation:
            entry['eval'] = {k: evaluation.get(k) for k in ('mean_return', 'mean_return_last_10pct',
                                                            'mean_return_per_goal', 'oracle_mean', 'seconds',
                                                            'episodes', 'streams_per_goal', 'device')}
        results['modes'][mode] = entry
    compiled = run_dir(load_config(MODES['compressed'], presets, paths + [f'runs_dir={work / COMPILED_RUNS}']))
    if summary := read_json(compiled / TRAIN_SUMMARY):
        results['compressed_compiled_train'] = summary
    return results


def eval_overrides(overrides: list[str]) -> list[str]:
    """The evaluation keys among ``overrides`` (evaluate.py takes these, and the example passes them on to it)."""
    return [o for o in overrides if o.split('=', 1)[0] in EVAL_KEYS]


def one_schedule(args, configs: dict, steps_per_s: dict) -> tuple[int, list[str]]:
    """(steps, schedule overrides): one training schedule for every mode, so that their runs compare and the
    comparison stage can ask for the config they were trained with. At the quick setting its own
    ``train_timesteps``; otherwise the most steps the slowest mode makes in ``--train-seconds`` at the rates the
    bench stage measured (10 steps/s, a guess recorded in results.json, for a mode it did not measure), at least
    ``MIN_TRAIN_STEPS``. The warm-up is shortened to a tenth of the run, the cosine decay spans it."""
    if args.quick and not args.tiny:
        steps = min(c['train_timesteps'] for c in configs.values())
    else:
        slowest = min(steps_per_s.get(mode, 10.0) for mode in configs)
        steps = max(MIN_TRAIN_STEPS, int(args.train_seconds * slowest))
    warmup = min(min(c['num_warmup_steps'] for c in configs.values()), steps // 10)
    return steps, [f'train_timesteps={steps}', f'num_warmup_steps={warmup}', f'eval_interval={max(1, steps // 5)}',
                   f'ckpt_interval={steps}']


def run_dark_room(args, stages: Stages, out: Path, work: Path, paths: list[str]) -> None:
    preset = ['--quick'] if args.quick else []
    presets = ['quick'] if args.quick else []
    sizes = (TINY_DARK_ROOM if args.tiny else []) + paths  # every project script's overrides
    budget: dict[str, int] = {}
    steps_per_s: dict[str, float] = {}

    def save():
        results = gather_results(stages, budget, steps_per_s, presets, sizes, work)
        atomic_write_text(out / 'results.json', json.dumps(results, indent=2))

    stages.run('collect', ['collect.py', *preset, '--force', 'n_process=0', *sizes])
    save()
    size = ['--quick'] if args.quick else ['--full']
    counts = TINY_BENCH_COUNTS + TINY_BENCH_BATCH if args.tiny else []
    if stages.run('bench', ['-m', 'bench.bench', '--json', str(out / 'bench.json'), *size, *counts, *paths]):
        rows = read_json(out / 'bench.json') or []
        steps_per_s.update({r['mode']: r['steps_per_s'] for r in rows if r['config'] == 'default'})
    save()
    stages.run('profile', ['-m', 'bench.profile_step', '--json', str(out / 'profile.json'), *preset, *paths])
    save()
    configs = {mode: load_config(model_config, presets, sizes) for mode, model_config in MODES.items()}
    steps, schedule = one_schedule(args, configs, steps_per_s)
    for mode, model_config in MODES.items():
        budget[mode] = steps
        if stages.run(f'train {mode}', ['train.py', '--config', model_config, *preset, *sizes, *schedule]):
            stages.run(f'evaluate {mode}', ['evaluate.py', str(run_dir(configs[mode])), *preset,
                                            *eval_overrides(sizes)])
        save()
    # the runs' own schedule: the example refuses a finished run trained with another config than the one asked for
    if stages.run('compare', ['example_compressed_training.py', '--mode', 'eval', '--context-modes', ','.join(MODES),
                              *preset, *sizes, *schedule]):
        shutil.copy(work / 'runs' / 'comparison.md', out / 'comparison.md')
    save()
    batch = (TINY_COMPILED_BATCH if args.tiny else 64) if args.quick else args.compiled_batch
    counts = (TINY_BENCH_COUNTS if args.tiny else ['--warmup', '3', '--eval-steps', '20']) if args.quick else \
        ['--warmup', '12', '--eval-steps', '100']
    modes = ['--modes', TINY_COMPILED_MODE] if args.tiny else []  # a CPU compiles each mode for a minute or more
    stages.run('bench compiled', ['-m', 'bench.bench', '--json', str(out / 'bench_compiled.json'), *size, '--batch',
                                  str(batch), *counts, *modes, 'compile=true', f'train_batch_size={batch}', *paths])
    save()
    # train.py end to end with compile=true: compressed AD at its default config, on the same schedule, elsewhere
    stages.run('train compressed compile=true', ['train.py', '--config', MODES['compressed'], *preset, *sizes,
                                                 *schedule, 'compile=true', f'runs_dir={work / COMPILED_RUNS}'])
    save()


def keytodoor_runs(work: Path) -> dict:
    """{run directory name: its training and evaluation summaries} of the Key-to-Door runs written so far."""
    runs = {}
    for summary in sorted((work / 'runs').glob(f'*/{TRAIN_SUMMARY}')):
        evaluation = read_json(summary.parent / EVAL_SUMMARY) or {}
        runs[summary.parent.name] = {'train': read_json(summary),
                                     'eval': {k: evaluation.get(k) for k in ('mean_return', 'mean_return_last_10pct',
                                                                             'oracle_mean', 'seconds', 'device')}}
    return runs


def run_keytodoor(args, stages: Stages, out: Path, work: Path, paths: list[str]) -> None:
    protocol = KEYTODOOR_QUICK if args.quick else KEYTODOOR
    preset = ['--quick'] if args.quick else KEYTODOOR_SCALE
    sizes = (TINY_KEYTODOOR if args.tiny else []) + paths  # every project script's overrides

    def save():
        results = {'timings_s': stages.timings, 'outcomes': stages.outcomes,
                   'protocol': protocol + preset + (TINY_KEYTODOOR if args.tiny else []),
                   'runs': keytodoor_runs(work), 'comparison': read_json(work / 'runs' / 'comparison.json')}
        atomic_write_text(out / 'results.json', json.dumps(results, indent=2, default=str))

    # the dataset is the default one (the --cpu preset changes only the model and schedule)
    collect_preset = ['--quick'] if args.quick else []
    if not list((work / 'datasets').glob('*.hdf5')):
        stages.run('collect keytodoor', ['collect.py', '--env', 'darkkeytodoor', *collect_preset, 'n_process=0',
                                         *sizes])
    save()
    if stages.run('keytodoor protocol', ['example_compressed_training.py', '--mode', 'all', *protocol, *preset,
                                         '--jobs', str(args.jobs), *sizes]):
        for name in ('comparison.md', 'comparison.json'):
            shutil.copy(work / 'runs' / name, out / name)
    save()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='folder for everything measured (created)')
    # the stages measured on one H100 with three modes (docs/gpu): collect 73 s, bench 23 s, profile 36 s, train
    # 42-63 s and evaluate 37-48 s per mode at 40 s of training, compare 7 s, compiled bench 74 s; with the fourth
    # (sliding) mode, 20 s of training per mode keeps the whole run near 8 minutes
    parser.add_argument('--train-seconds', type=float, default=20.0,
                        help='training budget per mode, in seconds (default 20): what the slowest mode trains for, '
                             'every mode training as many steps')
    parser.add_argument('--budget-seconds', type=float,
                        help='wall-time bound of the whole command (default 540; none with --keytodoor)')
    parser.add_argument('--compiled-batch', type=int, default=2048,
                        help='batch of the compile=true benchmark stage (default 2048)')
    parser.add_argument('--quick', action='store_true', help='the quick setting (config/quick.yaml), for a CPU')
    parser.add_argument('--tiny', action='store_true',
                        help='a tiny model, dataset and schedule on top of --quick, so that every stage runs end to '
                             'end in seconds on a CPU (a test of the stages; the numbers mean nothing)')
    parser.add_argument('--work', help='folder for the dataset and runs (default: a new temporary folder)')
    parser.add_argument('--keytodoor', action='store_true',
                        help="Dark Key-to-Door's protocol instead of the Dark Room stages")
    parser.add_argument('--jobs', type=int, default=12,
                        help='with --keytodoor: runs trained and evaluated at a time (default 12: all of them)')
    args = parser.parse_args()
    args.quick = args.quick or args.tiny
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give the number of runs to train at a time, 1 or more.")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix='device_run.')).resolve()  # apart from the user's data
    paths = [f'datasets_dir={work / "datasets"}', f'runs_dir={work / "runs"}', f'figs_dir={out}',
             f'ppo_log_dir={work / "ppo"}']
    budget_s = args.budget_seconds or (inf if args.keytodoor else 540.0)
    stages = Stages(budget_s)
    (run_keytodoor if args.keytodoor else run_dark_room)(args, stages, out, work, paths)
    print(f"\nWrote {out / 'results.json'}; stage outcomes: {stages.outcomes}; wall times: {stages.timings}")
    return 0 if all(v == 'ok' for v in stages.outcomes.values()) else 1


if __name__ == '__main__':
    run_main(main)
