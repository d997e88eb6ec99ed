"""Dark Key-to-Door: dynamics (numpy and torch share one step function), tasks and the oracle return.

A dark grid (``grid_size``, 9 x 9 by default): the agent starts at the centre and must find an invisible key, then an invisible door. The
state is (row, col, stage), stage 0 before the key, 1 holding it, 2 after the door has opened; positions are
clipped to the grid. Reward 1 on the step the agent first reaches the key, and 1 on the step it first reaches the
door holding the key (on the same step when key and door share a cell): at most 2 per episode. Episodes are
truncated after ``horizon`` steps (50) and never terminate early.

A task is a (key, door) pair: task index ``i`` has key cell ``i // grid_size**2`` and door cell
``i % grid_size**2`` (cells in row-major order), so there are grid_size**4 tasks (6561 on 9 x 9).

What the learners see: the PPO source observes the whole state (row, col, stage): a memoryless policy must know
whether it holds the key. The AD token holds the same observation (and, as in Dark Room, the previous action and
reward); the key and the door stay invisible, so the model must find them from its context.
"""
from __future__ import annotations

import numpy as np

from compressed_ad.env.darkroom import start_position

STAGES = 3  # 0 seeking the key, 1 holding it, 2 door opened


def task_cells(task_idx, grid_size: int) -> np.ndarray:
    """Task indices (...,) -> tasks (..., 4) int64: key row, key col, door row, door col."""
    task_idx = np.asarray(task_idx, dtype=np.int64)
    key, door = task_idx // grid_size ** 2, task_idx % grid_size ** 2
    return np.stack([key // grid_size, key % grid_size, door // grid_size, door % grid_size], axis=-1)


def start_state(grid_size: int) -> tuple[int, int, int]:
    return (*start_position(grid_size), 0)


def step_states(state, actions, tasks, moves, grid_size: int):
    """One step for a batch, on numpy arrays or torch tensors alike.

    state: (B, 3) integers (row, col, stage); actions: (B,); tasks: (B, 4); moves: MOVES as the same array type.
    Returns (new_state (B, 3), reward (B,) integers in {0, 1, 2}).
    """
    new_state = state * 1  # a copy, in either library
    new_state[:, :2] = (state[:, :2] + moves[actions]).clip(0, grid_size - 1)
    at_key = (new_state[:, :2] == tasks[:, :2]).all(-1)
    at_door = (new_state[:, :2] == tasks[:, 2:]).all(-1)
    stage = state[:, 2]
    got_key = ((stage == 0) & at_key) * 1
    opened = (((stage == 1) | (got_key == 1)) & at_door) * 1
    new_state[:, 2] = stage + got_key + opened
    return new_state, got_key + opened


def _legs(task, grid_size: int) -> tuple[int, int]:
    """Steps from the start to the key (at least 1: the key counts when stepped onto) and from key to door."""
    start = start_position(grid_size)
    to_key = abs(int(task[0]) - start[0]) + abs(int(task[1]) - start[1])
    return max(to_key, 1), abs(int(task[2]) - int(task[0])) + abs(int(task[3]) - int(task[1]))


def path_length(task, grid_size: int) -> int:
    """Steps of the shortest path from the start through the key to the door."""
    return sum(_legs(task, grid_size))


def oracle_return(task, grid_size: int, horizon: int) -> int:
    """Return of the agent that walks straight to the known key, then to the door."""
    to_key, to_door = _legs(task, grid_size)
    return int(to_key <= horizon) + int(to_key + to_door <= horizon)
