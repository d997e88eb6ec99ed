import re

import pytest

from compressed_ad import config_schema
from compressed_ad.config_schema import (EVAL, EVAL_KEYS, IO, IO_KEYS, RUN, RUN_KEYS, SCHEMA, SCOPES, ConfigError,
                                         apply_env_overlays, get_config, keys_of_scope, load_config)
from compressed_ad.context_modes import model_configs
from tests.helpers import ROOT, assert_user_error, run_script


def test_merge_order_include_quick_and_overrides():
    std = load_config()
    comp = load_config('config/model/ad_dr_compressed.yaml')
    assert std['n_transit'] == 240 and not std['use_compressed_context']
    assert comp['n_transit'] == 160 and comp['use_compressed_context'] and comp['compress_interval'] == 80
    assert comp['tf_n_embd'] == std['tf_n_embd'] and comp['tf_n_layer'] == std['tf_n_layer']  # via include
    assert std['n_steps'] == 80 and std['n_stream'] == 100 and std['alg_seed'] == 42
    quick = load_config(presets=['quick'], overrides=['train_timesteps=7', 'lr=1e-3', 'compile=true'])
    assert quick['train_timesteps'] == 7 and quick['lr'] == 1e-3 and quick['compile'] is True
    assert quick['n_stream'] == get_config('config/quick.yaml')['n_stream']
    assert isinstance(load_config(overrides=['lr=1'])['lr'], float)  # YAML int widened for a float key


def test_key_to_door_gives_every_mode_regions_of_its_own_rollouts_and_dark_room_keeps_its_values():
    """Key-to-Door's rollouts are 200 steps (four whole episodes): every mode's context follows them, while Dark
    Room's files keep the values the quick-start documents."""
    kd = {mode: load_config(file, env='darkkeytodoor') for mode, file in model_configs().items()}
    dr = {mode: load_config(file) for mode, file in model_configs().items()}
    assert {mode: c['n_steps'] for mode, c in kd.items()} == dict.fromkeys(kd, 200)
    assert kd['compressed']['compress_interval'] == kd['memory']['compress_interval'] == 200
    assert kd['compressed']['n_transit'] == kd['memory']['n_transit'] == 400  # previous + current region
    assert kd['standard']['n_transit'] == kd['sliding']['n_transit'] == 300   # six episodes
    assert kd['memory']['memory_tokens'] == dr['memory']['memory_tokens'] > 0  # the mode's own key still applies
    assert (dr['compressed']['n_transit'], dr['compressed']['compress_interval'], dr['standard']['n_transit'],
            dr['sliding']['n_transit'], dr['standard']['n_steps']) == (160, 80, 240, 240, 80)


def test_an_environment_s_values_yield_to_a_later_file_and_to_overrides(tmp_path):
    own = tmp_path / 'own.yaml'  # a user's model config over ad_dr.yaml: its keys win over the env's ad_dr values
    own.write_text('include: config/model/ad_dr.yaml\nn_transit: 120\n')
    config = load_config(str(own), env='darkkeytodoor', overrides=['compress_interval=50'])
    assert config['n_transit'] == 120 and config['compress_interval'] == 50
    assert load_config(str(own), env='darkkeytodoor')['compress_interval'] == 200  # not set again: the env's value


def test_an_environment_file_may_only_set_the_keys_of_the_file_it_is_named_after(tmp_path, monkeypatch):
    (tmp_path / 'config' / 'env' / 'darkroom').mkdir(parents=True)
    (tmp_path / 'config' / 'cpu.yaml').write_text('lr: 0.001\n')
    (tmp_path / 'config' / 'env' / 'darkroom' / 'cpu.yaml').write_text('lr: 0.002\ntrain_timesteps: 9\n')
    monkeypatch.setattr(config_schema, 'PROJECT_ROOT', tmp_path)
    monkeypatch.chdir(tmp_path)
    config = get_config('config/cpu.yaml')
    with pytest.raises(ConfigError, match=r'config/env/darkroom/cpu.yaml sets train_timesteps, which cpu.yaml does '
                                          r'not set'):
        apply_env_overlays(config, 'darkroom')
    (tmp_path / 'config' / 'env' / 'darkroom' / 'cpu.yaml').write_text('lr: 0.002\n')
    apply_env_overlays(config, 'darkroom')
    assert config['lr'] == 0.002 and config.source('lr') == 'config/env/darkroom/cpu.yaml'


def test_unknown_key_suggests_the_near_miss_and_names_the_source():
    with pytest.raises(ConfigError, match="'n_trnsit' in override 'n_trnsit=3'.*'n_transit'"):
        load_config(overrides=['n_trnsit=3'])


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('include: config/model/ad_dr.yaml\ntrain_batchsize: 3\n')
    with pytest.raises(ConfigError, match=f"'train_batchsize' in {bad}.*'train_batch_size'"):
        load_config(str(bad))


@pytest.mark.parametrize('override, needle', [
    ('n_transit=abc', "'n_transit'"), ('train_env_ratio=1.5', "'train_env_ratio'"),
    ('use_compressed_context=maybe', "'use_compressed_context'"), ('eval_compress_trigger=sometimes', 'fixed'),
    ('tf_n_head=3', 'divisible'), ('notakeyvalue', 'KEY=VALUE'),
])
def test_bad_values_are_refused(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=[override])


def test_compressed_context_needs_two_regions():
    with pytest.raises(ConfigError, match='n_transit >= 2 \\* compress_interval.*n_transit=100'):
        load_config('config/model/ad_dr_compressed.yaml', overrides=['n_transit=100'])


def test_cli_reports_config_errors_without_traceback(tmp_path):
    for script in ('collect.py', 'train.py'):
        proc = run_script(script, 'n_stram=3', f'datasets_dir={tmp_path}')
        assert_user_error(proc, "Unknown config key 'n_stram'", "Did you mean 'n_stream'")
    proc = run_script('train.py', '--config', 'config/model/nope.yaml')
    assert_user_error(proc, "config/model/nope.yaml' does not exist")
    assert not any(tmp_path.iterdir())


def test_print_config_shows_every_key_with_its_source_and_does_nothing_else(tmp_path):
    for script, extra in (('collect.py', []), ('train.py', ['--config', 'config/model/ad_dr_compressed.yaml']),
                          ('visualize_compression.py', []), ('example_compressed_training.py', [])):
        proc = run_script(script, '--print-config', '--cpu', *extra, f'runs_dir={tmp_path}/runs', 'lr=0.002')
        assert proc.returncode == 0, proc.stderr
        shown = {line.split(':')[0] for line in proc.stdout.splitlines() if ': ' in line and not line.startswith('#')}
        assert set(SCHEMA) <= shown, set(SCHEMA) - shown
        assert "lr: 0.002" in proc.stdout and "# override 'lr=0.002'" in proc.stdout
        assert '# config/cpu.yaml' in proc.stdout and '# config/env/darkroom.yaml' in proc.stdout
    assert not any(tmp_path.iterdir())


def test_the_readme_configuration_table_lists_every_key():
    readme = (ROOT / 'README.md').read_text()
    table = readme[readme.index('## Configuration'):]
    table = table[:table.index('\n## ', 1)]
    listed = set(re.findall(r'`([a-z0-9_]+)`', '\n'.join(line.split('|')[1] for line in table.splitlines()
                                                            if line.startswith('| `'))))
    assert set(SCHEMA) <= listed, f'missing from the README table: {sorted(set(SCHEMA) - listed)}'
    assert listed <= set(SCHEMA), f'not config keys: {sorted(listed - set(SCHEMA))}'


def test_quick_and_cpu_are_two_settings():
    assert_user_error(run_script('train.py', '--quick', '--cpu'), '--quick and --cpu')


def test_every_key_has_exactly_one_scope():
    assert all(len(entry) == 4 for entry in SCHEMA.values())  # (type, check, demand, scope), declared together
    assert set(SCOPES) == set(SCHEMA) and set(SCOPES.values()) == {RUN, EVAL, IO}
    assert (RUN_KEYS, EVAL_KEYS, IO_KEYS) == tuple(keys_of_scope(s) for s in (RUN, EVAL, IO))
    assert RUN_KEYS | EVAL_KEYS | IO_KEYS == set(SCHEMA)
    assert len(RUN_KEYS) + len(EVAL_KEYS) + len(IO_KEYS) == len(SCHEMA)  # no key in two scopes
    # what decides the data, the task sample and split, the model and its training is fixed by a run
    assert {'env', 'grid_size', 'horizon', 'n_tasks', 'task_seed', 'env_split_seed', 'train_env_ratio', 'alg_seed',
            'n_stream', 'n_steps', 'ppo_learning_rate', 'n_transit', 'compress_interval', 'memory_tokens', 'tf_n_embd',
            'lr', 'seed', 'train_batch_size', 'train_n_stream', 'test_batch_size', 'bf16'} <= RUN_KEYS
    assert EVAL_KEYS == {'eval_episodes', 'eval_streams_per_goal', 'eval_compress_trigger', 'eval_seed', 'eval_memory_reset',
                         'device'}
    assert {'datasets_dir', 'runs_dir', 'figs_dir', 'ppo_log_dir', 'n_process', 'summary_interval',
            'ckpt_interval', 'compile'} <= IO_KEYS


def test_print_config_names_included_files_as_the_project_s_paths():
    # ad_dr_compressed.yaml includes ad_dr.yaml: its keys show where they came from as a user would type it
    shown = config_schema.format_config(config_schema.load_config('config/model/ad_dr_compressed.yaml', presets=['cpu'],
                                                                  env='darkkeytodoor'))
    assert str(ROOT) not in shown
    assert re.search(r'^tf_dropout: 0\.1 +# config/model/ad_dr\.yaml$', shown, re.M)
