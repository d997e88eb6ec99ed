"""Every context mode trains and tests on the same transitions of every stream."""
import pytest
import torch

from compressed_ad.config_schema import COMPRESSED_MODEL_CONFIG, MEMORY_MODEL_CONFIG, MODEL_CONFIG, load_config
from compressed_ad.dataset import load_samplers
from compressed_ad.history_file import dataset_path, training_steps
from compressed_ad.synthetic_histories import write_synthetic_file
from tests.helpers import TINY

MODE_CONFIGS = {'standard': (MODEL_CONFIG, ['n_transit=20']), 'compressed': (COMPRESSED_MODEL_CONFIG, ['n_transit=16']),
                'memory': (MEMORY_MODEL_CONFIG, ['n_transit=16', 'memory_tokens=2', 'memory_unroll=2'])}


def last_step_reached(sampler) -> int:
    """The last stream step any window of the sampler can hold."""
    last_start = (sampler.n_starts - 1) * sampler.stride
    return last_start + sampler.span - 1  # compressed: region pairs (j, j + 1), K of them in a row with memory


def test_a_partial_last_rollout_is_no_mode_s_alone(workdir):
    # collect.py writes whole rollouts: 6 x 8 = 48 steps for train_source_timesteps=44; before, standard windows
    # read 44 steps and compressed ones the 40 of whole regions, so only standard saw steps 40..43
    written = load_config(overrides=TINY + workdir)  # train_source_timesteps=48: the file's 48 steps
    write_synthetic_file(dataset_path(written), written)
    reached = {}
    for mode, (model_config, extra) in MODE_CONFIGS.items():
        config = load_config(model_config, overrides=TINY + extra + workdir + ['train_source_timesteps=44'])
        train, test, _ = load_samplers(config, torch.device('cpu'))
        reached[mode] = {'train': (train.T, last_step_reached(train)), 'test': (test.T, last_step_reached(test))}
    assert all(r == {'train': (48, 47), 'test': (48, 47)} for r in reached.values()), reached


@pytest.mark.parametrize('T, wanted, n_steps, expected', [
    (1040, 1000, 80, 1040),  # the default Dark Room dataset: 13 whole rollouts
    (3040, 3000, 80, 3040),  # Key-to-Door: 38 whole rollouts
    (1040, 900, 80, 960),    # fewer steps asked for than the file holds: whole rollouts covering them
    (1000, 1000, 80, 960),   # a file cut short mid-rollout: the partial rollout is left out
    (1000, 1000, None, 1000),  # an old file with no region length: nothing to align to
])
def test_training_steps_are_whole_rollouts(T, wanted, n_steps, expected):
    assert training_steps(T, wanted, n_steps) == expected
