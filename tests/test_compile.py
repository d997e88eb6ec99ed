"""train.py with compile=true on a CPU: it trains, checkpoints and resumes exactly, and its losses are eager's within
rounding; a machine where inductor cannot compile gets a message, not a traceback."""
import shutil

import pytest
import torch

from compressed_ad.build import build_model
from compressed_ad.config_schema import load_config
from compressed_ad.model.training import wrap_for_training
from tests.helpers import TINY_STANDARD, assert_user_error, run_script
from tests.test_train import MODE_ARGS, RUN_NAMES, scalars

ONE_LAYER = ['tf_n_layer=1']  # half the graph to compile
# compiled and eager losses over 8 AdamW steps: fused kernels may round differently, nothing else differs (at these
# sizes the two have agreed to the last printed digit)
LOSS_RTOL = 1e-4


# memory: the mode whose compiled step carries the most state (walks, carried memory); standard AD's compiled step
# is trained by bench.device_run's tiny rehearsal (tests/test_device_run.py) and compressed AD's by its train.py stage
@pytest.mark.parametrize('mode', ['memory'])
def test_compiled_training_matches_eager_and_resumes_exactly(tmp_path, workdir, tiny_dataset, mode):
    args = MODE_ARGS[mode] + workdir + ONE_LAYER
    name = RUN_NAMES[mode]
    assert run_script('train.py', *args).returncode == 0
    compiled_runs = tmp_path / 'compiled'
    proc = run_script('train.py', *args, 'compile=true', f'runs_dir={compiled_runs}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'the first step compiles the model with torch.compile on cpu' in proc.stdout
    eager, compiled = scalars(tmp_path / 'runs' / name), scalars(compiled_runs / name)
    for tag in ('train/loss', 'test/loss_action'):
        assert len(compiled[tag]) == len(eager[tag]) >= 2, tag
        torch.testing.assert_close(torch.tensor(compiled[tag]), torch.tensor(eager[tag]), rtol=LOSS_RTOL, atol=0,
                                   msg=tag)
    assert compiled['train/loss'][-1] != compiled['train/loss'][0]  # it trained
    full = torch.load(compiled_runs / name / 'ckpt-8.pt', weights_only=False)
    resumed_runs = tmp_path / 'resumed'
    shutil.copytree(compiled_runs, resumed_runs)
    (resumed_runs / name / 'ckpt-8.pt').unlink()  # as if the compiled run had stopped after step 4
    proc = run_script('train.py', *args, 'compile=true', f'runs_dir={resumed_runs}')
    assert proc.returncode == 0 and 'from step 4' in proc.stdout, proc.stderr[-3000:]
    resumed = torch.load(resumed_runs / name / 'ckpt-8.pt', weights_only=False)
    for k, v in full['model'].items():
        torch.testing.assert_close(resumed['model'][k], v, rtol=0, atol=0, msg=k)


def test_compile_true_compiles_the_trained_model_on_a_cpu_too():
    # before, compile=true compiled on CUDA only, and a CPU run trained eagerly without a word
    config = load_config(overrides=TINY_STANDARD + ['compile=true'])
    model = build_model(config)
    net = wrap_for_training(model, config, torch.device('cpu'), world=1)
    assert isinstance(net, torch._dynamo.eval_frame.OptimizedModule) and net._orig_mod is model
    assert wrap_for_training(model, load_config(overrides=TINY_STANDARD), torch.device('cpu'), world=1) is model


def test_a_machine_where_torch_compile_fails_is_told_to_train_eagerly(tmp_path, workdir, tiny_dataset):
    # no working C++ compiler for inductor's CPU kernels, and no cached kernels to fall back on
    proc = run_script('train.py', *MODE_ARGS['standard'], *workdir, *ONE_LAYER, 'compile=true',
                      env_extra={'CXX': str(tmp_path / 'no-such-compiler'), 'TORCHINDUCTOR_FORCE_DISABLE_CACHES': '1'})
    assert_user_error(proc, 'compile=true', 'compile=false', 'resumes from its last checkpoint')
