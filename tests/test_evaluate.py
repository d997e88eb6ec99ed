import json
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from compressed_ad.build import build_model
from compressed_ad.model import rollout as model_rollout
from compressed_ad.env import tasks_of
from compressed_ad.model.layout import CLOSE, MEMORY as MEMORY_TYPE, OPEN, TRANSITION, WRITE, compressed_window
from compressed_ad.model.rollout import InContextRollout
from tests.helpers import COMPRESSED, TINY_COMPRESSED, TINY_STANDARD, assert_user_error, run_script
from compressed_ad.config_schema import MEMORY_MODEL_CONFIG, RESUMABLE_KEYS, RUN_KEYS, SCHEMA, Config, load_config
from compressed_ad.dataset import WindowSampler
from compressed_ad.history_file import dataset_path, expected_markers
from compressed_ad.run_files import (TRAIN_SUMMARY, check_run_dir, eval_output_dir, eval_setting, own_eval_setting,
                                     save_checkpoint, write_run_config)
from compressed_ad.synthetic_histories import write_synthetic_file
from compressed_ad.utils import UserError, pick_device


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


MEMORY = ['context_mode=memory', 'memory_tokens=2', 'memory_unroll=2']


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
    config = tiny(True, f'memory_tokens={m}', 'memory_unroll=2', *(['context_mode=memory'] if m else []))
    R = config['compress_interval']
    r = InContextRollout(random_model(config), config, torch.tensor([[4, 2], [0, 5]]), seed=0)
    memory, write = [MEMORY_TYPE] * m, [WRITE] * m
    for step in range(1, 5 * R + 1):
        r.step()
        types = r.ctx['types']
        for b in range(2):
            ctx = types[b, :r.context.ctx_len[b]].tolist()
            assert ctx.count(OPEN) <= 2 and ctx[:m + 1] == memory + [OPEN]
            current = step % R
            if current == 0:  # a region just closed: [memory] <c> closed region </c> [write] <c>
                assert ctx == memory + [OPEN] + [TRANSITION] * R + [CLOSE] + write + [OPEN]
            elif step > R:  # [memory] <c> previous </c> [write] <c> current so far
                assert ctx == memory + [OPEN] + [TRANSITION] * R + [CLOSE] + write + [OPEN] + [TRANSITION] * current
    assert r.max_ctx_len == 2 * R + 3 + 2 * m
    assert all(x.tolist() == [R, R] for x in r.closed_region_lengths)


def test_a_training_row_carries_into_each_region_the_memory_the_rollout_builds():
    # the rollout's own transitions become a history; a training row walking it through WindowSampler, K windows
    # per step with the memory carried between steps, must read at its k-th window the memory the rollout's
    # context holds after k hand-offs, and score that window's transitions as the rollout did
    config = tiny(True, *MEMORY)  # K = memory_unroll = 2 windows per step
    R, K = config['compress_interval'], config['memory_unroll']
    regions = 14
    model = random_model(config)
    r = InContextRollout(model, config, torch.tensor([[4, 2], [0, 5]]), seed=3)
    tokens, real_append = [], r.context.append
    r.context.append = lambda token: tokens.append(dict(token)) or real_append(token)
    memory_at, logits = {}, []  # window j -> the memory the rollout's context holds while j is its region pair
    for t in range(1, regions * R + 1):
        logits.append(r.step()[2])
        if t % R == 0 and t >= 2 * R:  # the close after region j + 1 hands on the memory window j + 1 reads
            memory_at[t // R - 1] = r.context.memory.clone()
    logits = torch.stack(logits, 1)  # (B, T, A)
    stream = {f: torch.stack([x[f] for x in tokens], 1) for f in ('obs', 'prev_action', 'prev_reward')}
    T = regions * R - 1  # the last step's action is the next token's prev_action, which was never made
    history = {'states': torch.stack([stream['obs'][:, :T] // 9, stream['obs'][:, :T] % 9], -1).numpy(),
               'actions': stream['prev_action'][:, 1:T + 1].numpy(), 'rewards': stream['prev_reward'][:, 1:T + 1].numpy(),
               'compress_markers': np.tile(expected_markers(T, R), (2, 1))}
    sampler = WindowSampler(history, config, torch.device('cpu'))
    sampler.start_walks(2, torch.Generator().manual_seed(0))
    sampler.load_walk_state({'seq': torch.arange(2), 'pos': torch.zeros(2, dtype=torch.long)})  # from the start
    types = compressed_window(R, config['memory_tokens'])[0]
    positions = (types == TRANSITION).nonzero().squeeze(1)
    memory, window = None, 0
    with torch.no_grad():
        while window + K <= sampler.n_windows:
            batch = sampler.walk(torch.Generator().manual_seed(window))
            assert batch['fresh'][:, 0].tolist() == [window == 0] * 2
            out = model(batch['types'], batch['obs'], batch['prev_action'], batch['prev_reward'], memory=memory,
                        fresh=batch['fresh'])
            for k in range(K):  # window j = region pair (j, j + 1): its second region is the rollout's steps
                j = window + k
                torch.testing.assert_close(out[0][:, k, positions[R:]], logits[:, (j + 1) * R:(j + 2) * R],
                                           rtol=1e-4, atol=1e-5)
            memory, window = out[2], window + K
            if window >= 8:  # what the row carries into window `window`, after `window` hand-offs
                torch.testing.assert_close(memory, memory_at[window], rtol=1e-4, atol=1e-5)
    assert window >= 10 and not torch.allclose(memory, model.initial_memory(2))


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
    proc = run_script('evaluate.py', *workdir, 'device=cpu')  # no run given: the most recent one
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
    real = model_rollout.InContextRollout.__init__

    def spy(self, m, config, goals, **kw):
        seen['goals'] = goals.tolist()
        real(self, m, config, goals, **kw)
    monkeypatch.setattr(model_rollout.InContextRollout, '__init__', spy)
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
    # the run's own setting (trained on the CPU, evaluated on it): the documented file names in the run directory
    assert run_script('evaluate.py', str(run), 'device=cpu').returncode == 0
    default = (run / 'eval_result.npy').read_bytes()
    assert sorted(s for s, _ in event_points(run)) == [1, 2, 3]
    proc = run_script('evaluate.py', str(run), '--greedy', 'eval_episodes=2', 'device=cpu')
    assert proc.returncode == 0, proc.stderr
    other = run / 'eval-greedy-2ep-2x-seed0-fixed-cpu'
    assert np.load(other / 'eval_result.npy').shape == (16, 2)
    assert json.loads((other / 'eval_summary.json').read_text())['setting'] == {
        'episodes': 2, 'streams_per_goal': 2, 'seed': 0, 'greedy': True, 'compress_trigger': 'fixed', 'device': 'cpu'}
    assert (run / 'eval_result.npy').read_bytes() == default  # untouched
    assert sorted(s for s, _ in event_points(other)) == [1, 2]
    assert run_script('evaluate.py', str(run), 'eval_seed=1', 'device=cpu').returncode == 0
    assert (run / 'eval-sampled-3ep-2x-seed1-fixed-cpu' / 'eval_result.npy').exists()
    assert run_script('evaluate.py', str(run), 'device=cpu').returncode == 0  # evaluating again replaces, never appends
    assert sorted(s for s, _ in event_points(run)) == [1, 2, 3]
    assert (run / 'eval_result.npy').read_bytes() == default  # and reproduces the run's own evaluation
    # the same evaluation of a copy of the run, computed afresh elsewhere, gives the same returns
    copy = tmp_path / 'copy' / run.name
    shutil.copytree(run, copy)
    (copy / 'eval_result.npy').unlink()
    assert run_script('evaluate.py', str(copy), 'device=cpu').returncode == 0
    np.testing.assert_array_equal(np.load(copy / 'eval_result.npy'), np.load(run / 'eval_result.npy'))
    assert not np.array_equal(np.load(copy / 'eval_result.npy'),
                              np.load(run / 'eval-sampled-3ep-2x-seed1-fixed-cpu' / 'eval_result.npy'))


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """One tiny standard run trained on the CPU (with its dataset), shared by the tests that evaluate copies of it."""
    root = tmp_path_factory.mktemp('trained')
    dirs = [f'{key}={root / key}' for key in ('datasets_dir', 'runs_dir', 'figs_dir', 'ppo_log_dir')]
    config = load_config(overrides=TINY_STANDARD + dirs)
    write_synthetic_file(dataset_path(config), config)
    proc = run_script('train.py', *TINY_STANDARD, *dirs)
    assert proc.returncode == 0, proc.stderr
    return root / 'runs_dir' / 'AD-darkroom-seed0'


@pytest.fixture
def run_copy(tmp_path, trained_run):
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    return run


def files_of(directory):
    """Every file under ``directory`` with its modification time and size."""
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(directory.rglob('*'))}


def evaluate_in_process(monkeypatch, *argv):
    import evaluate
    monkeypatch.setattr(sys, 'argv', ['evaluate.py', *map(str, argv)])
    evaluate.main()


def test_evaluation_refuses_another_value_of_a_key_the_run_fixes(run_copy, monkeypatch):
    run = run_copy
    evaluate_in_process(monkeypatch, run, 'device=cpu')
    before = files_of(run)
    assert 'eval_result.npy' in before
    # n_tasks, task_seed, env_split_seed and train_env_ratio rebuild the held-out tasks; bf16 and lr are the
    # run's training: each is refused, naming the key, the run's value and the way out
    proc = run_script('evaluate.py', str(run), 'n_tasks=200', 'device=cpu')
    assert_user_error(proc, "'n_tasks' is fixed by the trained run", 'trained with n_tasks=0', 'train a new run',
                      'eval_episodes')
    for override, saved in (('task_seed=3', 'task_seed=0'), ('env_split_seed=1', 'env_split_seed=0'),
                            ('train_env_ratio=0.5', 'train_env_ratio=0.9'), ('bf16=false', 'bf16=true'),
                            ('lr=0.5', 'lr=0.0003')):
        key = override.split('=')[0]
        with pytest.raises(UserError, match=f"'{key}' is fixed by the trained run") as refused:
            evaluate_in_process(monkeypatch, run, 'device=cpu', override)
        assert saved in str(refused.value)
    # a run the override fits, named before one it does not: neither is evaluated
    other = run.parent / 'other' / run.name
    shutil.copytree(run, other)
    config = yaml.safe_load((other / 'config.yaml').read_text())
    (other / 'config.yaml').write_text(yaml.safe_dump(dict(config, task_seed=3)))
    other_before = files_of(other)
    with pytest.raises(UserError, match="'task_seed' is fixed"):
        evaluate_in_process(monkeypatch, other, run, 'task_seed=3', 'device=cpu')
    assert files_of(run) == before and files_of(other) == other_before
    # repeating the run's own values changes nothing: accepted, and still the run's own evaluation
    evaluate_in_process(monkeypatch, run, 'device=cpu', 'n_tasks=0', 'task_seed=0', 'env_split_seed=0',
                        'train_env_ratio=0.9', 'bf16=true', 'lr=3e-4', 'runs_dir=elsewhere')
    after = files_of(run)
    assert after['eval_result.npy'] != before['eval_result.npy']
    assert not [name for name in after if name.startswith('eval-')]


def test_an_evaluation_on_another_kind_of_device_than_the_training_one_is_kept_apart(run_copy, monkeypatch):
    import evaluate
    run = run_copy
    summary = json.loads((run / TRAIN_SUMMARY).read_text())
    assert summary['device'] == 'cpu' and own_eval_setting(run)['device'] == 'cpu'
    evaluate_in_process(monkeypatch, run, 'device=cpu')
    own = files_of(run)['eval_result.npy']
    (run / TRAIN_SUMMARY).write_text(json.dumps(dict(summary, device='cuda:0')))  # as if trained on a GPU
    assert own_eval_setting(run)['device'] == 'cuda'
    evaluate_in_process(monkeypatch, run, 'device=cpu')
    out = run / 'eval-sampled-3ep-2x-seed0-cpu'
    assert json.loads((out / 'eval_summary.json').read_text())['setting']['device'] == 'cpu'
    assert np.load(out / 'eval_result.npy').shape == (16, 3)
    assert files_of(run)['eval_result.npy'] == own  # the run's own evaluation is untouched
    # a run without the device in its summary: its own evaluation is on the device 'auto' picks here
    (run / TRAIN_SUMMARY).unlink()
    here = pick_device('auto').type
    assert own_eval_setting(run)['device'] == here
    config = evaluate.eval_config(run, [], [])
    assert eval_output_dir(run, eval_setting(config, False, pick_device(config['device']))) == run
    assert eval_output_dir(run, eval_setting(config, False, 'cpu' if here != 'cpu' else 'cuda')) != run


def test_evaluate_refuses_exactly_the_keys_a_resume_refuses(tmp_path):
    import evaluate
    config = load_config(overrides=TINY_STANDARD)
    run = tmp_path / 'run'
    run.mkdir()
    write_run_config(run, config)

    def another(key, value):
        """A valid value of ``key`` other than ``value`` (None where an override can give none)."""
        if key in ('env', 'num_actions', 'alg', 'model'):
            return None  # 'env' is chosen by --env; the others have a single allowed value
        options = {'eval_compress_trigger': 'model', 'device': 'cpu' if value != 'cpu' else 'auto',
                   'memory_walk_start': 'random', 'collect_backend': 'ray'}
        if key in options:
            return options[key]
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return value + 2
        if isinstance(value, float):
            return value / 2 if value else 0.1
        if isinstance(value, list):
            return value + [8]
        return value + '-elsewhere'

    checked = set()
    for key in SCHEMA:
        value = another(key, config[key])
        if value is None:
            continue
        checked.add(key)
        try:
            evaluate.eval_config(run, [], [f'{key}={json.dumps(value)}'])
            eval_refuses = False
        except UserError as exc:
            assert f"'{key}' is fixed by the trained run" in str(exc), exc
            eval_refuses = True
        try:
            check_run_dir(run, Config(config, **{key: value}))  # what train.py checks before it resumes
            resume_refuses = False
        except UserError as exc:
            assert 'different config' in str(exc) and key in str(exc), exc
            resume_refuses = True
        assert eval_refuses == (key in RUN_KEYS), key
        assert resume_refuses == (key in RUN_KEYS - RESUMABLE_KEYS), key
    assert checked == set(SCHEMA) - {'env', 'num_actions', 'alg', 'model'}


def test_a_memory_run_saved_with_context_mode_empty_evaluates_as_it_did(tmp_path, workdir, monkeypatch):
    """A memory run saved before the memory config named its mode (context_mode '', use_compressed_context and
    memory_tokens > 0) evaluates as the memory mode, to the same returns as the same run saved as it is now."""
    config = load_config(MEMORY_MODEL_CONFIG, overrides=TINY_COMPRESSED + MEMORY + workdir)
    state = random_model(config).state_dict()
    runs = {}
    for name, saved in (('now', dict(config)), ('before', dict(config, context_mode=''))):
        run = runs[name] = tmp_path / name / 'AD-darkroom-compressed-memory-seed0'
        run.mkdir(parents=True)
        write_run_config(run, saved)
        save_checkpoint(run, 8, {'model': state})
        (run / TRAIN_SUMMARY).write_text(json.dumps({'device': 'cpu'}))
        evaluate_in_process(monkeypatch, run, 'device=cpu')
    summary = json.loads((runs['before'] / 'eval_summary.json').read_text())
    assert summary['mode'] == 'memory' and summary['compress_trigger'] == 'fixed'
    assert np.array_equal(np.load(runs['before'] / 'eval_result.npy'), np.load(runs['now'] / 'eval_result.npy'))


def test_the_summary_of_a_memory_run_says_memory(tmp_path, workdir, monkeypatch):
    config = load_config(MEMORY_MODEL_CONFIG, overrides=TINY_COMPRESSED + MEMORY + workdir)
    run = tmp_path / 'AD-darkroom-compressed-memory-seed0'
    run.mkdir()
    write_run_config(run, config)
    save_checkpoint(run, 8, {'model': random_model(config).state_dict()})
    (run / TRAIN_SUMMARY).write_text(json.dumps({'device': 'cpu'}))
    evaluate_in_process(monkeypatch, run, 'device=cpu')
    summary = json.loads((run / 'eval_summary.json').read_text())
    assert summary['mode'] == 'memory' and summary['compress_trigger'] == 'fixed'


def test_the_curve_figure_draws_any_number_of_runs(tmp_path, monkeypatch):
    from compressed_ad import plots
    drawn = {}
    monkeypatch.setattr(plots, 'save_figure', lambda fig, file: drawn.update(
        labels=[line.get_label() for line in fig.axes[0].get_lines()]))
    bands = {f'run {i}': plots.std_band(np.random.default_rng(i).random((4, 10))) for i in range(12)}
    plots.plot_in_context_curves(tmp_path / 'f.png', bands, 17.25, np.ones(10), 'twelve runs')
    assert [f'run {i}' for i in range(12)] == [label for label in drawn['labels'] if label.startswith('run')]


def test_the_train_task_probe_rolls_out_on_training_and_held_out_tasks_and_writes_nothing(run_copy):
    before = files_of(run_copy)
    proc = run_script('-m', 'bench.train_task_probe', run_copy, '--tasks', '2', '--streams', '1', '--episodes', '5')
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if 'tasks' in line and 'by fifths' in line]
    assert [line[:3] for line in lines] == [['2', 'training', 'tasks'], ['8', 'held-out', 'tasks']]
    assert all(len(line) == 12 for line in lines)  # the mean, then five fifths
    assert files_of(run_copy) == before
    assert_user_error(run_script('-m', 'bench.train_task_probe', run_copy, '--episodes', '3'), 'at least 5')


def test_compare_runs_tabulates_and_draws_evaluated_runs_and_refuses_unevaluated_ones(run_copy, tmp_path, monkeypatch):
    unevaluated = tmp_path / 'unevaluated'
    shutil.copytree(run_copy, unevaluated)
    assert_user_error(run_script('-m', 'bench.compare_runs', f'a={unevaluated}'), 'evaluate.py')
    assert_user_error(run_script('-m', 'bench.compare_runs', str(unevaluated)), 'LABEL=RUN_DIR')
    evaluate_in_process(monkeypatch, run_copy, 'device=cpu')
    figure = tmp_path / 'figs' / 'runs.png'
    proc = run_script('-m', 'bench.compare_runs', '--figure', figure, f'first={run_copy}', f'again={run_copy}')
    assert proc.returncode == 0, proc.stderr
    returns = np.load(run_copy / 'eval_result.npy')  # (rollouts, episodes)
    rows = [line.split('|') for line in proc.stdout.splitlines() if line.startswith('| first') or
            line.startswith('| again')]
    assert len(rows) == 2 and rows[0][2:] == rows[1][2:]
    assert float(rows[0][2]) == pytest.approx(returns.mean(), abs=0.006)
    assert float(rows[0][3]) == pytest.approx(returns[:, -max(1, returns.shape[1] // 10):].mean(), abs=0.006)
    assert figure.stat().st_size > 0
    lines_only = tmp_path / 'lines.png'
    assert run_script('-m', 'bench.compare_runs', '--no-bands', '--figure', lines_only, f'a={run_copy}').returncode == 0
    assert lines_only.stat().st_size > 0
