"""Memory mode over many hand-offs: training memory never crosses a stream boundary, the training walk builds the
rollout's memory for as many regions as an evaluation holds, and histories as long as an evaluation train and
evaluate end to end."""
import json
import re
import sys

import h5py
import numpy as np
import pytest
import torch

from compressed_ad import region_returns as regions
from compressed_ad.build import build_model
from compressed_ad.config_schema import load_config
from compressed_ad.dataset import WindowSampler, load_samplers
from compressed_ad.env import task_split
from compressed_ad.history_file import dataset_path, expected_markers
from compressed_ad.model.layout import TRANSITION, compressed_window
from compressed_ad.model.rollout import InContextRollout
from compressed_ad.model.training import TrainingBatches, train_step
from compressed_ad.run_files import EVAL_RESULT, EVAL_SUMMARY, write_run_config
from compressed_ad.synthetic_histories import synthetic_history, write_synthetic_file
from compressed_ad.utils import ConfigError, UserError
from tests.helpers import TINY_COMPRESSED, assert_user_error, run_script

MEMORY_CONFIG = 'config/model/ad_dr_compressed_memory.yaml'


def memory_config(*extra):
    return load_config(MEMORY_CONFIG, overrides=TINY_COMPRESSED + ['memory_tokens=2', *extra])


def random_model(config, seed=0):
    """A memory model with sharper random weights than its initialisation, so that what a window reads from the
    memory changes its logits visibly."""
    torch.manual_seed(seed)
    model = build_model(config)
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model.eval()


def sampler_of(config, n_goals=2):
    """A training sampler over ``n_goals`` synthetic goals' streams (``n_stream`` each)."""
    hist = [synthetic_history(config, (i, 8 - i), config['n_stream'], config['train_source_timesteps'],
                              config['n_steps'], seed=i) for i in range(n_goals)]
    streams = {k: np.concatenate([np.swapaxes(h[k], 0, 1) for h in hist])
               for k in ('states', 'actions', 'rewards', 'compress_markers')}
    return WindowSampler(streams, config, torch.device('cpu'))


def window_keys(batch):
    """What identifies a window: its tokens' observation, previous action and action target, (..., 3L)."""
    return torch.cat([batch['obs'], batch['prev_action'], batch['action']], -1)


def test_training_steps_never_carry_a_row_s_memory_across_a_stream_boundary():
    """Every training window's logits are those of its stream read from the stream's first window on, as the
    rollout reads it (whichever stream the row walked before, wherever in a step its new stream begins), and a
    step in which a stream begins trains the initial memory.

    Each window is identified by its tokens alone (every window of every stream is distinct here), not by the walk's
    bookkeeping, and its expected logits come from running its stream from its first window with the initial
    memory, one ``model.forward_tokens`` at a time. Catches the flag that marks a stream's first window being dropped
    and the memory being reset only at a step's first window."""
    K = 3  # 6 regions per stream = 5 windows, so a row's stream ends at every position k of a step in turn
    config = memory_config(f'memory_unroll={K}', 'train_batch_size=24', 'test_batch_size=24')
    sampler = sampler_of(config)
    n_seq, n = sampler.n_seq, sampler.n_windows
    model = random_model(config)
    every = torch.arange(n_seq)
    keys, expected = [], []  # per window j: (n_seq, 3L) keys and (n_seq, L, A) logits from the stream's start
    memory = model.initial_memory(n_seq)
    with torch.no_grad():
        for j in range(n):
            w = sampler.windows(every, torch.full_like(every, j * sampler.stride))
            logits, _, memory = model.forward_tokens(w['types'], w['obs'], w['prev_action'], w['prev_reward'], memory)
            keys.append(window_keys(w))
            expected.append(logits)
    keys, expected = torch.stack(keys, 1).flatten(0, 1), torch.stack(expected, 1).flatten(0, 1)  # (n_seq * n, ...)
    assert len(keys.unique(dim=0)) == len(keys)  # a window's tokens say which stream and window it is

    recorded = []
    def net(*args, **kwargs):  # the model, as train_step calls it, with its outputs kept
        out = model(*args, **kwargs)
        recorded.append(out[0].detach())
        return out
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step runs in full and changes no weight
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = TrainingBatches(sampler, model, config, torch.Generator().manual_seed(0))
    batches.start()
    first_at = set()  # the positions k in a step at which some row's stream began
    for _ in range(8):
        batch = batches.next()
        losses = train_step(net, model, batch, optimizer, scheduler, config)
        batches.after_step(losses)
        match = (window_keys(batch)[:, :, None] == keys).all(-1)  # (S, K, n_seq * n)
        assert match.sum(-1).eq(1).all()
        which = match.float().argmax(-1)  # (S, K): index of (stream, window) = stream * n + window
        torch.testing.assert_close(recorded[-1], expected[which], rtol=1e-4, atol=1e-5)
        begins = which % n == 0
        first_at |= set(begins.nonzero()[:, 1].tolist())
        if begins.any():  # the initial memory is trained where a stream begins
            assert model.memory_init.grad is not None and model.memory_init.grad.abs().sum() > 0
    assert first_at == set(range(K))  # streams began at a step's first window and inside steps


def rollout_history(model, config, goals, steps: int, seed: int = 3):
    """Run the in-context rollout ``steps`` steps on ``goals`` (B, 2), keeping its own transitions as a history.

    Returns (history: the history file's stream-major fields over the first steps - 1 steps (the last step's
    action is never the prev_action of a token), logits (B, steps, A), memory_at: window j -> the memory the
    rollout's context holds while region pair (j, j + 1) is its context, for j >= 1)."""
    R = config['compress_interval']
    rollout = InContextRollout(model, config, goals, seed=seed)
    tokens, real_append = [], rollout.context.append
    rollout.context.append = lambda token: tokens.append(dict(token)) or real_append(token)
    memory_at, logits = {}, []
    for t in range(1, steps + 1):
        logits.append(rollout.step()[2])
        if t % R == 0 and t >= 2 * R:  # the close after region j + 1 hands on the memory window j + 1 reads
            memory_at[t // R - 1] = rollout.context.memory.clone()
    stream = {f: torch.stack([x[f] for x in tokens], 1) for f in ('obs', 'prev_action', 'prev_reward')}
    T = steps - 1
    history = {'states': torch.stack([stream['obs'][:, :T] // 9, stream['obs'][:, :T] % 9], -1).numpy(),
               'actions': stream['prev_action'][:, 1:T + 1].numpy(),
               'rewards': stream['prev_reward'][:, 1:T + 1].numpy(),
               'compress_markers': np.tile(expected_markers(T, R), (len(goals), 1))}
    return history, torch.stack(logits, 1), memory_at


@pytest.mark.slow  # 50 regions of the evaluation's length
def test_a_training_row_carries_the_rollout_s_memory_through_as_many_regions_as_an_evaluation_holds():
    """An evaluation of 200 Dark Room episodes is 4,000 steps = 50 regions of 80, its last region read with the
    memory of 48 hand-offs. At the Dark Room's region length, memory size and unroll (80, 4, 4), a training row
    walking the rollout's own 50-region history, K windows per step with its memory carried between steps, reads at
    every window the memory the rollout's context holds there and scores its transitions as the rollout did; and
    that memory still depends on the regions long dropped (a chain restarted halfway ends elsewhere), so the match
    at the far windows is not that of a memory that has forgotten where it started."""
    config = load_config(MEMORY_CONFIG, overrides=TINY_COMPRESSED + [
        'compress_interval=80', 'n_steps=80', 'n_transit=160', 'memory_tokens=4', 'memory_unroll=4'])
    R, K, regions = config['compress_interval'], config['memory_unroll'], 50
    model = random_model(config)
    history, logits, memory_at = rollout_history(model, config, torch.tensor([[4, 2], [0, 5]]), (regions + 1) * R)
    sampler = WindowSampler(history, config, torch.device('cpu'))
    assert sampler.n_windows == regions - 1  # region pairs (0, 1) .. (48, 49)
    sampler.start_walks(2, torch.Generator().manual_seed(0))
    sampler.load_walk_state({'seq': torch.arange(2), 'pos': torch.zeros(2, dtype=torch.long)})  # from the start
    types = compressed_window(R, config['memory_tokens'])[0]
    current = (types == TRANSITION).nonzero().squeeze(1)[R:]  # the positions of a window's second region
    memory, window = None, 0
    with torch.no_grad():
        while window < sampler.n_windows:
            batch = sampler.walk(torch.Generator().manual_seed(window))
            out = model(batch['types'], batch['obs'], batch['prev_action'], batch['prev_reward'], memory=memory,
                        fresh=batch['fresh'])
            for k in range(min(K, sampler.n_windows - window)):  # window j's second region: rollout steps of j + 1
                j = window + k
                torch.testing.assert_close(out[0][:, k, current], logits[:, (j + 1) * R:(j + 2) * R],
                                           rtol=1e-4, atol=1e-5)
            memory, window = out[2], window + K
            if window < sampler.n_windows:  # what the row carries into window `window`, after `window` hand-offs
                torch.testing.assert_close(memory, memory_at[window], rtol=1e-4, atol=1e-5)
        assert window == 52  # the last step began at window 48, the last region pair
        # each comparison discriminates: the memory of window j - 1 alone, written from the initial memory, is not
        # the memory carried into window j (a random model's memory fades within a few windows, so what is shown is
        # each of the 48 hand-offs, not a memory that spans them all)
        j = torch.arange(2, regions - 1)  # window 0 reads the initial memory itself
        w = sampler.windows(torch.arange(2).repeat(len(j)), (j - 1).repeat_interleave(2) * sampler.stride)
        one_window = model.forward_tokens(w['types'], w['obs'], w['prev_action'], w['prev_reward'])[2]
    carried = torch.cat([memory_at[int(i)] for i in j])  # (2 * 47, m, D), in the same order
    assert ((one_window - carried).abs().amax((1, 2)) > 1e-3).all()


# ----------------------------------------------------------------------------- return by region
def test_an_evaluation_resets_the_memory_to_its_initial_value_at_every_nth_region_close():
    R = 8
    goals = torch.tensor([[4, 2], [0, 5], [8, 8]])
    plain, reset = (memory_config(f'compress_interval={R}', f'n_steps={R}', *extra)
                    for extra in ([], ['eval_memory_reset=3']))
    model = random_model(plain)
    initial = model.initial_memory(len(goals)).detach().float()
    carried, resetting = InContextRollout(model, plain, goals, seed=3), InContextRollout(model, reset, goals, seed=3)
    for close in range(1, 8):
        for _ in range(R):
            _, _, plain_logits = carried.step()
            _, _, reset_logits = resetting.step()
        memory = resetting.context.memory
        if close < 3:  # the same rollout until its first reset
            assert torch.equal(reset_logits, plain_logits) and torch.equal(memory, carried.context.memory)
        # the first close drops nothing yet, so the memory is still the initial one; at closes 3 and 6 it starts
        # again; at the others it is what the write tokens wrote
        assert torch.equal(memory, initial) == (close == 1 or close % 3 == 0), close
    assert not torch.equal(reset_logits, plain_logits)


def test_the_memory_reset_names_its_own_evaluation_and_means_nothing_without_a_memory(tmp_path):
    from compressed_ad.run_files import eval_output_dir, eval_setting
    memory = memory_config('eval_memory_reset=12')
    assert eval_setting(memory, greedy=False, device='cpu')['memory_reset'] == 12
    write_run_config(tmp_path, memory_config())  # a run trained on the CPU; its own evaluation never resets
    assert eval_output_dir(tmp_path, eval_setting(memory, greedy=False, device='cpu')).name == \
        'eval-sampled-3ep-2x-seed0-fixed-reset12-cpu'  # the tiny config's 3 episodes x 2 rollouts
    # 0 (never) adds nothing, so evaluations made before the key existed keep their settings and directories
    assert 'memory_reset' not in eval_setting(memory_config(), greedy=False, device='cpu')
    compressed = load_config('config/model/ad_dr_compressed.yaml', overrides=['eval_memory_reset=12'])
    assert eval_setting(compressed, greedy=False, device='cpu') == \
        eval_setting(load_config('config/model/ad_dr_compressed.yaml'), greedy=False, device='cpu')
    with pytest.raises(ConfigError, match="eval_memory_reset.*0 \\(never\\) or a positive integer"):
        memory_config('eval_memory_reset=-1')


def test_region_means_average_rollouts_and_each_region_s_episodes_and_leave_out_a_partial_region():
    returns = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 100],
                        [10, 10, 10, 10, 20, 20, 20, 20, 100]])  # 2 rollouts x 9 episodes, regions of 4 episodes
    np.testing.assert_array_equal(regions.region_means(returns, 4), [46 / 8, 102 / 8])  # the 9th episode is left out
    np.testing.assert_array_equal(regions.region_means(returns, 9), [(28 + 100 + 40 + 80 + 100) / 18])
    with pytest.raises(UserError, match='holds no whole region of 10 episodes'):
        regions.region_means(returns, 10)
    assert regions.episodes_per_region(80, 20) == 4 and regions.episodes_per_region(200, 50) == 4
    with pytest.raises(UserError, match='not a whole number of episodes'):
        regions.episodes_per_region(80, 30)
    # Dark Room: 1000 steps are collected as 13 rollouts of 80; 4,000 as 50; Key-to-Door: 3000 as 15 of 200
    assert regions.training_regions(1000, 80, 80) == 13 and regions.training_regions(4000, 80, 80) == 50
    assert regions.training_regions(3000, 200, 200) == 15 and regions.training_regions(1000, 80, 160) == 6


def record(seed, split, values):
    return {'seed': seed, 'split': split, 'regions': np.asarray(values, dtype=float)}


def test_region_estimates_are_means_over_runs_with_intervals_over_seeds_within_splits():
    runs = [record(0, 0, [1, 10]), record(1, 0, [3, 10])]  # two seeds of one split
    first, second = regions.region_estimates(runs)
    # the bootstrap resamples the 2 seeds: means 1, 2 or 3, each extreme with probability 1/4
    assert (first['value'], first['low'], first['high']) == (2.0, 1.0, 3.0)
    assert (second['value'], second['low'], second['high']) == (10.0, 10.0, 10.0)  # both seeds score the same
    # splits are kept: seeds of split 1 score 100 more, the mean is over splits of the mean over seeds
    runs += [record(0, 1, [101, 110]), record(1, 1, [101, 110])]
    assert regions.region_estimates(runs)[0]['value'] == (2 + 101) / 2
    assert regions.span_estimates(runs, 1, 2)['value'] == ((2 + 10) / 2 + (101 + 110) / 2) / 2
    with pytest.raises(UserError, match='different numbers of regions'):
        regions.region_estimates(runs + [record(2, 0, [1])])
    with pytest.raises(ValueError, match='not within'):
        regions.span_estimates(runs, 2, 3)


def test_paired_region_differences_pair_runs_by_seed_and_split_whatever_their_order():
    baseline = [record(seed, split, [10 * split + seed, 5, 7]) for seed in (0, 1) for split in (0, 1, 2)]
    candidate = [record(r['seed'], r['split'], r['regions'] + [0, 1, -2]) for r in reversed(baseline)]
    differences = regions.paired_region_differences(candidate, baseline)
    assert [(d['value'], d['low'], d['high']) for d in differences] == [(0, 0, 0), (1, 1, 1), (-2, -2, -2)]
    assert regions.paired_span_differences(candidate, baseline, 2, 3)['value'] == -0.5
    # a candidate evaluated for fewer regions is compared over the regions both hold
    shorter = [record(r['seed'], r['split'], r['regions'][:2] + 1) for r in baseline]
    assert [d['value'] for d in regions.paired_region_differences(shorter, baseline)] == [1, 1]
    with pytest.raises(UserError, match='same training seeds and goal splits'):
        regions.paired_region_differences(candidate[1:], baseline)


def fake_evaluated_run(path, seed, split, returns, *overrides, oracle=17.0):
    """A run directory as train.py and evaluate.py leave it, as far as bench.region_returns reads it."""
    config = load_config(overrides=[f'seed={seed}', f'env_split_seed={split}', *overrides])
    write_run_config(path, config)
    np.save(path / EVAL_RESULT, np.asarray(returns, dtype=np.float32))
    (path / EVAL_SUMMARY).write_text(json.dumps({'oracle_mean': oracle}))
    return path


def test_the_region_returns_script_prints_each_region_and_the_spans_a_training_stream_holds_and_beyond(
        tmp_path, monkeypatch, capsys):
    # regions of 80 steps = 4 episodes; a training stream of 80 steps holds 1 region; 2 rollouts x 9 episodes
    short = ['train_source_timesteps=80']
    for seed in (0, 1):
        fake_evaluated_run(tmp_path / f'memory-{seed}', seed, 0, [[1] * 4 + [3] * 4 + [50]] * 2, *short)
        fake_evaluated_run(tmp_path / f'compressed-{seed}', seed, 0, [[2] * 9, [2] * 9], *short)
    figure, numbers = tmp_path / 'figs' / 'regions.png', tmp_path / 'regions.json'
    proc = run_script('-m', 'bench.region_returns', f"memory={tmp_path / 'memory-*'}",
                      f"compressed={tmp_path / 'compressed-*'}", '--baseline', 'compressed', '--figure', figure,
                      '--json', numbers)
    assert proc.returncode == 0, proc.stderr
    assert 'A region is 80 steps = 4 episodes; a training stream holds 1 region.' in proc.stdout
    assert '| 1 | 1-4 | 1.00 | 2.00 | -1.00 |' in proc.stdout and '| 2 | 5-8 | 3.00 | 2.00 | 1.00 |' in proc.stdout
    assert '| 1-1 | 1.00 | 2.00 | -1.00 |' in proc.stdout and '| 2-2 | 3.00 | 2.00 | 1.00 |' in proc.stdout
    assert figure.stat().st_size > 0
    saved = json.loads(numbers.read_text())
    assert saved['training_regions'] == 1 and len(saved['runs']['memory']) == 2
    assert [e['value'] for e in saved['differences']['memory']] == [-1.0, 1.0]
    # an eval-* sub-directory (another setting) names its run's config; --split-at moves the spans' boundary
    other = tmp_path / 'memory-0' / 'eval-sampled-12ep-2x-seed0-fixed-cpu'
    other.mkdir()
    np.save(other / EVAL_RESULT, np.tile(np.arange(12, dtype=np.float32), (2, 1)))
    (other / EVAL_SUMMARY).write_text(json.dumps({'oracle_mean': 17.0}))
    out = region_returns_in_process(monkeypatch, capsys, f'longer={other}', '--split-at', '2')
    assert '| 3 | 9-12 | 9.50 |' in out and '| 1-2 | 3.50 |' in out and '| 3-3 | 9.50 |' in out


def region_returns_in_process(monkeypatch, capsys, *args) -> str:
    """``python -m bench.region_returns ARGS`` in this process (its refusals raise UserError); returns its output."""
    from bench import region_returns
    monkeypatch.setattr(sys, 'argv', ['region_returns', *map(str, args)])
    assert region_returns.main() == 0
    return capsys.readouterr().out


def test_the_region_returns_script_refuses_runs_it_cannot_compare_and_writes_nothing(tmp_path, monkeypatch, capsys):
    run = fake_evaluated_run(tmp_path / 'a', 0, 0, [[1] * 8])
    twin = fake_evaluated_run(tmp_path / 'b', 0, 0, [[2] * 8])
    odd = fake_evaluated_run(tmp_path / 'c', 1, 0, [[2] * 8], 'compress_interval=160')  # regions of 8 episodes
    partial = fake_evaluated_run(tmp_path / 'd', 1, 0, [[2] * 8], 'compress_interval=30')
    bare = tmp_path / 'e'
    bare.mkdir()
    figure = tmp_path / 'regions.png'
    # as a user runs it: one paragraph, a non-zero exit, no traceback, no figure
    assert_user_error(run_script('-m', 'bench.region_returns', f'x={run}', f'x={twin}', '--figure', figure),
                      'holds two runs of training seed 0 and goal split 0')
    for args, needle in (([f'x={run}', '--baseline', 'y'], '--baseline y: no runs carry that label'),
                         ([str(run)], 'give runs as LABEL=RUN_DIR'),
                         ([f'x={bare}'], 'holds no evaluation'),
                         ([f"x={tmp_path / 'nothing*'}"], 'no directory matches'),
                         ([f'x={partial}'], 'not a whole number of episodes'),
                         ([f'x={run}', f'y={odd}'], 'The runs differ in episodes per region'),
                         ([f'x={run}', '--region-episodes', '0'], '--region-episodes 0: give a positive number'),
                         ([f'x={run}', '--split-at', '-1'], '--split-at -1: give a positive number')):
        with pytest.raises(UserError, match=re.escape(needle)):
            region_returns_in_process(monkeypatch, capsys, *args, '--figure', figure)
    assert not figure.exists()
    # with the episodes per region given, runs of other region lengths compare
    assert '| 2 | 4-6 | 1.00 | 2.00 |' in region_returns_in_process(monkeypatch, capsys, f'x={run}', f'y={odd}',
                                                                    '--region-episodes', '3')


# ----------------------------------------------------------------------------- histories as long as an evaluation
# regions of one 20-step episode, and streams of 50 of them, as a Dark Room dataset collected with
# train_source_timesteps = 50 x n_steps holds them (4,000 steps at n_steps = 80)
LONG = ['compress_interval=20', 'n_steps=20', 'n_transit=40', 'train_source_timesteps=1000', 'memory_unroll=4',
        'train_batch_size=8', 'test_batch_size=8']


@pytest.fixture(scope='module')
def long_dataset(tmp_path_factory):
    """A synthetic history file of 50-region streams for every goal; the override that points at it."""
    datasets = tmp_path_factory.mktemp('datasets')
    write_synthetic_file(dataset_path(memory_config(*LONG, f'datasets_dir={datasets}')),
                         memory_config(*LONG, f'datasets_dir={datasets}'))
    return f'datasets_dir={datasets}'


@pytest.mark.slow  # 50 regions of the evaluation's length
def test_a_dataset_of_50_regions_per_stream_is_walked_region_by_region_to_its_end(long_dataset):
    config = memory_config(*LONG, long_dataset)
    path = dataset_path(config)
    train, _, _ = load_samplers(config, torch.device('cpu'))
    R = config['compress_interval']
    assert train.T == 50 * R and train.n_windows == 49  # region pairs (0, 1) .. (48, 49)
    train.start_walks(4, torch.Generator().manual_seed(0))
    train.load_walk_state({'seq': torch.tensor([0, 5, 17, 200]), 'pos': torch.zeros(4, dtype=torch.long)})
    is_tr = train.types == TRANSITION
    targets, fresh = [], []
    for _ in range(13):  # 52 windows: every window of the 4 streams, then the first 3 of the next
        batch = train.walk(torch.Generator().manual_seed(1))
        targets.append(batch['action'][:, :, is_tr])
        fresh.append(batch['fresh'])
    targets, fresh = torch.cat(targets, 1), torch.cat(fresh, 1)  # (4, 52, 2R), (4, 52)
    assert fresh[:, 0].all() and not fresh[:, 1:49].any() and fresh[:, 49].all()
    # the first regions of windows 0 .. 48 and the second of window 48 are the stream's 50 regions, in order, as
    # the history file holds them (goal-major: the file's group of a stream, then its stream in the group)
    walked = torch.cat([targets[:, :49, :R].flatten(1), targets[:, 48, R:]], 1)  # (4, 50 R)
    train_goals = task_split(config)[0]
    with h5py.File(path) as f:
        for row, seq in enumerate((0, 5, 17, 200)):
            goal, stream = divmod(seq, config['n_stream'])
            actions = f[str(train_goals[goal])]['actions'][:, stream]
            assert walked[row].tolist() == actions.tolist()


def test_memory_trained_on_50_region_streams_evaluates_and_a_shorter_evaluation_is_a_longer_one_s_start(
        tmp_path, workdir, long_dataset, monkeypatch, capsys):
    """Training on 50-region streams runs end to end; the evaluation at the trained length of the default data
    (13 regions, eval_episodes=13 here, 65 in Dark Room) is an override, and it is exactly the first episodes of the
    50-region evaluation (the rollout is causal and its random draws sequential), so the region-by-region table of
    the longer evaluation already holds it."""
    args = ['--config', MEMORY_CONFIG, *TINY_COMPRESSED, 'memory_tokens=2', *LONG, 'eval_episodes=50', *workdir,
            long_dataset]  # the last datasets_dir wins
    proc = run_script('train.py', *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / 'runs' / 'AD-darkroom-compressed-memory-seed0'
    for extra in ([], ['eval_episodes=13']):
        proc = run_script('evaluate.py', run, 'device=cpu', *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    long, short = np.load(run / EVAL_RESULT), np.load(run / 'eval-sampled-13ep-2x-seed0-fixed-cpu' / EVAL_RESULT)
    assert long.shape == (16, 50) and short.shape == (16, 13)  # 8 held-out goals x 2 streams
    np.testing.assert_array_equal(short, long[:, :13])
    out = region_returns_in_process(monkeypatch, capsys, f'trained={run}')
    assert 'a training stream holds 50 regions' in out and '| 50 | 50-50 |' in out


def test_a_longer_collection_begins_with_the_shorter_one_so_its_first_regions_are_the_default_data():
    """PPO with the same seed and constant schedules learns the same first rollouts however many follow, so a
    dataset of 50 regions per stream begins with the 13 of the default one: runs trained on the default data pair
    with runs trained on the longer one, the only difference being the regions after the 13th."""
    from compressed_ad.algorithm.ppo import learn_task, set_single_thread
    set_single_thread()
    short, long = (learn_task((2, 6), load_config(overrides=['n_stream=2', 'n_steps=40', 'ppo_batch_size=40',
                                                             f'train_source_timesteps={T}']), seed=42)
                   for T in (80, 200))  # 2 and 5 PPO rollouts of 40 steps
    assert short['actions'].shape == (80, 2) and long['actions'].shape == (200, 2)
    for field, values in short.items():
        np.testing.assert_array_equal(long[field][:80], values, err_msg=field)
    assert not np.array_equal(long['actions'][80:160], short['actions'])  # and the later rollouts are new ones
