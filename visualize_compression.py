"""Look at the compression markers in a learning-history file.

    python visualize_compression.py                              # task 0, stream 0, first 500 steps
    python visualize_compression.py --env_idx 0 --max_steps 500  # -> figs/compression_env0_stream0.png
    python visualize_compression.py --env_idx 40 --stream 7 --quick
    python visualize_compression.py --analyze                    # check every task and stream
    python visualize_compression.py --analyze --dataset other.hdf5 --out_dir /tmp/figs

Plot mode draws one stream's history over time: reward per step and per-episode return, action,
position (row, col), episode ends (thin grey lines) and the compression regions: each PPO rollout
batch shaded light green (alternate regions a shade darker so neighbours stay apart), ``<compress>``
(marker 1, first transition of the rollout) as green bars and ``</compress>`` (marker 2, its last
transition) as red bars, with a strip panel that shows the markers alone.

``--analyze`` checks every env and stream against the rule "a region is exactly n_steps
transitions: 1, then zeros, then 2" (n_steps from the file's stored config, or inferred from the
marker spacing for older files), prints a per-env table and every problem as a
``MISPLACED MARKERS: env E stream S step T (expected X, found Y)`` line (the first few of them),
and saves figs/compression_analysis.png: the PPO learning curve per region, the histogram of region
lengths and the bad markers per env. It is a report: it exits 0 even when it finds problems.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from compressed_ad.config_schema import add_config_args, config_from_args, format_config
from compressed_ad.env import ACTION_NAMES, ENVS, tasks_of
from compressed_ad.history_file import (MARK_CLOSE, MARK_OPEN, dataset_path, env_groups, file_config, find_regions,
                                        marker_problems, no_markers_error, open_history, region_length, rollout_returns)
from compressed_ad.plots import save_figure
from compressed_ad.utils import UserError, parse_args, run_main

MAX_PROBLEMS_SHOWN = 10
REGION_SHADES = ('#c8ecc8', '#9fdc9f')  # alternating light greens
OPEN_COLOR, CLOSE_COLOR, DONE_COLOR = 'tab:green', 'tab:red', '0.6'


# ----------------------------------------------------------------------------- one stream
def episode_spans(dones: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per episode of one stream: (first step, last step, return). The last one may be cut off."""
    episode = np.concatenate([[0], np.cumsum(dones[:-1])])
    _, starts = np.unique(episode, return_index=True)
    ends = np.append(starts[1:] - 1, len(dones) - 1)
    return starts, ends, np.bincount(episode, weights=rewards)


# ----------------------------------------------------------------------------- file access
NO_REGIONS = 'there are no regions to show'


def file_env(f, config: dict) -> dict:
    """The environment settings the file was collected with (its stored config; else the config's)."""
    stored = file_config(f)
    return {k: stored.get(k, config[k]) for k in ('env', 'grid_size', 'horizon')}


def group_task(group, task_idx: int, env: dict) -> tuple[int, ...]:
    """A group's task (Dark Room: its goal), from its attributes or, for older files, from its task index."""
    task = group.attrs.get('goal')
    if task is None:
        task = tasks_of(env, [task_idx])[0]
    return tuple(int(x) for x in task)


def file_n_steps(f, config: dict) -> tuple[int, str]:
    """n_steps of the file (``history_file.region_length``), else the config's."""
    n_steps, source = region_length(f)
    if n_steps is None:
        return config['n_steps'], 'the config (the file stores none and its markers give no spacing)'
    return n_steps, source


# ----------------------------------------------------------------------------- plot mode
def read_stream(f, path, task_idx: int | None, stream: int, max_steps: int, config: dict) -> dict:
    """The first ``max_steps`` transitions of one stream, checked: its fields (n,), the env, the task and T."""
    groups = env_groups(f)
    if not groups:
        raise UserError(f"Dataset '{path}' holds no env groups. Run 'python collect.py --force' to write it again.")
    if task_idx is None:
        task_idx = groups[0]
    if str(task_idx) not in f:
        held = f'{groups[0]}..{groups[-1]}' if len(groups) == groups[-1] - groups[0] + 1 else \
            ', '.join(map(str, groups[:8])) + (' ...' if len(groups) > 8 else '')
        raise UserError(f"--env_idx {task_idx} is not in '{path}', which holds task indices {held}. Pick one of those.")
    group = f[str(task_idx)]
    if 'compress_markers' not in group:
        raise no_markers_error(path, NO_REGIONS)
    T, n_stream = group['actions'].shape
    if not 0 <= stream < n_stream:
        raise UserError(f"--stream {stream} is out of range: task {task_idx} has {n_stream} streams (0..{n_stream - 1}).")
    if max_steps < 1:
        raise UserError(f"--max_steps must be at least 1, got {max_steps}.")
    n = min(max_steps, T)
    env = file_env(f, config)
    data = {k: group[k][:n, stream] for k in ('rewards', 'actions', 'dones', 'compress_markers', 'states')}
    return dict(data, n=n, T=T, task_idx=task_idx, stream=stream, env=env, task=group_task(group, task_idx, env))


def region_spans(markers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(opens, closes, region_end): marker positions, and where each region ends, from its <compress> to the next
    </compress>, but never past the next <compress> or the window."""
    opens, closes = np.flatnonzero(markers == MARK_OPEN), np.flatnonzero(markers == MARK_CLOSE)
    close_after = np.append(closes, n - 1)[np.searchsorted(closes, opens)]
    return opens, closes, np.minimum(close_after, np.append(opens[1:] - 1, n - 1))


def shade_regions(axes, opens, closes, region_end, dones) -> None:
    """Every panel: the regions shaded, the episode ends, and (below the marker panel) the markers as lines."""
    ax_mark = axes[0]
    for ax in axes:
        for k, (a, b) in enumerate(zip(opens, region_end)):
            ax.axvspan(a - 0.5, b + 0.5, color=REGION_SHADES[k % 2], alpha=0.55, lw=0, zorder=0)
        ax.vlines(np.flatnonzero(dones) + 0.5, 0, 1, transform=ax.get_xaxis_transform(), color=DONE_COLOR,
                  lw=0.6, zorder=1)
        if ax is not ax_mark:
            ax.vlines(opens, 0, 1, transform=ax.get_xaxis_transform(), color=OPEN_COLOR, lw=1.6, zorder=2)
            ax.vlines(closes, 0, 1, transform=ax.get_xaxis_transform(), color=CLOSE_COLOR, lw=1.6, zorder=2)
        ax.grid(axis='y', alpha=0.3)


def draw_markers(ax, s: dict, opens, closes, region_end, bad, n_steps: int) -> None:
    """The markers alone: <compress> up, </compress> down, region number and length above each region."""
    n, markers = s['n'], s['compress_markers']
    ax.axhline(0, color='k', lw=0.5)
    ax.vlines(opens, 0, 1, color=OPEN_COLOR, lw=2.2, zorder=3)
    ax.vlines(closes, -1, 0, color=CLOSE_COLOR, lw=2.2, zorder=3)
    ax.plot(opens, np.ones(len(opens)), '^', color=OPEN_COLOR, ms=6, zorder=4)
    ax.plot(closes, -np.ones(len(closes)), 'v', color=CLOSE_COLOR, ms=6, zorder=4)
    ax.plot(bad[:, 0], np.zeros(len(bad)), 'X', color='k', ms=9, zorder=5)
    ax.set_ylim(-1.3, 1.9)
    ax.set_yticks([-1, 1], ['</compress>', '<compress>'])
    for k, (a, b) in enumerate(zip(opens, region_end)):
        closed = markers[b] == MARK_CLOSE
        note = '' if closed else ' (cut)' if b == n - 1 else ' (no </compress>)'
        narrow = (b - a + 1) < 0.1 * n  # too narrow for the long label
        label = f'{b - a + 1}{note}' if narrow else f'region {k}: {b - a + 1}{note}'
        ax.text((a + b) / 2, 1.45, label, ha='center', va='center', fontsize=8, clip_on=True)
    spec = ENVS[s['env']['env']]
    ax.set_title(f"{spec.name} task {s['task_idx']}, {spec.describe(s['task'])}: stream {s['stream']}, transitions "
                 f"0..{n - 1} of {s['T']}  |  PPO rollouts of n_steps = {n_steps} transitions")


def draw_behaviour(ax_rew, ax_ret, ax_act, ax_pos, s: dict) -> None:
    """Reward per step, episode returns, actions and the position against the task's cells."""
    t, n, grid_size = np.arange(s['n']), s['n'], s['env']['grid_size']
    ep_start, ep_end, ep_return = episode_spans(s['dones'], s['rewards'])
    ax_rew.fill_between(t, s['rewards'], step='mid', color='tab:orange', alpha=0.8, zorder=3)
    ax_rew.set_ylabel('reward\nper step')
    ax_rew.set_ylim(-0.1, 1.2)

    ax_ret.hlines(ep_return, ep_start - 0.5, ep_end + 0.5, color='tab:purple', lw=2.2, zorder=3)
    ax_ret.set_ylabel('episode\nreturn')
    ax_ret.set_ylim(-0.5, max(1.0, float(ep_return.max()) * 1.15) if len(ep_return) else 1.0)

    ax_act.scatter(t, s['actions'], s=6, color='tab:blue', zorder=3)
    ax_act.set_yticks(range(len(ACTION_NAMES)), ACTION_NAMES)
    ax_act.set_ylabel('action')

    states = s['states']
    ax_pos.step(t, states[:, 0], where='mid', color='tab:brown', lw=1.1, label='row', zorder=3)
    ax_pos.step(t, states[:, 1], where='mid', color='tab:cyan', lw=1.1, label='col', zorder=3)
    for (row, col), style in zip(np.reshape(s['task'], (-1, 2)), ('--', ':')):  # the goal; or the key, then the door
        ax_pos.axhline(row, color='tab:brown', ls=style, lw=1, zorder=3)
        ax_pos.axhline(col, color='tab:cyan', ls=style, lw=1, zorder=3)
    ax_pos.set_ylim(-0.5, grid_size - 0.5)
    ax_pos.set_ylabel('position')
    ax_pos.set_xlabel('transition t of the stream')
    ax_pos.set_xlim(-0.5, n - 0.5)


def legend_handles(bad, n_steps: int) -> list:
    handles = [Patch(color=REGION_SHADES[0], label='compression region (one PPO rollout)'),
               Line2D([], [], color=OPEN_COLOR, lw=2, label=f'<compress> (marker {MARK_OPEN})'),
               Line2D([], [], color=CLOSE_COLOR, lw=2, label=f'</compress> (marker {MARK_CLOSE})'),
               Line2D([], [], color=DONE_COLOR, lw=1, label='episode end (done)'),
               Patch(color='tab:orange', label='reward'),
               Line2D([], [], color='tab:purple', lw=2, label='episode return'),
               Line2D([], [], color='tab:blue', marker='o', ls='', ms=3, label='action'),
               Line2D([], [], color='tab:brown', label='row (dashed: goal or key row; dotted: door row)'),
               Line2D([], [], color='tab:cyan', label='col (dashed: goal or key col; dotted: door col)')]
    if len(bad):
        handles.append(Line2D([], [], color='k', marker='X', ls='', ms=8,
                              label=f'misplaced/missing marker (not on {n_steps}-step boundary)'))
    return handles


def plot_stream(f, path, task_idx: int, stream: int, max_steps: int, config: dict, out_dir: Path) -> Path:
    """One stream's first ``max_steps`` transitions: its regions, markers and behaviour, in one figure."""
    s = read_stream(f, path, task_idx, stream, max_steps, config)
    n, markers, task_idx = s['n'], s['compress_markers'], s['task_idx']
    n_steps, _ = file_n_steps(f, config)
    opens, closes, region_end = region_spans(markers, n)
    bad = marker_problems(markers[None], n_steps)[:, 1:]  # (step, expected, found) inside the window

    fig, axes = plt.subplots(5, 1, figsize=(14, 10), sharex=True,
                             gridspec_kw={'height_ratios': [0.7, 1.2, 1.2, 1.2, 1.6]})
    shade_regions(axes, opens, closes, region_end, s['dones'])
    draw_markers(axes[0], s, opens, closes, region_end, bad, n_steps)
    draw_behaviour(*axes[1:], s)
    fig.legend(handles=legend_handles(bad, n_steps), loc='lower center', ncol=5, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    file = out_dir / f'compression_env{task_idx}_stream{stream}.png'
    save_figure(fig, file)

    lengths = region_end - opens + 1
    print(f"task {task_idx} {ENVS[s['env']['env']].describe(s['task'])} stream {stream}: {len(opens)} <compress> and "
          f"{len(closes)} </compress> in transitions 0..{n - 1}; region lengths {', '.join(map(str, lengths[:12]))}"
          f"{' ...' if len(lengths) > 12 else ''}; {int(s['dones'].sum())} episode ends.")
    for step, exp, found in bad[:MAX_PROBLEMS_SHOWN]:
        print(f"MISPLACED MARKERS: task {task_idx} stream {stream} step {step} (expected {exp}, found {found})")
    if len(bad):
        print(f"{len(bad)} marker(s) in this window are not on {n_steps}-step boundaries (black X in the figure); "
              f"'python visualize_compression.py --analyze' checks the whole file.")
    return file


# ----------------------------------------------------------------------------- analysis mode
def analyze(f, path, config: dict, out_dir: Path) -> Path:
    start = time.time()
    groups = env_groups(f)
    if not groups:
        raise UserError(f"Dataset '{path}' holds no env groups. Run 'python collect.py --force' to write it again.")
    lacking = [i for i in groups if 'compress_markers' not in f[str(i)]]
    if lacking:
        raise no_markers_error(path, NO_REGIONS)
    env = file_env(f, config)
    spec, grid_size, horizon = ENVS[env['env']], env['grid_size'], env['horizon']
    n_steps, source = file_n_steps(f, config)
    print(f"Dataset {path}: {len(groups)} envs; n_steps = {n_steps} (from {source}).")

    rows, curves, all_lengths, problems, bad_per_env, incomplete = [], [], [], [], [], []
    for i in groups:
        group = f[str(i)]
        markers = group['compress_markers'][:].T  # (S, T)
        S, T = markers.shape
        curve = rollout_returns(group['rewards'][:], n_steps, horizon) if T >= n_steps else np.zeros(0)
        stream, a, b = find_regions(markers)
        per_stream = np.bincount(stream, minlength=S)
        lengths = b - a + 1
        bad = marker_problems(markers, n_steps)
        task = group_task(group, i, env)
        rows.append((i, task, S, T, per_stream.min(), per_stream.max(), lengths.min(initial=T), lengths.max(initial=0),
                     len(bad), curve[0] if len(curve) else np.nan, curve[-1] if len(curve) else np.nan))
        curves.append(curve)
        all_lengths.append(lengths)
        bad_per_env.append(len(bad))
        problems.extend((i, *p) for p in bad[:MAX_PROBLEMS_SHOWN])
        if T % n_steps:
            incomplete.append((i, T))

    width = 7 if spec.task_dim == 2 else 11
    print(f"\n{'env':>4} {'task':>{width}} {'streams':>7} {'T':>6} {'regions/stream':>14} {'len min':>7} "
          f"{'len max':>7} {'bad':>5} {'return first':>12} {'return last':>11}")
    for i, task, S, T, rmin, rmax, lmin, lmax, nbad, first, last in rows:
        regions = f'{rmin}' if rmin == rmax else f'{rmin}-{rmax}'
        print(f"{i:>4} {str(task).replace(' ', ''):>{width}} {S:>7} {T:>6} {regions:>14} {lmin:>7} {lmax:>7} {nbad:>5} "
              f"{first:>12.2f} {last:>11.2f}")

    lengths = np.concatenate(all_lengths)
    n_bad, n_streams = int(sum(bad_per_env)), sum(r[2] for r in rows)
    n_regions = len(lengths)
    n_curve = min(len(c) for c in curves)
    curve = np.stack([c[:n_curve] for c in curves])  # (n_env, n_regions)
    oracle = np.mean([spec.oracle_return(task, grid_size, horizon) for _, task, *_ in rows])
    span = f'{lengths.min()}..{lengths.max()}' if n_regions else 'none'
    print(f"\nTotal: {len(groups)} envs, {n_streams} streams, {n_regions} complete regions; region lengths "
          f"{span} (n_steps = {n_steps}); {n_bad} misplaced or "
          f"missing markers in {sum(b > 0 for b in bad_per_env)} envs.")
    if n_curve:
        print(f"PPO mean episode return per region, averaged over envs: first region {curve[:, 0].mean():.2f}, "
              f"last region {curve[:, -1].mean():.2f} (oracle {oracle:.2f}).")
    for i, T in incomplete[:MAX_PROBLEMS_SHOWN]:
        print(f"INCOMPLETE REGION: task {i} has T = {T}, not a multiple of n_steps = {n_steps}; the last "
              f"{T % n_steps} transitions of each stream form no whole region.")
    if n_bad:
        for i, s, step, exp, found in problems[:MAX_PROBLEMS_SHOWN]:
            print(f"MISPLACED MARKERS: task {i} stream {s} step {step} (expected {exp}, found {found})")
        if n_bad > MAX_PROBLEMS_SHOWN:
            print(f"... and {n_bad - MAX_PROBLEMS_SHOWN} more (see the table and figure).")
        print(f"Markers are NOT all on {n_steps}-step boundaries: compressed training refuses this file; "
              f"run 'python collect.py --force' to regenerate it.")
    else:
        print(f"All markers on n_steps boundaries: every region is exactly {n_steps} transitions "
              f"(<compress>, {n_steps - 2} transitions, </compress>).")

    file = out_dir / 'compression_analysis.png'
    plot_analysis(curve, oracle, lengths, np.array([r[0] for r in rows]), np.array(bad_per_env), n_steps, file)
    print(f"Analysed {len(groups)} envs in {time.time() - start:.1f} s.")
    return file


def plot_analysis(curve: np.ndarray, oracle: float, lengths: np.ndarray, envs: np.ndarray, bad: np.ndarray,
                  n_steps: int, file: Path) -> None:
    fig, (ax_c, ax_h, ax_b) = plt.subplots(1, 3, figsize=(16, 4.5))
    k = np.arange(curve.shape[1])
    if curve.size:
        ax_c.fill_between(k, curve.min(0), curve.max(0), color='tab:green', alpha=0.2, label='min..max over envs')
        ax_c.plot(k, curve.mean(0), color='tab:green', marker='o', ms=3, label='mean over envs')
    ax_c.axhline(oracle, color='k', ls='--', lw=1, label='oracle (mean)')
    ax_c.set_xlabel('region (PPO rollout) index')
    ax_c.set_ylabel('PPO mean episode return')
    ax_c.set_title(f'(a) PPO learning curve, {len(envs)} envs')
    ax_c.legend(fontsize=8)
    ax_c.grid(alpha=0.3)

    if len(lengths):
        lo, hi = min(lengths.min(), n_steps), max(lengths.max(), n_steps)
        edges = np.arange(lo, hi + 2) - 0.5
        ax_h.hist(lengths, bins=edges if len(edges) <= 200 else 100, color='tab:green')
        ax_h.set_xlim(lo - max(3, (hi - lo) // 20), hi + max(3, (hi - lo) // 20))
        ax_h.set_yscale('log')  # a few stray lengths stay visible next to ~10^5 good ones
        ax_h.set_ylim(bottom=0.5)
    ax_h.axvline(n_steps, color='k', ls='--', lw=1, label=f'n_steps = {n_steps}')
    ax_h.xaxis.get_major_locator().set_params(integer=True)
    ax_h.set_xlabel('region length (transitions)')
    ax_h.set_ylabel('regions')
    ax_h.set_title(f'(b) region lengths ({len(lengths)} regions)')
    ax_h.legend(fontsize=8)

    ax_b.bar(envs, bad, color=np.where(bad > 0, 'tab:red', 'tab:green'), width=0.8)
    ax_b.set_xlabel('task index')
    ax_b.set_ylabel('misplaced / missing markers')
    ax_b.set_title(f'(c) bad markers per env (total {int(bad.sum())})')
    ax_b.set_ylim(0, max(1, int(bad.max(initial=0))) * 1.1)
    if not bad.any():
        ax_b.text(0.5, 0.5, 'no misplaced or missing markers', transform=ax_b.transAxes, ha='center',
                  color='tab:green', fontsize=12)
    ax_b.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    save_figure(fig, file)


# ----------------------------------------------------------------------------- CLI
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--env_idx', type=int, help='task (Dark Room: goal) index to plot (default: the first in the file, 0)')
    parser.add_argument('--max_steps', type=int, default=500, help='plot the first M transitions (default 500)')
    parser.add_argument('--stream', type=int, default=0, help='which parallel PPO stream to plot (default 0)')
    parser.add_argument('--dataset', help='history file (default: the config\'s datasets_dir/history_...hdf5)')
    parser.add_argument('--analyze', action='store_true', help='check every env and stream; print a report')
    parser.add_argument('--out_dir', help='where figures go (default: the figs_dir key, figs/)')
    add_config_args(parser)
    args = parse_args(parser)
    config = config_from_args(args)
    if args.print_config:
        print(format_config(config))
        return 0
    path = Path(args.dataset) if args.dataset else dataset_path(config)
    out_dir = Path(args.out_dir or config['figs_dir'])
    with open_history(path) as f:
        if args.analyze:
            file = analyze(f, path, config, out_dir)
        else:
            file = plot_stream(f, path, args.env_idx, args.stream, args.max_steps, config, out_dir)
    print(f'Saved {file}')


if __name__ == '__main__':
    run_main(main)
