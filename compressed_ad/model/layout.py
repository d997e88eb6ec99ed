"""The context layout: what one token holds, where markers and memory tokens go and which positions are targets.

The context modes (``compressed_ad/modes/``) build both their training windows (cut by ``dataset.py``) and
their in-context rollout's context (``model/rollout.py``) through this module, so the two can never disagree.

One token per environment step t holds what the agent knows *before* acting at t:
the observation s_t, the previous action a_{t-1} and the previous reward r_{t-1} (``NO_ACTION`` and 0 at the
first step of a stream). Its target is a_t, so a causal model predicts every action of its context
without seeing it: a window of L transitions gives L training targets.

Standard mode:    [x_0, x_1, ..., x_{L-1}]                               (L = n_transit)
Compressed mode:  [<c>, x_0 .. x_{n-1}, </c>, <c>, x_n .. x_{2n-1}, </c>] (n = region_len = compress_interval)
i.e. the previous PPO rollout region and the current one, each wrapped in markers. Markers are real
tokens (token types ``OPEN``/``CLOSE``) with no action target; the token-type head predicts at every
position the type of the *next* token.

Compressed mode with memory (m = ``memory_tokens`` > 0):
                  [m0 .. m_{m-1}, <c>, previous region, </c>, w0 .. w_{m-1}, <c>, current region, </c>]
The ``MEMORY`` tokens carry what the model wrote about the regions dropped before the previous one; the
``WRITE`` tokens, after the previous region, see the memory and that region, and their outputs become the
memory of the next window, when the previous region is dropped. Neither has an action target, and the
token-type head is not asked to predict them.
"""
from __future__ import annotations

import torch

TRANSITION, OPEN, CLOSE, MEMORY, WRITE = 0, 1, 2, 3, 4
N_TOKEN_TYPES = 3     # what the token-type head predicts: transition, <compress>, </compress>
N_INPUT_TYPES = 5     # token types with an input embedding (memory mode adds MEMORY and WRITE)
IGNORE = -100  # target index that cross-entropy skips


def no_action(num_actions: int) -> int:
    """Index of the 'no previous action' embedding (the first step of a stream)."""
    return num_actions


def obs_index(states: torch.Tensor, obs_sizes: tuple[int, ...]) -> torch.Tensor:
    """states (..., k) -> (...) one index per observation, mixed-radix over ``obs_sizes`` (k components).

    Dark Room: (row, col) -> row * grid_size + col. The model splits the index back into its components.
    """
    index = torch.zeros_like(states[..., 0], dtype=torch.long)
    for i, size in enumerate(obs_sizes):
        index = index * size + states[..., i].long()
    return index


def stream_tokens(states, actions, rewards, obs_sizes: tuple[int, ...], num_actions: int) -> dict[str, torch.Tensor]:
    """Token fields of whole streams. states (..., T, k), actions/rewards (..., T) -> dict of (..., T) tensors.

    ``obs``, ``prev_action``, ``prev_reward`` make the token; ``action`` is its target.
    """
    actions = actions.long()
    first_action = torch.full_like(actions[..., :1], no_action(num_actions))
    prev_action = torch.cat([first_action, actions[..., :-1]], dim=-1)
    prev_reward = torch.cat([torch.zeros_like(rewards[..., :1]), rewards[..., :-1]], dim=-1).float()
    return {'obs': obs_index(states, obs_sizes), 'prev_action': prev_action,
            'prev_reward': prev_reward, 'action': actions}


def region_types(region_len: int) -> torch.Tensor:
    """Token types of one closed region: ``<c>``, ``region_len`` transitions, ``</c>``; (n + 2,)."""
    types = torch.full((region_len + 2,), TRANSITION)
    types[0], types[-1] = OPEN, CLOSE
    return types


def compressed_window(region_len: int, memory_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Template of a training window spanning two regions: ``[memory] <c> previous </c> [write] <c> current </c>``.

    Returns (types (L,), offsets (L,)) with L = 2 * region_len + 4 + 2 * memory_tokens: ``types`` are token types
    and ``offsets`` the step of each transition counted from the first step of the previous region (-1 at markers
    and memory tokens).
    """
    m = memory_tokens
    region = region_types(region_len)
    types = torch.cat([torch.full((m,), MEMORY), region, torch.full((m,), WRITE), region])
    offsets = torch.full_like(types, -1)
    offsets[types == TRANSITION] = torch.arange(2 * region_len)
    return types, offsets


def next_type_targets(types: torch.Tensor) -> torch.Tensor:
    """Token-type targets: the type of the next token. types (..., L) -> (..., L).

    The last position of a window is always a ``</compress>`` in training, followed by ``<compress>`` (or, with
    memory, by the write tokens, which are not predicted: ``IGNORE``).
    """
    targets = torch.cat([types[..., 1:], torch.full_like(types[..., :1], OPEN)], dim=-1)
    return torch.where(targets >= N_TOKEN_TYPES, IGNORE, targets)


# In-context rollout, compressed mode: the context starts as ``[memory] <c>``; when a region of n transitions closes
# it becomes ``[memory] <c> region </c> [write] <c>`` (``region_prefix_len(n)`` tokens) and the next region is
# appended after it.
def first_transition(memory_tokens: int = 0) -> int:
    """Position of a region's first transition after a context's memory and opening ``<c>``."""
    return memory_tokens + 1


def kept_region_markers(region_len, memory_tokens: int = 0):
    """Positions of the ``</c>``, the first write token and the following ``<c>`` after a kept region of
    ``region_len`` (int or tensor)."""
    close = first_transition(memory_tokens) + region_len
    return close, close + 1, close + 1 + memory_tokens


def region_prefix_len(region_len, memory_tokens: int = 0):
    """Length of the context ``[memory] <c> region </c> [write] <c>`` that remains after a region closes."""
    return region_len + 3 + 2 * memory_tokens
