"""python -m bench.bench: the modes side by side, each measured once per batch size."""
import json

import pytest

from tests.helpers import assert_user_error, run_script

pytestmark = pytest.mark.slow  # each benchmark row runs in a process of its own

REQUIRED = {'mode', 'batch', 'step_ms', 'steps_per_s', 'action_targets_per_s', 'peak_mib', 'device',
            'eval_steps_per_s', 'eval_transitions_per_s', 'tokens', 'targets_per_window', 'config', 'torch', 'date',
            'commit', 'peak_measure'}
POSITIVE = ('batch', 'step_ms', 'steps_per_s', 'action_targets_per_s', 'eval_steps_per_s', 'eval_transitions_per_s',
            'tokens', 'targets_per_window')
MODES = ('standard', 'compressed', 'memory', 'sliding')
# (tokens per window, action targets per window of the batch)
HAND_SIZES = {'standard': (48, 48), 'compressed': (36, 32), 'memory': (44, 32), 'sliding': (64, 48)}


def bench_rows(tmp_path, *extra):
    out = tmp_path / 'bench.json'
    proc = run_script('-m', 'bench.bench', '--quick', '--device', 'cpu', '--json', out, *extra, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_quick_bench_measures_every_mode_at_both_batch_sizes(tmp_path):
    proc, rows = bench_rows(tmp_path, '--batch', '8')
    assert 'cpu_max_rss' in proc.stdout
    assert 'remaining row(s)' in proc.stderr  # the time still to go, estimated from the rows so far

    expected = {(m, c, b) for m in MODES for c, b in (('default', 16), ('equal_batch', 8))}
    assert {(r['mode'], r['config'], r['batch']) for r in rows} == expected and len(rows) == 8
    for r in rows:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert r['device'] == 'cpu' and r['peak_measure'] == 'cpu_max_rss'
        assert all(r[k] > 0 for k in POSITIVE), r
        assert r['peak_mib'] >= 0  # RSS growth of a fresh process per row
        # the --quick sizes by hand: standard 48 transitions; compressed two regions of 16 with their 4 markers;
        # memory the same with 4 memory and 4 write tokens; sliding windows of 48 + 16 that count for 4/3 windows
        # of the batch. Targets are the transitions.
        assert (r['tokens'], r['targets_per_window']) == HAND_SIZES[r['mode']], r
        # the timed steps lie inside the row's own wall time (which also holds warmup, data and evaluation)
        assert r['steps'] * r['step_ms'] / 1e3 < r['row_seconds']
        assert r['eval_transitions_per_s'] == r['eval_steps_per_s'] * r['eval_rows']
    for batch in (8, 16):
        pair = {r['mode']: r for r in rows if r['batch'] == batch}
        assert pair['compressed']['tokens'] < pair['standard']['tokens']
        assert pair['compressed']['targets_per_window'] < pair['standard']['targets_per_window']
        assert pair['memory']['tokens'] == pair['compressed']['tokens'] + 8  # 4 memory and 4 write tokens
        assert f'equal batch {batch}: compressed / standard' in proc.stdout
        assert f'equal batch {batch}: memory / compressed' in proc.stdout
        assert f'equal batch {batch}: sliding / standard' in proc.stdout


def test_bench_refuses_two_settings():
    assert_user_error(run_script('-m', 'bench.bench', '--quick', '--full'), '--quick, --cpu and --full')


def test_profile_step_profiles_a_training_step_and_a_rollout_step_of_each_mode(tmp_path):
    out = tmp_path / 'profile.json'
    proc = run_script('-m', 'bench.profile_step', '--quick', '--device', 'cpu', '--modes', 'standard,sliding',
                      '--top', '3', '--json', out, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summaries = json.loads(out.read_text())
    assert [s['mode'] for s in summaries] == ['standard', 'sliding']
    for s in summaries:
        assert s['batch'] == 16 and s['device'] == 'cpu'  # the quick setting's train_batch_size
        assert s['train']['wall_ms'] > 0 and s['rollout_step']['wall_ms'] > 0
    assert '=== sliding rollout_step (batch 16 on cpu)' in proc.stdout


def test_compare_compile_times_each_mode_compiled_against_eager_with_its_compile_time(tmp_path):
    proc, rows = bench_rows(tmp_path, '--modes', 'sliding', '--steps', '4', '--warmup', '1', '--eval-steps', '4',
                            '--compare-compile')
    [row] = rows
    for part in ('train', 'eval'):
        speedup = row[f'compare_{part}_speedup']
        assert speedup > 0 and row[f'{part}_compile_s'] >= 0
    assert row['compare_train_speedup'] == pytest.approx(row['compare_train_eager_ms'] /
                                                         row['compare_train_compiled_ms'])
    assert row['compare_eval_speedup'] == pytest.approx(row['compare_eval_compiled_steps_per_s'] /
                                                        row['compare_eval_eager_steps_per_s'])
    assert 'compiled (torch.compile) against eager' in proc.stdout and 'mode sliding, batch 16' in proc.stdout
