import torch

from tests.helpers import TINY_STANDARD, run_script


def test_two_process_gloo_training_keeps_ranks_in_sync_and_resumes(tmp_path, workdir, tiny_dataset):
    torchrun = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py']
    proc = run_script(*torchrun, *TINY_STANDARD, *workdir, env_extra={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'on cpu x2' in proc.stdout and 'parameters identical on all 2 ranks' in proc.stdout
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    full = torch.load(run / 'ckpt-8.pt', weights_only=False)
    assert len(full['rng']['sampler']) == 2  # each rank's own sampling stream is saved
    assert not torch.equal(full['rng']['sampler'][0], full['rng']['sampler'][1])
    (run / 'ckpt-8.pt').unlink()
    proc = run_script(*torchrun, *TINY_STANDARD, *workdir)
    assert proc.returncode == 0 and 'from step 4' in proc.stdout, proc.stderr
    resumed = torch.load(run / 'ckpt-8.pt', weights_only=False)
    for k, v in full['model'].items():
        torch.testing.assert_close(resumed['model'][k], v, rtol=0, atol=0, msg=k)
