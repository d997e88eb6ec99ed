"""Dark Room: dynamics (numpy and torch share one step function), goals and the oracle return.

The agent starts at the centre of a ``grid_size`` x ``grid_size`` grid and sees only its own position
(row, col). Actions: 0 row+1, 1 row-1, 2 col+1, 3 col-1, 4 stay; positions are clipped to the grid.
The reward is 1 on every step that ends on the (invisible) goal cell. Episodes are truncated after
``horizon`` steps and never terminate early.

``step_positions`` is the single definition of the dynamics: it is written with operations that numpy
arrays and torch tensors share, so the gymnasium env (``env.GridEnv``), the numpy VecEnv used by PPO and the
batched torch env used by the evaluator cannot drift apart.
"""
from __future__ import annotations

import numpy as np

# (d_row, d_col) for each action, and its name
MOVES = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]], dtype=np.int64)
ACTION_NAMES = ('row+1', 'row-1', 'col+1', 'col-1', 'stay')
N_ACTIONS = len(MOVES)


def step_positions(pos, actions, goals, moves, grid_size: int):
    """One step of Dark Room for a batch, on numpy arrays or torch tensors alike.

    pos: (B, 2) integer positions; actions: (B,) integers in [0, 5); goals: (B, 2);
    moves: MOVES as the same array type. Returns (new_pos (B, 2), reward (B,) in {0, 1}, same dtype as pos).
    """
    new_pos = (pos + moves[actions]).clip(0, grid_size - 1)
    reward = (new_pos == goals).all(-1)
    return new_pos, reward


def start_position(grid_size: int) -> tuple[int, int]:
    return grid_size // 2, grid_size // 2


def goal_of(task_idx, grid_size: int) -> np.ndarray:
    """Task indices (...,) -> goals (..., 2) int64: task index i has goal (i // grid_size, i % grid_size)."""
    task_idx = np.asarray(task_idx, dtype=np.int64)
    return np.stack([task_idx // grid_size, task_idx % grid_size], axis=-1)


def goal_distance(goal, grid_size: int) -> int:
    """L1 distance of the goal from the start (the centre)."""
    centre = start_position(grid_size)
    return abs(int(goal[0]) - centre[0]) + abs(int(goal[1]) - centre[1])


def oracle_return(goal, grid_size: int, horizon: int) -> int:
    """Return of the agent that walks straight to a known goal: it is rewarded from the step it arrives."""
    return max(0, horizon - max(goal_distance(goal, grid_size), 1) + 1)
