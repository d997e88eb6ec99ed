"""bench.device_run's stages: a failed stage is recorded and the next one runs; a spent budget skips the rest."""
from bench.device_run import Stages


def test_a_failed_stage_does_not_stop_the_run_and_the_budget_bounds_it():
    stages = Stages(budget_s=30)
    assert not stages.run('fails', ['-c', 'import sys; sys.exit(3)'])
    assert stages.run('works', ['-c', 'pass'])
    assert not stages.run('too long', ['-c', 'import time; time.sleep(60)'])  # cut off when the budget is spent
    assert not stages.run('after', ['-c', 'pass'])
    assert stages.outcomes == {'fails': 'failed: exit code 3', 'works': 'ok', 'too long': 'cut off: budget spent',
                               'after': 'skipped: budget spent'}
    assert set(stages.timings) == {'fails', 'works', 'too long'} and stages.timings['too long'] < 40
