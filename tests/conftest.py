"""Fixtures: a temporary work directory and a tiny synthetic learning history in the real HDF5 layout; the test tiers.

The fast tier, ``pytest -m "not slow"`` (``make test-fast``), runs every test that stays in the pytest process: a
test is marked ``slow`` when it, or a fixture it uses, starts a process (a project script through ``run_script``,
or ``subprocess`` / ``multiprocessing`` directly), or when it says so itself (``@pytest.mark.slow``, or a module's
``pytestmark``: the benchmark, the GPU rehearsal and Ray start processes of their own).
"""
from __future__ import annotations

import inspect
import re

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


STARTS_A_PROCESS = re.compile(r'\brun_script\(|\bsubprocess\.|\bmp\.spawn\(|\bmultiprocessing\.')


def _starts_a_process(func) -> bool:
    try:
        return bool(STARTS_A_PROCESS.search(inspect.getsource(func)))
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, '_fixtureinfo', None)
        funcs = [getattr(item, 'function', None)]
        if fixtures is not None:
            funcs += [d.func for defs in fixtures.name2fixturedefs.values() for d in defs]
        if any(f is not None and _starts_a_process(f) for f in funcs):
            item.add_marker(pytest.mark.slow)
