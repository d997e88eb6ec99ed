"""Where a training step and a rollout step spend their time: torch.profiler over a few steps of each mode.

    python -m bench.profile_step                       # every mode, default configs, on cuda if present
    python -m bench.profile_step --quick --device cpu  # a tiny smoke run
    python -m bench.profile_step compile=true train_batch_size=2048

For each mode it prints, per training step and per rollout step, the wall time, the device (kernel) time and the
number of kernel launches, then the operators with the most device time (or CPU time on a CPU). A step whose wall
time is far above its kernel time is bound by the host (Python and launch overhead), not by the GPU.
Sizes and data are the benchmark's (``bench.bench``): synthetic device-resident histories, 8 tasks x 16 rollouts.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.bench import MODES, make_sampler, mode_config, steady_rollout, sync, training_step_fn
from compressed_ad.build import training_state
from compressed_ad.utils import atomic_write_text, pick_device, run_main

PROFILED_STEPS = 5


def profile_calls(fn, device, steps: int, top: int) -> dict:
    """Wall ms per call, device ms per call, kernel launches per call and the top operators of ``steps`` calls."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        sync(device)
    wall_ms = (time.perf_counter() - start) * 1e3 / steps
    events = prof.key_averages()
    on_device = device.type == 'cuda'
    sort_key = 'self_cuda_time_total' if on_device else 'self_cpu_time_total'
    table = events.table(sort_by=sort_key, row_limit=top)
    # an operator's self device time is that of the kernels it launched, and each kernel is also listed as an
    # entry of its own: count the operators (host-side entries) only, or every kernel counts twice
    device_us = sum(getattr(e, 'self_device_time_total', getattr(e, 'self_cuda_time_total', 0)) for e in events
                    if str(getattr(e, 'device_type', 'CPU')).endswith('CPU'))
    kernels = sum(e.count for e in prof.events() if on_device and str(getattr(e, 'device_type', '')).endswith('CUDA'))
    return {'wall_ms': wall_ms, 'device_ms': device_us / 1e3 / steps if on_device else None,
            'kernels_per_call': kernels / steps if on_device else None, 'table': table}


def profile_mode(mode: str, presets: list[str], overrides: list[str], device, top: int) -> dict:
    config = mode_config(mode, presets, overrides)
    sampler = make_sampler(config, device, 'quick' in presets)
    state = training_state(config, sampler, device)
    step = training_step_fn(state)  # as train.py trains (memory: walking rows)
    for _ in range(10 if config['compile'] else 3):  # compile and allocator warmup
        step()
    train = profile_calls(step, device, PROFILED_STEPS, top)

    rollout = steady_rollout(state.model, config, device)
    decode = profile_calls(rollout.step, device, 4 * PROFILED_STEPS, top)
    return {'mode': mode, 'batch': config['train_batch_size'], 'train': train, 'rollout_step': decode}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--quick', action='store_true', help='tiny sizes (as bench.bench --quick)')
    parser.add_argument('--modes', default=','.join(MODES), help='comma-separated modes (default: all)')
    parser.add_argument('--top', type=int, default=15, help='operators listed per profile')
    parser.add_argument('--json', metavar='FILE', help='write the summaries (without the tables) as JSON')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_intermixed_args()
    device = pick_device(args.device)
    presets = ['quick'] if args.quick else []  # the default (GPU-sized) configs otherwise
    summaries = []
    for mode in args.modes.split(','):
        result = profile_mode(mode, presets, args.overrides, device, args.top)
        for part in ('train', 'rollout_step'):
            r = result[part]
            extra = (f", device {r['device_ms']:.2f} ms, {r['kernels_per_call']:.0f} kernels"
                     if r['device_ms'] is not None else '')
            print(f"\n=== {mode} {part} (batch {result['batch']} on {device}): wall {r['wall_ms']:.2f} ms{extra}")
            print(r['table'])
        summaries.append({'mode': mode, 'batch': result['batch'], 'device': str(device),
                          **{part: {k: v for k, v in result[part].items() if k != 'table'}
                             for part in ('train', 'rollout_step')}})
    if args.json:
        atomic_write_text(args.json, json.dumps(summaries, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    run_main(main)
