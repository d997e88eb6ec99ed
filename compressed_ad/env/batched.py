"""Any environment of ``env.ENVS`` batched in torch, for in-context evaluation on any device (no host round trips)."""
from __future__ import annotations

import torch

from compressed_ad.env import MOVES, EnvSpec


class BatchedEnv:
    """``B`` independent episodes of one environment stepped in lock-step on one device.

    All episodes start together and are truncated together after ``horizon`` steps, then reset by the caller.
    tasks: (B, task_dim) long tensor (Dark Room: goals (B, 2)). States are (B, state_dim) long tensors.
    """

    def __init__(self, spec: EnvSpec, tasks: torch.Tensor, grid_size: int, horizon: int):
        self.spec, self.tasks = spec, tasks.long()
        self.device = tasks.device
        self.grid_size, self.horizon = grid_size, horizon
        self.moves = torch.as_tensor(MOVES, device=self.device)
        self.start = torch.tensor(spec.start_state(grid_size), device=self.device)
        self.t = 0
        self.state = self.start.expand(len(tasks), -1).clone()

    def reset(self) -> torch.Tensor:
        """States (B, state_dim) at the start of a new episode."""
        self.t = 0
        self.state = self.start.expand(len(self.tasks), -1).clone()
        return self.state.clone()

    def step(self, actions: torch.Tensor):
        """actions: (B,) long. Returns (next_state (B, state_dim), reward (B,) float, done: bool for the batch).

        ``next_state`` is the state reached; when ``done`` the caller resets for the next episode.
        """
        self.state, reward = self.spec.step(self.state, actions.long(), self.tasks, self.moves, self.grid_size)
        self.t += 1
        return self.state.clone(), reward.float(), self.t >= self.horizon
