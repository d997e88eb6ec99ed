"""One stable-baselines3 PPO learner per task (a Dark Room goal, a Key-to-Door key and door), with its whole
learning history recorded.

``HistoryLogger`` is an SB3 callback: ``_on_step`` copies the transition of every stream, and
``_on_rollout_start`` / ``_on_rollout_end`` mark the first and last transition of each PPO rollout
batch, so the compression markers sit on SB3's real rollout-buffer boundaries by construction.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from compressed_ad.algorithm.vec_env import GridVecEnv
from compressed_ad.env import env_spec
from compressed_ad.history_file import MARK_CLOSE, MARK_NONE, MARK_OPEN


class HistoryLogger(BaseCallback):
    """Record (state, action, reward, next_state, done, marker) for every stream at every env step.

    Arrays are time-major: (T, n_stream, ...).
    """

    def __init__(self):
        super().__init__()
        self.states, self.actions, self.rewards, self.next_states, self.dones, self.markers = ([] for _ in range(6))
        self._rollout_first = 0

    def _on_rollout_start(self) -> None:
        self._rollout_first = len(self.actions)

    def _on_step(self) -> bool:
        loc = self.locals
        dones = np.asarray(loc['dones'], dtype=bool)
        next_states = np.array(loc['new_obs'], dtype=np.int32)
        for i in np.flatnonzero(dones):  # the observation returned on done is already the reset one
            next_states[i] = loc['infos'][i]['terminal_observation']
        self.states.append(np.array(self.model._last_obs, dtype=np.int32))
        self.actions.append(np.array(loc['actions'], dtype=np.int32).reshape(-1))
        # copy now: SB3 adds the bootstrapped value into `rewards` in place after this callback
        self.rewards.append(np.rint(loc['rewards']).astype(np.int32))
        self.next_states.append(next_states)
        self.dones.append(dones.copy())
        self.markers.append(np.full(len(dones), MARK_NONE, dtype=np.int32))
        return True

    def _on_rollout_end(self) -> None:
        if len(self.markers) > self._rollout_first:
            self.markers[self._rollout_first][:] = MARK_OPEN
            self.markers[-1][:] = MARK_CLOSE

    def history(self) -> dict[str, np.ndarray]:
        return {
            'states': np.stack(self.states), 'actions': np.stack(self.actions),
            'rewards': np.stack(self.rewards), 'next_states': np.stack(self.next_states),
            'dones': np.stack(self.dones), 'compress_markers': np.stack(self.markers),
        }


def rollouts_needed(config: dict) -> int:
    """Whole PPO rollouts that give every stream at least ``train_source_timesteps`` transitions."""
    return math.ceil(config['train_source_timesteps'] / config['n_steps'])


def make_ppo(env, config: dict, seed: int, tensorboard_log: str | None = None) -> PPO:
    return PPO(
        'MlpPolicy', env, n_steps=config['n_steps'], batch_size=config['ppo_batch_size'],
        n_epochs=config['ppo_n_epochs'], learning_rate=config['ppo_learning_rate'], gamma=config['ppo_gamma'],
        gae_lambda=config['ppo_gae_lambda'], clip_range=config['ppo_clip_range'], ent_coef=config['ppo_ent_coef'],
        vf_coef=config['ppo_vf_coef'], max_grad_norm=config['ppo_max_grad_norm'],
        policy_kwargs=dict(net_arch=list(config['ppo_net_arch'])), seed=seed, device='cpu', verbose=0,
        tensorboard_log=tensorboard_log)


def learn_task(task, config: dict, seed: int, tensorboard_log: str | None = None) -> dict[str, np.ndarray]:
    """Train PPO on one task from scratch; return its history (time-major arrays, T = rollouts * n_steps)."""
    env = GridVecEnv(env_spec(config), task, config['n_stream'], config['grid_size'], config['horizon'])
    model = make_ppo(env, config, seed, tensorboard_log)
    logger = HistoryLogger()
    total = rollouts_needed(config) * config['n_steps'] * config['n_stream']
    model.learn(total_timesteps=total, callback=logger, tb_log_name='PPO')
    return logger.history()


def set_single_thread() -> None:
    torch.set_num_threads(1)
