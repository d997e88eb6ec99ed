"""Training objective shared by train.py and bench/: dense action loss plus the token-type loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from compressed_ad.model.layout import IGNORE, N_TOKEN_TYPES


def balanced_accuracy(logits: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean per-class recall over the classes present (no host sync). logits (..., C), targets (...)."""
    t = targets.reshape(-1)
    keep = t != IGNORE
    t = torch.where(keep, t, 0)
    hit = (logits.reshape(-1, n_classes).argmax(-1) == t) & keep
    counts = torch.zeros(n_classes, device=t.device).index_add_(0, t, keep.float())
    hits = torch.zeros(n_classes, device=t.device).index_add_(0, t, hit.float())
    present = counts > 0
    return torch.where(present, hits / counts.clamp(min=1), 0).sum() / present.sum().clamp(min=1)


def ad_losses(model, batch: dict[str, torch.Tensor], token_type_weight: float = 0.1,
              label_smoothing: float = 0.0, with_metrics: bool = False) -> dict[str, torch.Tensor]:
    """Forward a batch of windows (``dataset.WindowSampler``) and return the losses.

    ``loss`` = mean action cross-entropy over every transition position
    (+ ``token_type_weight`` x next-token-type cross-entropy over every position in compressed mode).
    With ``with_metrics``: ``acc_action`` and balanced ``acc_token_type`` too. Memory models' sequences (S, K, L)
    read the batch's ``memory`` (S, m, D; default: the initial memory) and ``fresh`` (S, K) and return the memory
    their last windows wrote, detached, as ``memory``.
    """
    outputs = model(batch['types'], batch['obs'], batch['prev_action'], batch['prev_reward'],
                    memory=batch.get('memory'), fresh=batch.get('fresh'))
    action_logits, type_logits = outputs[:2]
    A = action_logits.shape[-1]
    out = {'loss_action': F.cross_entropy(action_logits.reshape(-1, A).float(), batch['action'].reshape(-1),
                                          ignore_index=IGNORE, label_smoothing=label_smoothing)}
    out['loss'] = out['loss_action']
    if type_logits is not None:
        out['loss_token_type'] = F.cross_entropy(type_logits.reshape(-1, N_TOKEN_TYPES).float(),
                                                 batch['type_target'].reshape(-1))
        out['loss'] = out['loss'] + token_type_weight * out['loss_token_type']
    if len(outputs) == 3:
        out['memory'] = outputs[2].detach()
    if with_metrics:
        with torch.no_grad():
            keep = batch['action'] != IGNORE
            correct = (action_logits.argmax(-1) == batch['action']) & keep
            out['acc_action'] = correct.sum() / keep.sum().clamp(min=1)
            if type_logits is not None:
                out['acc_token_type'] = balanced_accuracy(type_logits, batch['type_target'], N_TOKEN_TYPES)
    return out
