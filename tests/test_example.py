"""The quick-start workflow end to end: the one-shot example, and the edit of train.py it describes."""
import argparse
import json
import re
import sys

import numpy as np
import pytest
import yaml

from compressed_ad.config_schema import load_config
from compressed_ad.history_file import dataset_path
from compressed_ad.synthetic_histories import write_synthetic_file
from compressed_ad.utils import UserError
from tests.helpers import ROOT, assert_user_error, run_script

QUICK_LINE = "config.update(get_config('./config/model/ad_dr.yaml'))"


# the quick setting, with PPO and training cut short and 20 of the 81 goals (18 to train on, 2 held out): this test
# is about the workflow, `make demo` runs it in full
SHORT = ['n_tasks=20', 'n_stream=4', 'ppo_batch_size=80', 'train_source_timesteps=320', 'train_timesteps=120',
         'eval_interval=60', 'ckpt_interval=60']


def test_quick_example_runs_everything_and_reuses_finished_work(tmp_path, workdir):
    overrides = [*workdir, *SHORT]
    proc = run_script('example_compressed_training.py', '--mode', 'all', '--quick', *overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / 'runs'
    for name in ('AD-darkroom-seed0', 'AD-darkroom-compressed-seed0'):
        result = np.load(runs / name / 'eval_result.npy')
        assert result.shape == (2 * 4, 20) and np.isfinite(result).all()
        assert (runs / name / 'in_context_curve.png').stat().st_size > 1000
    table = (runs / 'comparison.md').read_text()
    rows = ('Training speed (steps/s)', 'Peak memory', 'Test accuracy (test/acc_action)', 'Eval reward (mean ± std)')
    for row in rows:
        line = next(text for text in table.splitlines() if text.startswith(f'| {row}'))
        numbers = re.findall(r'\d+(?:\.\d+)?', line.split('|', 2)[2])
        assert len(numbers) >= 3, line  # standard, compressed and their ratio
    assert (tmp_path / 'figs' / 'comparison.png').stat().st_size > 1000
    assert re.search(r'\| train compressed AD \| \d+\.\d s \|', table)  # wall time of every stage
    # a second run reuses the dataset, the finished runs and their evaluations
    again = run_script('example_compressed_training.py', '--mode', 'all', '--quick', *overrides)
    assert again.returncode == 0, again.stderr
    assert 'reusing the existing dataset' in again.stdout and again.stdout.count('reusing the finished run') == 2
    assert again.stdout.count("reusing '") == 2
    assert '| collect | reused |' in (runs / 'comparison.md').read_text()
    # an evaluation made with other settings is not reused: the example evaluates again with the ones it needs
    third = run_script('example_compressed_training.py', '--mode', 'all', '--quick', *overrides, 'eval_episodes=7')
    assert third.returncode == 0, third.stderr
    assert third.stdout.count('reusing the finished run') == 2 and third.stdout.count("reusing '") == 0
    for name in ('AD-darkroom-seed0', 'AD-darkroom-compressed-seed0'):
        assert np.load(runs / name / 'eval_result.npy').shape == (8, 20)  # the run's own setting, untouched
    assert np.load(runs / 'AD-darkroom-seed0' / 'eval-sampled-7ep-4x-seed0-cpu' / 'eval_result.npy').shape == (8, 7)
    assert json.loads((runs / 'comparison.json').read_text())['runs']['standard'][0]['eval_seconds'] > 0
    # a finished run trained with another value of a key a run fixes is never taken for the one asked for
    before = {p: p.stat().st_mtime for p in runs.rglob('*') if p.is_file()}
    for mode in ('all', 'eval'):
        other = run_script('example_compressed_training.py', '--mode', mode, '--quick', *overrides, 'lr=0.002')
        assert_user_error(other, 'AD-darkroom-seed0', 'trained with another config', 'lr: 0.001 (trained) -> 0.002')
    assert before == {p: p.stat().st_mtime for p in runs.rglob('*') if p.is_file()}


def test_the_equal_context_compute_matched_and_memory_random_start_rows(tmp_path, workdir):
    overrides = [*workdir, 'n_stream=2', 'train_source_timesteps=320', 'train_timesteps=20', 'eval_interval=10',
                 'ckpt_interval=10', 'eval_episodes=2', 'eval_streams_per_goal=1', 'test_n_batches=1',
                 'memory_unroll=2']
    config = load_config(presets=['quick'], overrides=overrides)
    write_synthetic_file(dataset_path(config), config)  # reused by the example instead of collecting
    proc = run_script('example_compressed_training.py', '--mode', 'all', '--quick', '--modes',
                      'standard,compressed,standard-160,memory,memory-random-start', '--compute-matched', '--jobs',
                      '2', *overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / 'runs'
    # two at a time: each script's output in its own log, the terminal keeps one line per start and end
    logs = sorted(p.name for p in (runs / 'logs').iterdir())
    assert len(logs) == 12 and 'train_compressed-matched_seed0_split0.log' in logs, logs  # 6 modes, trained and
    assert 'Finished 20 steps' in (runs / 'logs' / 'train_standard_seed0_split0.log').read_text()  # evaluated
    assert proc.stdout.count(': done in ') == 12

    def saved(sub):
        return yaml.safe_load((runs / sub / 'config.yaml').read_text())
    # standard AD with compressed AD's longest context, in a folder of its own (the standard run is untouched)
    assert saved('standard-160/AD-darkroom-seed0')['n_transit'] == 160
    assert saved('AD-darkroom-seed0')['n_transit'] == 240
    # compressed AD for standard AD's wall time, from the benchmark the example ran between the two groups of runs
    rows = json.loads((runs / 'compressed-matched' / 'speed_ratio.json').read_text())
    assert {r['mode'] for r in rows} == {'standard', 'compressed'}
    steps = int(re.search(r'compressed / standard training steps/s = [\d.]+, so (\d+) steps', proc.stdout).group(1))
    matched = saved('compressed-matched/AD-darkroom-compressed-seed0')
    assert matched['use_compressed_context'] and matched['train_timesteps'] == steps
    # memory AD whose rows start their memory at random windows, beside memory AD as the rollout starts it
    assert saved('memory-random-start/AD-darkroom-compressed-memory-seed0')['memory_walk_start'] == 'random'
    assert saved('AD-darkroom-compressed-memory-seed0')['memory_walk_start'] == 'stream'
    table = (runs / 'comparison.md').read_text()
    for pair in ('standard-160 against standard', 'compressed against standard-160',
                 'compressed-matched against standard', 'compressed-matched against compressed',
                 'memory-random-start against memory'):
        assert f'| {pair} (paired by seed and split) |' in table, pair


def test_a_failed_parallel_step_names_its_log_and_leaves_no_comparison(tmp_path, workdir):
    overrides = [*workdir, 'n_stream=2', 'train_source_timesteps=240', 'train_timesteps=4', 'ckpt_interval=4',
                 'eval_interval=4', 'test_n_batches=1']
    config = load_config(presets=['quick'], overrides=overrides)
    write_synthetic_file(dataset_path(config), config)
    # the sliding mode's windows (240 + 80 transitions) do not fit these 240-step histories: its run fails
    proc = run_script('example_compressed_training.py', '--mode', 'all', '--quick', '--context-modes',
                      'standard,sliding', '--jobs', '2', *overrides)
    assert_user_error(proc, '1 step(s) failed', 'train sliding AD', 'train_sliding_seed0_split0.log')
    assert 'longer than the histories' in (tmp_path / 'runs' / 'logs' / 'train_sliding_seed0_split0.log').read_text()
    assert (tmp_path / 'runs' / 'AD-darkroom-seed0' / 'ckpt-4.pt').exists()  # the other run finished
    assert not (tmp_path / 'runs' / 'comparison.md').exists()


def example_in_process(monkeypatch, capsys, *argv):
    """Run the example's main in this process; returns its (stdout, stderr)."""
    import example_compressed_training as example
    monkeypatch.setattr(sys, 'argv', ['example_compressed_training.py', *map(str, argv)])
    assert example.main() == 0
    return capsys.readouterr()


def test_the_context_modes_flag_and_its_earlier_spelling_choose_the_same_runs(workdir, monkeypatch, capsys):
    new = example_in_process(monkeypatch, capsys, '--quick', '--context-modes', 'standard,sliding', '--print-config',
                             *workdir)
    old = example_in_process(monkeypatch, capsys, '--quick', '--modes', 'standard,sliding', '--print-config',
                             *workdir)
    assert '# standard AD, seed 0, split 0' in new.out and '# sliding AD, seed 0, split 0' in new.out
    assert '# compressed AD' not in new.out and old.out == new.out
    assert 'note: --modes is the earlier spelling of --context-modes' in old.err and 'earlier spelling' not in new.err


def test_stages_and_context_modes_are_told_apart(workdir, monkeypatch, capsys):
    import example_compressed_training as example
    monkeypatch.setattr(sys, 'argv', ['example_compressed_training.py', '--mode', 'standard,compressed'])
    with pytest.raises(SystemExit) as refused:  # --mode chooses the stages: context modes there are refused
        example.main()
    assert refused.value.code == 2
    assert "argument --mode: invalid choice: 'standard,compressed'" in capsys.readouterr().err


def test_the_compute_matched_row_needs_its_baselines(workdir):
    proc = run_script('example_compressed_training.py', '--quick', '--modes', 'compressed-matched', *workdir)
    assert_user_error(proc, 'needs standard and compressed', '--compute-matched')
    proc = run_script('example_compressed_training.py', '--quick', '--compute-matched', 'compressed', *workdir)
    assert_user_error(proc, '--compute-matched compressed', 'among standard, memory, sliding')


def test_the_compute_matched_budget_is_the_baseline_s_steps_times_the_benchmark_s_ratio(tmp_path, workdir):
    import example_compressed_training as example
    args = argparse.Namespace(overrides=[*workdir, 'train_timesteps=20'], env='darkroom', quick=True, cpu=False,
                              context_modes=None, compute_matched='sliding', seeds=None, splits=None)
    plan = example.Plan(args)
    with pytest.raises(UserError, match='not measured yet'):
        plan.matched_steps()
    # as bench.bench writes it; the mean of each mode's rows at its own batch counts, the equal-batch row does not
    speed = tmp_path / 'runs' / 'compressed-matched' / 'speed_ratio.json'
    speed.parent.mkdir(parents=True)
    rows = [{'mode': m, 'config': c, 'steps_per_s': v, 'env': 'darkroom', 'presets': ['quick'], 'overrides': []}
            for m, c, v in (('sliding', 'default', 2.0), ('sliding', 'default', 2.2), ('compressed', 'default', 3.1),
                            ('compressed', 'default', 3.2), ('compressed', 'equal_batch', 9.0))]
    speed.write_text(json.dumps(rows))
    assert plan.matched_steps() == 30  # 20 x (3.1 + 3.2) / (2.0 + 2.2)
    assert plan.config('compressed-matched', 0, 0)['train_timesteps'] == 30
    assert plan.mode_overrides('compressed-matched', 0, 0)[-1] == 'train_timesteps=30'
    # a file measured at another setting than this invocation's cannot give its budget
    for key, other in (('presets', ['cpu']), ('env', 'darkkeytodoor'), ('overrides', ['tf_n_embd=32'])):
        speed.write_text(json.dumps([*rows[:-1], {**rows[-1], key: other}]))
        with pytest.raises(UserError, match=f'another setting .*{key}.*Delete it to measure again'):
            example.Plan(args).matched_steps()


def test_compute_matched_followed_by_an_override_keeps_the_override(tmp_path, workdir):
    # `--compute-matched runs_dir=...` once read the override as the mode to match
    speed = tmp_path / 'runs' / 'compressed-matched' / 'speed_ratio.json'
    speed.parent.mkdir(parents=True)
    speed.write_text(json.dumps([{'mode': m, 'config': 'default', 'steps_per_s': v, 'env': 'darkroom',
                                  'presets': ['quick'], 'overrides': []} for m, v in (('standard', 2.0),
                                                                                       ('compressed', 3.0))]))
    proc = run_script('example_compressed_training.py', '--quick', '--seeds', '0', '--splits', '0',
                      '--compute-matched', *workdir, 'train_timesteps=20', '--print-config')
    assert proc.returncode == 0, proc.stderr
    matched = proc.stdout.split('# compressed-matched AD, seed 0, split 0')[1]
    assert 'train_timesteps: 30 ' in matched  # standard's 20 steps x 3.0 / 2.0
    assert str(tmp_path / 'runs' / 'compressed-matched') in matched


def test_the_benchmark_behind_the_compute_matched_budget_measures_the_invocation_s_setting(workdir):
    import example_compressed_training as example

    def speed_command(overrides: list[str], **presets) -> list[str]:
        args = argparse.Namespace(overrides=[*workdir, *overrides], env='darkroom', context_modes=None,
                                  compute_matched='standard', seeds=None, splits=None,
                                  **{'quick': False, 'cpu': False, **presets})
        return example.Plan(args).speed_command()

    # at full scale bench.bench must be told so: on a CPU it would pick the --cpu setting by itself
    assert '--full' in speed_command([]) and '--cpu' not in speed_command([])
    assert '--cpu' in speed_command([], cpu=True) and '--full' not in speed_command([], cpu=True)
    # the overrides that change the step's speed reach the benchmark; the schedule's and the paths' do not
    command = speed_command(['tf_n_embd=32', 'compile=true', 'train_timesteps=20'], cpu=True)
    assert 'tf_n_embd=32' in command and 'compile=true' in command and 'train_timesteps=20' not in command


def test_example_reports_a_bad_override_before_any_work(tmp_path, workdir):
    assert_user_error(run_script('example_compressed_training.py', '--quick', 'n_stram=2', *workdir), "'n_stream'")
    assert not (tmp_path / 'datasets').exists()


def test_the_quick_start_edit_of_train_py_switches_to_compressed_mode():
    source = (ROOT / 'train.py').read_text()
    assert source.count(QUICK_LINE) == 1
    line = next(i for i, text in enumerate(source.splitlines(), 1) if QUICK_LINE in text)
    assert line == 24  # where the quick-start says it is
    edited = source.replace(QUICK_LINE, QUICK_LINE.replace('ad_dr.yaml', 'ad_dr_compressed.yaml'))
    namespace = {'__name__': 'train_edited'}
    exec(compile(edited, 'train_edited.py', 'exec'), namespace)
    args = argparse.Namespace(config=None, env='darkroom', quick=False, cpu=False, overrides=[])
    config = namespace['read_config'](args)
    assert config['use_compressed_context'] and config['n_transit'] == 160 and config['compress_interval'] == 80
