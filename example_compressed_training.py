"""The whole workflow in one command: collect, train standard and compressed AD, evaluate both, compare.

    python example_compressed_training.py --mode all            # full scale (use a GPU for training)
    python example_compressed_training.py --mode all --quick    # tiny smoke test, a few minutes on 2 CPU cores
    python example_compressed_training.py --mode all --cpu --seeds 0,1 --splits 0,1,2   # the CPU protocol
    python example_compressed_training.py --mode all --cpu --context-modes standard,compressed,memory --seeds 0,1
    python example_compressed_training.py --mode all --cpu --seeds 0,1 --splits 0,1,2 --jobs 2   # 2 runs at a time
    python example_compressed_training.py --mode train runs_dir=/tmp/runs
    RAY_ADDRESS=HEAD:6379 python example_compressed_training.py --mode all --cpu --seeds 0,1 --ray   # on a cluster

``--mode`` chooses the stages; ``--context-modes`` the context modes they train and compare (``--modes``, its
earlier spelling, still works and says so). Each stage runs the project's own scripts (collect.py, train.py,
evaluate.py) as a user would, once per
training seed (``--seeds``, the ``seed`` key) and goal split (``--splits``, ``env_split_seed``); an existing
dataset, a finished run and an evaluation with the wanted settings are reused rather than recomputed. ``--jobs N``
trains (and then evaluates) N runs at a time, each with 1/N of the CPU threads and its output in
{runs_dir}/logs/ (the compute-matched runs start once the runs they are measured on have finished). ``--ray``
hands the collect, and every training and evaluation as a Ray task of its own (a GPU each when the cluster has
them), to the Ray cluster at RAY_ADDRESS, logs in {runs_dir}/logs/ likewise (README, "On a cluster"). ``all``
ends with the comparison: {runs_dir}/comparison.md (the quick-start's table, then per mode the mean and IQM
return with 95% bootstrap intervals over runs, the paired difference, the probability that compressed beats
standard, speed and memory ratios, returns by goal distance, and the wall time of each stage),
{runs_dir}/comparison.json and {figs_dir}/comparison.png (in-context curves with 95% bands over runs).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np

from compressed_ad import protocol_tables as tables
from compressed_ad.cluster import ScriptTasks
from compressed_ad.config_schema import (DEFAULT_ENV, ConfigError, add_config_args, format_config, load_config,
                                         preset_flags, presets_of)
from compressed_ad.context_modes import model_configs
from compressed_ad.history_file import dataset_path
from compressed_ad.run_files import (EVAL_SUMMARY, checkpoints, eval_output_dir, changed_run_keys, eval_setting,
                                     read_run_config, run_dir, run_finished)
from compressed_ad.utils import PROJECT_ROOT, UserError, atomic_write_text, parse_args, read_json, run_main

MODES = model_configs()  # {mode name: model config file}
# Variants compared as modes of their own, each trained from a mode's config into a runs_dir sub-folder of its name
# (so its runs never collide with the mode's): what compression costs beyond a shorter context (standard AD with
# compressed AD's longest context, named by it: standard-160 in Dark Room, standard-400 in Dark Key-to-Door),
# compressed AD at the training wall time of another mode, and memory trained with rows that start at random windows.
EQUAL_CONTEXT, COMPUTE_MATCHED, MEMORY_RANDOM_START = 'standard-{n}', 'compressed-matched', 'memory-random-start'
DEFAULT_MODES = ('standard', 'compressed')
# where the compute-matched budget's speed ratio is kept: bench.bench's JSON rows of the two modes, measured side
# by side in one command while no run of this invocation trains (reused while the file exists)
SPEED_FILE = 'speed_ratio.json'


def paired_comparisons(equal_context: str, matched_to: str) -> tuple[tuple[str, str], ...]:
    """The paired comparisons, (candidate, baseline): each reads candidate - baseline and candidate / baseline."""
    return (('compressed', 'standard'), ('memory', 'compressed'), ('memory', 'standard'), (equal_context, 'standard'),
            ('compressed', equal_context), (COMPUTE_MATCHED, matched_to), (COMPUTE_MATCHED, 'compressed'),
            ('sliding', 'standard'), ('compressed', 'sliding'), (MEMORY_RANDOM_START, 'memory'),
            (MEMORY_RANDOM_START, 'compressed'), (MEMORY_RANDOM_START, 'standard'))


EVAL_PASS_THROUGH = ('device', 'datasets_dir', 'bf16')  # overrides that evaluate.py accepts besides eval_*


def run_step(title: str, args: list[str], timings: dict) -> None:
    """Run one project script; record its wall time in ``timings[title]`` (seconds)."""
    print(f"\n=== {title}: python {' '.join(args)}", flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise UserError(f"'{title}' failed (python {' '.join(args)} exited with {proc.returncode}); see its "
                        f"message above. Fix that and re-run: finished stages are reused.")
    timings[title] = time.time() - start


class Steps:
    """Project scripts run ``jobs`` at a time. One job streams to the terminal (``run_step``); several write each
    script's output to ``log_dir/{title}.log``, and each child gets an equal share of the CPU threads."""

    def __init__(self, jobs: int, timings: dict, log_dir: Path):
        self.jobs, self.timings, self.log_dir = jobs, timings, log_dir
        self.running: list[tuple[str, list[str], subprocess.Popen, float, Path]] = []
        self.failed: list[str] = []

    def run(self, title: str, args: list[str], log_name: str) -> None:
        """``log_name`` names the log of a parallel step: it must tell apart every run that a ``runs_dir`` can hold
        (mode, seed and split), so that two invocations sharing it never write one log."""
        if self.jobs == 1:
            run_step(title, args, self.timings)
            return
        while len(self.running) >= self.jobs:
            self._reap()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f'{log_name}.log'
        env = dict(os.environ)
        env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // self.jobs)))
        print(f"\n=== {title}: python {' '.join(args)}  (output: {log})", flush=True)
        with open(log, 'w') as out:
            proc = subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env=env)
        self.running.append((title, args, proc, time.time(), log))

    def _reap(self) -> None:
        """Wait until one running script ends; record its time or its failure."""
        while True:
            for item in self.running:
                title, args, proc, start, log = item
                if proc.poll() is not None:
                    self.running.remove(item)
                    if proc.returncode == 0:
                        self.timings[title] = time.time() - start
                        print(f"=== {title}: done in {self.timings[title]:.0f} s", flush=True)
                    else:
                        self.failed.append(f"'{title}' (python {' '.join(args)} exited with {proc.returncode}; "
                                           f"its output is in {log})")
                    return
            time.sleep(0.5)

    def wait(self) -> None:
        """Wait for every running script; a failure is reported once all have ended."""
        while self.running:
            self._reap()
        if self.failed:
            raise UserError(f"{len(self.failed)} step(s) failed: {'; '.join(self.failed)}. Fix that and re-run: "
                            f"finished stages are reused.")


class Plan:
    """The runs this invocation covers: every mode x training seed x goal split, with their configs."""

    def __init__(self, args):
        self.presets, self.user, self.env = presets_of(args), list(args.overrides), args.env
        self.flags = preset_flags(self.presets) + (['--env', self.env] if self.env != DEFAULT_ENV else [])
        for key, option in (('seed', '--seeds'), ('env_split_seed', '--splits')):
            if any(o.split('=', 1)[0] == key for o in self.user) and getattr(args, option[2:]) is not None:
                raise ConfigError(f"Both {option} and the override {key}=... choose the {key}; use one of them.")
        base = load_config(presets=self.presets, overrides=self.user, env=self.env)  # bad ones fail before any work
        compressed = load_config(MODES['compressed'], self.presets, self.user, self.env)
        self.equal_context = EQUAL_CONTEXT.format(n=compressed['n_transit'])
        self.variants = {self.equal_context: 'standard', COMPUTE_MATCHED: 'compressed', MEMORY_RANDOM_START: 'memory'}
        self.matched_to = args.compute_matched or 'standard'
        self.modes = list(args.context_modes or DEFAULT_MODES)
        if args.compute_matched:
            self.modes += [m for m in (self.matched_to, 'compressed', COMPUTE_MATCHED) if m not in self.modes]
        unknown = [m for m in self.modes if m not in MODES and m not in self.variants]
        if unknown or not self.modes:
            raise ConfigError(f"--context-modes {','.join(self.modes)}: choose among {', '.join(self.all_modes())} "
                              f"(e.g. --context-modes standard,compressed,memory).")
        if self.matched_to not in MODES or self.matched_to == 'compressed':
            raise ConfigError(f"--compute-matched {self.matched_to}: name the mode whose training wall time compressed "
                              f"AD is given, among {', '.join(m for m in MODES if m != 'compressed')}.")
        if COMPUTE_MATCHED in self.modes and not {self.matched_to, 'compressed'} <= set(self.modes):
            raise ConfigError(f"--context-modes {COMPUTE_MATCHED} needs {self.matched_to} and compressed too: its step "
                              f"budget is {self.matched_to}'s, scaled by their speed ratio (or pass --compute-matched "
                              f"{self.matched_to}).")
        self.seeds = args.seeds if args.seeds is not None else [base['seed']]
        self.splits = args.splits if args.splits is not None else [base['env_split_seed']]
        self.base = base
        self._speed_ratio = None

    def all_modes(self) -> list[str]:
        return [*MODES, *self.variants]

    def pairs_compared(self) -> tuple[tuple[str, str], ...]:
        return paired_comparisons(self.equal_context, self.matched_to)

    def overrides(self, seed: int, split: int) -> list[str]:
        return [f'seed={seed}', f'env_split_seed={split}', *self.user]

    def config_file(self, mode: str) -> str:
        return MODES[self.variants.get(mode, mode)]

    def mode_overrides(self, mode: str, seed: int, split: int) -> list[str]:
        """The overrides of one run: seed and split, the user's, then the variant's own."""
        overrides = self.overrides(seed, split)
        if mode not in self.variants:
            return overrides
        base = load_config(self.config_file(mode), self.presets, overrides, self.env)
        variant = [f"runs_dir={Path(base['runs_dir']) / mode}"]
        if mode == self.equal_context:  # compressed AD's longest context: two regions
            compressed = load_config(MODES['compressed'], self.presets, overrides, self.env)
            variant.append(f"n_transit={compressed['n_transit']}")
        if mode == COMPUTE_MATCHED:
            variant.append(f'train_timesteps={self.matched_steps()}')
        if mode == MEMORY_RANDOM_START:
            variant.append('memory_walk_start=random')
        return overrides + variant

    def speed_file(self) -> Path:
        return Path(self.base['runs_dir']) / COMPUTE_MATCHED / SPEED_FILE

    def forwarded_overrides(self) -> list[str]:
        """The user's overrides that change the training step's speed, so the benchmark measures with them too."""
        return [o for o in self.user if o.split('=', 1)[0] in ('device', 'compile', 'bf16') or
                o.split('=', 1)[0].startswith('tf_')]

    def speed_command(self) -> list[str]:
        """The benchmark that measures the two modes' training steps side by side, at this invocation's setting
        (``--full`` when no preset is chosen: on a CPU the benchmark would otherwise pick the --cpu setting). At
        --quick the benchmark times its own smoke sizes, so a --quick budget exercises the path and measures nothing."""
        return ['-m', 'bench.bench', '--modes', f'{self.matched_to},compressed', '--env', self.env,
                *(preset_flags(self.presets) or ['--full']), '--steps', '40', '--warmup', '10', '--eval-steps', '1',
                '--json', str(self.speed_file()), *self.forwarded_overrides()]

    def speed_ratio(self) -> float:
        """Compressed AD's training steps/s over ``matched_to``'s, from ``speed_file`` (the mean over its rows of
        each mode at the mode's own batch size). A file measured at another setting is refused."""
        if self._speed_ratio is None:
            rows = read_json(self.speed_file())
            if rows is None:
                raise UserError(f"The {COMPUTE_MATCHED} runs train for {self.matched_to} AD's wall time, and its "
                                f"speed ratio '{self.speed_file()}' is not measured yet: it is measured once the "
                                f"{self.matched_to} and compressed runs are trained (--mode train or all, with the "
                                f"same options).")
            setting = {'env': self.env, 'presets': self.presets, 'overrides': self.forwarded_overrides()}
            for row in rows:
                measured = {'env': row.get('env', DEFAULT_ENV), 'presets': row.get('presets'),
                            'overrides': row.get('overrides')}
                if measured != setting:
                    shown = ', '.join(f'{k} {measured[k]} (this invocation: {v})' for k, v in setting.items()
                                      if measured[k] != v)
                    raise UserError(f"'{self.speed_file()}' was measured at another setting ({shown}), so it cannot "
                                    f"give the {COMPUTE_MATCHED} budget. Delete it to measure again.")
            speed = {}
            for mode in (self.matched_to, 'compressed'):
                measured = [r['steps_per_s'] for r in rows if r['mode'] == mode and r['config'] == 'default']
                if not measured:
                    raise UserError(f"'{self.speed_file()}' holds no {mode} row, so it cannot give the "
                                    f"{COMPUTE_MATCHED} budget. Delete it to measure again.")
                speed[mode] = float(np.mean(measured))
            self._speed_ratio = speed['compressed'] / speed[self.matched_to]
        return self._speed_ratio

    def measure_speed(self, timings: dict) -> None:
        """Measure the speed ratio once (reused while ``speed_file`` exists), while no run of this plan trains."""
        if COMPUTE_MATCHED not in self.modes:
            return
        if self.speed_file().exists():
            print(f"\n=== speed ratio: reusing '{self.speed_file()}'")
        else:
            self.speed_file().parent.mkdir(parents=True, exist_ok=True)
            run_step('speed ratio', self.speed_command(), timings)
        print(f"=== {COMPUTE_MATCHED}: compressed / {self.matched_to} training steps/s = {self.speed_ratio():.3f}, "
              f"so {self.matched_steps()} steps", flush=True)

    def matched_steps(self) -> int:
        """``matched_to``'s step budget x the speed ratio of compressed over it: compressed AD trained for
        ``matched_to``'s wall time."""
        steps = load_config(MODES[self.matched_to], self.presets, self.user, self.env)['train_timesteps']
        return max(1, round(steps * self.speed_ratio()))

    def config(self, mode: str, seed: int, split: int):
        return load_config(self.config_file(mode), self.presets, self.mode_overrides(mode, seed, split), self.env)

    def pairs(self):
        return list(product(self.seeds, self.splits))

    def label(self, seed: int, split: int) -> str:
        return '' if len(self.pairs()) == 1 else f' (seed {seed}, split {split})'


def collect(plan: Plan, timings: dict, backend: list[str]) -> None:
    path = dataset_path(plan.base)
    if path.exists():
        print(f"\n=== collect: reusing the existing dataset '{path}'")
        timings['collect'] = None
        return
    run_step('collect', ['collect.py', *plan.flags, *backend, *plan.user], timings)


def refuse_another_run(run: Path, config: dict) -> None:
    """A finished run is reused only when it was trained with the config the comparison asks for."""
    if shown := changed_run_keys(read_run_config(run), config):
        raise UserError(f"'{run}' holds a finished run trained with another config ({shown}), so it cannot stand "
                        f"for this one. Move it away to train again, or set runs_dir to keep both.")


def train(plan: Plan, steps: Steps) -> None:
    # every run of the modes first, then the variants' (the compute-matched budget is measured in between)
    for group, modes in enumerate(([m for m in plan.modes if m not in plan.variants],
                                   [m for m in plan.modes if m in plan.variants])):
        if group == 1:
            plan.measure_speed(steps.timings)
        for (seed, split), mode in product(plan.pairs(), modes):
            config = plan.config(mode, seed, split)
            run, title = run_dir(config), f'train {mode} AD{plan.label(seed, split)}'
            if run_finished(run, config):
                refuse_another_run(run, config)
                print(f"\n=== {title}: reusing the finished run '{run}'")
                steps.timings[title] = None
                continue
            steps.run(title, ['train.py', '--config', plan.config_file(mode), *plan.flags,
                              *plan.mode_overrides(mode, seed, split)], f'train_{mode}_seed{seed}_split{split}')
        steps.wait()


def wanted_eval(plan: Plan, mode: str, seed: int, split: int) -> tuple[Path, dict, Path]:
    """(run, the evaluation setting the comparison needs, where evaluate.py writes it)."""
    config = plan.config(mode, seed, split)
    run, setting = run_dir(config), eval_setting(config, greedy=False)
    return run, setting, eval_output_dir(run, setting)


def evaluate(plan: Plan, steps: Steps) -> None:
    eval_overrides = [o for o in plan.user if o.split('=', 1)[0] in EVAL_PASS_THROUGH or o.startswith('eval_')]
    for (seed, split), mode in product(plan.pairs(), plan.modes):
        run, setting, out = wanted_eval(plan, mode, seed, split)
        title = f'evaluate {mode} AD{plan.label(seed, split)}'
        ckpts, summary = checkpoints(run), out / EVAL_SUMMARY
        if ckpts:
            refuse_another_run(run, plan.config(mode, seed, split))
        if ckpts and summary.exists() and summary.stat().st_mtime > ckpts[-1][1].stat().st_mtime \
                and json.loads(summary.read_text()).get('setting') == setting:
            print(f"\n=== {title}: reusing '{summary}' (same settings, newer than the last checkpoint)")
            steps.timings[title] = None
            continue
        steps.run(title, ['evaluate.py', str(run), *preset_flags(plan.presets), *eval_overrides],
                  f'evaluate_{mode}_seed{seed}_split{split}')
    steps.wait()


def evaluated_runs(plan: Plan) -> dict[str, list[tuple[int, int, Path, Path]]]:
    """Per mode, (seed, split, run directory, evaluation directory) of every run, in the plan's order."""
    runs = {mode: [] for mode in plan.modes}
    for (seed, split), mode in product(plan.pairs(), plan.modes):
        run, _, out = wanted_eval(plan, mode, seed, split)
        runs[mode].append((seed, split, run, out))
    return runs


def command_line(plan: Plan) -> str:
    """The example's command that reproduces this comparison."""
    return ' '.join(['python example_compressed_training.py --mode all', *plan.flags,
                     *(['--context-modes', ','.join(plan.modes)] if plan.modes != list(DEFAULT_MODES) else []),
                     *(['--seeds', ','.join(map(str, plan.seeds))] if len(plan.seeds) > 1 else []),
                     *(['--splits', ','.join(map(str, plan.splits))] if len(plan.splits) > 1 else []), *plan.user])


def budget_notes(plan: Plan) -> list[str]:
    """Where the compute-matched budget came from, for comparison.md."""
    if COMPUTE_MATCHED not in plan.modes:
        return []
    return [f"{COMPUTE_MATCHED}: compressed AD for {plan.matched_to} AD's training wall time, "
            f"{plan.matched_steps()} steps = {plan.matched_to}'s train_timesteps x {plan.speed_ratio():.3f}, the "
            f"training steps/s of compressed over {plan.matched_to} measured side by side by the benchmark "
            f"(`{plan.speed_file()}`), not by the runs, which may have shared the machine."]


def compare(plan: Plan, timings: dict) -> None:
    rows = tables.gather(evaluated_runs(plan))
    agg = tables.aggregate(rows, plan.pairs_compared())
    distances = tables.by_distance(rows, plan.base['env'], plan.base['grid_size'])
    text = tables.report(rows, agg, distances, timings, command_line(plan), plan.seeds, plan.splits,
                         budget_notes(plan))
    runs_dir, figs_dir = Path(plan.base['runs_dir']), Path(plan.base['figs_dir'])
    atomic_write_text(runs_dir / 'comparison.md', text)
    serial = tables.serialise(agg, distances, rows)
    atomic_write_text(runs_dir / 'comparison.json', json.dumps(serial, indent=2, default=str))
    figure = figs_dir / 'comparison.png'
    tables.curves_figure(rows, [plan.base | {'env_split_seed': split} for split in plan.splits], figure)
    print('\n' + text)
    print(f"Wrote {runs_dir / 'comparison.md'}, comparison.json and {figure}")


def mode_list(text: str) -> list[str]:
    """'standard,compressed' -> ['standard', 'compressed']."""
    return [m for m in text.split(',') if m]


class EarlierSpelling(argparse.Action):
    """An option's earlier name: it does what the option now named ``new`` does, and says so on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is the earlier spelling of {self.new} (the context modes; --mode chooses the "
              f"stages); it still works, as {self.new}.", file=sys.stderr)
        setattr(namespace, self.dest, values)


def int_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, e.g. 0,1,2; got '{text}'") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--mode', choices=['collect', 'train', 'eval', 'all'], default='all')
    parser.add_argument('--context-modes', type=mode_list, metavar='MODE,MODE,...',
                        help=f"context modes to train and compare, among {', '.join(MODES)} and the variants "
                             f"{EQUAL_CONTEXT.format(n='N')} (standard AD with compressed AD's context of N), "
                             f"{COMPUTE_MATCHED} and {MEMORY_RANDOM_START} (default: standard,compressed)")
    parser.add_argument('--modes', dest='context_modes', type=mode_list, metavar='MODE,MODE,...',
                        action=EarlierSpelling, new='--context-modes', help='the earlier spelling of --context-modes')
    parser.add_argument('--compute-matched', nargs='?', const='standard', metavar='MODE',
                        help=f"also train and compare {COMPUTE_MATCHED}: compressed AD for MODE's training wall time "
                             f"(default standard; MODE's train_timesteps x compressed/MODE steps/s, measured side by "
                             f"side by bench.bench into RUNS_DIR/{COMPUTE_MATCHED}/{SPEED_FILE}), paired against both")
    parser.add_argument('--seeds', type=int_list, metavar='N,N,...',
                        help="training seeds (the seed key), e.g. 0,1; default: the config's")
    parser.add_argument('--splits', type=int_list, metavar='N,N,...',
                        help="goal splits (the env_split_seed key), e.g. 0,1,2; default: the config's")
    parser.add_argument('--jobs', type=int, default=1, metavar='N',
                        help="training and evaluation runs at a time (default 1); with N > 1 each gets 1/N of the CPU "
                             "threads and writes its output to RUNS_DIR/logs/")
    parser.add_argument('--ray', action='store_true',
                        help='run the collect on the Ray cluster at RAY_ADDRESS (collect_backend=ray), and each '
                             'training and evaluation as a Ray task of its own, a GPU each when the cluster has them; '
                             'outputs in RUNS_DIR/logs/ (needs pip install -e ".[ray]")')
    add_config_args(parser)
    args = parse_args(parser)
    if args.compute_matched and '=' in args.compute_matched:  # `--compute-matched KEY=VALUE`: the flag without MODE
        args.overrides, args.compute_matched = [*args.overrides, args.compute_matched], 'standard'
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give the number of runs to train or evaluate at a time, 1 or more.")
    if args.ray and args.jobs > 1:
        raise UserError(f"--ray and --jobs {args.jobs} both choose where the runs go: with --ray the cluster runs as "
                        f"many at a time as it has GPUs (or CPUs); pass one of them.")
    plan = Plan(args)
    if args.print_config:
        for (seed, split), mode in product(plan.pairs(), plan.modes):
            print(f'# {mode} AD, seed {seed}, split {split}\n{format_config(plan.config(mode, seed, split))}\n')
        return 0
    timings: dict[str, float | None] = {}
    log_dir = Path(plan.base['runs_dir']) / 'logs'
    steps = ScriptTasks(timings, log_dir) if args.ray else Steps(args.jobs, timings, log_dir)
    if args.mode in ('collect', 'all'):
        collect(plan, timings, ['collect_backend=ray'] if args.ray else [])
    if args.mode in ('train', 'all'):
        train(plan, steps)
    if args.mode in ('eval', 'all'):
        evaluate(plan, steps)
        compare(plan, timings)


if __name__ == '__main__':
    run_main(main)
