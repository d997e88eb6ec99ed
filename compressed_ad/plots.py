"""Figures: the in-context learning curves drawn by evaluate.py and example_compressed_training.py, the return per
region (bench.region_returns), and atomic PNG writing for every figure the project saves."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from compressed_ad.utils import atomic_path

matplotlib.use('Agg')  # figures are written to files; no display is needed
TITLE_WIDTH = 72  # characters of a title line: a longer title (a comparison of many modes) is wrapped, not clipped


def std_band(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, mean - std, mean + std) per episode over rollouts. returns (rollouts, episodes)."""
    mean, std = returns.mean(0), returns.std(0)
    return mean, mean - std, mean + std


def plot_in_context_curves(file: Path, bands: dict[str, tuple], oracle_mean: float, ppo: np.ndarray | None,
                           title: str, band_meaning: str = 'mean ± 1 std over rollouts') -> None:
    """One line per entry of ``bands`` (label -> (mean, low, high) per episode, any number of them) with its
    shaded band, the PPO source's learning curve on the same episode axis when given, and the oracle line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    draw_bands(ax, bands, line_colors(len(bands)))
    if ppo is not None:
        ax.plot(np.arange(1, len(ppo) + 1), ppo, color='tab:orange', label='PPO source (training histories)')
    ax.axhline(oracle_mean, color='k', ls='--', label=f'oracle ({oracle_mean:.2f})')
    ax.set_xlabel('episode')
    ax.set_ylabel(f'return on held-out goals\n({band_meaning})')
    ax.set_title(textwrap.fill(title, TITLE_WIDTH))
    ax.legend(loc='best', fontsize=8, framealpha=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, file)


def line_colors(n: int) -> list:
    """Colours of ``n`` lines, without orange (the PPO source's)."""
    palette = plt.get_cmap('tab10' if n < 10 else 'tab20').colors
    orange = matplotlib.colors.to_rgb('tab:orange')
    return [c for c in palette if c != orange]


def draw_bands(ax, bands: dict[str, tuple], colors: list) -> None:
    """One line per entry of ``bands`` (label -> (mean, low, high) at x = 1, 2, ...) with its shaded band."""
    for i, (label, (mean, low, high)) in enumerate(bands.items()):
        color = colors[i % len(colors)]
        x = np.arange(1, len(mean) + 1)
        ax.plot(x, mean, color=color, label=label)
        ax.fill_between(x, low, high, color=color, alpha=0.15)


def plot_region_returns(file: Path, bands: dict[str, tuple], oracle_mean: float, mark_after: int | None,
                        mark_label: str, region_text: str, title: str, band_meaning: str,
                        differences: dict[str, tuple] | None = None, baseline: str = '') -> None:
    """Return per region: one line per entry of ``bands`` (label -> (mean, low, high) per region) with the oracle
    line and, when given, a mark labelled ``mark_label`` after region ``mark_after`` (e.g. the last region a training
    stream holds). With ``differences``
    (label of ``bands`` -> (mean, low, high) of that label minus ``baseline``, per region) a second panel draws
    them around zero, each in its label's colour. ``region_text`` says what a region is ('80 steps = 4 episodes')."""
    rows = 2 if differences else 1
    fig, axes = plt.subplots(rows, 1, figsize=(7.5, 3.6 * rows + 0.6), sharex=True, squeeze=False)
    colors = line_colors(len(bands))
    top = axes[0, 0]
    draw_bands(top, bands, colors)
    top.axhline(oracle_mean, color='k', ls='--', label=f'oracle ({oracle_mean:.2f})')
    top.set_ylabel(f'mean episode return on held-out tasks\n({band_meaning})')
    top.set_title(textwrap.fill(title, TITLE_WIDTH))
    if differences:
        below = axes[1, 0]
        draw_bands(below, {f'{label} − {baseline}': band for label, band in differences.items()},
                   [colors[list(bands).index(label) % len(colors)] for label in differences])
        below.axhline(0, color='k', lw=0.8)
        below.set_ylabel(f'difference from {baseline},\npaired by seed and split')
    for ax in axes[:, 0]:
        if mark_after:
            ax.axvline(mark_after + 0.5, color='grey', ls=':', label=mark_label)
        ax.legend(loc='best', fontsize=8, framealpha=0.8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f'region ({region_text} each)')
    fig.tight_layout()
    save_figure(fig, file)


def save_figure(fig, file: Path) -> None:
    """Write ``fig`` as a PNG atomically, then free it."""
    with atomic_path(file, suffix='.png') as tmp:
        fig.savefig(tmp, format='png', dpi=110)
    plt.close(fig)
