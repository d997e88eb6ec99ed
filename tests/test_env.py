import gymnasium as gym
import numpy as np
import torch

from algorithm.vec_env import DarkRoomVecEnv
from env import ENV_ID, all_goals, oracle_return, split_env_indices
from env.torch_darkroom import BatchedDarkRoom


def test_split_and_oracle_match_the_spec():
    goals = all_goals(9)
    train, test = split_env_indices(81, 0, 0.9)
    assert len(train) == 73 and sorted(train + test) == list(range(81))
    assert [tuple(goals[i]) for i in test] == [(4, 2), (5, 6), (6, 8), (7, 2), (3, 6), (0, 5), (5, 8), (5, 4)]
    assert np.mean([oracle_return(goals[i], 9, 20) for i in test]) == 17.25


def test_gym_torch_and_vecenv_give_identical_transitions():
    rng = np.random.default_rng(0)
    goals = all_goals(9)[rng.choice(81, 12, replace=False)]
    n_episodes, horizon = 6, 20
    actions = rng.integers(0, 5, (n_episodes * horizon, len(goals)))
    # gymnasium, one env per goal
    gym_obs, gym_rew = [], []
    for g in goals:
        env = gym.make(ENV_ID, goal=tuple(g), grid_size=9, horizon=horizon)
        obs, _ = env.reset()
        o_list, r_list = [], []
        for t in range(len(actions)):
            o_list.append(obs)
            obs, r, terminated, truncated, _ = env.step(actions[t, len(gym_obs)])
            r_list.append(r)
            assert not terminated
            assert truncated == ((t + 1) % horizon == 0)
            if truncated:
                obs, _ = env.reset()
        gym_obs.append(o_list)
        gym_rew.append(r_list)
    gym_obs, gym_rew = np.array(gym_obs).transpose(1, 0, 2), np.array(gym_rew).T
    # batched torch
    tenv = BatchedDarkRoom(torch.as_tensor(goals), 9, horizon)
    pos = tenv.reset()
    t_obs, t_rew = [], []
    for t in range(len(actions)):
        t_obs.append(pos.numpy())
        nxt, r, done = tenv.step(torch.as_tensor(actions[t]))
        t_rew.append(r.numpy())
        pos = tenv.reset() if done else nxt
    np.testing.assert_array_equal(np.array(t_obs), gym_obs)
    np.testing.assert_array_equal(np.array(t_rew), gym_rew)
    assert gym_rew.sum() > 0  # some random walks do reach their goal
    # the numpy VecEnv PPO trains on, one goal at a time
    for j, g in enumerate(goals[:3]):
        venv = DarkRoomVecEnv(g, 1, 9, horizon)
        obs = venv.reset()
        for t in range(len(actions)):
            np.testing.assert_array_equal(obs[0], gym_obs[t, j])
            venv.step_async(actions[t, j:j + 1])
            obs, r, dones, infos = venv.step_wait()
            assert r[0] == gym_rew[t, j]
            if dones[0]:
                assert infos[0]['TimeLimit.truncated'] and 'terminal_observation' in infos[0]


def test_walls_clip_and_reward_is_on_arrival():
    tenv = BatchedDarkRoom(torch.tensor([[4, 5]]), 9, 20)
    tenv.reset()
    pos, r, _ = tenv.step(torch.tensor([2]))  # col+1 from the centre (4, 4) reaches the goal
    assert pos.tolist() == [[4, 5]] and r.item() == 1.0
    pos, r, _ = tenv.step(torch.tensor([4]))  # staying on the goal keeps paying
    assert r.item() == 1.0
    for _ in range(10):
        pos, _, _ = tenv.step(torch.tensor([1]))
    assert pos.tolist() == [[0, 5]]
