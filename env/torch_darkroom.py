"""Batched Dark Room in torch, for in-context evaluation on any device (no host round trips)."""
from __future__ import annotations

import torch

from env.darkroom import MOVES, start_position, step_positions


class BatchedDarkRoom:
    """``B`` independent Dark Rooms stepped in lock-step on one device.

    All episodes start together and are truncated together after ``horizon`` steps, then reset
    automatically. goals: (B, 2) long tensor.
    """

    def __init__(self, goals: torch.Tensor, grid_size: int, horizon: int):
        self.goals = goals.long()
        self.device = goals.device
        self.grid_size, self.horizon = grid_size, horizon
        self.moves = torch.as_tensor(MOVES, device=self.device)
        self.start = torch.tensor(start_position(grid_size), device=self.device)
        self.t = 0
        self.pos = self.start.expand_as(self.goals).clone()

    def reset(self) -> torch.Tensor:
        """Positions (B, 2) at the start of a new episode."""
        self.t = 0
        self.pos = self.start.expand_as(self.goals).clone()
        return self.pos.clone()

    def step(self, actions: torch.Tensor):
        """actions: (B,) long. Returns (next_pos (B, 2), reward (B,) float, done: bool for the whole batch).

        ``next_pos`` is the position reached; when ``done`` the caller resets for the next episode.
        """
        self.pos, reward = step_positions(self.pos, actions.long(), self.goals, self.moves, self.grid_size)
        self.t += 1
        return self.pos.clone(), reward.float(), self.t >= self.horizon
