"""bench.device_run: a failed stage is recorded and the next one runs, a spent budget skips the rest and ends every
process a stage started, bad arguments are refused before anything is written, and both paths (Dark Room and
Key-to-Door) run end to end at the tiny size."""
import json
import os
import time
from math import inf

import pytest

from bench.device_run import MIN_STAGE_S, MODES, Stages
from tests.helpers import assert_user_error, run_script

pytestmark = pytest.mark.slow  # every stage is a process


def test_a_failed_stage_does_not_stop_the_run_and_the_budget_bounds_it():
    budget = MIN_STAGE_S + 5  # room for the two short stages, then the long one takes what is left
    stages = Stages(budget_s=budget)
    assert not stages.run('fails', ['-c', 'import sys; sys.exit(3)'])
    assert stages.run('works', ['-c', 'pass'])
    assert not stages.run('too long', ['-c', 'import time; time.sleep(60)'])  # cut off when the budget is spent
    assert not stages.run('after', ['-c', 'pass'])
    assert stages.outcomes == {'fails': 'failed: exit code 3', 'works': 'ok', 'too long': 'cut off: budget spent',
                               'after': 'skipped: budget spent'}
    assert set(stages.timings) == {'fails', 'works', 'too long'} and stages.timings['too long'] < budget + 5


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_a_stage_cut_off_by_the_budget_ends_the_scripts_it_started(tmp_path):
    # a stage whose script starts another one (as the example starts train.py and evaluate.py) and waits on it
    pid_file = tmp_path / 'grandchild.pid'
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(120)']); open({str(pid_file)!r}, 'w').write(str(p.pid)); p.wait()")
    stages = Stages(budget_s=MIN_STAGE_S + 1)
    assert not stages.run('starts a trainer', ['-c', script])
    assert stages.outcomes == {'starts a trainer': 'cut off: budget spent'}
    grandchild = int(pid_file.read_text())
    deadline = time.time() + 10
    while alive(grandchild) and time.time() < deadline:
        time.sleep(0.2)
    survived = alive(grandchild)
    if survived:
        os.kill(grandchild, 9)
    assert not survived, 'the script the stage started outlived the stage'


def test_device_run_refuses_a_number_of_jobs_below_one(tmp_path):
    proc = run_script('-m', 'bench.device_run', '--out', tmp_path / 'out', '--keytodoor', '--jobs', '0')
    assert_user_error(proc, '--jobs 0', '1 or more')
    assert not (tmp_path / 'out').exists()


def test_an_unbounded_budget_runs_every_stage():
    stages = Stages(budget_s=inf)
    assert stages.run('works', ['-c', 'pass']) and stages.outcomes == {'works': 'ok'}


def device_run(tmp_path, *args):
    out, work = tmp_path / 'out', tmp_path / 'work'
    proc = run_script('-m', 'bench.device_run', '--out', out, '--work', work, '--tiny', *args, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, json.loads((out / 'results.json').read_text())


def test_the_dark_room_stages_run_end_to_end_at_the_tiny_size(tmp_path):
    out, results = device_run(tmp_path, '--train-seconds', '1')
    stages = ['collect', 'bench', 'profile'] + [f'{stage} {mode}' for mode in MODES
                                                for stage in ('train', 'evaluate')] + ['compare', 'bench compiled',
                                                                                       'train compressed compile=true']
    assert results['outcomes'] == {stage: 'ok' for stage in stages}  # the comparison too, of runs trained with
    #                                                                  another schedule than their config's
    steps = results['train_steps']
    assert set(steps) == set(MODES) and len(set(steps.values())) == 1  # one schedule for every mode
    for mode, entry in results['modes'].items():
        assert entry['train']['steps'] == steps[mode] and entry['eval']['episodes'] == 2, mode
    # --tiny benchmarks at --quick's default batch, where the equal-batch rows would repeat the default ones: every
    # mode once
    rows = json.loads((out / 'bench.json').read_text())
    assert sorted((r['mode'], r['config'], r['batch']) for r in rows) == sorted((m, 'default', 16) for m in MODES)
    compiled = json.loads((out / 'bench_compiled.json').read_text())  # --tiny: one mode, a CPU compiles slowly
    assert [r['mode'] for r in compiled] == ['standard'] and compiled[0]['overrides'][0] == 'compile=true'
    assert results['compressed_compiled_train']['steps'] == steps['compressed']
    assert [s['mode'] for s in json.loads((out / 'profile.json').read_text())] == list(MODES)
    assert (out / 'comparison.md').read_text().startswith(f"# {' vs '.join(MODES)} AD")
    assert (out / 'comparison.png').stat().st_size > 1000


def test_the_key_to_door_protocol_runs_end_to_end_at_the_tiny_size(tmp_path):
    out, results = device_run(tmp_path, '--keytodoor', '--jobs', '2')
    assert results['outcomes'] == {'collect keytodoor': 'ok', 'keytodoor protocol': 'ok'}
    # the quick protocol: sliding and compressed AD, seed 0, splits 0 and 1, each run trained and evaluated
    assert len(results['runs']) == 4 and all(r['eval']['mean_return'] is not None for r in results['runs'].values())
    comparison = json.loads((out / 'comparison.json').read_text())
    assert set(comparison['aggregate']['modes']) == {'sliding', 'compressed'}
    assert comparison['aggregate']['n_runs'] == 2
    assert '# sliding vs compressed AD' in (out / 'comparison.md').read_text()
    assert (out / 'comparison.png').stat().st_size > 1000
