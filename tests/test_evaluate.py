import json

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

import model.rollout
from env import tasks_of
from model import build_model
from model.layout import CLOSE, MEMORY as MEMORY_TYPE, OPEN, TRANSITION, WRITE, compressed_window
from model.rollout import InContextRollout
from tests.helpers import COMPRESSED, TINY_COMPRESSED, TINY_STANDARD, assert_user_error, run_script
from config_schema import load_config


def tiny(compressed, *extra):
    if compressed:
        return load_config('config/model/ad_dr_compressed.yaml', overrides=TINY_COMPRESSED + list(extra))
    return load_config(overrides=TINY_STANDARD + list(extra))


def random_model(config, seed=0):
    torch.manual_seed(seed)
    m = build_model(config)
    for p in m.parameters():  # a sharper random policy makes action differences visible
        p.data.normal_(0, 0.2)
    return m.eval()


MEMORY = ['memory_tokens=2', 'memory_unroll=2']


@pytest.mark.parametrize('compressed, trigger, memory', [(False, 'fixed', []), (True, 'fixed', []), (True, 'model', []),
                                                         (True, 'fixed', MEMORY), (True, 'model', MEMORY)])
def test_kv_cached_rollout_matches_recomputing_the_whole_context(compressed, trigger, memory):
    config = tiny(compressed, *memory)
    m = random_model(config)
    goals = torch.tensor([[4, 2], [0, 5], [8, 8], [1, 1]])
    logits = []
    for use_cache in (True, False):
        r = InContextRollout(m, config, goals, compress_trigger=trigger, use_cache=use_cache, seed=5)
        logits.append(torch.stack([r.step()[2] for _ in range(70)]))  # 70 steps: slides / closes many times
        if compressed:
            assert len(r.closed_region_lengths) > 3
        else:
            assert r.max_ctx_len == config['n_transit']
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('m', [0, 2])
def test_compressed_context_never_exceeds_two_regions(m):
    config = tiny(True, f'memory_tokens={m}', 'memory_unroll=2')
    R = config['compress_interval']
    r = InContextRollout(random_model(config), config, torch.tensor([[4, 2], [0, 5]]), seed=0)
    memory, write = [MEMORY_TYPE] * m, [WRITE] * m
    for step in range(1, 5 * R + 1):
        r.step()
        types = r.ctx['types']
        for b in range(2):
            ctx = types[b, :r.ctx_len[b]].tolist()
            assert ctx.count(OPEN) <= 2 and ctx[:m + 1] == memory + [OPEN]
            current = step % R
            if current == 0:  # a region just closed: [memory] <c> closed region </c> [write] <c>
                assert ctx == memory + [OPEN] + [TRANSITION] * R + [CLOSE] + write + [OPEN]
            elif step > R:  # [memory] <c> previous </c> [write] <c> current so far
                assert ctx == memory + [OPEN] + [TRANSITION] * R + [CLOSE] + write + [OPEN] + [TRANSITION] * current
    assert r.max_ctx_len == 2 * R + 3 + 2 * m
    assert all(x.tolist() == [R, R] for x in r.closed_region_lengths)


def test_training_sequences_see_the_memory_exactly_as_the_rollout_does():
    config = tiny(True, *MEMORY)
    R, m = config['compress_interval'], config['memory_tokens']
    model = random_model(config)
    r = InContextRollout(model, config, torch.tensor([[4, 2], [0, 5]]), seed=3)
    tokens, real_append = [], r._append
    r._append = lambda token: tokens.append(dict(token)) or real_append(token)
    logits = torch.stack([r.step()[2] for _ in range(3 * R)], 1)  # (B, 3R, A): regions 0, 1, 2
    stream = {f: torch.stack([t[f] for t in tokens], 1) for f in ('obs', 'prev_action', 'prev_reward')}
    # the same transitions as one training sequence of two windows, (region 0, region 1) and (region 1, region 2),
    # the memory of the second written by the first
    types, offsets = compressed_window(R, m)
    steps = torch.stack([k * R + offsets.clamp(min=0) for k in range(2)])  # (2, L)
    fields = [types.expand(2, 2, -1)] + [stream[f][:, steps] for f in ('obs', 'prev_action', 'prev_reward')]
    with torch.no_grad():
        trained, _ = model(*fields)  # (B, 2, L, A)
    positions = (types == TRANSITION).nonzero().squeeze(1)
    torch.testing.assert_close(trained[:, 0, positions], logits[:, :2 * R], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trained[:, 1, positions[R:]], logits[:, 2 * R:], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(r.memory, model.initial_memory(2))  # by region 3 the memory holds region 1


def test_model_trigger_closes_regions_where_the_head_says():
    config = tiny(True)
    R = config['compress_interval']
    m = random_model(config)
    with torch.no_grad():
        m.type_head.weight.zero_()
        m.type_head.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # always predicts </compress>
    r = InContextRollout(m, config, torch.tensor([[4, 2]]), compress_trigger='model')
    for _ in range(6):
        r.step()
    assert [x.tolist() for x in r.closed_region_lengths] == [[1]] * 6
    with torch.no_grad():
        m.type_head.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # never predicts it: closes at the cap
    r = InContextRollout(m, config, torch.tensor([[4, 2]]), compress_trigger='model')
    for _ in range(2 * R):
        r.step()
    assert [x.tolist() for x in r.closed_region_lengths] == [[R], [R]]


@pytest.mark.parametrize('compressed', [False, True])
def test_evaluate_writes_results_in_goal_major_order(tmp_path, workdir, tiny_dataset, compressed, monkeypatch):
    args = (COMPRESSED + TINY_COMPRESSED if compressed else TINY_STANDARD) + workdir
    assert run_script('train.py', *args).returncode == 0
    name = 'AD-darkroom-compressed-seed0' if compressed else 'AD-darkroom-seed0'
    run = tmp_path / 'runs' / name
    proc = run_script('evaluate.py', *workdir)  # no run given: the most recent one
    assert proc.returncode == 0, proc.stderr
    assert f"most recently trained run, '{run}'" in proc.stdout and '(4, 2)' in proc.stdout
    result = np.load(run / 'eval_result.npy')
    assert result.shape == (8 * 2, 3) and result.dtype == np.float32
    summary = json.loads((run / 'eval_summary.json').read_text())
    assert summary['goals'][0] == [4, 2] and len(summary['goals']) == 8
    assert summary['oracle_return_per_goal'][:2] == [19, 18]
    np.testing.assert_allclose(summary['mean_return_per_goal'], result.reshape(8, 2, 3).mean((1, 2)), rtol=1e-5)
    assert summary['mean_return'] == pytest.approx(float(result.mean()), rel=1e-5)
    assert (run / 'in_context_curve.png').stat().st_size > 1000
    # the rollout rows are goal-major: row r plays test goal r // eval_streams_per_goal
    seen = {}
    real = model.rollout.InContextRollout.__init__

    def spy(self, m, config, goals, **kw):
        seen['goals'] = goals.tolist()
        real(self, m, config, goals, **kw)
    monkeypatch.setattr(model.rollout.InContextRollout, '__init__', spy)
    import evaluate
    monkeypatch.setattr('sys.argv', ['evaluate.py', str(run), 'eval_episodes=1'])
    evaluate.main()
    goals = tasks_of(load_config(), summary['env_indices']).tolist()
    assert seen['goals'] == [g for g in goals for _ in range(2)]


def test_evaluate_error_paths(tmp_path, workdir, tiny_dataset):
    assert_user_error(run_script('evaluate.py', *workdir), 'No trained run found')
    assert_user_error(run_script('evaluate.py', str(tmp_path / 'nowhere')), 'not a run directory')
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    assert_user_error(run_script('evaluate.py', str(run), 'n_transit=3'), "'n_transit' is fixed by the trained run")
    config = yaml.safe_load((run / 'config.yaml').read_text())
    config['tf_n_embd'] = 64
    (run / 'config.yaml').write_text(yaml.safe_dump(config))
    assert_user_error(run_script('evaluate.py', str(run)), 'does not fit', 'config.yaml')
    config['tf_n_embd'] = 32
    (run / 'config.yaml').write_text(yaml.safe_dump(config))
    (run / 'ckpt-8.pt').write_bytes(b'truncated')  # the newest checkpoint is damaged
    assert_user_error(run_script('evaluate.py', str(run)), "ckpt-8.pt' cannot be loaded")
    for ckpt in run.glob('ckpt-*.pt'):
        ckpt.unlink()
    assert_user_error(run_script('evaluate.py', str(run)), 'has no checkpoint')
    assert not (run / 'eval_result.npy').exists()


def test_evaluation_picks_its_own_device_not_the_one_the_run_was_trained_on(tmp_path, workdir, tiny_dataset):
    import evaluate
    assert run_script('train.py', *TINY_STANDARD, *workdir).returncode == 0  # trained with device=cpu
    run = tmp_path / 'runs' / 'AD-darkroom-seed0'
    config = evaluate.eval_config(run, [], [])
    assert config['device'] == 'auto' and 'CUDA when present' in config.source('device')
    assert evaluate.eval_config(run, [], ['device=cpu'])['device'] == 'cpu'


def event_points(directory, tag='eval/return_mean'):
    points = []
    for file in directory.glob('events.out.tfevents.*'):
        for event in EventFileLoader(str(file)).Load():
            points += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return points


def test_other_evaluation_settings_are_kept_apart_and_never_duplicate_tensorboard_points(tmp_path, workdir,
                                                                                       tiny_dataset):
    args = COMPRESSED + TINY_COMPRESSED + workdir
    assert run_script('train.py', *args).returncode == 0
    run = tmp_path / 'runs' / 'AD-darkroom-compressed-seed0'
    assert run_script('evaluate.py', str(run)).returncode == 0  # the run's own setting: SPEC file names
    default = (run / 'eval_result.npy').read_bytes()
    assert sorted(s for s, _ in event_points(run)) == [1, 2, 3]
    proc = run_script('evaluate.py', str(run), '--greedy', 'eval_episodes=2')
    assert proc.returncode == 0, proc.stderr
    other = run / 'eval-greedy-2ep-2x-seed0-fixed'
    assert np.load(other / 'eval_result.npy').shape == (16, 2)
    assert json.loads((other / 'eval_summary.json').read_text())['setting'] == {
        'episodes': 2, 'streams_per_goal': 2, 'seed': 0, 'greedy': True, 'compress_trigger': 'fixed'}
    assert (run / 'eval_result.npy').read_bytes() == default  # untouched
    assert sorted(s for s, _ in event_points(other)) == [1, 2]
    assert run_script('evaluate.py', str(run), 'eval_seed=1').returncode == 0
    assert (run / 'eval-sampled-3ep-2x-seed1-fixed' / 'eval_result.npy').exists()
    assert run_script('evaluate.py', str(run)).returncode == 0  # evaluating again replaces, never appends
    assert sorted(s for s, _ in event_points(run)) == [1, 2, 3]
    assert np.load(run / 'eval_result.npy').tobytes() == np.load(other.parent / 'eval_result.npy').tobytes()


def test_the_curve_figure_draws_any_number_of_runs(tmp_path, monkeypatch):
    import plots
    drawn = {}
    monkeypatch.setattr(plots, 'save_figure', lambda fig, file: drawn.update(
        labels=[line.get_label() for line in fig.axes[0].get_lines()]))
    bands = {f'run {i}': plots.std_band(np.random.default_rng(i).random((4, 10))) for i in range(12)}
    plots.plot_in_context_curves(tmp_path / 'f.png', bands, 17.25, np.ones(10), 'twelve runs')
    assert [f'run {i}' for i in range(12)] == [label for label in drawn['labels'] if label.startswith('run')]
