"""The in-context rollout with every step one fixed-shape computation that reads nothing back to the host.

``InContextRollout`` (``model/rollout.py``) is the reference: it decides on the host which rows close a region
(the model trigger reads the head's prediction back), encodes prefixes of the width the closing rows need and
samples with ``torch.multinomial``. ``StaticRollout`` plays the same rollout through the modes' static methods
(``context_modes.RolloutContext.static_*``), on the same buffers:

* the KV cache and the token buffer keep their shapes and are written in place, at positions held on the device
  (``KVCache.length``, the modes' per-row lengths), through ``KVCache``'s methods;
* which kind of step runs is decided on the host from the step count alone (standard mode: filling or sliding;
  the fixed trigger: whether regions close); what differs between rows (the model trigger's closes) is a mask;
* actions are sampled as ``torch.multinomial`` samples one per row, as the argmax of p / q with q ~ Exp(1) drawn
  from the rollout's generator; with the same seed the draws, and so the actions, are the reference's;
* the environment steps on the device, episodes restarting when a device-side step counter reaches the horizon.

Each kind of step is one function of the rollout's buffers. With ``compile`` each is compiled whole
(``torch.compile(fullgraph=True)``: no graph break, hence no host sync), once; on CUDA it is also captured as a CUDA
graph (``mode='reduce-overhead'``, the buffers marked static), so a step is one graph replay plus the noise draw.
The CUDA capture is not measured on a GPU yet. The returns equal the reference's over thousands of steps on a CPU
(tests/test_static_rollout.py); compiled kernels may round the logits' last bits differently, so a sample that
falls within rounding of a tie could differ.
"""
from __future__ import annotations

import torch

from compressed_ad.context_modes import mode_of
from compressed_ad.model.layout import TRANSITION, obs_index
from compressed_ad.model.rollout import InContextRollout
from compressed_ad.utils import UserError, autocast


class StaticRollout(InContextRollout):
    """``InContextRollout`` (cached, same arguments) whose steps are static (see the module docstring).

    ``compile``: compile each kind of step with ``torch.compile(fullgraph=True)``; ``cuda_graph`` (default: on when
    compiling on CUDA): capture it too. ``step_functions`` holds the function of each kind of step run so far
    (compiled with ``compile``).
    """

    def __init__(self, model, config: dict, tasks: torch.Tensor, greedy: bool = False,
                 compress_trigger: str = 'fixed', seed: int = 0, compile: bool = False,
                 cuda_graph: bool | None = None):
        super().__init__(model, config, tasks, greedy=greedy, compress_trigger=compress_trigger, use_cache=True,
                         seed=seed)
        if not self.context.static:
            raise UserError(f"The {mode_of(config).name} context mode has no static rollout step "
                            f"(RolloutContext.static); roll it out with model.rollout.InContextRollout.")
        self.horizon = config['horizon']
        # autocast contexts are made inside each step: one held by the rollout would be guarded by its id, and every
        # new rollout would compile its steps again
        self.bf16 = config['bf16'] and self.device.type == 'cuda'
        self.episode_t = torch.zeros((), dtype=torch.long, device=self.device)  # steps into the current episode
        self.start_state = self.env.start.expand(self.B, -1).clone()
        self.prev_action = self.prev_action.clone()  # buffers written in place from now on
        self.prev_reward = self.prev_reward.clone()
        self.state = self.state.clone()
        self.compile = compile
        self.cuda_graph = compile and self.device.type == 'cuda' if cuda_graph is None else cuda_graph
        if self.cuda_graph and not (compile and self.device.type == 'cuda'):
            raise ValueError('cuda_graph needs compile=True and a CUDA device')
        if self.cuda_graph:
            for buffer in self.buffers():
                torch._dynamo.mark_static_address(buffer)
        self.step_functions: dict[str, object] = {}

    def buffers(self) -> list[torch.Tensor]:
        """Every tensor a static step writes in place (they keep their storage for the whole rollout)."""
        context = [v for v in vars(self.context).values() if isinstance(v, torch.Tensor)]
        return [*self.ctx.values(), *self.cache.buffers(), self.state, self.prev_action, self.prev_reward,
                self.episode_t, *context]

    def _step_fn(self, kind: str):
        """The function that runs a step of ``kind``: ``static_step``, compiled once per kind with ``compile``."""
        if kind not in self.step_functions:
            def step(noise, kind=kind):
                return self.static_step(kind, noise)
            mode = 'reduce-overhead' if self.cuda_graph else None
            self.step_functions[kind] = torch.compile(step, fullgraph=True, mode=mode) if self.compile else step
        return self.step_functions[kind]

    def static_step(self, kind: str, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One environment step of every row, as one fixed-shape computation: append the token, act, step the
        environment, let the mode drop what it drops. ``noise`` (B, A): Exp(1) draws (None when greedy).
        Returns (reward (B,), action_logits (B, A))."""
        token = {'types': torch.full((self.B,), TRANSITION, device=self.device),
                 'obs': obs_index(self.state, self.obs_sizes),
                 'prev_action': self.prev_action, 'prev_reward': self.prev_reward}
        with autocast(self.device, self.bf16):
            action_logits, type_logits = self.context.static_forward(kind, token)
        action_logits = action_logits.float()
        if noise is None:
            action = action_logits.argmax(-1)
        else:  # what torch.multinomial(probs, 1) computes from the same draws
            action = (torch.softmax(action_logits, -1) / noise).argmax(-1)
        env = self.env
        next_state, reward = env.spec.step(self.state, action, env.tasks, env.moves, env.grid_size)
        reward = reward.float()
        self.episode_t += 1
        done = self.episode_t >= self.horizon
        self.state.copy_(torch.where(done, self.start_state, next_state))
        self.episode_t.copy_(torch.where(done, 0, self.episode_t))
        self.prev_action.copy_(action)
        self.prev_reward.copy_(reward)
        with autocast(self.device, self.bf16):
            self.context.static_end_step(kind, type_logits)
        return reward, action_logits

    @torch.no_grad()
    def step(self):
        """One environment step for every row. Returns (reward (B,), episode_done: bool, action_logits (B, A))."""
        kind = self.context.static_kind()
        noise = None
        if not self.greedy:  # the draws torch.multinomial would take from the generator, outside the graph
            noise = torch.empty(self.B, self.model.cfg.num_actions, device=self.device).exponential_(
                1, generator=self.gen)
        reward, action_logits = self._step_fn(kind)(noise)
        if self.cuda_graph:  # a graph's outputs are overwritten by its next replay
            reward, action_logits = reward.clone(), action_logits.clone()
        self.shared.t += 1
        return reward, self.t % self.horizon == 0, action_logits

