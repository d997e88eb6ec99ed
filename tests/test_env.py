import gymnasium as gym
import numpy as np
import pytest
import torch

from compressed_ad.algorithm.vec_env import GridVecEnv
from compressed_ad.config_schema import load_config
from compressed_ad.env import ENVS, oracle_returns, task_indices, task_split, tasks_of
from compressed_ad.env.batched import BatchedEnv


def test_split_and_oracle_match_the_spec():
    config = load_config()
    train, test = task_split(config)
    assert len(train) == 73 and sorted(train + test) == list(range(81))
    assert [tuple(g) for g in tasks_of(config, test)] == [(4, 2), (5, 6), (6, 8), (7, 2), (3, 6), (0, 5), (5, 8),
                                                           (5, 4)]
    assert np.mean(oracle_returns(config, test)) == 17.25


@pytest.mark.parametrize('env', ['darkroom', 'darkkeytodoor'])
def test_gym_torch_and_vecenv_give_identical_transitions(env):
    config = load_config(env=env)
    spec, grid, horizon = ENVS[env], config['grid_size'], config['horizon']
    rng = np.random.default_rng(0)
    tasks = tasks_of(config, rng.choice(spec.n_all_tasks(grid), 12, replace=False))
    if env == 'darkkeytodoor':  # keys and doors near the start, so that random walks open some doors
        tasks = np.array([[4, 5, 5, 5], [3, 4, 3, 3], [4, 4, 4, 4], [5, 4, 4, 5], [4, 3, 4, 3], [2, 4, 4, 6]])
    n_episodes = 4
    actions = rng.integers(0, 5, (n_episodes * horizon, len(tasks)))
    # gymnasium, one env per task
    gym_obs, gym_rew = [], []
    for task in tasks:
        e = gym.make(spec.gym_id, **({'goal': tuple(task)} if env == 'darkroom' else {'task': tuple(task)}),
                     grid_size=grid, horizon=horizon)
        obs, _ = e.reset()
        o_list, r_list = [], []
        for t in range(len(actions)):
            o_list.append(obs)
            obs, r, terminated, truncated, _ = e.step(actions[t, len(gym_obs)])
            r_list.append(r)
            assert not terminated
            assert truncated == ((t + 1) % horizon == 0)
            if truncated:
                obs, _ = e.reset()
        gym_obs.append(o_list)
        gym_rew.append(r_list)
    gym_obs, gym_rew = np.array(gym_obs).transpose(1, 0, 2), np.array(gym_rew).T
    # batched torch
    tenv = BatchedEnv(spec, torch.as_tensor(tasks), grid, horizon)
    state = tenv.reset()
    t_obs, t_rew = [], []
    for t in range(len(actions)):
        t_obs.append(state.numpy())
        nxt, r, done = tenv.step(torch.as_tensor(actions[t]))
        t_rew.append(r.numpy())
        state = tenv.reset() if done else nxt
    np.testing.assert_array_equal(np.array(t_obs), gym_obs)
    np.testing.assert_array_equal(np.array(t_rew), gym_rew)
    assert gym_rew.sum() > 0  # some random walks do reach their goal (key)
    # the numpy VecEnv PPO trains on, one task at a time
    for j, task in enumerate(tasks[:3]):
        venv = GridVecEnv(spec, task, 1, grid, horizon)
        obs = venv.reset()
        for t in range(len(actions)):
            np.testing.assert_array_equal(obs[0], gym_obs[t, j])
            venv.step_async(actions[t, j:j + 1])
            obs, r, dones, infos = venv.step_wait()
            assert r[0] == gym_rew[t, j]
            if dones[0]:
                assert infos[0]['TimeLimit.truncated'] and 'terminal_observation' in infos[0]


def test_walls_clip_and_reward_is_on_arrival():
    tenv = BatchedEnv(ENVS['darkroom'], torch.tensor([[4, 5]]), 9, 20)
    tenv.reset()
    pos, r, _ = tenv.step(torch.tensor([2]))  # col+1 from the centre (4, 4) reaches the goal
    assert pos.tolist() == [[4, 5]] and r.item() == 1.0
    pos, r, _ = tenv.step(torch.tensor([4]))  # staying on the goal keeps paying
    assert r.item() == 1.0
    for _ in range(10):
        pos, _, _ = tenv.step(torch.tensor([1]))
    assert pos.tolist() == [[0, 5]]


def test_key_to_door_pays_once_for_the_key_and_once_for_the_door_holding_it():
    spec = ENVS['darkkeytodoor']
    # rows: key (4, 6) and door (4, 5); key and door on one cell (4, 5)
    tenv = BatchedEnv(spec, torch.tensor([[4, 6, 4, 5], [4, 5, 4, 5]]), 9, 50)
    tenv.reset()
    rewards, states = [], []
    for action in (2, 2, 4, 3, 4, 2):  # col+1 twice, stay, col-1, stay, col+1
        state, r, _ = tenv.step(torch.tensor([action, action]))
        rewards.append(r.tolist())
        states.append(state.tolist())
    # row 0 passes the door (4, 5) before holding the key: nothing; the key at (4, 6): 1; back on the door: 1
    assert [r[0] for r in rewards] == [0, 1, 0, 1, 0, 0]
    assert [s[0][2] for s in states] == [0, 1, 1, 2, 2, 2]
    # row 1: key and door share (4, 5): 2 on arrival, nothing afterwards
    assert [r[1] for r in rewards] == [2, 0, 0, 0, 0, 0]
    assert spec.oracle_return((4, 6, 4, 5), 9, 50) == 2 and spec.distance((4, 6, 4, 5), 9) == 3


def test_key_to_door_tasks_are_a_reproducible_sample_split_by_env_split_seed():
    config = load_config(env='darkkeytodoor')
    indices = task_indices(config)
    assert len(indices) == config['n_tasks'] and indices == task_indices(config) and indices == sorted(indices)
    assert len(set(indices)) == len(indices) and max(indices) < 9 ** 4
    train, test = task_split(config)
    assert sorted(train + test) == indices and len(test) == len(indices) - round(len(indices) * 0.9)
    other = task_split(load_config(env='darkkeytodoor', overrides=['env_split_seed=1']))
    assert sorted(other[0] + other[1]) == indices and other[1] != test  # the same tasks, another split
    tasks = tasks_of(config, [0, 80, 81, 6560])
    assert tasks.tolist() == [[0, 0, 0, 0], [0, 0, 8, 8], [0, 1, 0, 0], [8, 8, 8, 8]]


def test_each_environment_s_default_horizon_is_its_config_file_s():
    # EnvSpec.horizon is what gym.make uses without a config; config/env/{name}.yaml is what the scripts use
    for name, spec in ENVS.items():
        assert load_config(env=name)['horizon'] == spec.horizon, name
