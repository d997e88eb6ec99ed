"""Any environment of ``env.ENVS`` as a stable-baselines3 ``VecEnv``: the streams of one task as one numpy batch.

SB3's ``DummyVecEnv`` would loop over ``n_stream`` gymnasium envs in Python every step; the dynamics are one
vectorised call here (the environment's own step function, shared with its gymnasium and torch versions), with
SB3's auto-reset semantics kept: on the last step of an episode the returned observation is the reset one and
``info['terminal_observation']`` holds the state actually reached.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from compressed_ad.env import MOVES, N_ACTIONS, EnvSpec


class GridVecEnv(VecEnv):
    def __init__(self, spec: EnvSpec, task, n_envs: int, grid_size: int, horizon: int):
        sizes = spec.obs_sizes(grid_size)
        observation_space = spaces.Box(0, np.array(sizes) - 1, shape=(len(sizes),), dtype=np.int64)
        self.render_mode = None
        super().__init__(n_envs, observation_space, spaces.Discrete(N_ACTIONS))
        self.spec, self.grid_size, self.horizon = spec, grid_size, horizon
        self.tasks = np.tile(np.asarray(task, dtype=np.int64), (n_envs, 1))  # (n_envs, task_dim)
        self.start = np.array(spec.start_state(grid_size), dtype=np.int64)
        self.state = np.tile(self.start, (n_envs, 1))
        self.t = 0
        self.episode_return = np.zeros(n_envs)
        self._actions = None

    def reset(self):
        self.state = np.tile(self.start, (self.num_envs, 1))
        self.t = 0
        self.episode_return = np.zeros(self.num_envs)
        return self.state.copy()

    def step_async(self, actions):
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self):
        self.state, reward = self.spec.step(self.state, self._actions, self.tasks, MOVES, self.grid_size)
        self.t += 1
        self.episode_return += reward
        truncated = self.t >= self.horizon
        dones = np.full(self.num_envs, truncated)
        if truncated:
            # 'episode' is what SB3's Monitor would add: PPO logs it as rollout/ep_rew_mean
            infos = [{'terminal_observation': s.copy(), 'TimeLimit.truncated': True,
                      'episode': {'r': float(r), 'l': self.horizon, 't': 0.0}}
                     for s, r in zip(self.state, self.episode_return)]
            obs = self.reset()
        else:
            infos = [{} for _ in range(self.num_envs)]
            obs = self.state.copy()
        return obs, np.asarray(reward, dtype=np.float32), dones, infos

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices
