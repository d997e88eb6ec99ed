"""Known answers of the comparison statistics (comparison.py, on rliable) and of the example's tables built on them."""
import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from compressed_ad import comparison as stats
from compressed_ad.protocol_tables import aggregate, by_distance, per_goal_table

SEEDS, SPLITS = (0, 1), (0, 1, 2)


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """Fewer bootstrap replications keep the file fast; every answer below holds at any count."""
    monkeypatch.setattr(stats, 'N_RESAMPLES', 2_000)
    monkeypatch.setattr(stats, 'N_RESAMPLES_POI', 500)


def run_record(seed, split, mean, **extra):
    """A per-run record as ``gather`` makes it, with the keys ``aggregate`` reads."""
    return {'seed': seed, 'split': split, 'mean': mean, 'last10': mean, 'oracle_mean': 100.0, 'test_acc_action': 0.5,
            'steps_per_s': 10.0, 'peak_mib': 100.0, 'train_seconds': 60.0, 'eval_seconds': 6.0} | extra


def offset_splits():
    """Splits of very different difficulty (scores offset by 0, 10, 20); the candidate = baseline + 1 on every run.
    The seed jitter is exact in binary floating point, so the differences are exactly 1."""
    baseline = [run_record(seed, split, 10 + 10 * split + 0.25 * seed) for seed in SEEDS for split in SPLITS]
    candidate = [r | {'mean': r['mean'] + 1, 'last10': r['last10'] + 1} for r in baseline]
    return candidate, baseline


def test_offset_splits_paired_difference_and_probability_of_improvement_per_split():
    candidate, baseline = offset_splits()
    c, b = stats.score_matrix(candidate, 'mean'), stats.score_matrix(baseline, 'mean')
    assert c.shape == (len(SEEDS), len(SPLITS))  # rows = seeds, columns = splits
    diff = stats.paired_difference(c, b)
    assert (diff['value'], diff['low'], diff['high']) == (1.0, 1.0, 1.0)
    poi = stats.probability_of_improvement(c, b)
    assert (poi['value'], poi['low'], poi['high']) == (1.0, 1.0, 1.0)
    # the old formula, every run of A against every run of B pooled over the splits, says 2/3
    pooled = np.mean([(x > y) + 0.5 * (x == y) for x in c.ravel() for y in b.ravel()])
    assert pooled == pytest.approx(2 / 3)
    assert round(poi['value'], 2) != 0.67
    # the example's aggregate reads the same numbers from the per-run records
    paired = aggregate({'standard': baseline, 'compressed': candidate},
                       (('compressed', 'standard'),))['paired']['compressed vs standard']
    assert paired['probability_of_improvement']['value'] == 1.0
    assert (paired['difference_mean_return']['low'], paired['difference_mean_return']['high']) == (1.0, 1.0)


def test_iqm_of_a_known_matrix_is_the_mean_of_its_middle_half():
    scores = np.array([[0, 1000], [1, 100], [3, 6], [4, 5]], dtype=float)  # 8 runs: middle 50% = 3, 4, 5, 6
    assert stats.estimate(scores, 'iqm')['value'] == 4.5
    assert stats.iqm(scores) == 4.5
    assert stats.estimate(scores, 'mean')['value'] == pytest.approx(1119 / 8)


def test_probability_of_improvement_by_hand_with_ties():
    a = np.array([[1, 5], [3, 6]], dtype=float)  # (seeds, splits)
    b = np.array([[2, 4], [3, 4]], dtype=float)
    # split 0: 1>2 no, 1>3 no, 3>2 yes, 3=3 half -> 1.5/4; split 1: 5>4, 5>4, 6>4, 6>4 -> 4/4; average 0.6875
    assert stats.probability_of_improvement(a, b)['value'] == pytest.approx((0.375 + 1.0) / 2)
    # pooled over both splits it would be 9.5 / 16
    assert np.mean([(x > y) + 0.5 * (x == y) for x in a.ravel() for y in b.ravel()]) == pytest.approx(9.5 / 16)


def test_stratified_interval_by_hand():
    # one split, differences 0 and 2: resampled means are 0, 1, 2 with probabilities 1/4, 1/2, 1/4 -> [0, 2]
    e = stats.paired_difference([[1.0], [5.0]], [[1.0], [3.0]])
    assert (e['value'], e['low'], e['high']) == (1.0, 0.0, 2.0)
    # seeds are resampled within their split: the split means stay in [0, 1] and [100, 101], the mean in [50, 51]
    # (a bootstrap pooling the 4 runs would mix the splits and reach far below 50 and above 51)
    e = stats.estimate([[0.0, 100.0], [1.0, 101.0]])
    assert e['value'] == 50.5 and 50 <= e['low'] < e['value'] < e['high'] <= 51
    # one seed per split: nothing to resample, the value alone
    e = stats.estimate([[0.0, 100.0]])
    assert (e['low'], e['high']) == (50.0, 50.0) and stats.format_estimate(e) == '50.00'


def test_values_equal_rliable_called_directly_and_are_deterministic():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 3)), rng.normal(0.5, size=(4, 3))
    paired_b = rng.normal(size=(5, 3))

    def direct(scores, func, reps, seed):
        np.random.seed(seed)
        point, interval = rly.get_interval_estimates({'x': scores}, func, reps=reps)
        return float(point['x'][0]), *map(float, np.ravel(interval['x']))

    state = np.random.get_state()
    for name, aggregate_fn in (('mean', metrics.aggregate_mean), ('iqm', metrics.aggregate_iqm)):
        ours = stats.estimate(a, name, seed=7)
        expected = direct(a, lambda x, f=aggregate_fn: np.array([f(x)]), stats.N_RESAMPLES, 7)
        assert (ours['value'], ours['low'], ours['high']) == expected
        assert ours['low'] < ours['value'] < ours['high']
    ours = stats.paired_difference(a, paired_b, seed=1)
    expected = direct(a - paired_b, lambda x: np.array([metrics.aggregate_mean(x)]), stats.N_RESAMPLES, 1)
    assert (ours['value'], ours['low'], ours['high']) == expected
    ours = stats.probability_of_improvement(a, b, seed=2)
    expected = direct([a, b], lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
                      stats.N_RESAMPLES_POI, 2)
    assert (ours['value'], ours['low'], ours['high']) == expected
    assert ours['n'] == (15, 12)
    # the same call gives the same answer, and the caller's global random state is left as it was
    np.random.set_state(state)
    assert stats.estimate(a, 'iqm', seed=7) == stats.estimate(a, 'iqm', seed=7)
    after = np.random.get_state()
    assert all(np.array_equal(x, y) for x, y in zip(state, after))


def test_score_matrix_rows_are_seeds_and_columns_splits():
    records = [run_record(seed, split, 10 * seed + split) for split in (2, 0) for seed in (1, 0)]
    np.testing.assert_array_equal(stats.score_matrix(records, 'mean'), [[0, 2], [10, 12]])
    with pytest.raises(ValueError, match='missing'):
        stats.score_matrix(records[:-1], 'mean')


# Dark Room 9x9 starts at (4, 4): distance = the goal's L1 distance from there
GOALS = {0: [(4, 5), (4, 6), (5, 5)], 1: [(3, 4), (2, 4)]}  # distances: split 0: 1, 2, 2; split 1: 1, 2
GOAL_MEANS = {0: [90.0, 0.0, 50.0], 1: [10.0, 70.0]}  # the goals of one run differ a lot


def goal_runs(seed_offset=0.0):
    return [run_record(seed, split, 0.0, goals=GOALS[split], oracle=[20] * len(GOALS[split]),
                       goal_mean=np.array(GOAL_MEANS[split]) + seed_offset * seed,
                       goal_last10=np.array(GOAL_MEANS[split]) + seed_offset * seed)
            for seed in SEEDS for split in GOALS]


def test_by_distance_and_per_goal_intervals_are_over_runs_not_goals():
    rows = {'standard': goal_runs()}  # the two seeds of a split score identically
    table = by_distance(rows, 'darkroom', 9)['standard']
    assert sorted(table) == [1, 2]
    two = table[2]
    assert (two['runs'], two['n']) == (4, 6)
    # per run the mean over its goals at distance 2 (split 0: 25, split 1: 70), then the mean over the splits
    assert two['mean']['value'] == 47.5
    assert two['mean']['low'] == two['mean']['high'] == 47.5  # the runs agree: no uncertainty over runs
    assert table[1]['mean']['low'] == table[1]['mean']['high'] == table[1]['mean']['value'] == 50.0
    # the old bootstrap over the pooled goal x run cells gives a wide interval for the same data
    cells = [v for r in rows['standard'] for g, v in zip(r['goals'], r['goal_mean']) if g != (4, 5) and g != (3, 4)]
    old = stats.estimate(cells)
    assert old['high'] - old['low'] > 20
    # the per-goal table: identical seeds -> just the values
    text = per_goal_table(rows, 0)
    assert '[' not in text and '| (4, 6) | 20 | 0.00 / 0.00 |' in text
    # runs that differ get an interval
    rows = {'standard': goal_runs(seed_offset=2.0)}
    two = by_distance(rows, 'darkroom', 9)['standard'][2]['mean']
    assert two['value'] == 48.5 and two['low'] < two['high']
    assert '| (4, 6) | 20 | 1.00 [0.00, 2.00] / 1.00 [0.00, 2.00] |' in per_goal_table(rows, 0)
