"""Figures: the in-context learning curves drawn by evaluate.py and example_compressed_training.py, and atomic
PNG writing for every figure the project saves."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from compressed_ad.utils import atomic_path

matplotlib.use('Agg')  # figures are written to files; no display is needed


def std_band(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, mean - std, mean + std) per episode over rollouts. returns (rollouts, episodes)."""
    mean, std = returns.mean(0), returns.std(0)
    return mean, mean - std, mean + std


def plot_in_context_curves(file: Path, bands: dict[str, tuple], oracle_mean: float, ppo: np.ndarray | None,
                           title: str, band_meaning: str = 'mean ± 1 std over rollouts') -> None:
    """One line per entry of ``bands`` (label -> (mean, low, high) per episode, any number of them) with its
    shaded band, the PPO source's learning curve on the same episode axis when given, and the oracle line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    palette = plt.get_cmap('tab10' if len(bands) < 10 else 'tab20').colors
    orange = matplotlib.colors.to_rgb('tab:orange')
    colors = [c for c in palette if c != orange]  # orange is the PPO source's
    for i, (label, (mean, low, high)) in enumerate(bands.items()):
        color = colors[i % len(colors)]
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, color=color, label=label)
        ax.fill_between(x, low, high, color=color, alpha=0.15)
    if ppo is not None:
        ax.plot(np.arange(1, len(ppo) + 1), ppo, color='tab:orange', label='PPO source (training histories)')
    ax.axhline(oracle_mean, color='k', ls='--', label=f'oracle ({oracle_mean:.2f})')
    ax.set_xlabel('episode')
    ax.set_ylabel(f'return on held-out goals\n({band_meaning})')
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
