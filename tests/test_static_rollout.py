"""The static rollout step (model/static_rollout.py): every kind of step of every mode and trigger compiles whole
(fullgraph, so nothing in it reads a device value back to the host), and with the same seed the rollout acts and
earns exactly as the eager reference over thousands of steps: through region closes (every row at once, and rows
closing apart with the model trigger), the sliding window, the ring cache's wrap-around and episode ends."""
import pytest
import torch
from torch._dynamo.utils import counters

from compressed_ad.config_schema import load_config
from compressed_ad.model.layout import CLOSE
from compressed_ad.model.rollout import InContextRollout
from compressed_ad.model.static_rollout import StaticRollout
from compressed_ad.modes.sliding import SLIDING_MODEL_CONFIG
from compressed_ad.utils import UserError
from tests.helpers import TINY, TINY_COMPRESSED, TINY_STANDARD
from tests.test_evaluate import MEMORY, random_model

ONE_LAYER = ['tf_n_layer=1']  # half the graph to compile
CONFIGS = {'standard': (None, TINY_STANDARD), 'compressed': ('config/model/ad_dr_compressed.yaml', TINY_COMPRESSED),
           'memory': ('config/model/ad_dr_compressed_memory.yaml', TINY_COMPRESSED + MEMORY),
           'sliding': (SLIDING_MODEL_CONFIG, TINY + ['n_transit=12', 'sliding_tail=4'])}
# (mode, trigger) -> the kinds of step its rollout runs; the trigger means nothing to standard and sliding
CASES = {('standard', 'fixed'): {'fill', 'slide'}, ('compressed', 'fixed'): {'decode', 'close'},
         ('compressed', 'model'): {'close'}, ('memory', 'fixed'): {'decode', 'close'},
         ('memory', 'model'): {'close'}, ('sliding', 'fixed'): {'decode'}}
# added to the </c> logit of these random models (mode, layers): it closes regions at every length, by measurement
CLOSE_BIAS = {('compressed', 1): 0.3, ('compressed', 2): 0.0, ('memory', 1): 0.3, ('memory', 2): 0.6}
GOALS = torch.tensor([[4, 2], [0, 5], [8, 8], [1, 1]])


def tiny_model(mode: str, trigger: str, *extra):
    file, overrides = CONFIGS[mode]
    config = load_config(file, overrides=overrides + list(extra))
    model = random_model(config)
    if trigger == 'model':
        with torch.no_grad():  # the head predicts </c> now and then: regions close at many lengths, rows apart
            model.type_head.bias[CLOSE] += CLOSE_BIAS[mode, config['tf_n_layer']]
    return config, model


def play(rollout, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(actions (steps, B), rewards (steps, B), action logits (steps, B, A)) of ``steps`` steps."""
    actions, rewards, logits = [], [], []
    for _ in range(steps):
        reward, _, action_logits = rollout.step()
        actions.append(rollout.prev_action.clone())
        rewards.append(reward.clone())
        logits.append(action_logits.clone())
    return torch.stack(actions), torch.stack(rewards), torch.stack(logits)


def episode_returns(rewards: torch.Tensor, horizon: int) -> torch.Tensor:
    """(steps, B) rewards -> (episodes, B) returns."""
    return rewards.reshape(-1, horizon, rewards.shape[1]).sum(1)


@pytest.fixture
def fresh_dynamo():
    """Each test compiles its own steps: a process keeps at most torch._dynamo.config.recompile_limit (8) graphs of
    one function, fewer than the cases here hold together."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.slow  # torch.compile of every mode's step
@pytest.mark.parametrize('mode, trigger', list(CASES))
def test_the_compiled_static_step_acts_and_earns_exactly_as_the_eager_rollout(fresh_dynamo, mode, trigger):
    config, model = tiny_model(mode, trigger, *ONE_LAYER)
    steps = 100 * config['horizon']  # 2,000 steps: 100 episodes, 250 regions, 166 turns of the sliding ring
    eager = InContextRollout(model, config, GOALS, compress_trigger=trigger, seed=5)
    static = StaticRollout(model, config, GOALS, compress_trigger=trigger, seed=5, compile=True)
    actions, rewards, logits = play(eager, steps)
    static_actions, static_rewards, static_logits = play(static, steps)
    # every kind of step ran compiled, each one whole graph (fullgraph=True raises at a graph break, and a graph
    # break is where a device value would be read back to the host)
    assert set(static.step_functions) == CASES[mode, trigger]
    assert counters['stats']['unique_graphs'] == len(CASES[mode, trigger])
    assert torch.equal(static_actions, actions)
    returns = episode_returns(rewards, config['horizon'])
    assert torch.equal(episode_returns(static_rewards, config['horizon']), returns) and returns.sum() > 0
    torch.testing.assert_close(static_logits, logits, rtol=1e-4, atol=1e-5)  # compiled kernels round differently
    if mode in ('compressed', 'memory'):  # regions closed, and with the model trigger at many lengths
        closed = static.context.closed_counts
        assert int(closed.sum()) >= steps // config['compress_interval'] * len(GOALS)
        assert (closed > 0).sum() >= (4 if trigger == 'model' else 1)
        assert static.max_ctx_len == eager.max_ctx_len


@pytest.mark.parametrize('mode, trigger', list(CASES))
def test_the_static_step_run_eagerly_computes_the_reference_s_logits(mode, trigger):
    # without compiling, the static step's fixed-shape writes and masks compute what the eager rollout computes
    config, model = tiny_model(mode, trigger)
    steps = 15 * config['horizon']
    actions, rewards, logits = play(InContextRollout(model, config, GOALS, compress_trigger=trigger, seed=3), steps)
    static = StaticRollout(model, config, GOALS, compress_trigger=trigger, seed=3)
    static_actions, static_rewards, static_logits = play(static, steps)
    assert torch.equal(static_actions, actions) and torch.equal(static_rewards, rewards)
    torch.testing.assert_close(static_logits, logits, rtol=1e-5, atol=1e-6)
    assert set(static.step_functions) == CASES[mode, trigger]  # every kind of step ran


@pytest.mark.parametrize('trigger', ['fixed', 'model'])
def test_the_static_step_resets_the_memory_where_the_eager_rollout_does(trigger):
    # eval_memory_reset counts each row's own closes, which the model trigger spreads apart
    config, model = tiny_model('memory', trigger, 'eval_memory_reset=2')
    steps = 15 * config['horizon']
    eager = InContextRollout(model, config, GOALS, compress_trigger=trigger, seed=3)
    actions, _, logits = play(eager, steps)
    static = StaticRollout(model, config, GOALS, compress_trigger=trigger, seed=3)
    static_actions, _, static_logits = play(static, steps)
    assert torch.equal(static_actions, actions)
    torch.testing.assert_close(static_logits, logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(static.context.closes, eager.context.closes) and eager.context.closes.min() >= 4


def test_greedy_static_rollouts_take_the_reference_s_actions():
    config, model = tiny_model('compressed', 'model')
    steps = 5 * config['horizon']
    reference = play(InContextRollout(model, config, GOALS, greedy=True, compress_trigger='model'), steps)
    static = play(StaticRollout(model, config, GOALS, greedy=True, compress_trigger='model'), steps)
    assert torch.equal(static[0], reference[0]) and torch.equal(static[1], reference[1])


def test_a_mode_without_a_static_step_is_told_to_roll_out_eagerly(monkeypatch):
    config, model = tiny_model('standard', 'fixed')
    monkeypatch.setattr('compressed_ad.modes.standard.SlidingWindow.static', False)
    with pytest.raises(UserError, match='has no static rollout step'):
        StaticRollout(model, config, GOALS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='the CUDA graph capture needs a GPU')
@pytest.mark.parametrize('mode, trigger', [('compressed', 'model'), ('sliding', 'fixed')])
def test_the_captured_step_on_cuda_earns_as_the_eager_rollout(fresh_dynamo, mode, trigger):
    config, model = tiny_model(mode, trigger, *ONE_LAYER, 'bf16=false')
    model = model.cuda()
    goals = GOALS.cuda()
    steps = 50 * config['horizon']
    eager = play(InContextRollout(model, config, goals, compress_trigger=trigger, seed=5), steps)
    captured = StaticRollout(model, config, goals, compress_trigger=trigger, seed=5, compile=True)
    assert captured.cuda_graph
    static = play(captured, steps)
    assert torch.equal(static[0], eager[0]) and torch.equal(static[1], eager[1])
