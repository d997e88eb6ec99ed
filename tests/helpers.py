"""What the tests share: tiny config overrides and running a project script the way a user does."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from compressed_ad.utils import PROJECT_ROOT

ROOT = PROJECT_ROOT
# a small but complete setting: all 81 goals (the split needs them), short regions
TINY = ['n_stream=3', 'n_steps=8', 'train_source_timesteps=48', 'compress_interval=8',
        'tf_n_embd=32', 'tf_n_layer=2', 'tf_n_head=2', 'tf_dim_feedforward=64', 'tf_dropout=0.0',
        'train_batch_size=8', 'test_batch_size=8', 'test_n_batches=1', 'num_warmup_steps=2',
        'summary_interval=2', 'eval_interval=4', 'ckpt_interval=4', 'train_timesteps=8',
        'eval_episodes=3', 'eval_streams_per_goal=2', 'ppo_batch_size=8', 'device=cpu']
TINY_STANDARD = TINY + ['n_transit=20']
TINY_COMPRESSED = TINY + ['n_transit=16']
COMPRESSED = ['--config', 'config/model/ad_dr_compressed.yaml']


def run_script(*args, timeout=600, env_extra=None) -> subprocess.CompletedProcess:
    """Run a project script (or ``-m module``) from the project root; returns the completed process (text)."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def kill_script_when(predicate, *args, timeout=300, env_extra=None) -> int:
    """Start a project script like ``run_script``, and kill it (SIGKILL, with the worker processes it started) as
    soon as ``predicate()`` holds. Returns its exit code: -9 when it was killed, 0 if it ended first."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env.update(env_extra or {})
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and not predicate() and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A clean failure: non-zero exit, the message, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f'{needle!r} not in: {proc.stderr}'
