"""In-context rollouts of a trained AD model in its batched torch environment, with a KV cache.

The context of every row is kept explicitly as token fields (B, max_len), laid out as in training
(``model.layout``). What it holds is the context mode's (``context_modes.RolloutContext``, one per mode in
``compressed_ad/modes/``): the initial context, where a token goes, when positions shift so the context must be
re-encoded (standard: the window slides), and what is dropped after a step (compressed: the older region at a
region close). Otherwise each step decodes one token against the KV cache.

With ``use_cache=False`` every step recomputes the whole context instead (the reference the tests
compare the cache against).
"""
from __future__ import annotations

import numpy as np
import torch

from compressed_ad.context_modes import mode_of
from compressed_ad.env import env_spec
from compressed_ad.env.batched import BatchedEnv
from compressed_ad.model.layout import TRANSITION, no_action, obs_index
from compressed_ad.model.rollout_state import RolloutState
from compressed_ad.model.transformer import ADTransformer, KVCache
from compressed_ad.utils import autocast

FIELDS = ('types', 'obs', 'prev_action', 'prev_reward')


class InContextRollout:
    """``B`` rollouts (one per row of ``tasks`` (B, task_dim); Dark Room: goals) of ``model`` acting from its
    context alone.

    ``shared`` (``model.rollout_state.RolloutState``) is what the rollout shares with its context mode (``context``):
    the token buffer, the KV cache, the step count and the settings a mode reads. The rollout owns it; ``ctx``,
    ``cache``, ``rows`` and ``t`` read it.
    """

    def __init__(self, model: ADTransformer, config: dict, tasks: torch.Tensor, greedy: bool = False,
                 compress_trigger: str = 'fixed', use_cache: bool = True, seed: int = 0):
        self.model, self.config, self.greedy = model.eval(), config, greedy
        device, B = tasks.device, tasks.shape[0]
        spec = env_spec(config)
        self.env = BatchedEnv(spec, tasks, config['grid_size'], config['horizon'])
        self.obs_sizes = spec.obs_sizes(config['grid_size'])
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        bf16 = config['bf16'] and device.type == 'cuda'
        L = model.cfg.max_len
        cache = KVCache(model.cfg, B, device, torch.bfloat16 if bf16 else torch.float32)
        ctx = {f: torch.zeros(B, L, dtype=torch.float if f == 'prev_reward' else torch.long, device=device)
               for f in FIELDS}
        self.shared = RolloutState(model=self.model, batch=B, device=device, rows=torch.arange(B, device=device),
                                   ctx=ctx, cache=cache, trigger=compress_trigger, use_cache=use_cache,
                                   autocast=autocast(device, bf16))
        self.state = self.env.reset()
        self.prev_action = torch.full((self.B,), no_action(config['num_actions']), device=self.device)
        self.prev_reward = torch.zeros(self.B, device=self.device)
        self.context = mode_of(config).rollout_context(self.shared, config)
        self.context.start()

    @property
    def B(self) -> int:
        """Rows: rollouts stepped in lock-step (``RolloutState.batch``)."""
        return self.shared.batch

    @property
    def device(self) -> torch.device:
        """Where every tensor of the rollout lives (``RolloutState.device``)."""
        return self.shared.device

    @property
    def use_cache(self) -> bool:
        """Decode against the KV cache (True) or recompute the whole context every step (``RolloutState.use_cache``)."""
        return self.shared.use_cache

    @property
    def autocast(self):
        """The autocast context of the rollout's model calls (``RolloutState.autocast``)."""
        return self.shared.autocast

    @property
    def t(self) -> int:
        """Transitions appended so far (= env steps started): all rows step in lock-step."""
        return self.shared.t

    @property
    def ctx(self) -> dict[str, torch.Tensor]:
        """The token buffer, fields (B, max_len) (``RolloutState.ctx``)."""
        return self.shared.ctx

    @property
    def cache(self) -> KVCache:
        """The KV cache (``RolloutState.cache``)."""
        return self.shared.cache

    @property
    def rows(self) -> torch.Tensor:
        """(B,) every row's index."""
        return self.shared.rows

    @property
    def max_ctx_len(self) -> int:
        """The longest context any row has held so far (tokens)."""
        return self.context.max_ctx_len

    @property
    def closed_region_lengths(self) -> list[torch.Tensor]:
        """Lengths of the regions closed so far, one (rows closing,) tensor per close event."""
        return self.context.closed_region_lengths

    def _recompute(self):
        """Logits at each row's last context position from a full forward pass (no cache)."""
        width, last = self.context.last_positions()
        action_logits, type_logits, _ = self.model.forward_tokens(*[self.ctx[f][:, :width] for f in FIELDS],
                                                                  memory=self.context.memory_of(self.rows))
        return action_logits[self.rows, last], (type_logits[self.rows, last] if type_logits is not None else None)

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self):
        """One environment step for every row. Returns (reward (B,), episode_done: bool, action_logits (B, A))."""
        token = {'types': torch.full((self.B,), TRANSITION, device=self.device),
                 'obs': obs_index(self.state, self.obs_sizes),
                 'prev_action': self.prev_action, 'prev_reward': self.prev_reward}
        shifted = self.context.append(token)
        self.shared.t += 1
        with self.autocast:
            if self.use_cache and not shifted:
                action_logits, type_logits = self.model.decode(*[token[f] for f in FIELDS], cache=self.cache)
            else:
                action_logits, type_logits = self._recompute()
        action_logits = action_logits.float()
        if self.greedy:
            action = action_logits.argmax(-1)
        else:
            action = torch.multinomial(torch.softmax(action_logits, -1), 1, generator=self.gen).squeeze(1)
        next_state, reward, done = self.env.step(action)
        self.prev_action, self.prev_reward = action, reward
        self.state = self.env.reset() if done else next_state
        with self.autocast:
            self.context.end_step(type_logits)
        return reward, done, action_logits

    @torch.no_grad()
    def run(self, episodes: int, on_episode=None) -> torch.Tensor:
        """Play ``episodes`` episodes per row. Returns episode returns (B, episodes) on the device.

        ``on_episode(index, returns (B,))`` is called after each episode (e.g. for a progress bar).
        """
        returns = torch.zeros(self.B, episodes, device=self.device)
        episode_return = torch.zeros(self.B, device=self.device)
        for episode in range(episodes):
            done = False
            while not done:
                reward, done, _ = self.step()
                episode_return += reward
            returns[:, episode] = episode_return
            episode_return.zero_()
            if on_episode is not None:
                on_episode(episode, returns[:, episode])
        return returns


def rollout_on_tasks(model: ADTransformer, config: dict, tasks: np.ndarray, streams: int, device,
                     greedy: bool = False, compress_trigger: str | None = None, static: bool = False,
                     compile: bool = False) -> InContextRollout:
    """``streams`` rollouts of each task (tasks (G, task_dim)), goal-major rows (G * streams), with the config's
    evaluation settings (``eval_compress_trigger`` unless ``compress_trigger`` is given, ``eval_seed``).

    With ``static`` the rollout is a ``model.static_rollout.StaticRollout`` (compiled with ``compile``)."""
    rows = torch.as_tensor(np.repeat(tasks, streams, axis=0), device=device)
    settings = dict(greedy=greedy, seed=config['eval_seed'],
                    compress_trigger=compress_trigger or config['eval_compress_trigger'])
    if static:
        from compressed_ad.model.static_rollout import StaticRollout  # it builds on this module
        return StaticRollout(model, config, rows, compile=compile, **settings)
    return InContextRollout(model, config, rows, **settings)
