"""Figures: the in-context learning curves shared by evaluate.py and example_compressed_training.py, and
atomic PNG writing for every figure the project saves."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from utils import atomic_path

matplotlib.use('Agg')  # figures are written to files; no display is needed


def plot_in_context_curves(file: Path, curves: dict[str, np.ndarray], oracle_mean: float,
                           ppo: np.ndarray | None, title: str) -> None:
    """Mean return per episode of each AD curve (returns (rollouts, episodes): mean line, ±1 std band),
    the PPO source's learning curve on the same episode axis when given, and the oracle line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, returns), color in zip(curves.items(), ('tab:blue', 'tab:green', 'tab:purple')):
        mean, std = returns.mean(0), returns.std(0)
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, color=color, label=label)
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15)
    if ppo is not None:
        ax.plot(np.arange(1, len(ppo) + 1), ppo, color='tab:orange', label='PPO source (training histories)')
    ax.axhline(oracle_mean, color='k', ls='--', label=f'oracle ({oracle_mean:.2f})')
    ax.set_xlabel('episode')
    ax.set_ylabel('return on held-out goals (mean ± 1 std)')
    ax.set_title(title)
    ax.legend(loc='best', fontsize=8, framealpha=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, file)


def save_figure(fig, file: Path) -> None:
    """Write ``fig`` as a PNG atomically, then free it."""
    with atomic_path(file, suffix='.png') as tmp:
        fig.savefig(tmp, format='png', dpi=110)
    plt.close(fig)
