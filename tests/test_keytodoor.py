"""Dark Key-to-Door end to end: collect (real PPO, tiny), train both modes, evaluate, in the same scripts."""
import json

import gymnasium as gym
import h5py
import numpy as np
import pytest

from compressed_ad.config_schema import load_config
from compressed_ad.env import task_split
from compressed_ad.env.keytodoor import oracle_return, task_cells
from compressed_ad.history_file import dataset_path
from tests.helpers import COMPRESSED, TINY, assert_user_error, run_script

ENV = ['--env', 'darkkeytodoor']
COLLECT = ['n_tasks=12', 'n_stream=4', 'train_source_timesteps=160', 'n_steps=40', 'ppo_batch_size=40',
           'ppo_n_epochs=2', 'compress_interval=40', 'n_process=1']
TRAIN = [o for o in TINY if not o.startswith(('n_steps', 'compress_interval', 'n_stream', 'train_source',
                                              'ppo_batch'))] + ['n_steps=40', 'compress_interval=40', 'eval_episodes=2',
                                                                'train_env_ratio=0.75', 'n_tasks=12']


@pytest.fixture
def keytodoor_dataset(workdir):
    proc = run_script('collect.py', *ENV, *COLLECT, *workdir)
    assert proc.returncode == 0, proc.stderr
    assert 'on darkkeytodoor: 12 tasks x 4 streams' in proc.stdout
    return dataset_path(load_config(env='darkkeytodoor', overrides=COLLECT + workdir))


def test_collect_writes_the_sampled_tasks_with_their_keys_and_doors(keytodoor_dataset):
    config = load_config(env='darkkeytodoor', overrides=COLLECT)
    assert keytodoor_dataset.name == 'history_darkkeytodoor_PPO_alg-seed42.hdf5'
    train, test = task_split(config)
    with h5py.File(keytodoor_dataset) as f:
        assert sorted(f.keys(), key=int) == [str(i) for i in sorted(train + test)]
        group = f[str(test[0])]
        key, door = divmod(test[0], 81)
        assert list(group.attrs['goal']) == [key // 9, key % 9, door // 9, door % 9]
        assert group['states'].shape == (160, 4, 3) and group['states'][:, :, 2].max() <= 2
        assert (group['compress_markers'][::40] == 1).all() and (group['compress_markers'][39::40] == 2).all()


def test_visualize_plots_a_stream_with_its_key_and_door(tmp_path, workdir, keytodoor_dataset):
    proc = run_script('visualize_compression.py', *ENV, *COLLECT, *workdir, '--max_steps', '120')
    assert proc.returncode == 0, proc.stderr
    with h5py.File(keytodoor_dataset) as f:
        first = min(int(i) for i in f.keys())  # the default: the first task in the file
    key, door = divmod(first, 81)
    assert f'task {first} key ({key // 9}, {key % 9}) door ({door // 9}, {door % 9}) stream 0' in proc.stdout
    assert (tmp_path / 'figs' / f'compression_env{first}_stream0.png').stat().st_size > 20_000


@pytest.mark.parametrize('compressed', [False, True])
def test_train_and_evaluate_both_modes(tmp_path, workdir, keytodoor_dataset, compressed):
    args = [*ENV, *(COMPRESSED if compressed else []), *TRAIN, *workdir,
            'n_transit=80' if compressed else 'n_transit=120']
    proc = run_script('train.py', *args)
    assert proc.returncode == 0, proc.stderr
    name = 'AD-darkkeytodoor-compressed-seed0' if compressed else 'AD-darkkeytodoor-seed0'
    run = tmp_path / 'runs' / name
    proc = run_script('evaluate.py', str(run))
    assert proc.returncode == 0, proc.stderr
    assert 'key (' in proc.stdout and 'door (' in proc.stdout
    summary = json.loads((run / 'eval_summary.json').read_text())
    assert summary['env'] == 'darkkeytodoor' and len(summary['goals'][0]) == 4
    _, test = task_split(load_config(env='darkkeytodoor', overrides=TRAIN))
    assert summary['goals'] == [list(t) for t in task_cells(test, 9)]  # the held-out tasks, in split order
    result = np.load(run / 'eval_result.npy')
    assert result.shape == (3 * 2, 2)
    # the file is goal-major: each task's rows are its rollouts, and the summary's per-task means are theirs
    np.testing.assert_allclose(summary['mean_return_per_goal'], result.reshape(3, 2, 2).mean((1, 2)), rtol=1e-6)
    proc = run_script('visualize_compression.py', *ENV, *COLLECT, *workdir, '--analyze')
    assert proc.returncode == 0 and 'All markers on n_steps boundaries' in proc.stdout, proc.stderr


def test_choosing_the_environment(workdir):
    assert_user_error(run_script('collect.py', '--env', 'darkhall', *workdir), '--env darkhall',
                      'darkkeytodoor, darkroom')
    assert_user_error(run_script('train.py', 'env=darkkeytodoor', *workdir), 'chosen with --env NAME')


def test_a_dataset_of_other_tasks_is_refused(workdir, keytodoor_dataset):
    proc = run_script('train.py', *ENV, *TRAIN, *workdir, 'n_tasks=20')
    assert_user_error(proc, 'collected with n_tasks=12 but the config has n_tasks=20')


@pytest.mark.parametrize('horizon, expected', [(50, 2), (20, 1), (7, 0)])
def test_the_oracle_return_depends_on_the_horizon(horizon, expected):
    # key (0, 0): 8 steps from the centre (4, 4); door (8, 8): 16 more. Worked out by hand.
    assert oracle_return((0, 0, 8, 8), 9, horizon) == expected


@pytest.mark.parametrize('env_id, horizon', [('DarkKeyToDoor-v0', 50), ('DarkRoom-v0', 20)])
def test_gym_episodes_last_the_environment_s_horizon(env_id, horizon):
    env = gym.make(env_id, task=(0, 0, 8, 8) if 'Key' in env_id else (0, 0))
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, _, truncated, _ = env.step(4)
        steps += 1
    assert steps == horizon  # before, Key-to-Door episodes were truncated after Dark Room's 20 steps
