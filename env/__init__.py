"""Dark Room: dynamics (numpy and torch share one step function) and its gymnasium registration."""
import gymnasium as gym

from env.darkroom import (MOVES, N_ACTIONS, DarkRoomEnv, all_goals, oracle_return, split_env_indices,
                          start_position, step_positions)

ENV_ID = 'DarkRoom-v0'
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point='env.darkroom:DarkRoomEnv')

__all__ = ['ENV_ID', 'MOVES', 'N_ACTIONS', 'DarkRoomEnv', 'all_goals', 'oracle_return', 'split_env_indices',
           'start_position', 'step_positions']
