"""Dark Room: dynamics (numpy and torch share one step function), the goal split and its gymnasium registration."""
import gymnasium as gym

from env.darkroom import (ACTION_NAMES, MOVES, N_ACTIONS, DarkRoomEnv, all_goals, oracle_return, split_env_indices,
                          start_position, step_positions)
from utils import UserError

ENV_ID = 'DarkRoom-v0'
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point='env.darkroom:DarkRoomEnv')


def goal_split(config: dict) -> tuple[list[int], list[int]]:
    """(training env indices, held-out env indices) of the config's grid and split; both must be non-empty."""
    n = config['grid_size'] ** 2
    train, test = split_env_indices(n, config['env_split_seed'], config['train_env_ratio'])
    if not train or not test:
        raise UserError(f"train_env_ratio={config['train_env_ratio']} splits the {n} goals into {len(train)} training "
                        f"and {len(test)} held-out goals; both need at least one. The default is 0.9 (73 / 8).")
    return train, test


__all__ = ['ACTION_NAMES', 'ENV_ID', 'MOVES', 'N_ACTIONS', 'DarkRoomEnv', 'all_goals', 'goal_split', 'oracle_return',
           'split_env_indices', 'start_position', 'step_positions']
