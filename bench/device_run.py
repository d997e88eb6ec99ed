"""The GPU path in one command: collect, benchmark, train both modes, evaluate both, compare.

    python -m bench.device_run --out OUT_DIR                    # on a GPU machine (about 8 minutes on one H100)
    python -m bench.device_run --out /tmp/device_run --quick    # the same stages at the quick setting, on a CPU

Stages, each timed: collect the default dataset on every core; ``python -m bench.bench --json`` (both modes
side by side, at their default and at an equal batch); train standard and compressed AD at the default model for
the largest step budget that fits ``--train-seconds`` each (the bench's measured steps/s of that mode at its
default batch, times the budget); evaluate both at the default 8 goals x 16 rollouts x 500 episodes; the
comparison of ``example_compressed_training.py``. Everything measured goes into OUT_DIR: results.json (stage wall
times, training and evaluation summaries, the projected wall time of a full 50k-step run per mode), bench.json,
comparison.md and comparison.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from config_schema import COMPRESSED_MODEL_CONFIG, MODEL_CONFIG, load_config
from run_files import EVAL_SUMMARY, TRAIN_SUMMARY, run_dir
from utils import PROJECT_ROOT, UserError, atomic_write_text, run_main

MODES = {'standard': MODEL_CONFIG, 'compressed': COMPRESSED_MODEL_CONFIG}
FULL_RUN_STEPS = 50_000


def stage(title: str, args: list[str], timings: dict) -> None:
    """Run one project command (``python ARGS``); record its wall time; stop everything if it fails."""
    print(f"\n=== {title}: python {' '.join(args)}", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    timings[title] = round(time.time() - start, 1)
    if proc.returncode != 0:
        raise UserError(f"stage '{title}' failed (exit code {proc.returncode}); see its output above.")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='folder for everything measured (created)')
    parser.add_argument('--train-seconds', type=float, default=120.0,
                        help='training budget per mode, in seconds (default 120)')
    parser.add_argument('--quick', action='store_true', help='the quick setting (config/quick.yaml), for a CPU')
    parser.add_argument('--work', help='folder for the dataset and runs (default: a new temporary folder)')
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix='device_run.')).resolve()  # apart from the user's data
    paths = [f'datasets_dir={work / "datasets"}', f'runs_dir={work / "runs"}', f'figs_dir={out}',
             f'ppo_log_dir={work / "ppo"}']
    preset = ['--quick'] if args.quick else []
    timings: dict[str, float] = {}

    stage('collect', ['collect.py', *preset, '--force', 'n_process=0', *paths], timings)
    bench = out / 'bench.json'
    stage('bench', ['-m', 'bench.bench', '--json', str(bench), *(['--quick'] if args.quick else ['--full']),
                    *paths], timings)
    rows = json.loads(bench.read_text())
    steps_per_s = {r['mode']: r['steps_per_s'] for r in rows if r['config'] == 'default'}
    presets = ['quick'] if args.quick else []
    budget = {}
    for mode, model_config in MODES.items():
        config = load_config(model_config, presets, paths)
        steps = config['train_timesteps'] if args.quick else max(100, int(args.train_seconds * steps_per_s[mode]))
        budget[mode] = steps
        schedule = [f'train_timesteps={steps}', f'num_warmup_steps={min(config["num_warmup_steps"], steps // 10)}',
                    f'eval_interval={max(1, steps // 5)}', f'ckpt_interval={steps}']
        stage(f'train {mode}', ['train.py', '--config', model_config, *preset, *paths, *schedule], timings)
        stage(f'evaluate {mode}', ['evaluate.py', str(run_dir(config)), *preset], timings)
    stage('compare', ['example_compressed_training.py', '--mode', 'eval', *preset, *paths], timings)

    results = {'timings_s': timings, 'train_steps': budget, 'bench_default_steps_per_s': steps_per_s, 'modes': {}}
    for mode, model_config in MODES.items():
        run = run_dir(load_config(model_config, presets, paths))
        train = json.loads((run / TRAIN_SUMMARY).read_text())
        evaluation = json.loads((run / EVAL_SUMMARY).read_text())
        results['modes'][mode] = {
            'train': train, 'eval': {k: evaluation[k] for k in ('mean_return', 'mean_return_last_10pct',
                                                                'mean_return_per_goal', 'oracle_mean', 'seconds',
                                                                'episodes', 'streams_per_goal', 'device')},
            'projected_full_run_s': FULL_RUN_STEPS / train['steps_per_s']}
    atomic_write_text(out / 'results.json', json.dumps(results, indent=2))
    shutil.copy(work / 'runs' / 'comparison.md', out / 'comparison.md')
    print(f"\nWrote {out / 'results.json'}, bench.json, comparison.md and comparison.png; stage wall times: {timings}")
    return 0


if __name__ == '__main__':
    run_main(main)
