"""Shared plumbing: user errors, atomic writes, reading JSON results, devices (choice, autocast, peak memory) and script entry.

Nothing here knows about Dark Room, PPO or transformers; the configuration lives in ``config_schema.py``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the repository: config/ and the scripts


class UserError(Exception):
    """An expected mistake by the user: printed as one paragraph, exit code 2, no traceback."""


class ConfigError(UserError):
    """A config that cannot run: a key, a value or keys that disagree (named, with what to set)."""


# ----------------------------------------------------------------------------- files
@contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ''):
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary file is removed, so a reader never sees
    a half-written file and an existing ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{final.name}.', suffix=suffix + '.tmp', dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results unreadable to collaborators
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_path(final) as tmp:
        Path(tmp).write_text(text)


def read_json(path: str | os.PathLike):
    """The JSON in ``path``, or None when it is missing or unreadable (results not written yet)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- devices
def pick_device(name: str = 'auto'):
    """``auto``: CUDA when present, else the CPU; or exactly the device named (``cpu``, ``mps``, ``cuda[:N]``)."""
    import torch
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f"device={name} was asked for but CUDA is not available here. Use device=cpu or device=auto.")
    if name == 'mps' and not torch.backends.mps.is_available():
        raise UserError("device=mps was asked for but Apple's MPS backend is not available here. Use device=cpu or "
                        "device=auto.")
    return torch.device(name)


def autocast(device, enabled: bool = True):
    """bf16 autocast on CUDA when ``enabled`` (the ``bf16`` config key); a no-op elsewhere."""
    import torch
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == 'cuda')


def process_max_rss_mib() -> float:
    """The largest resident set this process has had so far, in MiB."""
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == 'darwin' else rss / 2 ** 10  # bytes on macOS, KiB on Linux


def reset_peak_memory(device) -> None:
    """Start a new peak-memory window on CUDA (the CPU measure, max RSS, cannot be reset)."""
    import torch
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device) -> tuple[float, str]:
    """(peak MiB, what was measured): CUDA's max allocated since the last reset, else the process max RSS."""
    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, 'cuda_max_allocated'
    return process_max_rss_mib(), 'process_max_rss'


def seconds_to_text(seconds: float) -> str:
    """A duration for people: '45 s', '12 min', '3.5 h', '2.1 days'."""
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 5400:
        return f'{seconds / 60:.0f} min'
    if seconds < 2 * 86400:
        return f'{seconds / 3600:.1f} h'
    return f'{seconds / 86400:.1f} days'


# ----------------------------------------------------------------------------- script entry
def run_main(main: Callable[[], Any]) -> None:
    """Run a script's ``main``; turn expected errors into one message and a non-zero exit."""
    try:
        code = main()
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('Interrupted. Outputs are written to a temporary file and renamed when complete, so nothing '
              'half-written was left behind; run the same command again to resume (train.py; collect.py without --force) '
              'or redo the work.',
              file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def parse_args(parser):
    """Options and ``KEY=VALUE`` overrides in any order."""
    return parser.parse_intermixed_args()
