"""Collection and protocols on Ray (the optional extra), on a local Ray cluster of 2 CPUs that the tests of this module
share, and the local paths without Ray."""
import h5py
import numpy as np
import pytest
import yaml

import collect
from compressed_ad import collection
from compressed_ad.config_schema import load_config
from compressed_ad.history_file import FIELDS, dataset_path, open_history
from compressed_ad.synthetic_histories import write_synthetic_file
from compressed_ad.utils import UserError
from tests.helpers import assert_user_error, kill_script_when, run_script

pytestmark = pytest.mark.slow  # a local Ray cluster starts its own processes

# six goals (3, 21, 24, 39, 49, 64 with task_seed 0), PPO cut to 5 rollouts of 20 steps on 2 streams
SIX_TASKS = ['n_stream=2', 'train_source_timesteps=100', 'n_steps=20', 'ppo_batch_size=20', 'ppo_n_epochs=1',
             'n_tasks=6']
RAY = ['collect_backend=ray']


def without_ray(script: str) -> str:
    """Python code that runs ``script`` with its command-line arguments, with Ray made impossible to import (a
    ``sys.modules`` entry of None makes ``import ray`` fail as if it were not installed)."""
    return (f"import runpy, sys; sys.modules['ray'] = None; sys.argv = ['{script}'] + sys.argv[1:]; "
            f"runpy.run_path('{script}', run_name='__main__')")


@pytest.fixture(scope='module')
def ray_cluster():
    """A local Ray cluster of 2 CPUs for the module's tests; its address, for scripts run as child processes."""
    ray = pytest.importorskip('ray')
    ray.init(num_cpus=2, object_store_memory=200 * 2 ** 20, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def collect_in_process(monkeypatch, *argv):
    monkeypatch.setattr('sys.argv', ['collect.py', *argv])
    collect.main()


def file_contents(path) -> dict:
    """Every object of a history file: its attributes and, for a dataset, its dtype, shape, filter and values."""
    out = {}

    def visit(name, obj):
        entry = {'attrs': {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}}
        if isinstance(obj, h5py.Dataset):
            entry.update(dtype=str(obj.dtype), shape=obj.shape, compression=obj.compression, values=obj[()].tolist())
        out[name] = entry
    with h5py.File(path, 'r') as f:
        out['/'] = {'attrs': {k: v for k, v in f.attrs.items() if k != 'config'}, 'config': yaml.safe_load(
            f.attrs['config'])}
        f.visititems(visit)
    return out


def test_a_ray_collect_writes_what_the_local_collect_writes(ray_cluster, tmp_path, workdir, monkeypatch):
    path = dataset_path(load_config(overrides=SIX_TASKS + workdir))
    collect_in_process(monkeypatch, *SIX_TASKS, 'n_process=1', *workdir)
    local = file_contents(path.rename(tmp_path / 'local.hdf5'))
    collect_in_process(monkeypatch, *SIX_TASKS, *RAY, *workdir)
    on_ray = file_contents(path)
    assert sorted(k for k in on_ray if '/' not in k and k.isdigit()) == ['21', '24', '3', '39', '49', '64']
    assert on_ray['/']['config'].pop('collect_backend') == 'ray'  # the one difference: how it was collected
    assert local['/']['config'].pop('collect_backend') == 'local'
    local['/']['config'].pop('n_process')
    on_ray['/']['config'].pop('n_process')
    assert on_ray == local  # every dataset (dtype, shape, filter, values) and every attribute


def test_a_killed_ray_collect_resumes_and_writes_the_uninterrupted_collect_s_bytes(ray_cluster, tmp_path, workdir,
                                                                                    monkeypatch, capsys):
    path = dataset_path(load_config(overrides=SIX_TASKS + workdir))
    partial = path.with_name(path.name + '.partial')
    collect_in_process(monkeypatch, *SIX_TASKS, *RAY, *workdir)
    uninterrupted = path.rename(tmp_path / 'uninterrupted.hdf5')
    # the driver, a process of its own on the same cluster, killed (SIGKILL) once it has kept a task
    code = kill_script_when(lambda: any(partial.glob('task*.hdf5')), 'collect.py', *SIX_TASKS, *RAY, *workdir,
                            env_extra={'RAY_ADDRESS': ray_cluster})
    kept = sorted(p.name for p in partial.glob('task*.hdf5'))
    assert code == -9 and not path.exists() and 1 <= len(kept) < 6, (code, kept)
    collect_in_process(monkeypatch, *SIX_TASKS, *RAY, *workdir)
    assert f'Resuming: {len(kept)} of 6 tasks are already collected' in capsys.readouterr().out
    assert path.read_bytes() == uninterrupted.read_bytes()
    assert not partial.exists()


def test_a_failed_ray_task_is_named_and_no_dataset_is_written(ray_cluster, tmp_path, workdir, monkeypatch):
    real = collection.collect_task

    def fail_on_task_24(job):  # sent to the Ray workers by value, in place of collection.collect_task
        if job[0] == 24:
            raise RuntimeError('boom')
        return real(job)
    monkeypatch.setattr(collection, 'collect_task', fail_on_task_24)
    with pytest.raises(UserError, match=r'task 24 \(2, 6\) failed \(RuntimeError: boom\); no dataset was written'):
        collect_in_process(monkeypatch, *SIX_TASKS, *RAY, *workdir)
    path = dataset_path(load_config(overrides=SIX_TASKS + workdir))
    partial = path.with_name(path.name + '.partial')
    assert not path.exists() and not list(path.parent.glob('*.tmp')) and not list(partial.glob('*.tmp'))
    for shard in partial.glob('*'):  # only whole tasks are kept, for a resume
        env_idx = int(shard.stem[4:])
        assert env_idx in (3, 21, 39, 49, 64)
        with open_history(shard) as f:
            assert sorted(f[str(env_idx)]) == sorted(FIELDS) and f[str(env_idx)]['actions'].shape == (100, 2)


def test_the_example_runs_its_protocol_as_ray_tasks_and_reuses_the_finished_runs(ray_cluster, tmp_path, workdir):
    overrides = [*workdir, 'n_stream=2', 'train_source_timesteps=240', 'train_timesteps=4', 'ckpt_interval=4',
                 'eval_interval=4', 'test_n_batches=1', 'eval_episodes=2', 'eval_streams_per_goal=1']
    config = load_config(presets=['quick'], overrides=overrides)
    write_synthetic_file(dataset_path(config), config)  # reused by the example instead of collecting
    ray_env = {'RAY_ADDRESS': ray_cluster}
    command = ['example_compressed_training.py', '--mode', 'all', '--quick', '--modes', 'standard', '--ray', *overrides]
    proc = run_script(*command, env_extra=ray_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '=== Ray cluster: 2 CPUs and 0 GPUs on 1 node(s); one task per script, each asking for one CPU' in proc.stdout
    assert proc.stdout.count('(Ray task, output: ') == 2 and proc.stdout.count(': done in ') == 2
    logs = tmp_path / 'runs' / 'logs'
    assert sorted(p.name for p in logs.iterdir()) == ['evaluate_standard_seed0_split0.log',
                                                      'train_standard_seed0_split0.log']
    assert 'Finished 4 steps' in (logs / 'train_standard_seed0_split0.log').read_text()
    assert np.load(tmp_path / 'runs' / 'AD-darkroom-seed0' / 'eval_result.npy').shape == (8, 2)
    assert '| train standard AD |' in (tmp_path / 'runs' / 'comparison.md').read_text()
    again = run_script(*command, env_extra=ray_env)
    assert again.returncode == 0, again.stderr
    assert 'reusing the finished run' in again.stdout and "reusing '" in again.stdout
    assert 'Ray task' not in again.stdout  # nothing was submitted


def test_without_ray_the_ray_options_name_the_extra_and_the_local_paths_run(tmp_path, workdir):
    for script, option in (('collect.py', 'collect_backend=ray'), ('example_compressed_training.py', '--ray')):
        proc = run_script('-c', without_ray(script), option, *SIX_TASKS, *workdir)
        assert_user_error(proc, f'{option} runs on Ray, which is not installed', 'pip install -e ".[ray]"')
    assert not (tmp_path / 'datasets').exists()
    # a local collect, then every module of the package imported: Ray is never imported, so none of it needs Ray
    proc = run_script('-c', "import importlib, pkgutil, runpy, sys\n"
                            "sys.argv = ['collect.py'] + sys.argv[1:]\n"
                            "try:\n"
                            "    runpy.run_path('collect.py', run_name='__main__')\n"
                            "except SystemExit as exc:\n"
                            "    assert not exc.code, exc.code\n"
                            "import compressed_ad\n"
                            "for module in pkgutil.walk_packages(compressed_ad.__path__, 'compressed_ad.'):\n"
                            "    importlib.import_module(module.name)\n"
                            "print('ray imported:', 'ray' in sys.modules)", *SIX_TASKS, *workdir)
    assert proc.returncode == 0, proc.stderr
    assert 'Wrote ' in proc.stdout and proc.stdout.strip().endswith('ray imported: False'), proc.stdout


def test_an_unreachable_ray_address_is_named_at_once(workdir):
    pytest.importorskip('ray')
    proc = run_script('collect.py', *SIX_TASKS, *RAY, *workdir, env_extra={'RAY_ADDRESS': '127.0.0.1:1'}, timeout=120)
    assert_user_error(proc, 'collect_backend=ray: cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:1',
                      "'ray start --head' prints its address")
