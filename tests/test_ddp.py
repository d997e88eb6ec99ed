import pytest
import torch

from tests.helpers import TINY_COMPRESSED, TINY_STANDARD, assert_user_error, run_script

TORCHRUN = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py']
STANDARD = TINY_STANDARD + ['tf_dropout=0.1']  # dropout draws from each rank's own random stream
# memory mode: each rank's rows walk their streams and carry their memory from step to step
MEMORY = ['--config', 'config/model/ad_dr_compressed_memory.yaml', *TINY_COMPRESSED, 'memory_unroll=2',
          'tf_dropout=0.1']
RUNS = {'standard': (STANDARD, 'AD-darkroom-seed0'), 'memory': (MEMORY, 'AD-darkroom-compressed-memory-seed0')}


@pytest.mark.parametrize('mode', ['standard', 'memory'])
def test_two_process_gloo_training_keeps_ranks_in_sync_and_resumes_exactly(tmp_path, workdir, tiny_dataset, mode):
    ARGS, name = RUNS[mode]
    proc = run_script(*TORCHRUN, *ARGS, *workdir, env_extra={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'on cpu x2' in proc.stdout and 'parameters identical on all 2 ranks' in proc.stdout
    run = tmp_path / 'runs' / name
    full = torch.load(run / 'ckpt-8.pt', weights_only=False)
    ranks = full['rng']['ranks']
    assert full['rng']['world_size'] == 2 and len(ranks) == 2  # each rank's own streams are saved
    assert not torch.equal(ranks[0]['sampler'], ranks[1]['sampler'])
    assert not torch.equal(ranks[0]['torch'], ranks[1]['torch'])
    if mode == 'memory':  # and its own walks and carried memory
        assert not torch.equal(ranks[0]['batches']['memory'], ranks[1]['batches']['memory'])
    (run / 'ckpt-8.pt').unlink()
    proc = run_script(*TORCHRUN, *ARGS, *workdir)
    assert proc.returncode == 0 and 'from step 4' in proc.stdout, proc.stderr
    resumed = torch.load(run / 'ckpt-8.pt', weights_only=False)
    for k, v in full['model'].items():
        torch.testing.assert_close(resumed['model'][k], v, rtol=0, atol=0, msg=k)
    # resuming with another number of processes would change every rank's batches: refused, nothing written
    (run / 'ckpt-8.pt').unlink()
    before = sorted(p.name for p in run.iterdir())
    assert_user_error(run_script('train.py', *ARGS, *workdir), 'trained by 2 process(es) and is resumed by 1',
                      '--nproc_per_node 2')
    assert sorted(p.name for p in run.iterdir()) == before
