"""The whole workflow in one command: collect, train both modes, evaluate both, compare.

    python example_compressed_training.py --mode all            # full scale (use a GPU for training)
    python example_compressed_training.py --mode all --quick    # tiny setting, a few minutes on 2 CPU cores
    python example_compressed_training.py --mode train runs_dir=/tmp/runs

Each stage runs the project's own scripts (collect.py, train.py, evaluate.py) as a user would; an
existing dataset, a finished run and an up-to-date evaluation are reused rather than recomputed.
``all`` ends with a comparison table (runs/comparison.md, with the wall time of each stage) and a figure
(figs/comparison.png).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from config_schema import COMPRESSED_MODEL_CONFIG, MODEL_CONFIG, add_config_args, load_config
from env import goal_split
from history_file import dataset_path, ppo_source_curve
from plots import plot_in_context_curves
from run_files import EVAL_RESULT, EVAL_SUMMARY, TRAIN_SUMMARY, checkpoints, run_dir, run_finished
from utils import PROJECT_ROOT, UserError, atomic_write_text, parse_args, run_main

MODES = {'standard': MODEL_CONFIG, 'compressed': COMPRESSED_MODEL_CONFIG}


def run_step(title: str, args: list[str], timings: dict) -> None:
    """Run one project script; record its wall time in ``timings[title]`` (seconds)."""
    print(f"\n=== {title}: python {' '.join(args)}", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise UserError(f"'{title}' failed (python {' '.join(args)} exited with {proc.returncode}); see its "
                        f"message above. Fix that and re-run: finished stages are reused.")
    timings[title] = time.time() - start


def common(args) -> list[str]:
    return (['--quick'] if args.quick else []) + list(args.overrides)


def collect(args, timings: dict) -> None:
    path = dataset_path(load_config(quick=args.quick, overrides=args.overrides))
    if path.exists():
        print(f"\n=== collect: reusing the existing dataset '{path}'")
        timings['collect'] = None
        return
    run_step('collect', ['collect.py', *common(args)], timings)


def train(args, timings: dict) -> None:
    for mode, model_config in MODES.items():
        config = load_config(model_config, args.quick, args.overrides)
        run = run_dir(config)
        if run_finished(run, config):
            print(f"\n=== train {mode} AD: reusing the finished run '{run}'")
            timings[f'train {mode} AD'] = None
            continue
        run_step(f'train {mode} AD', ['train.py', '--config', model_config, *common(args)], timings)


def evaluate(args, timings: dict) -> None:
    for mode, model_config in MODES.items():
        run = run_dir(load_config(model_config, args.quick, args.overrides))
        ckpts = checkpoints(run)
        result = run / EVAL_RESULT
        if ckpts and result.exists() and result.stat().st_mtime > ckpts[-1][1].stat().st_mtime:
            print(f"\n=== evaluate {mode} AD: reusing '{result}' (newer than its last checkpoint)")
            timings[f'evaluate {mode} AD'] = None
            continue
        eval_overrides = [o for o in args.overrides if o.split('=', 1)[0] in ('device', 'datasets_dir')
                          or o.startswith('eval_')]
        run_step(f'evaluate {mode} AD', ['evaluate.py', str(run), *(['--quick'] if args.quick else []),
                                         *eval_overrides], timings)


def gather(args) -> dict:
    """Measured numbers of both runs: train_summary.json, eval_result.npy, eval_summary.json."""
    rows = {}
    for mode, model_config in MODES.items():
        run = run_dir(load_config(model_config, args.quick, args.overrides))
        try:
            train_summary = json.loads((run / TRAIN_SUMMARY).read_text())
            eval_summary = json.loads((run / EVAL_SUMMARY).read_text())
            returns = np.load(run / EVAL_RESULT)
        except FileNotFoundError as exc:
            raise UserError(f"'{run}' has no results yet ({Path(exc.filename).name} missing). Run "
                            f"'python example_compressed_training.py --mode all' (with the same options).") from None
        rows[mode] = {'run': str(run), 'steps_per_s': train_summary['steps_per_s'],
                      'peak_mib': train_summary['peak_mib'], 'peak_kind': train_summary['peak_kind'],
                      'device': train_summary['device'],
                      'test_acc_action': train_summary['final_test']['acc_action'],
                      'eval_mean': float(returns.mean()), 'eval_std': float(returns.std()),
                      'returns': returns, 'oracle_mean': eval_summary['oracle_mean']}
    return rows


def comparison_table(rows: dict) -> str:
    s, c = rows['standard'], rows['compressed']
    lines = ['| Metric | Standard AD | Compressed AD | Compressed / Standard |', '|---|---|---|---|']
    lines.append(f"| Training speed (steps/s) | {s['steps_per_s']:.1f} | {c['steps_per_s']:.1f} | "
                 f"{c['steps_per_s'] / s['steps_per_s']:.2f}x |")
    lines.append(f"| Peak memory (MiB, {s['peak_kind']}) | {s['peak_mib']:.0f} | {c['peak_mib']:.0f} | "
                 f"{c['peak_mib'] / s['peak_mib']:.2f}x |")
    lines.append(f"| Test accuracy (test/acc_action) | {s['test_acc_action']:.3f} | {c['test_acc_action']:.3f} | "
                 f"{c['test_acc_action'] / max(s['test_acc_action'], 1e-9):.2f}x |")
    lines.append(f"| Eval reward (mean ± std) | {s['eval_mean']:.2f} ± {s['eval_std']:.2f} | "
                 f"{c['eval_mean']:.2f} ± {c['eval_std']:.2f} | {c['eval_mean'] / max(s['eval_mean'], 1e-9):.2f}x |")
    lines.append(f"| Oracle return | {s['oracle_mean']:.2f} | {c['oracle_mean']:.2f} | |")
    return '\n'.join(lines)


def timing_table(timings: dict) -> str:
    """Wall time of each stage this invocation ran ('reused' where it reused earlier output)."""
    lines = ['| Stage | Wall time |', '|---|---|']
    for title, seconds in timings.items():
        lines.append(f"| {title} | {'reused' if seconds is None else f'{seconds:.1f} s'} |")
    return '\n'.join(lines)


def compare(args, timings: dict) -> None:
    rows = gather(args)
    config = load_config(quick=args.quick, overrides=args.overrides)
    table = comparison_table(rows)
    device = rows['standard']['device']
    header = (f"# Standard vs compressed AD\n\nMeasured by `python example_compressed_training.py --mode all"
              f"{' --quick' if args.quick else ''}` (training on {device}).\n\n")
    out = Path(config['runs_dir']) / 'comparison.md'
    stages = f"\n\nWall time of this invocation's stages:\n\n{timing_table(timings)}" if timings else ''
    atomic_write_text(out, header + table + stages + '\n')
    figure = Path(args.out_dir) / 'comparison.png'
    plot_in_context_curves(figure, {f'{mode} AD': rows[mode]['returns'] for mode in MODES},
                           rows['standard']['oracle_mean'], ppo_source_curve(config, goal_split(config)[1]),
                           'In-context learning: standard vs compressed AD')
    print('\n' + table + stages)
    print(f"\nWrote {out} and {figure}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mode', choices=['collect', 'train', 'eval', 'all'], default='all')
    parser.add_argument('--out_dir', default='figs', help='where the comparison figure goes')
    add_config_args(parser)
    args = parse_args(parser)
    load_config(quick=args.quick, overrides=args.overrides)  # bad overrides fail here, before any work
    timings: dict[str, float | None] = {}
    if args.mode in ('collect', 'all'):
        collect(args, timings)
    if args.mode in ('train', 'all'):
        train(args, timings)
    if args.mode in ('eval', 'all'):
        evaluate(args, timings)
        compare(args, timings)


if __name__ == '__main__':
    run_main(main)
