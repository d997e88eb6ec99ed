import hashlib

import h5py
import numpy as np
import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import collect
from compressed_ad.algorithm.ppo import HistoryLogger, make_ppo, rollouts_needed
from compressed_ad.algorithm.vec_env import GridVecEnv
from compressed_ad.config_schema import load_config
from compressed_ad.env import ENVS
from compressed_ad.history_file import dataset_path
from tests.helpers import assert_user_error, kill_script_when, run_script
from compressed_ad.utils import UserError

TINY_COLLECT = ['n_stream=2', 'train_source_timesteps=100', 'n_steps=20', 'ppo_batch_size=20', 'ppo_n_epochs=1']


class BufferSnapshots(BaseCallback):
    """Copies SB3's own rollout buffer at the end of every rollout."""

    def __init__(self):
        super().__init__()
        self.obs, self.actions, self.starts = [], [], []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        buf = self.model.rollout_buffer
        assert buf.full
        self.obs.append(buf.observations.copy())
        self.actions.append(buf.actions.copy())
        self.starts.append(buf.episode_starts.copy())


@pytest.mark.parametrize('env, task', [('darkroom', (1, 7)), ('darkkeytodoor', (4, 6, 2, 2))])
def test_markers_sit_on_sb3_rollout_buffer_boundaries(env, task):
    config = load_config(env=env, overrides=['n_stream=3', 'n_steps=30', 'train_source_timesteps=100',
                                             'ppo_batch_size=30', 'ppo_n_epochs=1', 'horizon=20'])
    vec_env = GridVecEnv(ENVS[env], task, config['n_stream'], config['grid_size'], config['horizon'])
    model = make_ppo(vec_env, config, seed=0)
    logger, snaps = HistoryLogger(), BufferSnapshots()
    n_rollouts = rollouts_needed(config)
    model.learn(total_timesteps=n_rollouts * config['n_steps'] * config['n_stream'],
                callback=CallbackList([logger, snaps]))
    h = logger.history()
    n = config['n_steps']
    assert len(snaps.obs) == n_rollouts == 4 and h['actions'].shape == (n_rollouts * n, config['n_stream'])
    for j in range(n_rollouts):
        region = slice(j * n, (j + 1) * n)
        # each region holds exactly the transitions of one SB3 rollout buffer, in order
        np.testing.assert_array_equal(h['states'][region], snaps.obs[j])
        np.testing.assert_array_equal(h['actions'][region], snaps.actions[j][..., 0])
        markers = h['compress_markers'][region]
        assert (markers[0] == 1).all() and (markers[-1] == 2).all() and (markers[1:-1] == 0).all()
    # region boundaries (n=30) do not coincide with episode boundaries (horizon=20): markers follow PPO, not episodes
    assert h['dones'][19].all() and not h['dones'][29].any()
    # next_states are the positions reached, also on the last step of an episode
    moved = h['states'][..., :2] + np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]])[h['actions']]
    np.testing.assert_array_equal(h['next_states'][..., :2], moved.clip(0, 8))


def test_collect_writes_the_spec_layout_and_refuses_to_overwrite(tmp_path, workdir):
    proc = run_script('collect.py', *TINY_COLLECT, *workdir)
    assert proc.returncode == 0, proc.stderr
    assert 'first rollout' in proc.stdout and 'oracle' in proc.stdout
    config = load_config(overrides=TINY_COLLECT + workdir)
    path = dataset_path(config)
    assert path.name == 'history_darkroom_PPO_alg-seed42.hdf5'
    with h5py.File(path) as f:
        assert sorted(f.keys(), key=int) == [str(i) for i in range(81)]
        assert f.attrs['schema_version'] == 1
        assert yaml.safe_load(f.attrs['config'])['n_steps'] == 20
        g = f['40']
        assert list(g.attrs['goal']) == [4, 4]
        T = 5 * 20
        for name, shape, dtype in [('states', (T, 2, 2), np.int32), ('actions', (T, 2), np.int32),
                                   ('rewards', (T, 2), np.int32), ('next_states', (T, 2, 2), np.int32),
                                   ('dones', (T, 2), np.bool_), ('compress_markers', (T, 2), np.int32)]:
            assert g[name].shape == shape and g[name].dtype == dtype, name
        assert (g['compress_markers'][::20] == 1).all() and (g['compress_markers'][19::20] == 2).all()
    assert (tmp_path / 'ppo' / 'task40').is_dir()  # PPO's own learning curves
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    proc = run_script('collect.py', *TINY_COLLECT, *workdir)
    assert_user_error(proc, 'already exists', '--force')
    assert hashlib.md5(path.read_bytes()).hexdigest() == digest


def _fail_on_goal(bad_goal, exc):
    from compressed_ad.algorithm import ppo as ppo_module
    real = ppo_module.learn_task

    def learn_task(goal, config, seed, tensorboard_log=None):
        if tuple(goal) == bad_goal:
            raise exc
        return real(goal, config, seed, None)
    return learn_task


@pytest.mark.parametrize('exc', [RuntimeError('boom'), KeyboardInterrupt()])
def test_failed_or_interrupted_collect_writes_no_dataset_and_keeps_the_finished_tasks(tmp_path, workdir, monkeypatch,
                                                                                       capsys, exc):
    from compressed_ad.algorithm import ppo as ppo_module
    config = load_config(overrides=TINY_COLLECT + workdir)
    path = dataset_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'previous dataset')  # --force must not lose it when the new collect fails
    monkeypatch.setattr(ppo_module, 'learn_task', _fail_on_goal((0, 3), exc))
    monkeypatch.setattr('sys.argv', ['collect.py', '--force', 'n_process=1', *TINY_COLLECT, *workdir])
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            collect.main()
        assert 'run collect.py again without --force' in capsys.readouterr().err
    else:
        with pytest.raises(UserError, match=r'task 3 \(0, 3\) failed \(RuntimeError: boom\); no dataset was written. '
                                            r'The 3 finished task\(s\) are kept in .*: run collect.py again without '
                                            r'--force to continue with the 78 missing one\(s\)'):
            collect.main()
    assert path.read_bytes() == b'previous dataset'
    partial = path.with_name(path.name + '.partial')
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, partial.name]  # no temporary file left
    # tasks 0, 1 and 2 ran before task 3 (one worker, in order): each kept whole, in the schema of the dataset
    assert sorted(p.name for p in partial.iterdir()) == ['task0.hdf5', 'task1.hdf5', 'task2.hdf5']
    with h5py.File(partial / 'task2.hdf5') as f:
        assert list(f) == ['2'] and list(f['2'].attrs['goal']) == [0, 2] and f['2/actions'].shape == (100, 2)


SIX_TASKS = TINY_COLLECT + ['n_tasks=6', 'n_process=1']  # goals 3, 21, 24, 39, 49, 64 (task_seed 0)


def test_a_killed_collect_resumes_and_writes_the_uninterrupted_collect_s_bytes(tmp_path, workdir):
    path = dataset_path(load_config(overrides=SIX_TASKS + workdir))
    partial = path.with_name(path.name + '.partial')
    proc = run_script('collect.py', *SIX_TASKS, *workdir)
    assert proc.returncode == 0, proc.stderr
    uninterrupted = path.rename(tmp_path / 'uninterrupted.hdf5')
    # killed (SIGKILL: no clean-up runs) once it has finished a task
    code = kill_script_when(lambda: (partial / 'task3.hdf5').exists(), 'collect.py', *SIX_TASKS, *workdir)
    assert code == -9 and not path.exists()
    kept = sorted(p.name for p in partial.glob('task*.hdf5'))
    assert 1 <= len(kept) < 6, kept
    proc = run_script('collect.py', *SIX_TASKS, *workdir)
    assert proc.returncode == 0, proc.stderr
    assert f'Resuming: {len(kept)} of 6 tasks are already collected' in proc.stdout
    assert f'over the {6 - len(kept)} tasks collected now' in proc.stdout
    assert path.read_bytes() == uninterrupted.read_bytes()
    assert not partial.exists()


def test_finished_tasks_of_another_config_are_refused_and_force_starts_over(tmp_path, workdir, monkeypatch):
    from compressed_ad.algorithm import ppo as ppo_module
    path = dataset_path(load_config(overrides=SIX_TASKS + workdir))
    partial = path.with_name(path.name + '.partial')
    with monkeypatch.context() as patch:
        patch.setattr(ppo_module, 'learn_task', _fail_on_goal((2, 6), RuntimeError('boom')))  # the third task
        patch.setattr('sys.argv', ['collect.py', *SIX_TASKS, *workdir])
        with pytest.raises(UserError, match='boom'):
            collect.main()
    kept = {p.name: p.read_bytes() for p in partial.iterdir()}
    assert sorted(kept) == ['task21.hdf5', 'task3.hdf5']
    proc = run_script('collect.py', *SIX_TASKS, 'n_stream=3', *workdir)
    assert_user_error(proc, "holds 2 finished task(s) of a collect with another config (n_stream: 2 there, 3 here)",
                      "with that collect's values to resume it", '--force to discard those tasks and start over')
    assert {p.name: p.read_bytes() for p in partial.iterdir()} == kept and not path.exists()
    proc = run_script('collect.py', '--force', *SIX_TASKS, 'n_stream=3', *workdir)
    assert proc.returncode == 0, proc.stderr
    assert f"--force: discarding the 2 finished task(s) in '{partial}' and starting over." in proc.stdout
    with h5py.File(path) as f:
        assert sorted(f, key=int) == ['3', '21', '24', '39', '49', '64']
        assert all(f[g]['actions'].shape == (100, 3) for g in f)  # every task collected again, with 3 streams
    assert not partial.exists()


def test_quick_collect_shows_learning(tmp_path, workdir):
    proc = run_script('collect.py', '--quick', 'n_tasks=8', *workdir)  # 8 of the 81 goals: the same streams each
    assert proc.returncode == 0, proc.stderr
    line = next(text for text in proc.stdout.splitlines() if 'first rollout' in text)
    first = float(line.split('first rollout ')[1].split(',')[0])
    last = float(line.split('last rollout ')[1].split(',')[0])
    assert last > 3 * first  # the histories record real learning, even in the tiny setting
