"""How far back a sliding-mode model's actions reach: each evaluation step's action distribution against the one
the same model gives the step from only its last c transitions.

    python -m bench.sliding_reach runs/cpu/AD-darkroom-sliding-seed0 [--steps 4000] [--returns] [--json out.json]
    python -m bench.sliding_reach --tiny [--train-steps 300] [--set KEY=VALUE ...]

With ``n_layer`` layers a token of the sliding mode depends on the last ``n_layer * (n_transit - 1) + 1``
transitions (its receptive field: each layer reaches ``n_transit - 1`` further back), while a training window
holds ``n_transit + sliding_tail`` of them: a step whose window is shorter than that field sees, in training, less
of the past than it sees in evaluation. This measures how much of what the model does depends on the difference.
It rolls the model out in context on the run's held-out tasks, as ``evaluate.py`` does (actions sampled, the ring
KV cache, which is exact for the whole stream), then gives the model each sampled step again with only its last c
transitions (itself included), as a training window ending at that step would, for c from ``n_transit`` to the
receptive field, and reports, per c, the total variation between the two action distributions (mean over steps and rows,
its 95th percentile and maximum, the mean over the last 10% of the steps) and how often their most likely actions
differ. At c = the receptive field the two are the same computation (total variation at float rounding).

``--returns`` also plays the evaluation's episodes a second time with the model given only the last
``n_transit + sliding_tail`` transitions at every step (the context a training window's last step has, re-encoded
at every step, as standard AD's rollout re-encodes its window), from the same seed, and reports both mean returns
and their difference per rollout: whether the part of the receptive field that no training window holds changes
the return of the model as trained. (Training windows that held the whole field would change the model as well;
that takes new training runs.)

``--tiny`` trains a small sliding model here first (``--train-steps`` steps on synthetic learning histories,
``compressed_ad.synthetic_histories``, two layers, ``n_transit`` 24 and ``sliding_tail`` 8, the shape of the
``--cpu`` setting's 240 and 80; ``--set KEY=VALUE`` overrides, e.g. ``--set tf_n_layer=3``), for a look without a
trained run. It writes nothing unless given ``--json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from compressed_ad.build import build_model
from compressed_ad.config_schema import load_config
from compressed_ad.context_modes import mode_of
from compressed_ad.dataset import WindowSampler
from compressed_ad.env import env_spec, task_split, tasks_of
from compressed_ad.env.batched import BatchedEnv
from compressed_ad.model import training
from compressed_ad.model.layout import TRANSITION, no_action, obs_index
from compressed_ad.model.rollout import FIELDS, InContextRollout
from compressed_ad.modes.sliding import SLIDING_MODEL_CONFIG, receptive_field, train_window_len
from compressed_ad.run_files import CONFIG_FILE, load_run_model, read_run_config
from compressed_ad.synthetic_histories import synthetic_streams
from compressed_ad.utils import UserError, atomic_write_text, pick_device, run_main

TINY_SLIDING = ['n_transit=24', 'sliding_tail=8', 'tf_n_layer=2', 'tf_n_embd=64', 'tf_n_head=2',
                'tf_dim_feedforward=128', 'tf_dropout=0.0', 'train_batch_size=32', 'lr=0.001', 'num_warmup_steps=20',
                'device=cpu']
TINY_HISTORY_STEPS = 400  # 20 Dark Room episodes per synthetic stream
CHUNK_TOKENS = 32_768  # re-encoded windows per forward pass: chunks of about this many tokens


def train_tiny_model(train_steps: int, overrides: list[str] = (), seed: int = 0):
    """A small sliding model trained for ``train_steps`` steps on synthetic histories of the training tasks (4
    streams each): (model in eval mode, config)."""
    config = load_config(SLIDING_MODEL_CONFIG,
                         overrides=TINY_SLIDING + [f'train_timesteps={train_steps}', *overrides])
    train_idx, _ = task_split(config)
    streams = synthetic_streams(config, tasks_of(config, train_idx), 4, TINY_HISTORY_STEPS, config['n_steps'], seed)
    sampler = WindowSampler(streams, config, torch.device('cpu'), 'synthetic histories')
    torch.manual_seed(seed)
    model = build_model(config)
    optimizer, gen = training.make_optimizer(model, config), torch.Generator().manual_seed(seed)
    scheduler = training.make_scheduler(optimizer, config)
    model.train()
    for _ in range(train_steps):
        training.train_step(model, model, sampler.sample(config['train_batch_size'], gen), optimizer, scheduler,
                            config)
    return model.eval(), config


@torch.no_grad()
def rollout_stream(model, config: dict, tasks: np.ndarray, streams: int, steps: int, device):
    """Roll ``model`` out for ``steps`` steps on ``streams`` rows per task, actions sampled, with the KV cache (as
    ``evaluate.py``): the tokens it appended, fields (B, steps), and its action logits at each step (B, steps, A)."""
    rows = torch.as_tensor(np.repeat(tasks, streams, axis=0), device=device)
    rollout = InContextRollout(model, config, rows, seed=config['eval_seed'])
    obs_sizes = env_spec(config).obs_sizes(config['grid_size'])
    tokens, logits = {f: [] for f in FIELDS}, []
    for _ in range(steps):
        # the token this step appends: the state it acts in, the previous action and reward
        token = {'types': torch.full((rollout.B,), TRANSITION, device=device),
                 'obs': obs_index(rollout.state, obs_sizes), 'prev_action': rollout.prev_action.clone(),
                 'prev_reward': rollout.prev_reward.clone()}
        for f in FIELDS:
            tokens[f].append(token[f])
        logits.append(rollout.step()[2])
    return {f: torch.stack(v, 1) for f, v in tokens.items()}, torch.stack(logits, 1)


@torch.no_grad()
def logits_from_last(model, tokens: dict[str, torch.Tensor], steps: torch.Tensor, reach: int) -> torch.Tensor:
    """Action logits at steps ``steps`` (P,) of every row of ``tokens`` (fields (B, T)) when the model is given
    only the ``reach`` transitions ending at each step, in a window starting at position 0: (B, P, A)."""
    B = tokens['obs'].shape[0]
    index = steps[:, None] - reach + 1 + torch.arange(reach, device=steps.device)  # (P, reach)
    per_chunk = max(1, CHUNK_TOKENS // reach)
    windows = [(row, chunk) for row in range(B) for chunk in index.split(per_chunk)]
    out = [model(*[tokens[f][row, chunk] for f in FIELDS])[0][:, -1] for row, chunk in windows]
    return torch.cat(out).reshape(B, len(steps), -1)


@torch.no_grad()
def returns_from_last(model, config: dict, tasks: torch.Tensor, episodes: int, reach: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollouts on ``tasks`` (B, task_dim), actions sampled (seed ``eval_seed``), the model given at every step
    only the last ``reach`` transitions, re-encoded from position 0: episode returns (B, episodes) and the actions
    taken (B, episodes * horizon)."""
    env = BatchedEnv(env_spec(config), tasks, config['grid_size'], config['horizon'])
    obs_sizes, B, device = env_spec(config).obs_sizes(config['grid_size']), len(tasks), tasks.device
    gen = torch.Generator(device=device).manual_seed(config['eval_seed'])
    ctx = {f: torch.zeros(B, reach, dtype=torch.float if f == 'prev_reward' else torch.long, device=device)
           for f in FIELDS}
    state, t = env.reset(), 0
    prev_action = torch.full((B,), no_action(config['num_actions']), device=device)
    prev_reward = torch.zeros(B, device=device)
    returns, actions = torch.zeros(B, episodes, device=device), []
    for episode in range(episodes):
        done = False
        while not done:
            token = {'types': torch.full((B,), TRANSITION, device=device), 'obs': obs_index(state, obs_sizes),
                     'prev_action': prev_action, 'prev_reward': prev_reward}
            for f in FIELDS:
                if t >= reach:  # keep the last reach transitions
                    ctx[f] = ctx[f].roll(-1, 1)
                ctx[f][:, min(t, reach - 1)] = token[f].to(ctx[f].dtype)
            t += 1
            logits = model(*[ctx[f][:, :min(t, reach)] for f in FIELDS])[0][:, -1].float()
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
            state, reward, done = env.step(action)
            prev_action, prev_reward = action, reward
            actions.append(action)
            returns[:, episode] += reward
        state = env.reset()
    return returns, torch.stack(actions, 1)


def compare_returns(model, config: dict, tasks: np.ndarray, streams: int, episodes: int, device) -> dict:
    """Mean returns over all episodes and the last 10% of the evaluation (``InContextRollout``, the whole stream)
    and of ``returns_from_last`` at the training window, on the same rows and seed, and their difference per row
    with a normal 95% interval over the rows (rows of one task are counted as independent)."""
    rows = torch.as_tensor(np.repeat(tasks, streams, axis=0), device=device)
    full = InContextRollout(model, config, rows, seed=config['eval_seed']).run(episodes)
    cut = returns_from_last(model, config, rows, episodes, train_window_len(config))[0]
    last = max(1, episodes // 10)
    result = {'episodes': episodes, 'rows': len(rows), 'reach': train_window_len(config)}
    for name, part in (('all', slice(None)), ('last_10pct', slice(-last, None))):
        whole, short = full[:, part].mean(1), cut[:, part].mean(1)  # (B,) per row
        diff = short - whole
        half = 1.96 * float(diff.std()) / len(diff) ** 0.5 if len(diff) > 1 else float('nan')
        result[name] = {'whole_stream': float(whole.mean()), 'training_window': float(short.mean()),
                        'difference': float(diff.mean()), 'interval': [float(diff.mean()) - half,
                                                                       float(diff.mean()) + half]}
    return result


def total_variation(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Total variation between the action distributions of two logit tensors (..., A): (...)."""
    return 0.5 * (logits_a.float().softmax(-1) - logits_b.float().softmax(-1)).abs().sum(-1)


def reaches_to_measure(config: dict) -> list[int]:
    """From ``n_transit`` (the attention window) through the training window to the receptive field."""
    n, window, field = config['n_transit'], train_window_len(config), receptive_field(config)
    return sorted({n, window, *np.linspace(n, field, 6).round().astype(int).tolist(), field - 1, field} - {0})


def measure(model, config: dict, tasks: np.ndarray, streams: int, steps: int, positions: int, device) -> dict:
    """The reach table (see the module docstring) for ``model`` on ``tasks``."""
    field = receptive_field(config)
    if steps < field + positions:
        raise UserError(f"--steps {steps} leaves too few steps past the receptive field ({field} transitions) for "
                        f"--positions {positions}; use --steps {field + positions} or more.")
    tokens, cached = rollout_stream(model, config, tasks, streams, steps, device)
    # steps whose whole receptive field is in the stream, spread evenly over the rest of it
    at = torch.linspace(field - 1, steps - 1, positions, device=device).round().long()
    late = at >= steps - steps // 10
    rows = []
    for reach in reaches_to_measure(config):
        short = logits_from_last(model, tokens, at, reach)
        tv = total_variation(short, cached[:, at])  # (B, P)
        differs = short.argmax(-1) != cached[:, at].argmax(-1)
        rows.append({'reach': reach, 'tv_mean': float(tv.mean()), 'tv_p95': float(tv.quantile(0.95)),
                     'tv_max': float(tv.max()), 'tv_mean_last_10pct': float(tv[:, late].mean()),
                     'argmax_differs': float(differs.float().mean())})
    return {'n_transit': config['n_transit'], 'n_layer': config['tf_n_layer'],
            'train_window': train_window_len(config), 'receptive_field': field, 'rows': len(tasks) * streams,
            'steps': steps, 'positions': positions, 'reaches': rows}


def format_result(result: dict) -> str:
    lines = [f"n_transit {result['n_transit']}, {result['n_layer']} layers: receptive field "
             f"{result['receptive_field']} transitions, training windows of {result['train_window']}; "
             f"{result['rows']} rollouts of {result['steps']} steps, {result['positions']} steps each compared",
             f"{'reach c':>8} {'TV mean':>9} {'TV p95':>9} {'TV max':>9} {'TV last 10%':>12} {'argmax differs':>15}"]
    for r in result['reaches']:
        note = {result['n_transit']: '  attention window', result['train_window']: '  training window',
                result['receptive_field']: '  receptive field'}.get(r['reach'], '')
        lines.append(f"{r['reach']:8d} {r['tv_mean']:9.5f} {r['tv_p95']:9.5f} {r['tv_max']:9.5f} "
                     f"{r['tv_mean_last_10pct']:12.5f} {r['argmax_differs']:15.4f}{note}")
    return '\n'.join(lines)


def format_returns(r: dict) -> str:
    lines = [f"mean return, {r['rows']} rollouts of {r['episodes']} episodes: the whole stream against only the "
             f"last {r['reach']} transitions at every step (same seed), difference with a 95% interval over rollouts"]
    for name, label in (('all', 'all episodes'), ('last_10pct', 'last 10%')):
        x = r[name]
        lines.append(f"  {label:13s} {x['whole_stream']:7.3f} {x['training_window']:7.3f}   {x['difference']:+.3f} "
                     f"[{x['interval'][0]:+.3f}, {x['interval'][1]:+.3f}]")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run', type=Path, nargs='?', help='a trained sliding-mode run directory')
    parser.add_argument('--tiny', action='store_true', help='train a small model on synthetic histories instead')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='with --tiny: a config override of the small model (repeatable)')
    parser.add_argument('--train-steps', type=int, default=300, help='with --tiny: its training steps')
    parser.add_argument('--steps', type=int, default=4000, help='rollout steps (4000: 200 Dark Room episodes)')
    parser.add_argument('--streams', type=int, default=2, help='rollouts per held-out task')
    parser.add_argument('--positions', type=int, default=64, help='steps per rollout compared')
    parser.add_argument('--returns', action='store_true',
                        help='also compare the returns with contexts cut at the training window')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--json', help='also write the result here')
    args = parser.parse_args()
    if (args.run is None) == (not args.tiny) or (args.set and not args.tiny):
        raise UserError('Give a trained sliding-mode run directory, or --tiny with any --set KEY=VALUE overrides of '
                        'its small model (not both).')
    if args.tiny:
        model, config = train_tiny_model(args.train_steps, args.set)
        device, source = torch.device('cpu'), f'a tiny model trained {args.train_steps} steps on synthetic histories'
    else:
        if not (args.run / CONFIG_FILE).exists():
            raise UserError(f"'{args.run}' is not a run directory (it has no {CONFIG_FILE}). Give the directory of a "
                            f"run trained with 'python train.py --config {SLIDING_MODEL_CONFIG}', or --tiny.")
        config, device = read_run_config(args.run), pick_device(args.device)
        if mode_of(config).name != 'sliding':
            raise UserError(f"'{args.run}' was trained in {mode_of(config).name} mode; the reach of a model's "
                            f"actions is measured for the sliding mode only.")
        model, step = load_run_model(args.run, config, device)
        source = f"'{args.run}' at step {step}"
    _, test_idx = task_split(config)
    result = measure(model, config, tasks_of(config, test_idx), args.streams, args.steps, args.positions, device)
    result['source'] = source
    print(f'{source}:\n{format_result(result)}')
    if args.returns:
        result['returns'] = compare_returns(model, config, tasks_of(config, test_idx), args.streams,
                                            args.steps // config['horizon'], device)
        print(format_returns(result['returns']))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))


if __name__ == '__main__':
    run_main(main)
