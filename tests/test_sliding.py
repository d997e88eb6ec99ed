"""The sliding-window standard mode: its rolling KV cache is exact, its positions are relative, and it trains on
as many action targets per step as standard AD."""
import json

import numpy as np
import pytest
import torch

from compressed_ad.build import build_model
from compressed_ad.config_schema import load_config
from compressed_ad.context_modes import mode_of
from compressed_ad.dataset import load_samplers
from compressed_ad.history_file import dataset_path
from compressed_ad.model.rollout import FIELDS, InContextRollout
from compressed_ad.modes.sliding import SLIDING_MODEL_CONFIG, receptive_field
from compressed_ad.synthetic_histories import write_synthetic_file
from tests.helpers import TINY, assert_user_error, run_script

WINDOW, TAIL = 12, 4  # a training window of 16 transitions counts for 4/3 of train_batch_size's windows
TINY_SLIDING = TINY + [f'n_transit={WINDOW}', f'sliding_tail={TAIL}']


def sliding(*extra):
    return load_config(SLIDING_MODEL_CONFIG, overrides=TINY_SLIDING + list(extra))


def random_model(config, seed=0):
    torch.manual_seed(seed)
    model = build_model(config)
    for p in model.parameters():  # a sharper random policy makes position and window mistakes visible
        p.data.normal_(0, 0.3)
    return model.eval()


def recorded_rollout(model, config, steps: int, use_cache: bool = True, seed: int = 1):
    """Run a rollout for ``steps`` steps; return the tokens it appended and its action logits, (B, steps) each."""
    goals = torch.tensor([[4, 2], [0, 5], [8, 8]])
    rollout = InContextRollout(model, config, goals, use_cache=use_cache, seed=seed)
    tokens, logits = [], []
    append = rollout.context.append

    def recording_append(token):
        tokens.append({f: token[f].clone() for f in FIELDS})
        return append(token)
    rollout.context.append = recording_append
    for _ in range(steps):
        logits.append(rollout.step()[2])
    stacked = {f: torch.stack([t[f] for t in tokens], 1) for f in FIELDS}
    return stacked, torch.stack(logits, 1)


@pytest.mark.slow  # thousands of rollout steps
def test_rolling_cache_decoding_equals_full_recomputation_over_thousands_of_steps():
    config = sliding()
    model = random_model(config)
    steps = 3000  # 250 slides of the 12-token window
    tokens, cached = recorded_rollout(model, config, steps)
    with torch.no_grad():
        full, _ = model(*[tokens[f] for f in FIELDS])  # one pass over the whole stream, windowed attention
    assert full.shape == cached.shape == (3, steps, 5)
    assert (full - cached).abs().max() < 1e-4
    assert model.cfg.cache_len == WINDOW  # the cache never grows with the stream


def test_the_rollout_without_cache_acts_exactly_as_with_it():
    config = sliding()
    model = random_model(config, seed=2)
    steps = 6 * receptive_field(config)  # well past the re-encoded span, where the reference slides
    cached_tokens, cached = recorded_rollout(model, config, steps, use_cache=True)
    tokens, recomputed = recorded_rollout(model, config, steps, use_cache=False)
    assert torch.equal(cached_tokens['prev_action'], tokens['prev_action'])  # the same actions, step by step
    assert (cached - recomputed).abs().max() < 1e-4


def test_a_token_s_output_depends_only_on_its_window_not_on_where_its_sequence_starts():
    config = sliding()
    model = random_model(config, seed=3)
    tokens, _ = recorded_rollout(model, config, 4 * WINDOW)
    with torch.no_grad():
        full, _ = model(*[tokens[f] for f in FIELDS])
        field = receptive_field(config)
        last = 4 * WINDOW - 1
        alone, _ = model(*[tokens[f][:, last - field + 1:last + 1] for f in FIELDS])
        shorter, _ = model(*[tokens[f][:, last - field + 2:last + 1] for f in FIELDS])
    same = (alone[:, -1] - full[:, last]).abs().max()
    changed = (shorter[:, -1] - full[:, last]).abs().max()
    assert same < 1e-5  # its receptive field is all it reads
    assert changed > 100 * max(same, 1e-6)  # and it reads all of it


@pytest.mark.parametrize('tail, n_windows, window_len', [(TAIL, 6, 16), (-1, 4, 24), (0, 8, 12)])
def test_a_step_trains_on_as_many_action_targets_as_a_standard_step(workdir, tail, n_windows, window_len):
    written = load_config(overrides=TINY + workdir)
    write_synthetic_file(dataset_path(written), written)
    batches = {}
    for name, config in (('standard', load_config(overrides=TINY + workdir + [f'n_transit={WINDOW}'])),
                         ('sliding', sliding(*workdir, f'sliding_tail={tail}'))):
        train, _, _ = load_samplers(config, torch.device('cpu'))
        gen = torch.Generator().manual_seed(0)
        batches[name] = (train.sample(config['train_batch_size'], gen), train.targets_per_window())
    (standard, standard_per_window), (windows, per_window) = batches['standard'], batches['sliding']
    # worked by hand: train_batch_size 8 x n_transit 12 = 96 action targets a step, in 6 windows of 12 + 4 (each
    # counts for 4/3 of a window of 12), 4 windows of 2 x 12 (sliding_tail -1 = n_transit), or 8 windows of 12
    # (sliding_tail 0: no tail)
    assert windows['action'].shape == (n_windows, window_len)
    assert (windows['action'] >= 0).sum() == (standard['action'] >= 0).sum() == 8 * WINDOW == 96
    assert per_window == standard_per_window == WINDOW == 96 // 8  # the targets counted, per window of the batch
    # the windows are consecutive transitions of one stream: the previous action is the one before's target
    assert torch.equal(windows['prev_action'][:, 1:], windows['action'][:, :-1])


def test_the_sliding_config_selects_the_mode_and_refuses_what_it_cannot_run(workdir):
    assert mode_of(sliding()).name == 'sliding'
    proc = run_script('train.py', '--config', SLIDING_MODEL_CONFIG, *TINY_SLIDING, 'train_batch_size=7', *workdir)
    assert_user_error(proc, 'train_batch_size=7', 'must be a multiple of 4', 'train_batch_size=4')
    proc = run_script('train.py', '--config', SLIDING_MODEL_CONFIG, *TINY, 'memory_tokens=2', *workdir)
    assert_user_error(proc, 'memory_tokens=2', 'sliding')


def test_train_and_evaluate_run_the_sliding_mode_end_to_end(tmp_path, workdir, tiny_dataset):
    args = ['--config', SLIDING_MODEL_CONFIG, *TINY_SLIDING, *workdir]
    proc = run_script('train.py', *args)
    assert proc.returncode == 0, proc.stderr
    assert 'windows of 16 tokens, 16 action targets each (one counts for 4/3 of train_batch_size)' in proc.stdout
    run = tmp_path / 'runs' / 'AD-darkroom-sliding-seed0'
    assert (run / 'ckpt-8.pt').exists()
    summary = json.loads((run / 'train_summary.json').read_text())
    # 8 steps x 6 windows x 16 action targets (as many as 8 standard windows of 12)
    assert summary['action_targets_per_s'] * summary['seconds'] == pytest.approx(8 * 6 * 16)
    proc = run_script('evaluate.py', run)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / 'eval_summary.json').read_text())
    assert summary['mode'] == 'sliding' and summary['compress_trigger'] is None
    assert np.load(run / 'eval_result.npy').shape[-1] == 3  # eval_episodes
    # and the reach of its actions can be measured (bench/sliding_reach.py)
    proc = run_script('-m', 'bench.sliding_reach', run, '--steps', 60, '--positions', 4, '--returns',
                      '--json', tmp_path / 'reach.json')
    assert proc.returncode == 0, proc.stderr
    reach = json.loads((tmp_path / 'reach.json').read_text())
    assert reach['receptive_field'] == 23 and reach['reaches'][-1]['reach'] == 23
    assert reach['reaches'][-1]['tv_max'] < 1e-5 and reach['returns']['episodes'] == 3


def test_the_eager_and_the_compiled_rotation_agree_and_keep_relative_positions():
    from compressed_ad.model.transformer import rotary, rotate_queries_and_keys
    torch.manual_seed(0)
    B, L, H, hd = 2, 7, 2, 8
    qkv = torch.randn(B, L, 2, H, hd)  # queries and keys
    cos, sin = rotary(torch.arange(L), hd)
    rope = (cos[:, None, None, :], sin[:, None, None, :])
    complex_way = rotate_queries_and_keys(qkv, rope, as_complex=True)
    real_way = rotate_queries_and_keys(qkv, rope, as_complex=False)
    assert (complex_way - real_way).abs().max() < 1e-6
    # a query-key score depends on the positions' difference only: shift both by 100 and it stays
    cos, sin = rotary(torch.arange(100, 100 + L), hd)
    shifted = rotate_queries_and_keys(qkv, (cos[:, None, None, :], sin[:, None, None, :]))
    scores = torch.einsum('blhd,bmhd->bhlm', complex_way[:, :, 0], complex_way[:, :, 1])
    scores_shifted = torch.einsum('blhd,bmhd->bhlm', shifted[:, :, 0], shifted[:, :, 1])
    assert (scores - scores_shifted).abs().max() < 1e-4
    assert not torch.allclose(complex_way[:, :, 0], shifted[:, :, 0])  # the vectors themselves did rotate


def test_windowed_attention_split_or_in_one_call_equals_a_dense_band():
    """Both ways of computing the band (one masked call on a CPU, causal head + masked tail elsewhere) give what a
    dense softmax over each query's last ``window`` keys gives, values and gradients."""
    from compressed_ad.model.transformer import causal_attention
    torch.manual_seed(0)
    B, H, L, hd, window = 2, 2, 13, 4, 5
    q, k, v = (torch.randn(B, H, L, hd, requires_grad=True) for _ in range(3))
    i = torch.arange(L)
    visible = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)  # (query, key)
    scores = (q @ k.transpose(-1, -2) / hd ** 0.5).masked_fill(~visible, float('-inf'))
    reference = (scores.softmax(-1) @ v).transpose(1, 2)  # (B, L, H, hd)
    weights = torch.randn_like(reference)
    ref_grads = torch.autograd.grad((reference * weights).sum(), (q, k, v))
    for split_head in (False, True):
        out = causal_attention(q, k, v, window, split_head=split_head)
        assert (out - reference).abs().max() < 1e-5, split_head
        grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
        assert all((g - r).abs().max() < 1e-5 for g, r in zip(grads, ref_grads)), split_head


def test_the_reach_measurement_is_exact_at_the_receptive_field_and_sees_what_a_shorter_context_changes():
    """bench/sliding_reach.py: given the receptive field, a step's action distribution and the rollout's actions
    are the evaluation's own; given only the attention window, a model that reads further back acts otherwise."""
    from bench.sliding_reach import measure, returns_from_last, rollout_stream
    config = sliding()
    model = random_model(config, seed=4)
    field = receptive_field(config)  # 2 x 11 + 1 = 23
    assert field == 23
    goals = np.array([[4, 2], [0, 5], [8, 8]])
    result = measure(model, config, goals, 1, field + 40, 8, torch.device('cpu'))
    by_reach = {r['reach']: r for r in result['reaches']}
    assert {WINDOW, WINDOW + TAIL, field} <= set(by_reach)
    assert by_reach[field]['tv_max'] < 1e-5 and by_reach[field]['argmax_differs'] == 0
    assert by_reach[WINDOW]['tv_mean'] > 1e-3
    steps = 4 * config['horizon']  # 4 episodes, the window sliding from step 24 on
    tokens, _ = rollout_stream(model, config, goals, 1, steps, torch.device('cpu'))
    taken = tokens['prev_action'][:, 1:]  # the evaluation's actions at steps 0 .. steps - 2
    rows = torch.as_tensor(goals)
    returns, actions = returns_from_last(model, config, rows, 4, field)
    assert torch.equal(actions[:, :-1], taken)
    assert torch.equal(returns, InContextRollout(model, config, rows, seed=config['eval_seed']).run(4))
    assert not torch.equal(returns_from_last(model, config, rows, 4, WINDOW)[1][:, :-1], taken)


def test_the_reach_measurement_refuses_what_it_cannot_measure(tmp_path):
    from compressed_ad.run_files import write_run_config
    assert_user_error(run_script('-m', 'bench.sliding_reach'), 'Give a trained sliding-mode run directory')
    assert_user_error(run_script('-m', 'bench.sliding_reach', tmp_path / 'nothing'), 'is not a run directory',
                      'ad_dr_sliding.yaml')
    write_run_config(tmp_path, load_config(overrides=TINY))  # a standard-mode run
    assert_user_error(run_script('-m', 'bench.sliding_reach', tmp_path), 'trained in standard mode')
