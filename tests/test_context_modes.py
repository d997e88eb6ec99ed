"""Context modes behind one interface: the selection rule, and a mode defined outside the library trained and
evaluated through the real scripts."""
import json
import sys

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from compressed_ad.build import build_model
from compressed_ad.config_schema import (COMPRESSED_MODEL_CONFIG, MEMORY_MODEL_CONFIG, MODEL_CONFIG, ConfigError,
                                         load_config)
from compressed_ad.context_modes import MODES, checked_mode, mode_of
from compressed_ad.model.layout import OPEN, TRANSITION
from compressed_ad.model.rollout import InContextRollout
from compressed_ad.modes import SLIDING_MODEL_CONFIG
from compressed_ad.run_files import changed_run_keys, read_run_config, run_dir
from tests.helpers import COMPRESSED, TINY_COMPRESSED, run_script

# "compressed, keeping only the current region": training windows <c> region </c>; in the rollout every closed
# region is dropped and the context restarts as <c>
EXTRA_MODE = '''
import torch

from compressed_ad.config_schema import ConfigError
from compressed_ad.context_modes import WindowTemplate
from compressed_ad.model.layout import first_transition, region_types
from compressed_ad.modes.compressed import CompressedMode, RegionContext


class CurrentRegionContext(RegionContext):
    def keep_closed_region(self, rows, n, width):
        self.ctx_len[rows] = first_transition(self.m)  # <c>
        return first_transition(self.m)


class CurrentRegionMode(CompressedMode):
    name, model_config, run_suffix = 'current-region', 'config/model/ad_dr_compressed.yaml', '-compressed-current'

    def check(self, config):
        if config['memory_tokens']:
            raise ConfigError('current-region mode keeps no memory: set memory_tokens=0.')

    def max_context_len(self, config):
        return config['compress_interval'] + 2

    def window(self, config):
        R = config['compress_interval']
        types = region_types(R)
        offsets = torch.full_like(types, -1)
        offsets[1:-1] = torch.arange(R)
        return WindowTemplate(types, offsets, stride=R, align=R)

    def rollout_context(self, shared, config):
        return CurrentRegionContext(shared, config)
'''
EXTRA = 'current_region_mode:CurrentRegionMode'


@pytest.fixture
def extra_mode(tmp_path, monkeypatch):
    """The extra mode's module written into tmp_path and importable here; its registration undone afterwards."""
    (tmp_path / 'current_region_mode.py').write_text(EXTRA_MODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    MODES.pop('current-region', None)
    sys.modules.pop('current_region_mode', None)


@pytest.mark.parametrize('compressed, expected', [(False, 'standard'), (True, 'compressed')])
def test_use_compressed_context_chooses_when_context_mode_is_empty(compressed, expected):
    config = {'context_mode': '', 'use_compressed_context': compressed, 'memory_tokens': 0}
    assert mode_of(config).name == expected
    assert mode_of(dict(config, memory_tokens=2)).name == expected  # memory_tokens sizes the memory, chooses no mode
    assert mode_of(dict(config, context_mode='standard')).name == 'standard'  # a registered name wins


def test_the_memory_config_names_its_mode():
    config = load_config(MEMORY_MODEL_CONFIG, overrides=TINY_COMPRESSED + ['memory_unroll=2'])
    assert config['context_mode'] == 'memory' and config['use_compressed_context'] and config['memory_tokens'] == 4
    assert checked_mode(config).name == 'memory'


@pytest.mark.parametrize('model_config, overrides, needles', [
    # memory_tokens alone no longer turns compressed (or standard) mode into the memory mode
    (COMPRESSED_MODEL_CONFIG, ['memory_tokens=2'], ['memory_tokens=2', 'compressed mode', 'context_mode=memory']),
    (MODEL_CONFIG, ['memory_tokens=2'], ['memory_tokens=2', 'standard mode', 'context_mode=memory']),
    (SLIDING_MODEL_CONFIG, ['memory_tokens=2'], ['memory_tokens=2', 'context_mode=sliding', 'memory_tokens=0']),
    (MEMORY_MODEL_CONFIG, ['memory_tokens=0'], ['context_mode=memory', 'memory_tokens=0', 'memory_tokens > 0']),
    # the quick-start's switch with a mode that is not compressed
    (MODEL_CONFIG, ['context_mode=standard', 'use_compressed_context=true'],
     ['use_compressed_context=true', 'context_mode=standard', 'use_compressed_context=false']),
    (SLIDING_MODEL_CONFIG, ['use_compressed_context=true'],
     ['use_compressed_context=true', 'context_mode=sliding', 'use_compressed_context=false']),
])
def test_keys_that_disagree_on_the_mode_are_refused_naming_them(model_config, overrides, needles):
    with pytest.raises(ConfigError) as refused:
        load_config(model_config, overrides=TINY_COMPRESSED + overrides)
    for needle in needles:
        assert needle in str(refused.value), (needle, str(refused.value))
    assert "override 'memory_tokens=" in str(refused.value) or "override 'use_compressed" in str(refused.value)


def test_the_switch_with_a_compressed_mode_agrees():
    for mode in ('compressed', 'memory'):  # ad_dr_compressed.yaml's use_compressed_context: true stays true
        config = load_config(COMPRESSED_MODEL_CONFIG, overrides=TINY_COMPRESSED + [
            f'context_mode={mode}', 'memory_unroll=2', f"memory_tokens={2 if mode == 'memory' else 0}"])
        assert checked_mode(config).name == mode


def test_a_memory_run_saved_before_context_mode_named_it_loads_in_the_memory_mode(tmp_path):
    wanted = load_config(MEMORY_MODEL_CONFIG, overrides=TINY_COMPRESSED + ['memory_unroll=2'])
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(dict(wanted, context_mode='')))  # as such runs were saved
    config = read_run_config(tmp_path)
    assert config['context_mode'] == 'memory' and checked_mode(config).name == 'memory'
    assert 'memory_tokens > 0' in config.source('context_mode')
    assert changed_run_keys(config, wanted) == ''  # train.py resumes it with the memory config as it is now
    assert run_dir(config) == run_dir(wanted)


def test_a_saved_run_without_context_mode_loads_in_its_mode(tmp_path):
    saved = dict(load_config(COMPRESSED[1], overrides=TINY_COMPRESSED))
    del saved['context_mode']
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(saved))
    config = read_run_config(tmp_path)
    assert config['context_mode'] == '' and mode_of(config).name == 'compressed'


def test_an_unknown_context_mode_is_refused():
    with pytest.raises(ConfigError, match="context_mode 'nonsense'"):
        load_config(overrides=['context_mode=nonsense'])
    with pytest.raises(ConfigError, match='cannot import'):
        load_config(overrides=['context_mode=no_such_module:Mode'])


def test_the_extra_mode_keeps_only_the_current_region(extra_mode):
    config = load_config(COMPRESSED[1], overrides=TINY_COMPRESSED + [f'context_mode={EXTRA}'])
    R = config['compress_interval']
    assert mode_of(config).name == 'current-region' and 'current-region' in MODES
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert model.cfg.max_len == R + 2 and model.type_head is not None
    logits = []
    for use_cache in (True, False):
        r = InContextRollout(model, config, torch.tensor([[4, 2], [0, 5]]), use_cache=use_cache, seed=1)
        steps = []
        for step in range(1, 3 * R + 1):
            steps.append(r.step()[2])
            ctx = r.ctx['types'][0, :r.context.ctx_len[0]].tolist()
            assert ctx == [OPEN] + [TRANSITION] * (step % R)  # at a close the context restarts as <c>
        logits.append(torch.stack(steps))
        assert r.max_ctx_len == R + 1 and [x.tolist() for x in r.closed_region_lengths] == [[R, R]] * 3
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def test_a_mode_defined_outside_the_library_trains_and_evaluates(tmp_path, workdir, tiny_dataset, extra_mode):
    env = {'PYTHONPATH': str(extra_mode)}
    proc = run_script('train.py', *COMPRESSED, *TINY_COMPRESSED, *workdir, f'context_mode={EXTRA}', env_extra=env)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / 'runs' / 'AD-darkroom-compressed-current-seed0'
    assert 'Training current-region AD' in proc.stdout and run.is_dir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert {'train/loss', 'train/loss_action', 'train/loss_token_type', 'test/acc_token_type'} <= set(
        events.Tags()['scalars'])
    proc = run_script('evaluate.py', run, 'device=cpu', env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert np.load(run / 'eval_result.npy').shape == (8 * 2, 3)  # 8 held-out goals x 2 streams, 3 episodes
    summary = json.loads((run / 'eval_summary.json').read_text())
    R = 8  # compress_interval of TINY
    assert summary['mode'] == 'current-region' and summary['max_context_tokens'] == R + 1  # <c> and one region
