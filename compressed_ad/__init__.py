"""compressed_ad: the library behind the quick-start's scripts (collect.py, train.py, evaluate.py, ...).

    env/                 the environments (Dark Room, Dark Key-to-Door): dynamics, tasks, splits, gym and torch envs
    algorithm/           the PPO source (stable-baselines3) and the callback that logs its learning history
    history_file.py      the HDF5 history file: schema, writer, reader, checks, the region rule
    dataset.py           training windows sampled on the device from the histories
    model/               the AD transformer, its token layout, losses, training step and in-context rollout
    modes/               the context-mode interface (base.py: windows, rollout context, checks, run suffix) and the
                         built-in modes: standard, compressed, compressed with memory, sliding window
    context_modes.py     the registry of modes, and the rule that turns a config into its mode
    config_schema.py     every config key (type, check, scope), loading and merging YAML files
    build.py             what a config builds: the model of its context mode
    run_files.py         run directories: naming, checkpoints, evaluation outputs
    comparison.py        statistics over runs (rliable)
    plots.py, synthetic_histories.py, utils.py

Imports run one way: the scripts -> run_files, dataset, build -> config_schema -> context_modes -> modes -> model
(transformer, layout, loss: torch only) -> utils; model/rollout.py and model/training.py, which drive a model, sit
with build.py above the registry. config_schema imports the registry only to check a config's mode
(``check_context_mode``), so the collector, which checks no mode, loads no torch.
"""
