"""python -m bench.bench: the quick smoke run measures both modes at their default and at an equal batch size."""
import json

from tests.helpers import run_script

REQUIRED = {'mode', 'batch', 'step_ms', 'steps_per_s', 'action_targets_per_s', 'peak_mib', 'device',
            'eval_steps_per_s', 'eval_transitions_per_s', 'tokens', 'targets_per_window', 'config', 'torch', 'date',
            'commit', 'peak_measure'}
POSITIVE = ('batch', 'step_ms', 'steps_per_s', 'action_targets_per_s', 'eval_steps_per_s', 'eval_transitions_per_s',
            'tokens', 'targets_per_window')


def test_quick_bench_writes_four_comparable_rows(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_script('-m', 'bench.bench', '--quick', '--device', 'cpu', '--json', out, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'cpu_max_rss' in proc.stdout and 'equal batch' in proc.stdout

    rows = json.loads(out.read_text())
    assert len(rows) == 4
    assert {(r['mode'], r['config']) for r in rows} == {(m, c) for m in ('standard', 'compressed')
                                                        for c in ('default', 'equal_batch')}
    for r in rows:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert r['device'] == 'cpu' and r['peak_measure'] == 'cpu_max_rss'
        assert all(r[k] > 0 for k in POSITIVE), r
        assert r['peak_mib'] >= 0  # RSS growth of a fresh process per row
        assert abs(r['action_targets_per_s'] - r['batch'] * r['targets_per_window'] / r['step_ms'] * 1e3) \
            < 1e-6 * r['action_targets_per_s']
        assert r['eval_transitions_per_s'] == r['eval_steps_per_s'] * r['eval_rows']

    equal = {r['mode']: r for r in rows if r['config'] == 'equal_batch'}
    assert equal['standard']['batch'] == equal['compressed']['batch']
    assert equal['compressed']['tokens'] < equal['standard']['tokens']
    assert equal['compressed']['targets_per_window'] < equal['standard']['targets_per_window']
