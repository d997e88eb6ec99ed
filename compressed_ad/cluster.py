"""Ray, the optional engine for work beyond one machine (``pip install -e ".[ray]"``): joining a cluster, running
functions as Ray tasks and collecting their results as they finish (``RayTasks``), and running the project's scripts as Ray tasks
(``ScriptTasks``, the example's ``--ray``).

Ray is imported only inside these functions, and only when a backend asks for it, so the package and every local
path run without it. The cluster is the one at ``RAY_ADDRESS`` (``ray start --head`` prints it), else a cluster
started on this machine by ``ray start``, else a new local one (Ray's own rule). Tasks run on other nodes, so the
checkout, its virtual environment, the datasets and the runs must lie at the same path on every node (a shared
filesystem).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from compressed_ad.utils import PROJECT_ROOT, UserError

INSTALL = 'pip install -e ".[ray]"'


def import_ray(what: str):
    """The ``ray`` module, or a ``UserError`` saying how to install it; ``what`` names the option that asked."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{what} runs on Ray, which is not installed in this environment. Install the optional "
                        f"extra from the project root with '{INSTALL}', or leave {what} out to run on this machine "
                        f"alone.") from None
    return ray


def connect(what: str):
    """Join the cluster (``RAY_ADDRESS``, else Ray's own choice) unless this process already has; returns ``ray``."""
    ray = import_ray(what)
    if not ray.is_initialized():
        address = os.environ.get('RAY_ADDRESS') or None
        why = unreachable(address) if address else None
        if why is None:
            try:
                ray.init(address=address)
            except ConnectionError as exc:
                why = str(exc)
        if why is not None:
            raise UserError(f"{what}: cannot reach the Ray cluster at RAY_ADDRESS={address} ({why}). Start it "
                            f"('ray start --head' prints its address), correct RAY_ADDRESS, or unset it to start a "
                            f"cluster on this machine.")
    return ray


def unreachable(address: str, timeout_s: float = 10.0) -> str | None:
    """Why a 'host:port' address takes no connection (None when it does, or is of another form, such as
    'ray://...' or 'auto'); checked first because Ray itself retries an absent head for minutes."""
    host, sep, port = address.rpartition(':')
    if not sep or not port.isdigit() or '://' in address:
        return None
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return str(exc)
    return None


def describe_cluster(ray) -> str:
    """'16 CPUs and 2 GPUs on 3 node(s)': what the cluster offers now."""
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get('Alive'))
    return f"{resources.get('CPU', 0):.0f} CPUs and {resources.get('GPU', 0):.0f} GPUs on {nodes} node(s)"


def task_error(exc: Exception) -> str:
    """One line for a failed Ray task: the exception the task raised, or why Ray lost it (a crashed worker)."""
    cause = getattr(exc, 'cause', None)
    shown = cause if isinstance(cause, BaseException) else exc
    lines = [line for line in str(shown).splitlines() if line.strip()]
    return f"{type(shown).__name__}: {lines[0] if lines else ''}"


class RayTasks:
    """Ray tasks of one function, each asking for ``resources`` (e.g. ``num_cpus=1``, ``num_gpus=1``): ``submit``
    queues one on the cluster, ``finished`` yields them as they end, ``cancel`` stops those still queued or running."""

    def __init__(self, ray, fn: Callable, **resources):
        self.ray, self.remote = ray, ray.remote(**resources)(fn)
        self.pending: dict[Any, Any] = {}  # Ray object ref -> the caller's key

    def submit(self, key, *args) -> None:
        self.pending[self.remote.remote(*args)] = key

    def finished(self) -> Iterator[tuple[Any, Any, str | None]]:
        """(key, result, None) or (key, None, error text), in the order the tasks end, until none is pending."""
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            for ref in ready:
                key = self.pending.pop(ref)
                try:
                    yield key, self.ray.get(ref), None
                except self.ray.exceptions.RayError as exc:
                    yield key, None, task_error(exc)

    def cancel(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.pending.clear()


# ----------------------------------------------------------------------------- the project's scripts as Ray tasks
def run_logged_script(args: list[str], cwd: str, log: str) -> tuple[int, float]:
    """A Ray task: ``python *args`` in ``cwd``, its output into ``log``; returns (exit code, seconds)."""
    start = time.time()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'w') as out:
        code = subprocess.run([sys.executable, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    return code, time.time() - start


class ScriptTasks:
    """Project scripts as Ray tasks, with the interface of the example's local ``Steps``: ``run`` submits one script
    (its output in ``log_dir/{log_name}.log``, written by the node that runs it), ``wait`` waits for all and reports
    every failure at once. Each task asks for a GPU when the cluster has any, else for one CPU; Ray queues what the
    cluster cannot run yet. Child processes of this one (collect.py) join the same cluster through ``RAY_ADDRESS``."""

    def __init__(self, timings: dict, log_dir: Path, what: str = '--ray'):
        ray = connect(what)
        os.environ.setdefault('RAY_ADDRESS', ray.get_runtime_context().gcs_address)
        gpu = ray.cluster_resources().get('GPU', 0) >= 1
        self.tasks = RayTasks(ray, run_logged_script, num_cpus=1, num_gpus=1 if gpu else 0)
        self.timings, self.log_dir = timings, Path(log_dir).resolve()
        self.submitted: dict[str, tuple[str, list[str], Path]] = {}  # log name -> (title, args, log)
        self.failed: list[str] = []
        print(f"=== Ray cluster: {describe_cluster(ray)}; one task per script, each asking for "
              f"{'one GPU' if gpu else 'one CPU'}", flush=True)

    def run(self, title: str, args: list[str], log_name: str) -> None:
        """``log_name`` tells apart every run a ``runs_dir`` can hold, as for ``Steps.run``."""
        log = self.log_dir / f'{log_name}.log'
        print(f"\n=== {title}: python {' '.join(args)}  (Ray task, output: {log})", flush=True)
        self.submitted[log_name] = (title, args, log)
        self.tasks.submit(log_name, args, str(PROJECT_ROOT), str(log))

    def wait(self) -> None:
        """Wait for every submitted script; a failure is reported once all have ended."""
        try:
            for name, result, error in self.tasks.finished():
                title, args, log = self.submitted.pop(name)
                if error is None and result[0] == 0:
                    self.timings[title] = result[1]
                    print(f"=== {title}: done in {result[1]:.0f} s", flush=True)
                else:
                    why = f'failed as a Ray task, {error}' if error else f'exited with {result[0]}'
                    self.failed.append(f"'{title}' (python {' '.join(args)} {why}; its output is in {log})")
        finally:
            self.tasks.cancel()
        if self.failed:
            raise UserError(f"{len(self.failed)} step(s) failed: {'; '.join(self.failed)}. Fix that and re-run: "
                            f"finished stages are reused.")
