"""Return region by region of evaluated runs, grouped by label: one table, and a figure with --figure.

    python -m bench.region_returns --baseline compressed --figure docs/regions.png \\
        memory='runs/cpu/AD-darkroom-compressed-memory-seed*' compressed='runs/cpu/AD-darkroom-compressed-seed*'

Each ``LABEL=DIR`` names evaluated runs: DIR is a run directory holding its own evaluation (evaluate.py's
eval_result.npy and eval_summary.json) or one of its ``eval-*`` sub-directories (another evaluation setting), or a
quoted glob pattern of either. A label may be given several times; all its runs form one group, one run per
training seed and goal split (read from each run's config.yaml). A region is ``compress_interval`` steps of the
rollout (Dark Room: 80 steps = 4 episodes, so 200 episodes hold 50 regions; ``--region-episodes`` sets it). Per
region the table gives each group's mean return (per run, the mean over its rollouts and the region's episodes;
then the mean over runs with its 95% interval: rliable's stratified bootstrap over seeds within splits,
``compressed_ad.region_returns``), and with ``--baseline`` every other group minus it, paired by seed and split.
A second table gives the same over the regions a training stream holds (as the runs' configs ask: 13 in Dark Room)
and over those beyond (``--split-at`` moves the boundary). ``--json`` keeps every number.
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from compressed_ad import region_returns as regions
from compressed_ad.comparison import format_estimate
from compressed_ad.plots import plot_region_returns
from compressed_ad.run_files import CONFIG_FILE, EVAL_RESULT, EVAL_SUMMARY, read_run_config
from compressed_ad.utils import UserError, atomic_write_text, read_json, run_main


def evaluated_dirs(item: str) -> tuple[str, list[Path]]:
    """'LABEL=DIR' (DIR a directory or a glob pattern) -> (label, the evaluation directories it names)."""
    label, sep, pattern = item.partition('=')
    if not sep or not label or not pattern:
        raise UserError(f"'{item}': give runs as LABEL=RUN_DIR (a directory, or a quoted glob pattern), e.g. "
                        f"memory='runs/cpu/AD-darkroom-compressed-memory-seed*'.")
    dirs = [Path(p) for p in sorted(glob.glob(pattern))] if glob.has_magic(pattern) else [Path(pattern)]
    if not dirs:
        raise UserError(f"'{item}': no directory matches '{pattern}'.")
    for d in dirs:
        if not (d / EVAL_RESULT).is_file() or not (d / EVAL_SUMMARY).is_file():
            raise UserError(f"'{d}' holds no evaluation ({EVAL_RESULT} and {EVAL_SUMMARY}). Evaluate the run first "
                            f"(python evaluate.py RUN_DIR), or name the eval-* sub-directory of the setting wanted.")
    return label, dirs


def run_of(evaluation: Path) -> Path:
    """The run directory of an evaluation directory: itself, or the run it is an eval-* sub-directory of."""
    for run in (evaluation, evaluation.parent):
        if (run / CONFIG_FILE).is_file():
            return run
    raise UserError(f"'{evaluation}' is neither a run directory nor inside one (no {CONFIG_FILE} there or above).")


def load_record(evaluation: Path, region_episodes: int | None) -> dict:
    """One evaluated run: its seed and split, its region means, episodes per region, training regions, oracle."""
    run = run_of(evaluation)
    config = read_run_config(run)
    per_region = region_episodes or regions.episodes_per_region(config['compress_interval'], config['horizon'])
    summary = read_json(evaluation / EVAL_SUMMARY) or {}
    region_steps = per_region * config['horizon']
    return {'run': str(evaluation), 'seed': config['seed'], 'split': config['env_split_seed'],
            'regions': regions.region_means(np.load(evaluation / EVAL_RESULT), per_region),
            'episodes_per_region': per_region, 'region_steps': region_steps, 'oracle': summary.get('oracle_mean'),
            'training_regions': regions.training_regions(config['train_source_timesteps'], config['n_steps'],
                                                         region_steps)}


def load_groups(items: list[str], region_episodes: int | None) -> dict[str, list[dict]]:
    """label -> its runs' records, refusing two runs of one label with the same seed and split."""
    groups: dict[str, list[dict]] = {}
    for item in items:
        label, dirs = evaluated_dirs(item)
        for d in dirs:
            record = load_record(d, region_episodes)
            twin = next((r for r in groups.get(label, []) if (r['seed'], r['split']) == (record['seed'],
                                                                                     record['split'])), None)
            if twin:
                raise UserError(f"'{label}' holds two runs of training seed {record['seed']} and goal split "
                                f"{record['split']}: '{twin['run']}' and '{d}'. Give each label one evaluation per "
                                f"run (name the eval-* sub-directory of one setting).")
            groups.setdefault(label, []).append(record)
    return groups


def common(groups: dict[str, list[dict]], key: str, what: str):
    """The value of ``key`` shared by every run, or a clear refusal naming the runs that differ."""
    values = {r[key]: r['run'] for rs in groups.values() for r in rs}
    if len(values) > 1:
        shown = '; '.join(f'{v} ({run})' for v, run in values.items())
        raise UserError(f'The runs differ in {what}: {shown}. Compare runs that agree, or set it with the option.')
    return next(iter(values))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def region_table(groups, estimates, differences, baseline, per_region) -> str:
    labels = list(groups)
    head = [f'{label} ({counted(len(groups[label]), "run")})' for label in labels]
    head += [f'{label} − {baseline}' for label in differences]
    lines = ['| region | episodes | ' + ' | '.join(head) + ' |', '|---|---|' + '---|' * len(head)]
    for i in range(max(len(e) for e in estimates.values())):
        cells = [format_estimate(estimates[label][i]) if i < len(estimates[label]) else '-' for label in labels]
        cells += [format_estimate(d[i]) if i < len(d) else '-' for d in differences.values()]
        lines.append(f'| {i + 1} | {i * per_region + 1}-{(i + 1) * per_region} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def spans_of(groups, split_at: int | None) -> list[tuple[int, int]]:
    """The spans of regions the second table compares: 1 .. split_at and split_at + 1 .. the last region every
    group holds (fewer when they do not reach so far)."""
    shortest = min(len(r['regions']) for rs in groups.values() for r in rs)
    if not split_at or split_at >= shortest:
        return [(1, shortest)]
    return [(1, split_at), (split_at + 1, shortest)]


def span_table(groups, baseline, spans) -> tuple[str, dict]:
    labels = list(groups)
    others = [label for label in labels if baseline and label != baseline]
    head = labels + [f'{label} − {baseline}' for label in others]
    lines = ['| regions | ' + ' | '.join(head) + ' |', '|---|' + '---|' * len(head)]
    kept = {}
    for first, last in spans:
        values = {label: regions.span_estimates(groups[label], first, last) for label in labels}
        values |= {f'{label} − {baseline}': regions.paired_span_differences(groups[label], groups[baseline], first,
                                                                             last) for label in others}
        kept[f'{first}-{last}'] = values
        lines.append(f'| {first}-{last} | ' + ' | '.join(format_estimate(values[h]) for h in head) + ' |')
    return '\n'.join(lines), kept


def bands_of(estimates: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([e[k] for e in estimates]) for k in ('value', 'low', 'high'))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='LABEL=RUN_DIR')
    parser.add_argument('--baseline', metavar='LABEL', help='also give every other label minus this one, paired by '
                                                            'training seed and goal split')
    parser.add_argument('--figure', help='draw the regions to this PNG file')
    parser.add_argument('--json', help='write every estimate to this JSON file')
    parser.add_argument('--region-episodes', type=int, metavar='N',
                        help="episodes per region (default: each run's compress_interval / horizon)")
    parser.add_argument('--split-at', type=int, metavar='N',
                        help="the last region of the first span of the second table (default: the regions of a "
                             "training stream, as the runs' configs ask, when they agree)")
    parser.add_argument('--title', default='return by region on held-out tasks')
    args = parser.parse_args()
    for option, value in (('--region-episodes', args.region_episodes), ('--split-at', args.split_at)):
        if value is not None and value < 1:
            raise UserError(f'{option} {value}: give a positive number.')
    groups = load_groups(args.runs, args.region_episodes)
    if args.baseline and args.baseline not in groups:
        raise UserError(f"--baseline {args.baseline}: no runs carry that label; the labels are {', '.join(groups)}.")
    per_region = common(groups, 'episodes_per_region', 'episodes per region (--region-episodes)')
    region_steps = common(groups, 'region_steps', 'steps per region')
    trained = {r['training_regions'] for rs in groups.values() for r in rs}
    training = trained.pop() if len(trained) == 1 else None  # runs trained on streams of different lengths: none
    split_at = args.split_at or training

    estimates = {label: regions.region_estimates(records) for label, records in groups.items()}
    differences = {label: regions.paired_region_differences(groups[label], groups[args.baseline])
                   for label in groups if args.baseline and label != args.baseline}
    streams = f'; a training stream holds {counted(training, "region")}' if training else ''
    print(f'A region is {region_steps} steps = {per_region} episodes{streams}. Mean return over runs; brackets: 95% '
          f'interval over runs (stratified bootstrap over training seeds within goal splits; none with one seed per '
          f'split).\n')
    print(region_table(groups, estimates, differences, args.baseline, per_region) + '\n')
    spans, span_values = span_table(groups, args.baseline, spans_of(groups, split_at))
    print('Mean over spans of regions (each region weighs the same):\n\n' + spans)
    several = any(len({r['seed'] for r in rs}) > 1 for rs in groups.values())
    if args.figure:
        oracle = [r['oracle'] for rs in groups.values() for r in rs if r['oracle'] is not None]
        plot_region_returns(Path(args.figure), {label: bands_of(e) for label, e in estimates.items()},
                            float(np.mean(oracle)) if oracle else float('nan'), split_at,
                            f'end of a training stream ({counted(training, "region")})' if split_at == training
                            else f'after region {split_at}',
                            f'{region_steps} steps = {per_region} episodes', args.title,
                            'mean over runs, 95% interval' if several else 'mean over rollouts',
                            {label: bands_of(d) for label, d in differences.items()}, args.baseline or '')
        print(f'\nWrote {args.figure}')
    if args.json:
        out = {'episodes_per_region': per_region, 'region_steps': region_steps, 'training_regions': training,
               'baseline': args.baseline, 'runs': {label: [r['run'] for r in rs] for label, rs in groups.items()},
               'regions': estimates, 'differences': differences, 'spans': span_values}
        atomic_write_text(args.json, json.dumps(out, indent=2))
        print(f'Wrote {args.json}')
    return 0


if __name__ == '__main__':
    run_main(main)
