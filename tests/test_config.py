import re

import pytest

from compressed_ad.config_schema import (EVAL, EVAL_KEYS, IO, IO_KEYS, RUN, RUN_KEYS, SCHEMA, SCOPES, ConfigError,
                                         get_config, keys_of_scope, load_config)
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
    assert EVAL_KEYS == {'eval_episodes', 'eval_streams_per_goal', 'eval_compress_trigger', 'eval_seed', 'device'}
    assert {'datasets_dir', 'runs_dir', 'figs_dir', 'ppo_log_dir', 'n_process', 'summary_interval',
            'ckpt_interval', 'compile'} <= IO_KEYS
