"""bench.device_run: a failed stage is recorded and the next one runs, a spent budget skips the rest, bad
arguments are refused before anything is written."""
from math import inf

import pytest

from bench.device_run import Stages
from tests.helpers import assert_user_error, run_script

pytestmark = pytest.mark.slow  # every stage is a process


def test_a_failed_stage_does_not_stop_the_run_and_the_budget_bounds_it():
    stages = Stages(budget_s=30)
    assert not stages.run('fails', ['-c', 'import sys; sys.exit(3)'])
    assert stages.run('works', ['-c', 'pass'])
    assert not stages.run('too long', ['-c', 'import time; time.sleep(60)'])  # cut off when the budget is spent
    assert not stages.run('after', ['-c', 'pass'])
    assert stages.outcomes == {'fails': 'failed: exit code 3', 'works': 'ok', 'too long': 'cut off: budget spent',
                               'after': 'skipped: budget spent'}
    assert set(stages.timings) == {'fails', 'works', 'too long'} and stages.timings['too long'] < 40


def test_device_run_refuses_a_number_of_jobs_below_one(tmp_path):
    proc = run_script('-m', 'bench.device_run', '--out', tmp_path / 'out', '--keytodoor', '--jobs', '0')
    assert_user_error(proc, '--jobs 0', '1 or more')
    assert not (tmp_path / 'out').exists()


def test_an_unbounded_budget_runs_every_stage():
    stages = Stages(budget_s=inf)
    assert stages.run('works', ['-c', 'pass']) and stages.outcomes == {'works': 'ok'}
