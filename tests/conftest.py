"""Fixtures: a temporary work directory and a tiny synthetic learning history in the real HDF5 layout."""
from __future__ import annotations

import pytest
import torch

from compressed_ad.config_schema import load_config
from compressed_ad.history_file import dataset_path
from compressed_ad.synthetic_histories import write_synthetic_file
from tests.helpers import TINY_STANDARD

torch.set_num_threads(1)


@pytest.fixture
def workdir(tmp_path):
    """Overrides that keep datasets and runs inside a temporary directory."""
    return ['datasets_dir=' + str(tmp_path / 'datasets'), 'runs_dir=' + str(tmp_path / 'runs'),
            'figs_dir=' + str(tmp_path / 'figs'),
            'ppo_log_dir=' + str(tmp_path / 'ppo')]


@pytest.fixture
def tiny_dataset(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    return write_synthetic_file(dataset_path(config), config)
