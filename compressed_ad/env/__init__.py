"""The environments AD learns on, behind one interface: Dark Room and Dark Key-to-Door.

Each environment is a ``EnvSpec`` of plain functions (its dynamics shared by numpy and torch, tasks, oracle),
chosen by the ``env`` config key. Tasks are numbered by task index (``EnvSpec.task_of``); ``task_indices``
picks the tasks a config collects (every task, or a sample of ``n_tasks``) and ``task_split`` splits them into
training and held-out tasks with Python's ``random`` seeded by ``env_split_seed``, so with Dark Room's defaults
the 8 held-out goals are (4,2) (5,6) (6,8) (7,2) (3,6) (0,5) (5,8) (5,4) (checked by tests/test_env.py).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from compressed_ad.env import darkroom, keytodoor
from compressed_ad.env.darkroom import ACTION_NAMES, MOVES, N_ACTIONS, start_position
from compressed_ad.utils import UserError


@dataclass(frozen=True)
class EnvSpec:
    name: str
    gym_id: str
    task_dim: int                     # numbers per task: Dark Room (goal row, col); Key-to-Door key and door cells
    obs_sizes: Callable               # grid_size -> sizes of the observation's components, e.g. (9, 9) = (row, col)
    n_all_tasks: Callable             # grid_size -> number of task indices
    task_of: Callable                 # task indices (...,) , grid_size -> tasks (..., task_dim)
    start_state: Callable             # grid_size -> the state every episode starts in
    step: Callable                    # (state, actions, tasks, MOVES, grid_size) -> (new state, reward); numpy or torch
    oracle_return: Callable           # (task, grid_size, horizon) -> return of the agent that knows the task
    waypoint: Callable                # (state, tasks) -> the cell a task-knowing agent walks to next (B, 2)
    distance: Callable                # (task, grid_size) -> steps of the shortest path that solves the task
    describe: Callable                # task -> short text
    noun: str                         # what its tasks are called: 'goals', 'tasks'
    horizon: int                      # steps per episode by default (config/env/{name}.yaml says the same)


def _darkroom_waypoint(state, tasks):
    return tasks


def _keytodoor_waypoint(state, tasks):
    holding = state[:, 2:3] >= 1
    return tasks[:, :2] * (1 - holding * 1) + tasks[:, 2:] * holding


ENVS = {
    'darkroom': EnvSpec(
        name='darkroom', gym_id='DarkRoom-v0', task_dim=2, obs_sizes=lambda g: (g, g), n_all_tasks=lambda g: g * g,
        task_of=darkroom.goal_of, start_state=darkroom.start_position, step=darkroom.step_positions,
        oracle_return=darkroom.oracle_return, waypoint=_darkroom_waypoint, distance=darkroom.goal_distance,
        describe=lambda t: f'({int(t[0])}, {int(t[1])})', noun='goals', horizon=20),
    'darkkeytodoor': EnvSpec(
        name='darkkeytodoor', gym_id='DarkKeyToDoor-v0', task_dim=4,
        obs_sizes=lambda g: (g, g, keytodoor.STAGES), n_all_tasks=lambda g: g ** 4, task_of=keytodoor.task_cells,
        start_state=keytodoor.start_state, step=keytodoor.step_states, oracle_return=keytodoor.oracle_return,
        waypoint=_keytodoor_waypoint, distance=keytodoor.path_length,
        describe=lambda t: f'key ({int(t[0])}, {int(t[1])}) door ({int(t[2])}, {int(t[3])})', noun='tasks',
        horizon=50),
}


class GridEnv(gym.Env):
    """One episode of an environment of ``ENVS`` as a ``gymnasium.Env`` (ids ``DarkRoom-v0``, ``DarkKeyToDoor-v0``).

    ``gym.make('DarkRoom-v0', goal=(row, col))`` or ``gym.make('DarkKeyToDoor-v0', task=(kr, kc, dr, dc))``.
    Observation: int64 array of the state (Dark Room (row, col); Key-to-Door (row, col, stage)). Reward: float.
    ``truncated`` after ``horizon`` steps (by default the environment's own: 20 in Dark Room, 50 in Key-to-Door);
    never terminated.
    """

    metadata = {'render_modes': []}

    def __init__(self, env: str = 'darkroom', task=None, goal=None, grid_size: int = 9, horizon: int | None = None):
        self.spec_ = ENVS[env]
        self.grid_size, self.horizon = grid_size, horizon or self.spec_.horizon
        task = goal if task is None else task
        self.task = np.asarray(task if task is not None else (0,) * self.spec_.task_dim, dtype=np.int64)
        self.observation_space = gym.spaces.MultiDiscrete(self.spec_.obs_sizes(grid_size))
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._state = np.array(self.spec_.start_state(grid_size), dtype=np.int64)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = np.array(self.spec_.start_state(self.grid_size), dtype=np.int64)
        self._t = 0
        return self._state.copy(), {}

    def step(self, action):
        state, reward = self.spec_.step(self._state[None], np.array([int(action)]), self.task[None], MOVES,
                                        self.grid_size)
        self._state = state[0]
        self._t += 1
        return self._state.copy(), float(reward[0]), False, self._t >= self.horizon, {}


for _name, _spec in ENVS.items():
    if _spec.gym_id not in gym.registry:
        gym.register(id=_spec.gym_id, entry_point='compressed_ad.env:GridEnv', kwargs={'env': _name})


def env_spec(config: dict) -> EnvSpec:
    return ENVS[config['env']]


def task_indices(config: dict) -> list[int]:
    """The task indices a config collects and trains on: every task (``n_tasks: 0``), or a sample of ``n_tasks``
    drawn with ``task_seed`` (ascending)."""
    total = env_spec(config).n_all_tasks(config['grid_size'])
    if config['n_tasks'] == 0 or config['n_tasks'] >= total:
        return list(range(total))
    rng = np.random.default_rng(config['task_seed'])
    return sorted(int(i) for i in rng.choice(total, config['n_tasks'], replace=False))


def split_task_indices(indices: list[int], env_split_seed: int, train_env_ratio: float) -> tuple[list[int], list[int]]:
    """Shuffle ``indices`` with Python's ``random`` and cut: (training indices, held-out indices)."""
    order = list(indices)
    random.seed(env_split_seed)
    random.shuffle(order)
    n_train = round(len(order) * train_env_ratio)
    return order[:n_train], order[n_train:]


def task_split(config: dict) -> tuple[list[int], list[int]]:
    """(training task indices, held-out task indices) of the config's tasks and split; both must be non-empty."""
    indices = task_indices(config)
    train, test = split_task_indices(indices, config['env_split_seed'], config['train_env_ratio'])
    if not train or not test:
        noun = env_spec(config).noun
        raise UserError(f"train_env_ratio={config['train_env_ratio']} splits the {len(indices)} {noun} into "
                        f"{len(train)} training and {len(test)} held-out {noun}; both need at least one. The "
                        f"default is 0.9 (73 / 8 Dark Room goals).")
    return train, test


def tasks_of(config: dict, indices) -> np.ndarray:
    """Tasks (n, task_dim) int64 of the given task indices."""
    return env_spec(config).task_of(np.asarray(indices, dtype=np.int64), config['grid_size'])


def oracle_returns(config: dict, indices) -> list[int]:
    spec = env_spec(config)
    return [spec.oracle_return(t, config['grid_size'], config['horizon']) for t in tasks_of(config, indices)]


__all__ = ['ACTION_NAMES', 'ENVS', 'MOVES', 'N_ACTIONS', 'EnvSpec', 'GridEnv', 'env_spec', 'oracle_returns',
           'split_task_indices', 'start_position', 'task_indices', 'task_split', 'tasks_of']
