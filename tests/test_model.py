import numpy as np
import pytest
import torch

from compressed_ad.build import build_model, training_state
from compressed_ad.config_schema import load_config
from compressed_ad.dataset import WindowSampler
from compressed_ad.model.layout import (CLOSE, IGNORE, OPEN, TRANSITION, WRITE, compressed_window, next_type_targets,
                                        stream_tokens)
from compressed_ad.model.loss import ad_losses, balanced_accuracy
from compressed_ad.synthetic_histories import synthetic_history
from tests.helpers import TINY_COMPRESSED, TINY_STANDARD


def tiny_config(compressed: bool, *extra):
    if compressed:
        return load_config('config/model/ad_dr_compressed.yaml', overrides=TINY_COMPRESSED + list(extra))
    return load_config(overrides=TINY_STANDARD + list(extra))


def sampler_for(config, n_goals=3, seed=0):
    hist = [synthetic_history(config, (i, 8 - i), config['n_stream'], config['train_source_timesteps'],
                              config['n_steps'], seed=seed + i) for i in range(n_goals)]
    streams = {k: np.concatenate([np.swapaxes(h[k], 0, 1) for h in hist])
               for k in ('states', 'actions', 'rewards', 'compress_markers')}
    return WindowSampler(streams, config, torch.device('cpu')), streams


@pytest.mark.parametrize('compressed', [False, True])
def test_causality_later_tokens_never_change_earlier_outputs(compressed):
    config = tiny_config(compressed)
    torch.manual_seed(0)
    model = build_model(config).eval()
    sampler, _ = sampler_for(config)
    batch = sampler.sample(4, torch.Generator().manual_seed(1))
    fields = [batch[k] for k in ('types', 'obs', 'prev_action', 'prev_reward')]
    a0, t0 = model(*fields)
    cut = fields[0].shape[1] // 2
    changed = [f.clone() for f in fields]
    changed[1][:, cut:] = (changed[1][:, cut:] + 7) % 81
    changed[2][:, cut:] = (changed[2][:, cut:] + 1) % 5
    changed[3][:, cut:] = 1 - changed[3][:, cut:]
    a1, t1 = model(*changed)
    torch.testing.assert_close(a0[:, :cut], a1[:, :cut])
    assert not torch.allclose(a0[:, cut:], a1[:, cut:])
    if compressed:
        torch.testing.assert_close(t0[:, :cut], t1[:, :cut])


def test_compressed_window_layout_markers_and_targets():
    R = 8
    types, offsets = compressed_window(R)
    assert len(types) == 2 * R + 4
    assert types.tolist() == [OPEN] + [TRANSITION] * R + [CLOSE, OPEN] + [TRANSITION] * R + [CLOSE]
    assert offsets[types == TRANSITION].tolist() == list(range(2 * R))
    targets = next_type_targets(types)
    # what comes next: </c> after the last transition of each region, <c> after every </c>
    assert targets[R].item() == CLOSE and targets[2 * R + 2].item() == CLOSE
    assert targets[R + 1].item() == OPEN and targets[-1].item() == OPEN
    assert (targets[[0, R + 2]] == TRANSITION).all() and int((targets == TRANSITION).sum()) == 2 * R


def test_compressed_windows_hold_exactly_the_previous_and_current_region():
    config = tiny_config(True)
    R = config['compress_interval']
    sampler, streams = sampler_for(config)
    tokens = stream_tokens(*(torch.as_tensor(streams[k]) for k in ('states', 'actions', 'rewards')), (9, 9), 5)
    seq = torch.arange(sampler.n_seq).repeat_interleave(sampler.n_starts)
    start = torch.arange(sampler.n_starts).repeat(sampler.n_seq) * R
    batch = sampler.windows(seq, start)
    is_tr = batch['types'] == TRANSITION
    markers = torch.as_tensor(streams['compress_markers'])
    for b in range(len(seq)):
        steps = start[b] + torch.arange(2 * R)  # the two regions of the window, nothing older
        assert batch['obs'][b][is_tr[b]].tolist() == tokens['obs'][seq[b], steps].tolist()
        assert batch['action'][b][is_tr[b]].tolist() == tokens['action'][seq[b], steps].tolist()
        # the dataset's own markers agree with where the window puts <c> and </c>
        assert markers[seq[b], steps][[0, R]].tolist() == [1, 1]
        assert markers[seq[b], steps][[R - 1, -1]].tolist() == [2, 2]
    assert (batch['action'][~is_tr] == IGNORE).all()


def test_token_carries_previous_action_and_reward_not_the_target():
    states = torch.tensor([[[4, 4], [5, 4], [5, 5]]])
    tok = stream_tokens(states, torch.tensor([[0, 2, 4]]), torch.tensor([[0, 1, 1]]), (9, 9), 5)
    assert tok['prev_action'].tolist() == [[5, 0, 2]] and tok['prev_reward'].tolist() == [[0.0, 0.0, 1.0]]
    assert tok['obs'].tolist() == [[40, 49, 50]] and tok['action'].tolist() == [[0, 2, 4]]


def test_balanced_accuracy_scores_a_constant_predictor_one_third():
    targets = torch.tensor([0] * 98 + [1, 2])
    logits = torch.zeros(100, 3)
    logits[:, 0] = 1
    assert balanced_accuracy(logits, targets, 3).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize('compressed', [False, True])
def test_loss_falls_when_overfitting_a_tiny_history(compressed):
    config = tiny_config(compressed)
    torch.manual_seed(0)
    model = build_model(config)
    sampler, _ = sampler_for(config, n_goals=1)
    batch = sampler.sample(8, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = ad_losses(model, batch, 0.1, with_metrics=True)
        opt.zero_grad()
        out['loss'].backward()
        opt.step()
        first = first if first is not None else out['loss'].item()
    assert out['loss'].item() < 0.3 * first
    assert out['acc_action'].item() > 0.9
    if compressed:
        assert out['acc_token_type'].item() == pytest.approx(1.0)


@pytest.mark.parametrize('compressed', [False, True])
def test_the_sampler_can_draw_every_window_including_the_last_of_each_stream(compressed):
    config = tiny_config(compressed)
    sampler, streams = sampler_for(config)
    T, L = streams['actions'].shape[1], config['n_transit']
    R = config['compress_interval']
    last_start = T - 2 * R if compressed else T - L  # the last region pair / the last standard window
    seq, start = sampler.draw(20_000, torch.Generator().manual_seed(0))
    assert set(start.tolist()) == set(range(0, last_start + 1, R if compressed else 1))
    assert set(seq.tolist()) == set(range(sampler.n_seq))
    # the window at the last start ends with the stream's last transition
    window = sampler.windows(torch.tensor([1]), torch.tensor([last_start]))
    targets = window['action'][0][window['types'][0] == TRANSITION]
    assert targets[-1].item() == streams['actions'][1, -1] and len(targets) == (2 * R if compressed else L)


def test_memory_sequences_are_consecutive_region_pairs_and_gradients_cross_the_hand_off():
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2',
                         'memory_unroll=3', 'train_batch_size=6', 'test_batch_size=6')
    R = config['compress_interval']
    sampler, streams = sampler_for(config)
    seq, start = sampler.draw(5000, torch.Generator().manual_seed(0))
    T = streams['actions'].shape[1]
    assert set(start.tolist()) == set(range(0, T - 3 * R, R))  # the last sequence ends with the last region
    batch = sampler.sequences(torch.tensor([1]), torch.tensor([T - 4 * R]))
    assert batch['types'].shape == (1, 3, 2 * R + 4 + 4)
    is_tr = batch['types'][0, 0] == TRANSITION
    for k in range(3):  # window k holds regions j + k and j + k + 1
        steps = T - 4 * R + k * R + torch.arange(2 * R)
        assert batch['action'][0, k][is_tr].tolist() == streams['actions'][1, steps].tolist()
    torch.manual_seed(0)
    model = build_model(config)
    batch = sampler.sample(6, torch.Generator().manual_seed(1))  # 2 sequences of 3 windows
    batch = {k: v.clone() for k, v in batch.items()}
    batch['action'][:, :2] = IGNORE  # only the last window's targets: its loss reaches the earlier ones only
    batch['type_target'][:, :2] = IGNORE  # through the memory they wrote
    ad_losses(model, batch, 0.1)['loss'].backward()
    assert model.memory_out.weight.grad.abs().sum() > 0 and model.write_emb.grad.abs().sum() > 0
    assert model.memory_init.grad.abs().sum() > 0


def test_walking_rows_take_every_window_of_a_stream_in_order_then_a_new_stream_from_its_start():
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2',
                         'memory_unroll=4', 'train_batch_size=8', 'test_batch_size=8')
    R = config['compress_interval']
    sampler, streams = sampler_for(config)
    n = sampler.n_windows  # 48 steps = 6 regions: windows (0, 1) .. (4, 5)
    assert n == 5
    gen = torch.Generator().manual_seed(0)
    sampler.start_walks(64, gen)
    start_pos = sampler.walk_pos.clone()
    assert len(set(start_pos.tolist())) == n  # the rows start spread over the windows
    targets, fresh = [], []
    for _ in range(6):
        batch = sampler.walk(gen)
        targets.append(batch['action'][:, :, batch['types'][0, 0] == TRANSITION])  # (S, K, 2R)
        fresh.append(batch['fresh'])
    targets, fresh = torch.cat(targets, 1), torch.cat(fresh, 1)  # (S, 24, 2R), (S, 24): each row's windows in order
    for row in range(64):
        # a row's windows advance one region at a time and restart at a fresh first window after the last
        pos = start_pos[row].item()
        for k in range(24):
            assert fresh[row, k].item() == (pos == 0)
            if k and pos:  # the same stream: this window's first region is the previous window's second
                assert torch.equal(targets[row, k, :R], targets[row, k - 1, R:])
            pos = (pos + 1) % n
    # the targets of a window are those of its stream at its region pair
    batch = sampler.whole_streams(2, gen)
    assert batch['types'].shape[:2] == (2, n) and batch['fresh'][:, 0].all() and not batch['fresh'][:, 1:].any()
    is_tr = batch['types'][0, 0] == TRANSITION
    targets = batch['action'][:, :, is_tr]  # (2, n, 2R)
    assert torch.equal(targets[:, 1:, :R], targets[:, :-1, R:])  # window j + 1 starts with window j's second region


def test_with_random_walk_starts_a_row_starts_its_memory_at_a_random_window_of_each_new_stream():
    """memory_walk_start: random. A row's memory restarts (fresh) exactly where it joins a stream, at windows spread
    over the stream, and its windows then advance one region at a time to the stream's end."""
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2',
                         'memory_unroll=2', 'train_batch_size=8', 'test_batch_size=8',
                         'memory_walk_start=random')
    R = config['compress_interval']
    sampler, _ = sampler_for(config)
    n, gen = sampler.n_windows, torch.Generator().manual_seed(0)
    sampler.start_walks(64, gen)
    assert torch.equal(sampler.walk_from, sampler.walk_pos)  # the first memory starts where the row starts
    targets, fresh, joined = [], [], []
    for _ in range(12):
        before = sampler.walk_seq.clone()
        batch = sampler.walk(gen)
        targets.append(batch['action'][:, :, batch['types'][0, 0] == TRANSITION])
        fresh.append(batch['fresh'])
        joined += sampler.walk_from[sampler.walk_seq != before].tolist()  # where rows joined new streams
    targets, fresh = torch.cat(targets, 1), torch.cat(fresh, 1)  # (S, 24, 2R), (S, 24)
    assert fresh[:, 0].all()
    for row in range(64):
        for k in range(1, 24):
            if not fresh[row, k]:  # the same stream, one region on
                assert torch.equal(targets[row, k, :R], targets[row, k - 1, R:])
    # rows join new streams at every window from which their K windows fit, not only at the first
    assert set(joined) == set(range(n - 1)) and fresh.sum() > 64
    # and the default starts every memory at a stream's first window, the rollout's only fresh window
    default = tiny_config(True, 'context_mode=memory', 'memory_tokens=2',
                          'memory_unroll=2', 'train_batch_size=8', 'test_batch_size=8')
    stream_sampler, _ = sampler_for(default)
    stream_sampler.start_walks(64, gen)
    assert not stream_sampler.walk_from.any()


def memory_at(model, sampler, seq: int, origin: int, pos: int) -> torch.Tensor:
    """The memory a row of stream ``seq`` has at window ``pos`` when it started from the initial memory at window
    ``origin``, by the model's own recurrence over one training sequence of windows origin .. pos - 1
    (``ADTransformer.forward`` on (1, K, L), the path the training loss takes): (m, D)."""
    if pos == origin:
        return model.initial_memory(1)[0]
    window = torch.arange(origin, pos)[None]  # (1, K)
    batch = sampler.window_grid(torch.full_like(window, seq), window)
    return model(batch['types'], batch['obs'], batch['prev_action'], batch['prev_reward'])[2][0]


def test_training_batches_build_each_row_s_memory_up_to_its_starting_window_and_carry_it_on():
    from compressed_ad.model.training import TrainingBatches
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2',
                         'memory_unroll=2', 'train_batch_size=16', 'test_batch_size=8')
    sampler, _ = sampler_for(config)
    torch.manual_seed(0)
    model = build_model(config).eval()  # tf_dropout=0 in TINY; eval: no dropout draws either way
    batches = TrainingBatches(sampler, model, config, torch.Generator().manual_seed(3))
    batches.start()
    seq, pos = sampler.walk_seq.clone(), sampler.walk_pos.clone()
    assert len(seq) == 8 and pos.max() > 0
    with torch.no_grad():  # each row's memory, from its stream's first window, by the training recurrence
        expected = torch.stack([memory_at(model, sampler, s, 0, p) for s, p in zip(seq.tolist(), pos.tolist())])
    torch.testing.assert_close(batches.memory, expected)
    # rows placed by hand: at a stream's first window (the initial memory), one and four windows in, and (random
    # starts) a row whose memory started at window 2 of its stream, now at window 3
    sampler.walk_seq, sampler.walk_pos, sampler.walk_from = (torch.tensor(v) for v in
                                                             ([0, 1, 2, 3], [0, 1, 4, 3], [0, 0, 0, 2]))
    with torch.no_grad():
        rows = ((0, 0, 0), (1, 0, 1), (2, 0, 4), (3, 2, 3))  # (stream, window the memory starts at, window now)
        expected = torch.stack([memory_at(model, sampler, *row) for row in rows])
    burned = batches.burn_in()
    torch.testing.assert_close(burned, expected)
    torch.testing.assert_close(burned[0], model.initial_memory(1)[0])
    assert not torch.allclose(burned[3], memory_at(model, sampler, 3, 0, 3))  # started at window 2, not at 0
    batches.start()  # the rows of the run, as before
    batch = batches.next()
    assert batch['memory'] is batches.memory and batch['types'].shape[:2] == (8, 2)
    losses = ad_losses(model, batch, 0.1)
    batches.after_step(losses)
    assert 'memory' not in losses and not batches.memory.requires_grad
    # the state round-trips: a copy resumed from it draws the same next batch with the same memory
    other = TrainingBatches(sampler_for(config)[0], model, config, torch.Generator())
    other.load_state(batches.state())
    gen_state = batches.gen.get_state()
    other.gen.set_state(gen_state)
    a, b = batches.next(), other.next()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_resumed_with_another_batch_keeps_its_first_walking_rows_and_builds_any_new_ones():
    """train_batch_size lowered on resume (the out-of-memory advice) or raised: the checkpoint's rows beyond the
    new count are dropped, the first ones go on with their walk and memory, and new rows get the memory of their
    stream up to where they start."""
    from compressed_ad.model.training import TrainingBatches
    memory_args = ['context_mode=memory', 'memory_tokens=2', 'memory_unroll=2', 'test_batch_size=8']
    config = tiny_config(True, *memory_args, 'train_batch_size=16')  # 8 rows of 2 windows
    torch.manual_seed(0)
    model = build_model(config).eval()
    batches = TrainingBatches(sampler_for(config)[0], model, config, torch.Generator().manual_seed(3))
    batches.start()
    batches.after_step(ad_losses(model, batches.next(), 0.1))  # a memory carried by a training step
    state = batches.state()
    assert len(state['walk']['seq']) == 8

    smaller = tiny_config(True, *memory_args, 'train_batch_size=4')  # 2 rows
    resumed = TrainingBatches(sampler_for(smaller)[0], model, smaller, torch.Generator().manual_seed(4))
    resumed.load_state(state)
    for key in ('seq', 'pos', 'from'):
        assert torch.equal(resumed.sampler.walk_state()[key], state['walk'][key][:2]), key
    assert torch.equal(resumed.memory, state['memory'][:2])
    batch = resumed.next()
    assert batch['types'].shape[:2] == (2, 2) and batch['memory'].shape[0] == 2

    larger = tiny_config(True, *memory_args, 'train_batch_size=24')  # 12 rows: 4 new ones
    grown = TrainingBatches(sampler_for(larger)[0], model, larger, torch.Generator().manual_seed(4))
    grown.load_state(state)
    walks = grown.sampler.walk_state()
    assert len(walks['seq']) == 12 and torch.equal(walks['pos'][:8], state['walk']['pos'])
    assert torch.equal(grown.memory[:8], state['memory'])
    with torch.no_grad():
        expected = torch.stack([memory_at(model, grown.sampler, s, o, p) for s, o, p in
                                zip(*(walks[k][8:].tolist() for k in ('seq', 'from', 'pos')))])
    torch.testing.assert_close(grown.memory[8:], expected)
    assert grown.next()['types'].shape[:2] == (12, 2)


def test_a_memory_training_step_writes_nothing_through_index_put():
    # the write queries once reached their tokens by advanced indexing, write_emb[slot per token], whose backward
    # is an accumulating index_put_ per window: on one H100 53% of the memory step's kernel time (BENCHMARKS.md)
    from torch.profiler import ProfilerActivity, profile

    from bench.bench import training_step_fn
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2', 'memory_unroll=2', 'train_batch_size=16',
                         'test_batch_size=8')
    sampler, _ = sampler_for(config)
    step = training_step_fn(training_state(config, sampler, torch.device('cpu')))  # the model seeded from seed 0
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = {e.key: e.count for e in prof.key_averages()}
    assert ops.get('aten::embedding_backward', 0) > 0  # the profile holds the backward pass
    assert not [op for op in ops if 'index_put' in op], ops


def test_the_write_queries_reach_their_tokens_and_take_their_gradient():
    config = tiny_config(True, 'context_mode=memory', 'memory_tokens=2', 'memory_unroll=2')
    torch.manual_seed(0)
    model = build_model(config)
    m, R = 2, config['compress_interval']
    types, _ = compressed_window(R, m)
    types = torch.stack([types, types.roll(3)])  # the write tokens of row 1 three positions later
    types[1, :3] = TRANSITION
    B, L = types.shape
    fields = dict(obs=torch.randint(81, (B, L)), prev_action=torch.randint(5, (B, L)), prev_reward=torch.rand(B, L))
    x = model.embed(types, **fields, positions=torch.arange(L), write_slots=model.write_positions(types))
    without = model.embed(types, **fields, positions=torch.arange(L))
    upstream = torch.randn(B, L, x.shape[-1])
    (x * upstream).sum().backward()
    expected = torch.zeros(m, x.shape[-1])
    for b in range(B):
        slots = (types[b] == WRITE).nonzero().squeeze(1).tolist()  # in order
        assert len(slots) == m
        for j, p in enumerate(slots):
            torch.testing.assert_close(x[b, p] - without[b, p], model.write_emb[j])
            expected[j] += upstream[b, p]
        others = [p for p in range(L) if p not in slots]
        torch.testing.assert_close(x[b, others], without[b, others])
    torch.testing.assert_close(model.write_emb.grad, expected)
