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
from compressed_ad.config_schema import ConfigError, load_config
from compressed_ad.context_modes import MODES, mode_of
from compressed_ad.model.layout import OPEN, TRANSITION
from compressed_ad.model.rollout import InContextRollout
from compressed_ad.run_files import read_run_config
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

    def rollout_context(self, rollout, config):
        return CurrentRegionContext(rollout, config)
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


@pytest.mark.parametrize('compressed, memory, expected', [(False, 0, 'standard'), (True, 0, 'compressed'),
                                                          (True, 2, 'memory')])
def test_the_two_keys_choose_the_mode_when_context_mode_is_empty(compressed, memory, expected):
    config = {'context_mode': '', 'use_compressed_context': compressed, 'memory_tokens': memory}
    assert mode_of(config).name == expected
    assert mode_of(dict(config, context_mode='standard')).name == 'standard'  # a registered name wins


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
