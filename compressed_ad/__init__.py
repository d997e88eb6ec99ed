"""compressed_ad: the library behind the quick-start's scripts (collect.py, train.py, evaluate.py, ...).

    env/                 the environments (Dark Room, Dark Key-to-Door): dynamics, tasks, splits, gym and torch envs
    algorithm/           the PPO source (stable-baselines3) and the callback that logs its learning history
    history_file.py      the HDF5 history file: schema, writer, reader, checks, the region rule
    dataset.py           training windows sampled on the device from the histories
    model/               the AD transformer, its token layout, losses, training step and in-context rollout
    context_modes.py     the context-mode interface (windows, rollout context, checks, run suffix) and registry
    modes/               the built-in context modes: standard, compressed, compressed with memory, sliding window
    config_schema.py     every config key (type, check, scope), loading and merging YAML files
    run_files.py         run directories: naming, checkpoints, evaluation outputs
    comparison.py        statistics over runs (rliable)
    plots.py, synthetic_histories.py, utils.py
"""
