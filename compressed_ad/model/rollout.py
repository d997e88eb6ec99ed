"""In-context rollouts of a trained AD model in its batched torch environment, with a KV cache.

The context of every row is kept explicitly as token fields (B, max_len), laid out as in training
(``model.layout``):

* standard:   the last ``n_transit`` transitions, the same length in every row (a host-side count). While
  the window fills, each step decodes one token against the KV cache; once full, the window slides and
  positions shift, so the whole window is re-encoded (one full forward) per step: exact sliding-window
  semantics, as in training windows.
* compressed: ``<c> previous region </c> <c> current region so far``, with per-row lengths on the device
  (``ctx_len``, ``region_len``). Positions are stable inside a region pair, so each step decodes one token
  against the cache. When a region closes (every ``compress_interval`` steps, or when the token-type head
  predicts ``</c>``), the older region is dropped: the context becomes ``<c> closed region </c> <c>`` and
  only that prefix is re-encoded.

With ``use_cache=False`` every step recomputes the whole context instead (the reference the tests
compare the cache against).
"""
from __future__ import annotations

import torch

from compressed_ad.env import env_spec
from compressed_ad.env.batched import BatchedEnv
from compressed_ad.model.layout import (CLOSE, MEMORY, OPEN, TRANSITION, WRITE, first_transition, kept_region_markers,
                                        no_action, obs_index, region_prefix_len)
from compressed_ad.model.transformer import ADTransformer, KVCache
from compressed_ad.utils import autocast

FIELDS = ('types', 'obs', 'prev_action', 'prev_reward')


class InContextRollout:
    """``B`` rollouts (one per row of ``tasks`` (B, task_dim); Dark Room: goals) of ``model`` acting from its
    context alone."""

    def __init__(self, model: ADTransformer, config: dict, tasks: torch.Tensor, greedy: bool = False,
                 compress_trigger: str = 'fixed', use_cache: bool = True, seed: int = 0):
        self.model, self.config = model.eval(), config
        self.device = tasks.device
        self.B = tasks.shape[0]
        self.compressed = config['use_compressed_context']
        self.R = config['compress_interval']
        self.n_transit = config['n_transit']
        self.greedy, self.trigger, self.use_cache = greedy, compress_trigger, use_cache
        spec = env_spec(config)
        self.env = BatchedEnv(spec, tasks, config['grid_size'], config['horizon'])
        self.obs_sizes = spec.obs_sizes(config['grid_size'])
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        bf16 = config['bf16'] and self.device.type == 'cuda'
        self.autocast = autocast(self.device, bf16)
        L = model.cfg.max_len
        self.cache = KVCache(model.cfg, self.B, self.device, torch.bfloat16 if bf16 else torch.float32)
        self.ctx = {f: torch.zeros(self.B, L, dtype=torch.float if f == 'prev_reward' else torch.long,
                                   device=self.device) for f in FIELDS}
        self.rows = torch.arange(self.B, device=self.device)
        self.t = 0  # transitions appended so far (= env steps started): all rows step in lock-step
        self.state = self.env.reset()
        self.prev_action = torch.full((self.B,), no_action(config['num_actions']), device=self.device)
        self.prev_reward = torch.zeros(self.B, device=self.device)
        self._closed: list[torch.Tensor] = []  # lengths of the closed regions, one tensor per close event
        self.m = config['memory_tokens']
        if self.m:
            # ``memory``: what each row's memory tokens hold now; ``written``: what its write tokens wrote, which
            # becomes the memory at the next close (before the first close nothing has been dropped yet)
            self.memory = model.initial_memory(self.B).detach().clone().float()
            self.written = self.memory.clone()
        if self.compressed:
            start = first_transition(self.m)  # [memory] <c>
            self.ctx_len = torch.full((self.B,), start, dtype=torch.long, device=self.device)
            self.region_len = torch.zeros(self.B, dtype=torch.long, device=self.device)
            self._max_ctx_len = torch.tensor(start, device=self.device)
            self.ctx['types'][:, :self.m] = MEMORY
            self.ctx['types'][:, self.m] = OPEN
            if use_cache:
                with self.autocast:
                    self._prefill(self.rows, start)

    # ------------------------------------------------------------------ context bookkeeping
    def _standard_len(self) -> int:
        """Transitions in a standard-mode window after ``self.t`` steps."""
        return min(self.t, self.n_transit)

    def _append(self, token: dict[str, torch.Tensor]) -> bool:
        """Write one token per row at the end of its context. Returns True when a standard window slid."""
        if self.compressed:
            for f in FIELDS:
                self.ctx[f][self.rows, self.ctx_len] = token[f].to(self.ctx[f].dtype)
            self.ctx_len += 1
            self._max_ctx_len = torch.maximum(self._max_ctx_len, self.ctx_len.max())
            self.t += 1
            return False
        slide = self.t >= self.n_transit
        for f in FIELDS:
            if slide:
                self.ctx[f][:, :-1] = self.ctx[f][:, 1:].clone()
            self.ctx[f][:, min(self.t, self.n_transit - 1)] = token[f].to(self.ctx[f].dtype)
        self.t += 1
        return slide

    @property
    def max_ctx_len(self) -> int:
        """The longest context any row has held so far (tokens)."""
        return int(self._max_ctx_len) if self.compressed else self._standard_len()

    @property
    def closed_region_lengths(self) -> list[torch.Tensor]:
        """Lengths of the regions closed so far, one (rows closing,) tensor per close event."""
        return [x.cpu() for x in self._closed]

    def _memory(self, rows):
        return self.memory[rows] if self.m else None

    def _prefill(self, rows: torch.Tensor, width: int):
        """Re-encode the first ``width`` context tokens of ``rows`` into the cache; returns what they wrote."""
        fields = [self.ctx[f][rows, :width] for f in FIELDS]
        return self.model.prefill(*fields, cache=self.cache, rows=rows, lengths=self.ctx_len[rows],
                                  memory=self._memory(rows))[2]

    def _recompute(self):
        """Logits at each row's last context position from a full forward pass (no cache)."""
        if self.compressed:
            width, last = int(self.ctx_len.max()), self.ctx_len - 1
        else:
            width = self._standard_len()
            last = torch.full((self.B,), width - 1, device=self.device)
        action_logits, type_logits, _ = self.model.window(*[self.ctx[f][:, :width] for f in FIELDS],
                                                          memory=self._memory(self.rows))
        return action_logits[self.rows, last], (type_logits[self.rows, last] if type_logits is not None else None)

    def _close_regions(self, rows: torch.Tensor, width: int) -> None:
        """Rows ``rows``: the context becomes ``[memory] <c> current region </c> [write] <c>``; re-encode it.

        ``width`` bounds the closing regions' lengths (known on the host for the fixed trigger).
        """
        n = self.region_len[rows]
        self._closed.append(n)
        start = self.ctx_len[rows] - n  # first transition of the current region
        src = (start[:, None] + torch.arange(width, device=self.device)).clamp(max=self.ctx['types'].shape[1] - 1)
        first = first_transition(self.m)
        for f in FIELDS:
            self.ctx[f][rows, first:first + width] = self.ctx[f][rows[:, None], src]
        close, write, reopen = kept_region_markers(n, self.m)  # n varies per row with the model trigger
        self.ctx['types'][rows, self.m] = OPEN
        self.ctx['types'][rows, close] = CLOSE
        if self.m:
            self.ctx['types'][rows[:, None], write[:, None] + torch.arange(self.m, device=self.device)] = WRITE
            self.memory[rows] = self.written[rows]  # the dropped region now lives in the memory
        self.ctx['types'][rows, reopen] = OPEN
        self.ctx_len[rows] = region_prefix_len(n, self.m)
        self.region_len[rows] = 0
        width = region_prefix_len(width, self.m)
        if self.use_cache:
            written = self._prefill(rows, width)
        elif self.m:
            written = self.model.window(*[self.ctx[f][rows, :width] for f in FIELDS], memory=self._memory(rows))[2]
        if self.m:
            self.written[rows] = written.float()

    def _maybe_close_regions(self, type_logits) -> None:
        """Compressed mode, after a step: close the regions that end here."""
        self.region_len += 1
        if self.trigger == 'model':
            closing = (self.region_len >= self.R) | (type_logits.argmax(-1) == CLOSE)
            rows = closing.nonzero().squeeze(1)  # the one device->host sync per step this trigger needs
            if len(rows):
                self._close_regions(rows, int(self.region_len[rows].max()))
        elif self.t % self.R == 0:
            self._close_regions(self.rows, self.R)

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self):
        """One environment step for every row. Returns (reward (B,), episode_done: bool, action_logits (B, A))."""
        token = {'types': torch.full((self.B,), TRANSITION, device=self.device),
                 'obs': obs_index(self.state, self.obs_sizes),
                 'prev_action': self.prev_action, 'prev_reward': self.prev_reward}
        slid = self._append(token)
        with self.autocast:
            if self.use_cache and not slid:
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
        if self.compressed:
            with self.autocast:
                self._maybe_close_regions(type_logits)
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
