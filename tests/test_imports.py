"""The imports run one way (scripts -> config -> modes -> model): each fact below is checked in a fresh interpreter,
since a module imported by an earlier test would hide a regression."""
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # every test starts an interpreter of its own

ENV = {'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}


def modules_loaded_by(statement: str) -> set[str]:
    """The ``compressed_ad`` modules (and whether torch) that ``statement`` loads in a fresh interpreter."""
    probe = (f"import sys; {statement}; print(' '.join(m for m in sys.modules "
             f"if m.startswith('compressed_ad') or m == 'torch'))")
    proc = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_the_transformer_imports_only_torch_and_the_layout():
    assert modules_loaded_by('import compressed_ad.model.transformer') == {
        'torch', 'compressed_ad', 'compressed_ad.model', 'compressed_ad.model.layout',
        'compressed_ad.model.transformer'}


def test_the_modes_import_neither_the_config_nor_the_model():
    loaded = modules_loaded_by('import compressed_ad.context_modes')
    assert {'compressed_ad.modes.standard', 'compressed_ad.modes.compressed', 'compressed_ad.modes.memory',
            'compressed_ad.modes.sliding'} <= loaded  # the registry holds the built-in modes
    assert not loaded & {'compressed_ad.config_schema', 'compressed_ad.model.transformer', 'compressed_ad.env',
                         'compressed_ad.build', 'compressed_ad.run_files'}


@pytest.mark.parametrize('statement', ['import compressed_ad.config_schema',
                                       'import compressed_ad.config_schema as c; c.load_config(context_mode=False)'])
def test_the_config_and_the_collector_s_config_load_no_torch(statement):
    loaded = modules_loaded_by(statement)
    assert 'compressed_ad.config_schema' in loaded
    assert not loaded & {'torch', 'compressed_ad.context_modes', 'compressed_ad.model.transformer'}


def test_collect_print_config_loads_no_transformer(tmp_path):
    proc = subprocess.run([sys.executable, '-X', 'importtime', 'collect.py', '--print-config'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert 'n_stream' in proc.stdout  # it did print the config
    imported = [line.rsplit('|', 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith('import time')]
    assert 'compressed_ad.config_schema' in imported
    assert not [name for name in imported if 'transformer' in name or name == 'torch']
