import json
import os
import shutil
import subprocess
import sys

import h5py
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from compressed_ad.config_schema import load_config
from compressed_ad.history_file import dataset_path
from compressed_ad.modes.sliding import SLIDING_MODEL_CONFIG
from compressed_ad.synthetic_histories import write_synthetic_file
from tests.helpers import COMPRESSED, ROOT, TINY_COMPRESSED, TINY_STANDARD, assert_user_error, run_script
TAGS = {'train/loss', 'train/loss_action', 'train/acc_action', 'train/lr', 'test/loss_action', 'test/acc_action'}
COMPRESSED_TAGS = {'train/loss_token_type', 'train/acc_token_type', 'test/loss_token_type', 'test/acc_token_type'}


def scalars(run):
    ea = EventAccumulator(str(run))
    ea.Reload()
    return {t: [e.value for e in ea.Scalars(t)] for t in ea.Tags()['scalars']}


MEMORY = ['--config', 'config/model/ad_dr_compressed_memory.yaml'] + TINY_COMPRESSED + ['memory_unroll=2']
# windows of 12 + 4 transitions, each counting for 4/3 of train_batch_size's: 6 windows per step
SLIDING = ['--config', SLIDING_MODEL_CONFIG] + TINY_STANDARD + ['n_transit=12', 'sliding_tail=4']
MODE_ARGS = {'standard': TINY_STANDARD, 'compressed': COMPRESSED + TINY_COMPRESSED, 'memory': MEMORY,
             'sliding': SLIDING}
RUN_NAMES = {'standard': 'AD-darkroom-seed0', 'compressed': 'AD-darkroom-compressed-seed0',
             'memory': 'AD-darkroom-compressed-memory-seed0', 'sliding': 'AD-darkroom-sliding-seed0'}


def assert_identical(a, b, where: str = 'checkpoint') -> None:
    """``a`` and ``b`` are equal bit for bit: nested dicts, lists and tuples of tensors (same dtype, shape and
    values) and plain values."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert a == b, where


def training_state(ckpt: dict) -> dict:
    """What a checkpoint holds of the training itself: all of it but its wall times (``progress``) and where the
    run writes (``runs_dir``)."""
    config = {k: v for k, v in ckpt['config'].items() if k != 'runs_dir'}
    return dict({k: v for k, v in ckpt.items() if k != 'progress'}, config=config)


@pytest.mark.parametrize('mode', ['standard', 'compressed', 'memory'])
def test_train_fills_the_run_directory_and_logs_every_tag(tmp_path, workdir, tiny_dataset, mode):
    args = MODE_ARGS[mode] + workdir
    compressed = mode != 'standard'
    proc = run_script('train.py', *args)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / 'runs' / RUN_NAMES[mode]
    assert (run / 'config.yaml').exists() and (run / 'ckpt-4.pt').exists() and (run / 'ckpt-8.pt').exists()
    logged = scalars(run)
    assert TAGS <= set(logged)
    assert (COMPRESSED_TAGS <= set(logged)) == compressed
    ckpt = torch.load(run / 'ckpt-8.pt', weights_only=False)
    assert ckpt['step'] == 8 and ckpt['config']['use_compressed_context'] == compressed
    # finished: says so and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    proc = run_script('train.py', *args)
    assert proc.returncode == 0 and 'already finished' in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_token_type_accuracy_rises_well_above_chance(tmp_path, workdir, tiny_dataset):
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, 'train_timesteps=150', 'lr=3e-3',
                      'summary_interval=10', 'eval_interval=30')
    assert proc.returncode == 0, proc.stderr
    logged = scalars(tmp_path / 'runs' / 'AD-darkroom-compressed-seed0')
    assert logged['train/acc_token_type'][-1] > 0.8 and logged['test/acc_token_type'][-1] > 0.8


@pytest.mark.parametrize('mode', ['standard', 'compressed', 'memory', 'sliding'])
def test_resume_from_a_mid_run_checkpoint_matches_an_uninterrupted_run(tmp_path, workdir, tiny_dataset, mode):
    args = MODE_ARGS[mode] + workdir + ['tf_dropout=0.1']
    name = RUN_NAMES[mode]
    assert run_script('train.py', *args).returncode == 0
    full = torch.load(tmp_path / 'runs' / name / 'ckpt-8.pt', weights_only=False)
    other = tmp_path / 'runs2'
    shutil.copytree(tmp_path / 'runs', other)
    (other / name / 'ckpt-8.pt').unlink()  # as if the run had stopped after step 4
    proc = run_script('train.py', *args, f'runs_dir={other}')
    assert proc.returncode == 0, proc.stderr
    assert 'Resuming' in proc.stdout and 'from step 4' in proc.stdout
    resumed = torch.load(other / name / 'ckpt-8.pt', weights_only=False)
    for k, v in full['model'].items():
        torch.testing.assert_close(resumed['model'][k], v, rtol=0, atol=0, msg=k)
    # and the rest of the training state too: optimiser moments, schedule, random streams, walks and memory
    assert_identical(training_state(resumed), training_state(full))


def test_a_resumed_run_s_summary_covers_the_whole_run(tmp_path, workdir, tiny_dataset):
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0
    first_half = torch.load(run / 'ckpt-4.pt', weights_only=False)['progress']
    (run / 'ckpt-8.pt').unlink()  # as if it had stopped after the checkpoint at step 4
    proc = run_script('train.py', *TINY_STANDARD, *workdir)
    assert proc.returncode == 0 and 'from step 4' in proc.stdout, proc.stderr
    summary = json.loads((run / 'train_summary.json').read_text())
    # before, the summary held the resumed half alone: 4 steps, its seconds and its speed
    assert summary['steps'] == 8 and summary['segments'] == 2 and summary['whole_run_timed']
    assert summary['last_segment'] == {'first_step': 4, 'steps': 4, 'seconds': summary['last_segment']['seconds']}
    assert summary['seconds'] == pytest.approx(first_half['seconds'] + summary['last_segment']['seconds'], rel=0.05)
    assert summary['steps_per_s'] == pytest.approx(8 / summary['seconds'])
    targets_per_step = 8 * 20  # batch 8 x 20 action targets per standard window
    assert summary['action_targets_per_s'] == pytest.approx(8 * targets_per_step / summary['seconds'])
    assert summary['peak_mib'] >= first_half['peak_mib']


def test_missing_dataset_says_to_run_collect(workdir):
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir), 'not found', 'collect.py')


def test_old_files_without_markers_train_standard_but_not_compressed(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    write_synthetic_file(dataset_path(config), config, markers=False, attrs=False)
    assert run_script('train.py', *TINY_STANDARD, *workdir, 'train_timesteps=2').returncode == 0
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir)
    assert_user_error(proc, 'No compression markers found', 'run collect.py again')
    assert not (tmp_path / 'runs' / 'AD-darkroom-compressed-seed0').exists()


def test_old_files_with_markers_but_no_attributes_train_compressed(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    write_synthetic_file(dataset_path(config), config, markers=True, attrs=False)
    assert run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, 'train_timesteps=2').returncode == 0
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, 'compress_interval=4',
                      f'runs_dir={tmp_path / "other"}')
    assert_user_error(proc, 'compress_interval=4', "n_steps is 8")


@pytest.mark.parametrize('extra, needles', [
    (['compress_interval=4', 'n_transit=8'], ['compress_interval=4', "dataset's PPO n_steps is 8"]),
    (['n_transit=10'], ['n_transit >= 2 * compress_interval']),
])
def test_compressed_config_checks(workdir, tiny_dataset, extra, needles):
    assert_user_error(run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, *extra), *needles)


def test_memory_tokens_without_the_memory_mode_is_refused_before_any_work(tmp_path, workdir, tiny_dataset):
    # the quick-start's compressed config with memory tokens chose the memory mode once; now the key sizes the memory
    # of context_mode: memory and chooses no mode
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, 'memory_tokens=2')
    assert_user_error(proc, "memory_tokens=2 (override 'memory_tokens=2')", 'compressed mode', 'context_mode=memory')
    assert not (tmp_path / 'runs').exists()


def test_a_dataset_of_another_rollout_length_is_refused_in_every_mode(tmp_path, workdir, tiny_dataset):
    for mode in ([], [*COMPRESSED, *TINY_COMPRESSED]):  # e.g. a file kept from before a default n_steps changed
        proc = run_script('train.py', *TINY_STANDARD, *mode, *workdir, 'n_steps=16', 'compress_interval=16',
                          'n_transit=32')
        assert_user_error(proc, 'collected with n_steps=8', 'n_steps=16', 'Use n_steps=8')
    assert not (tmp_path / 'runs').exists()


def test_grid_mismatch_is_refused(workdir, tiny_dataset):
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir, 'grid_size=7'), 'grid', 'grid_size=7')


def test_a_run_directory_with_another_config_is_not_overwritten(tmp_path, workdir, tiny_dataset):
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0
    proc = run_script('train.py', *TINY_STANDARD, *workdir, 'lr=0.01', 'train_timesteps=12')
    assert_user_error(proc, 'different config', 'lr')


def test_corrupt_dataset_is_reported(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    path = dataset_path(config)
    path.parent.mkdir(parents=True)
    path.write_text('not hdf5')
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir), 'cannot be read', 'collect.py --force')


@pytest.mark.parametrize('version, needle', [(2, 'written by newer code'), (0, 'written by older code')])
def test_a_history_file_of_another_schema_version_is_refused(tmp_path, workdir, tiny_dataset, version, needle):
    with h5py.File(tiny_dataset, 'a') as f:
        f.attrs['schema_version'] = version
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir), f'schema version {version}', needle,
                      'collect.py --force')
    assert not (tmp_path / 'runs').exists()


def test_a_history_file_without_a_version_reads_as_the_first(tmp_path, workdir, tiny_dataset):
    with h5py.File(tiny_dataset, 'a') as f:  # as earlier AD code in this line wrote them
        del f.attrs['schema_version']
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0


def test_a_damaged_checkpoint_is_reported_not_resumed(tmp_path, workdir, tiny_dataset):
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    (run / 'ckpt-8.pt').unlink()
    (run / 'ckpt-4.pt').write_bytes(b'half a checkpoint')
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir), "ckpt-4.pt' cannot be read", 'Delete it')


def test_a_history_file_missing_fields_is_reported(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    path = write_synthetic_file(dataset_path(config), config)
    with h5py.File(path, 'r+') as f:
        del f['5']['actions']
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir), "group '5' has no actions")


def test_a_split_without_held_out_goals_is_refused(workdir, tiny_dataset):
    assert_user_error(run_script('train.py', *TINY_STANDARD, *workdir, 'train_env_ratio=0.999'),
                      'train_env_ratio=0.999', '0 held-out goals')


def test_misplaced_markers_are_refused_in_compressed_mode(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    path = write_synthetic_file(dataset_path(config), config)
    with h5py.File(path, 'r+') as f:
        f['0']['compress_markers'][5, 1] = 2  # a </compress> in the middle of a region of a training goal
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir)
    assert_user_error(proc, 'not on 8-step rollout boundaries', 'step 5')


def test_resuming_with_a_smaller_batch_after_running_out_of_memory_is_allowed_and_recorded(tmp_path, workdir,
                                                                                           tiny_dataset):
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    (run / 'ckpt-8.pt').unlink()  # as if it had stopped (out of memory) after the checkpoint at step 4
    proc = run_script('train.py', *TINY_STANDARD, *workdir, 'train_batch_size=4')
    assert proc.returncode == 0, proc.stderr
    assert 'Changed on resume at step 4: train_batch_size 8 -> 4' in proc.stdout
    assert yaml.safe_load((run / 'config.yaml').read_text())['train_batch_size'] == 4
    assert yaml.safe_load((run / 'config_changes.yaml').read_text()) == [
        {'step': 4, 'key': 'train_batch_size', 'old': 8, 'new': 4}]
    assert torch.load(run / 'ckpt-8.pt', weights_only=False)['step'] == 8


def test_memory_mode_resumed_with_a_smaller_batch_trains_the_smaller_batch(tmp_path, workdir, tiny_dataset):
    """The out-of-memory advice in memory mode, where the checkpoint's walk fixes the number of rows: at batch 8
    (memory_unroll 2) 4 rows walk; resumed at batch 4, 2 of them go on, and what the run records is what it trained."""
    run = tmp_path / 'runs' / RUN_NAMES['memory']
    assert run_script('train.py', *MEMORY, *workdir).returncode == 0
    saved = torch.load(run / 'ckpt-4.pt', weights_only=False)['rng']['ranks'][0]['batches']
    assert len(saved['walk']['seq']) == 4
    (run / 'ckpt-8.pt').unlink()  # as if it had stopped (out of memory) after the checkpoint at step 4
    proc = run_script('train.py', *MEMORY, *workdir, 'train_batch_size=4')
    assert proc.returncode == 0, proc.stderr
    assert 'Changed on resume at step 4: train_batch_size 8 -> 4' in proc.stdout
    rows = torch.load(run / 'ckpt-8.pt', weights_only=False)['rng']['ranks'][0]['batches']
    assert len(rows['walk']['seq']) == len(rows['walk']['pos']) == 2  # 2 rows x 2 windows = 4 windows a step
    assert rows['memory'].shape[0] == 2
    assert yaml.safe_load((run / 'config.yaml').read_text())['train_batch_size'] == 4
    assert yaml.safe_load((run / 'config_changes.yaml').read_text()) == [
        {'step': 4, 'key': 'train_batch_size', 'old': 8, 'new': 4}]
    summary = json.loads((run / 'train_summary.json').read_text())
    # 4 steps x 8 windows, then 4 steps x 4 windows, of 2 regions of 8 action targets each
    assert summary['action_targets_per_s'] * summary['seconds'] == pytest.approx((4 * 8 + 4 * 4) * 16)


@pytest.mark.parametrize('preset, advice, last_line', [
    ([], 'sized for a GPU', "run 'python train.py --cpu'"),
    # already the CPU setting: no advice to use it, but why it is long
    (['--cpu'], 'longer than the --cpu setting itself takes', 'resumes from its last checkpoint')])
def test_cpu_training_says_how_long_it_will_take_before_the_first_step(tmp_path, workdir, tiny_dataset, preset,
                                                                      advice, last_line):
    args = [*preset, *TINY_STANDARD, *workdir, 'train_timesteps=100000000', 'ckpt_interval=100000000']
    proc = subprocess.Popen([sys.executable, 'train.py', *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if last_line in line:
                break
    finally:
        proc.kill()
        proc.wait()
    text = ''.join(lines)
    assert 'On this CPU a step should take about' in text and '100000000 steps in about' in text, text
    assert advice in text and ("--cpu'" in text) == (not preset), text
