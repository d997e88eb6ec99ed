"""The AD transformer: a small pre-LN causal transformer over one token per environment step.

Shapes: B batch, L sequence length, D ``tf_n_embd``, H heads, hd = D // H, A actions.
The same module serves every context mode (``context_modes``); compressed modes add marker tokens (through the
token-type embedding) and a token-type head (``ContextMode.type_head``). Attention goes through
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA).

Positions are either absolute (a learned table over the context) or relative (rotary embeddings of queries and
keys, ``ModelConfig.positions = 'rope'``). With relative positions a model may also limit attention to the last
``attn_window`` tokens (causal sliding-window attention); its KV cache is then a ring of ``attn_window`` slots, and
decoding against it is exact for any number of steps, since no key depends on where the context started.

This module imports only torch and ``model/layout.py``: it knows no config, context mode or environment.
``compressed_ad.build.model_config`` turns a config into its ``ModelConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from compressed_ad.model.layout import MEMORY, N_INPUT_TYPES, N_TOKEN_TYPES, TRANSITION, WRITE


@dataclass
class ModelConfig:
    """The model's sizes and options (``compressed_ad.build.model_config`` makes one from a config)."""
    obs_sizes: tuple[int, ...]  # sizes of the observation's components, e.g. (row, col) = (9, 9)
    num_actions: int
    n_embd: int
    n_layer: int
    n_head: int
    dim_feedforward: int
    dropout: float
    max_len: int
    compressed: bool  # the context mode's token-type head
    memory_tokens: int = 0
    positions: str = 'absolute'  # 'absolute' (learned table of max_len) or 'rope' (rotary, relative)
    attn_window: int = 0  # > 0: each token attends to itself and the attn_window - 1 tokens before it (rope only)

    @property
    def cache_len(self) -> int:
        """Slots of a KV cache row: the window (a ring) when attention is windowed, else the whole context."""
        return self.attn_window or self.max_len


class KVCache:
    """Per-layer keys/values for a batch of contexts of different lengths.

    Buffers (on the device, written in place by the methods below and by nothing else): ``k``, ``v``
    (n_layer, B, H, C, hd) with C = ``slots`` = ``cfg.cache_len``; ``length`` (B,) long: tokens each row has
    decoded, i.e. the position of its next token (read it freely; it changes through ``advance`` and the prefix
    writes). With windowed attention the cache is a ring (``ring``): position p lives in slot p % C. No method reads
    a device value back to the host, so the static rollout's steps compile whole.
    """

    def __init__(self, cfg: ModelConfig, batch: int, device, dtype):
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.cache_len, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = torch.zeros(batch, dtype=torch.long, device=device)
        self._ring = bool(cfg.attn_window)

    @property
    def slots(self) -> int:
        """Slots per row and layer (C)."""
        return self.k.shape[3]

    @property
    def ring(self) -> bool:
        """Attention is windowed: position p lives in slot p % ``slots``, every slot visible once the ring is full."""
        return self._ring

    def buffers(self) -> list[torch.Tensor]:
        """The tensors the cache writes in place (k, v, length), which keep their storage: for code that marks
        them static (a captured CUDA graph)."""
        return [self.k, self.v, self.length]

    def write_token(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write one new token's keys and values per row, k and v (B, H, hd), into ``layer`` at each row's position
        ``length`` (its slot in a ring). ``length`` moves on with ``advance``, once every layer is written."""
        rows = torch.arange(self.length.shape[0], device=self.length.device)
        slot = self.length % self.slots if self.ring else self.length
        self.k[layer, rows, :, slot] = k.to(self.k.dtype)
        self.v[layer, rows, :, slot] = v.to(self.v.dtype)

    def layer_kv(self, layer: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``layer``, (B, H, C, hd) each, in ``dtype`` (the queries')."""
        return self.k[layer].to(dtype), self.v[layer].to(dtype)

    def visible(self) -> torch.Tensor:
        """(B, C) bool: the slots the token at each row's position ``length`` attends to, itself included: the
        positions decoded so far (and every slot once a ring is full)."""
        return torch.arange(self.slots, device=self.length.device) <= self.length[:, None]

    def advance(self) -> None:
        """Every row has written one more token (``write_token`` in every layer)."""
        self.length += 1

    def write_prefix(self, kv: list[tuple[torch.Tensor, torch.Tensor]], rows: torch.Tensor,
                     lengths: torch.Tensor) -> None:
        """Prefill: the prefixes of ``rows`` (n,), encoded from position 0, replace their first P slots; ``kv``: per
        layer (k, v), (n, H, P, hd) each (the ``kv_out`` of ``ADTransformer.forward_tokens``). ``lengths`` (n,)
        become their lengths (the valid part of each prefix: slots beyond it are never attended)."""
        P = kv[0][0].shape[2]
        for layer, (k, v) in enumerate(kv):
            self.k[layer, rows, :, :P] = k.to(self.k.dtype)
            self.v[layer, rows, :, :P] = v.to(self.v.dtype)
        self.length[rows] = lengths

    def write_prefix_where(self, mask: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
                           lengths: torch.Tensor) -> None:
        """``write_prefix`` for the rows ``mask`` (B,) bool selects, with every tensor keeping its shape (the
        static rollout): ``kv`` per layer (k, v), (B, H, P, hd) each, and ``lengths`` (B,) hold a value for every
        row; rows outside ``mask`` keep their slots and length."""
        P = kv[0][0].shape[2]
        keep = mask[:, None, None, None]
        for layer, (k, v) in enumerate(kv):
            self.k[layer, :, :, :P] = torch.where(keep, k.to(self.k.dtype), self.k[layer, :, :, :P])
            self.v[layer, :, :, :P] = torch.where(keep, v.to(self.v.dtype), self.v[layer, :, :, :P])
        self.length.copy_(torch.where(mask, lengths, self.length))


def rotary(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary angles of ``positions`` (any shape, long): (cos, sin), each (*positions.shape, head_dim / 2), fp32."""
    inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def rotate_queries_and_keys(qk: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                            as_complex: bool | None = None) -> torch.Tensor:
    """qk (B, L, 2, H, hd), queries and keys -> the same, each channel pair rotated by its position's angle
    (``rope``: cos, sin broadcastable to (B, L, 2, H, hd / 2)).

    Eager, one complex product (the cheapest rotation on a CPU); under ``torch.compile`` the same product in real
    arithmetic, which inductor fuses (it generates no code for complex operators). ``as_complex`` forces one.
    """
    B, L, _, H, hd = qk.shape
    pairs = qk.float().reshape(B, L, 2, H, hd // 2, 2)  # a view when qk is contiguous fp32
    cos, sin = rope
    if as_complex is None:
        as_complex = not torch.compiler.is_compiling()
    if as_complex:
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.complex(cos, sin))
    else:
        x, y = pairs.unbind(-1)
        rotated = torch.stack((x * cos - y * sin, x * sin + y * cos), dim=-1)
    return rotated.reshape(B, L, 2, H, hd).to(qk.dtype)


def causal_attention(q, k, v, window: int = 0, split_head: bool | None = None):
    """Causal attention of (B, H, L, hd) queries -> (B, L, H, hd); with ``window`` > 0 each query sees only the
    last ``window`` keys.

    With ``split_head`` (the default off a CPU) the first ``window`` queries, which have fewer keys behind them
    than the window holds, are plain causal attention (on a GPU the fused causal kernel, far faster than a masked
    one) and only the rest use the band mask. On a CPU one masked call is cheaper than two calls and the gradient
    copies of their slices.
    """
    L = q.shape[2]
    if not window or L <= window:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
    if not (q.device.type != 'cpu' if split_head is None else split_head):
        query, key = torch.arange(L, device=q.device)[:, None], torch.arange(L, device=q.device)
        band = (key <= query) & (key > query - window)  # (L, L)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=band).transpose(1, 2)
    head = F.scaled_dot_product_attention(q[:, :, :window], k[:, :, :window], v[:, :, :window], is_causal=True)
    query = torch.arange(window, L, device=q.device)[:, None]
    key = torch.arange(1, L, device=q.device)  # key 0 is outside every later query's window
    band = (key <= query) & (key > query - window)  # (L - window, L - 1)
    tail = F.scaled_dot_product_attention(q[:, :, window:], k[:, :, 1:], v[:, :, 1:], attn_mask=band)
    return torch.cat((head.transpose(1, 2), tail.transpose(1, 2)), dim=1)  # one copy, already (B, L, H, hd)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.window = cfg.n_head, cfg.attn_window
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def _project(self, x, rope=None):
        """x (B, L, D) -> queries, keys, values, each (B, H, L, hd); queries and keys rotated when ``rope`` is given.

        With rotary positions queries-and-keys and values are two products of the one ``qkv`` weight, so the
        rotation reads a contiguous (B, L, 2, H, hd) without a copy, and no gradient is scattered into slices.
        """
        B, L, D = x.shape
        if rope is None:
            return self.qkv(x).view(B, L, 3, self.n_head, -1).permute(2, 0, 3, 1, 4).unbind(0)
        w, b = self.qkv.weight, self.qkv.bias
        qk = F.linear(x, w[:2 * D], b[:2 * D]).view(B, L, 2, self.n_head, -1)
        v = F.linear(x, w[2 * D:], b[2 * D:]).view(B, L, self.n_head, -1)
        q, k = rotate_queries_and_keys(qk, rope).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v.transpose(1, 2)

    def forward(self, x, kv_out: list | None = None, rope=None):
        """Causal attention over the whole sequence. x (B, L, D). Appends (k, v) to ``kv_out`` if given."""
        q, k, v = self._project(x, rope)
        if kv_out is not None:
            kv_out.append((k, v))
        y = causal_attention(q, k, v, self.window)  # (B, L, H, hd)
        return self.dropout(self.proj(y.reshape(x.shape)))

    def decode(self, x, layer: int, cache: KVCache, rope=None):
        """One new token per row at position ``cache.length``. x (B, 1, D)."""
        q, k, v = self._project(x, rope)  # (B, H, 1, hd)
        cache.write_token(layer, k[:, :, 0], v[:, :, 0])
        keys, values = cache.layer_kv(layer, q.dtype)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=cache.visible()[:, None, None, :])
        return self.proj(y.transpose(1, 2).reshape(x.shape))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, cfg.dim_feedforward), nn.GELU(),
                                 nn.Linear(cfg.dim_feedforward, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, kv_out=None, rope=None):
        x = x + self.attn(self.ln1(x), kv_out, rope)
        return x + self.mlp(self.ln2(x))

    def decode(self, x, layer, cache, rope=None):
        x = x + self.attn.decode(self.ln1(x), layer, cache, rope)
        return x + self.mlp(self.ln2(x))


class ADTransformer(nn.Module):
    """Tokens in, action logits (and token-type logits in compressed mode) out, at every position.

    A token is given by four (B, L) tensors: ``types`` (``model.layout``: transition, <compress>, </compress>,
    memory, write), ``obs`` (observation index, ``layout.obs_index``), ``prev_action`` (num_actions = none) and
    ``prev_reward`` (float); the other token types ignore the last three.

    With ``memory_tokens`` = m > 0 (compressed mode), a window also holds m memory tokens, whose input vectors
    (B, m, D) are the memory, and m write tokens, whose outputs become the memory of the next window
    (``model.layout``). Training sequences of consecutive windows (S, K, L) are run window after window inside
    one ``forward``, the memory handed on between them with its gradient.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.n_embd
        # one table per observation component (row, column, ...), summed: what the model learns about a row or a
        # column carries over to cells it never saw as goals, which a table of whole cells cannot do
        self.obs_emb = nn.ModuleList(nn.Embedding(size, D) for size in cfg.obs_sizes)
        self.action_emb = nn.Embedding(cfg.num_actions + 1, D)
        self.reward_emb = nn.Linear(1, D, bias=False)
        # rows 1 and 2 are the learned marker embeddings; rows 3 and 4 mark memory and write tokens
        self.type_emb = nn.Embedding(N_INPUT_TYPES if cfg.memory_tokens else N_TOKEN_TYPES, D)
        self.pos_emb = nn.Embedding(cfg.max_len, D) if cfg.positions == 'absolute' else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(D)
        self.action_head = nn.Linear(D, cfg.num_actions)
        self.type_head = nn.Linear(D, N_TOKEN_TYPES) if cfg.compressed else None
        if cfg.memory_tokens:
            self.memory_init = nn.Parameter(torch.empty(cfg.memory_tokens, D))  # the memory before any region
            self.write_emb = nn.Parameter(torch.empty(cfg.memory_tokens, D))    # one learned query per write slot
            self.memory_out = nn.Linear(D, D)  # write tokens' outputs -> next window's memory inputs
        self.apply(self._init)
        if cfg.memory_tokens:
            nn.init.normal_(self.memory_init, std=0.02)
            nn.init.normal_(self.write_emb, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed_obs(self, obs):
        """(B, L) observation indices -> (B, L, D): the sum of the components' embeddings."""
        out = 0
        for size, table in zip(reversed(self.cfg.obs_sizes), reversed(self.obs_emb)):
            out = out + table(obs % size)
            obs = obs // size
        return out

    def embed(self, types, obs, prev_action, prev_reward, positions, memory=None, write_slots=None):
        """(B, L) fields -> (B, L, D). ``memory`` (B, m, D) fills the memory tokens, in order; ``write_slots`` (B, m),
        the write tokens' positions (``write_positions``), gives them their queries (None: the tokens hold no write
        token, as in one decoded token). ``positions`` (L,) or (B, L) enter here only when they are absolute
        (rotary positions act inside attention)."""
        is_transition = (types == TRANSITION).unsqueeze(-1)
        content = self.embed_obs(obs) + self.action_emb(prev_action) + self.reward_emb(prev_reward.unsqueeze(-1))
        x = self.type_emb(types) + torch.where(is_transition, content, 0)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        if self.cfg.memory_tokens:
            # the layout puts the m memory tokens first and the m write tokens in one run (model/layout.py): the
            # memory and the write queries are added to those m positions of each row, not looked up per token
            m = self.cfg.memory_tokens
            if write_slots is not None:
                has_write = (types == WRITE).any(dim=1)[:, None, None]  # (B, 1, 1)
                queries = torch.where(has_write, self.write_emb.to(x.dtype), 0)  # (B, m, D)
                x = x.scatter_add(1, write_slots[..., None].expand(-1, -1, x.shape[-1]), queries)
            if memory is not None:
                is_memory = (types[:, :m] == MEMORY)[..., None]  # (B, m, 1)
                x = torch.cat([x[:, :m] + torch.where(is_memory, memory.to(x.dtype), 0), x[:, m:]], dim=1)
        return x

    def write_positions(self, types: torch.Tensor) -> torch.Tensor:
        """(B, L) token types -> (B, m): the positions of each row's m write tokens (one consecutive run). Rows
        without them (a context before its first region closes) get positions that hold no write token; what is
        read there is never used."""
        first = (types == WRITE).to(torch.int8).argmax(dim=1)  # 0 where a row has none
        positions = first[:, None] + torch.arange(self.cfg.memory_tokens, device=types.device)
        return positions.clamp(max=types.shape[1] - 1)

    def rope(self, positions: torch.Tensor, per_row: bool = False):
        """Rotary (cos, sin) broadcastable over (B, L, 2, H, hd / 2), or None with absolute positions.

        ``positions``: (L,), a sequence's positions, the same in every row; or with ``per_row`` (B,), the position
        of each row's one decoded token.
        """
        if self.cfg.positions != 'rope':
            return None
        cos, sin = rotary(positions, self.cfg.n_embd // self.cfg.n_head)
        if per_row:
            return cos[:, None, None, None, :], sin[:, None, None, None, :]  # (B, 1, 1, 1, hd / 2)
        return cos[:, None, None, :], sin[:, None, None, :]  # (L, 1, 1, hd / 2)

    def _heads(self, h):
        h = self.ln_f(h)
        type_logits = self.type_head(h) if self.type_head is not None else None
        return self.action_head(h), type_logits

    def initial_memory(self, batch: int) -> torch.Tensor:
        """The memory before any region has been written: (batch, m, D)."""
        return self.memory_init.expand(batch, -1, -1)

    def forward_tokens(self, types, obs, prev_action, prev_reward, memory=None, kv_out: list | None = None):
        """One causal pass over (B, L) tokens at positions 0..L-1.

        Returns (action_logits (B, L, A), type_logits (B, L, 3) or None, written memory (B, m, D) or None). The
        written memory is read from the write tokens (memory models; meaningless for rows without them). With
        ``kv_out`` (a list), the keys and values of every layer are appended to it, for filling a ``KVCache``.
        """
        if self.cfg.memory_tokens and memory is None:
            memory = self.initial_memory(types.shape[0])
        positions = torch.arange(types.shape[1], device=types.device)
        write_slots = self.write_positions(types) if self.cfg.memory_tokens else None
        x = self.drop(self.embed(types, obs, prev_action, prev_reward, positions, memory, write_slots))
        rope = self.rope(positions)
        for block in self.blocks:
            x = block(x, kv_out, rope)
        h = self.ln_f(x)
        action_logits = self.action_head(h)
        type_logits = self.type_head(h) if self.type_head is not None else None
        written = None
        if self.cfg.memory_tokens:
            written = self.memory_out(h.gather(1, write_slots[..., None].expand(-1, -1, h.shape[-1])))
        return action_logits, type_logits, written

    def forward(self, types, obs, prev_action, prev_reward, memory=None, kv_out: list | None = None, fresh=None):
        """Tokens (B, L) -> (action_logits (B, L, A), type_logits (B, L, 3) or None).

        Memory models also take training sequences (S, K, L) of K consecutive windows and return (S, K, L, ...)
        logits and the memory the last window wrote (S, m, D): the windows run one after the other, each reading the
        memory the previous one wrote (the first reads ``memory``, by default the initial memory). ``fresh``
        (S, K) bool marks windows that begin a stream: they read the initial memory instead.
        """
        if types.dim() == 2:
            return self.forward_tokens(types, obs, prev_action, prev_reward, memory, kv_out)[:2]
        initial = self.initial_memory(types.shape[0])
        memory = initial if memory is None else memory
        outputs = []
        for k in range(types.shape[1]):  # a recurrence: window k needs the memory window k - 1 wrote
            if fresh is not None:
                memory = torch.where(fresh[:, k, None, None], initial, memory)
            action_logits, type_logits, memory = self.forward_tokens(types[:, k], obs[:, k], prev_action[:, k],
                                                                     prev_reward[:, k], memory)
            outputs.append((action_logits, type_logits))
        return torch.stack([a for a, _ in outputs], 1), torch.stack([t for _, t in outputs], 1), memory

    @torch.no_grad()
    def decode(self, types, obs, prev_action, prev_reward, cache: KVCache):
        """Append one token per row (fields (B,)) at position ``cache.length`` and advance it.

        Returns (action_logits (B, A), type_logits (B, 3) or None).
        """
        fields = [t[:, None] for t in (types, obs, prev_action, prev_reward)]
        x = self.embed(*fields, positions=cache.length[:, None])
        rope = self.rope(cache.length, per_row=True)
        for i, block in enumerate(self.blocks):
            x = block.decode(x, i, cache, rope)
        cache.advance()
        action_logits, type_logits = self._heads(x[:, 0])
        return action_logits, type_logits

    @torch.no_grad()
    def prefill(self, types, obs, prev_action, prev_reward, cache: KVCache, rows: torch.Tensor,
                lengths: torch.Tensor, memory=None):
        """Encode (n, P) token prefixes from position 0 into the cache rows ``rows`` (n,).

        ``lengths`` (n,) are the valid prefix lengths (right padding beyond them is never attended); ``memory``
        (n, m, D) fills their memory tokens. Returns the logits at each row's last valid position and the memory
        the prefixes wrote: ((n, A), (n, 3) or None, (n, m, D) or None).
        """
        kv: list = []
        action_logits, type_logits, written = self.forward_tokens(types, obs, prev_action, prev_reward, memory,
                                                                  kv_out=kv)
        cache.write_prefix(kv, rows, lengths)
        last = lengths - 1
        idx = torch.arange(len(rows), device=types.device)
        return action_logits[idx, last], (type_logits[idx, last] if type_logits is not None else None), written

