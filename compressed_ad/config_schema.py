"""The configuration: the schema of every key, loading YAML files, merging them and checking the result.

A config is a flat ``dict`` of YAML values. Files are merged in the order env -> algorithm -> model (later
files win); a file may ``include:`` another file (path relative to the project root), whose keys it then
overrides. An environment may give shared files values of its own: ``config/env/NAME/FILE.yaml`` replaces, under
``--env NAME``, the keys that ``FILE.yaml`` (a model config, a preset, or a file they include) sets, unless a later
file or an override set them again (``apply_env_overlays``). ``--quick`` applies ``config/quick.yaml`` on top, then trailing ``KEY=VALUE`` overrides (parsed
with YAML typing) win over everything. Every key is checked against ``SCHEMA``: an unknown key, a wrong type
or an impossible value is a ``ConfigError`` naming the key and where it came from. ``--cpu`` applies
``config/cpu.yaml`` the way ``--quick`` applies its file; ``--print-config`` shows the merged result with the file
or override behind every key. Every key also has a scope, declared beside its schema entry: ``RUN_KEYS`` (what a
trained run fixes), ``EVAL_KEYS`` (what an evaluation chooses), ``IO_KEYS`` (what changes no number).
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from compressed_ad.env import ENVS
# the model config files of the built-in modes (named by compressed_ad/modes/__init__.py, which loads no mode)
from compressed_ad.modes import COMPRESSED_MODEL_CONFIG, MEMORY_MODEL_CONFIG, MODEL_CONFIG  # noqa: F401
from compressed_ad.utils import PROJECT_ROOT, ConfigError

DEFAULT_ENV = 'darkroom'
ENV_CONFIG = 'config/env/{env}.yaml'             # chosen by --env; Dark Room by default
ALG_CONFIG = 'config/algorithm/ppo_{env}.yaml'   # the PPO source's settings for that environment
QUICK_CONFIG = 'config/quick.yaml'
CPU_CONFIG = 'config/cpu.yaml'
PRESETS = {'quick': QUICK_CONFIG, 'cpu': CPU_CONFIG}  # command-line switch -> file applied after the model config
ENV_OVERLAY = 'config/env/{env}/{name}'  # an environment's own values for the keys of the shared file `name`
CONFIG_FILE_DEFAULTS = 'the defaults (a key the config file lacks)'


# ----------------------------------------------------------------------------- schema
def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _fraction(v):
    return 0 < v < 1


def _one_of(*choices):
    check = lambda v: v in choices  # noqa: E731
    check.__doc__ = 'one of ' + ', '.join(map(str, choices))
    return check


_INT, _FLOAT, _BOOL, _STR, _LIST = int, float, bool, str, list
# The scope of a key: what changing it changes.
#   RUN:  the data, the task sample, the split, the model or its training. A trained run fixes these: train.py
#         refuses to resume a run with another value (except RESUMABLE_KEYS), evaluate.py refuses to
#         evaluate a run with another value.
#   EVAL: the setting of an evaluation, free at evaluate.py and named in its results' setting (run_files.eval_setting).
#   IO:   changes no number: where files go, how often things are logged, how many workers.
RUN, EVAL, IO = 'run', 'eval', 'io'
# key: (type, check or None, what the check demands, scope)
SCHEMA: dict[str, tuple[type, Callable | None, str, str]] = {
    # env
    'env': (_STR, _one_of(*ENVS), ' or '.join(f"'{name}'" for name in ENVS), RUN),
    'grid_size': (_INT, lambda v: v >= 2, 'an integer >= 2', RUN),
    'horizon': (_INT, _positive, 'a positive integer', RUN),
    'num_actions': (_INT, _one_of(5), '5 (both environments have 5 actions)', RUN),
    'n_tasks': (_INT, _non_negative, 'an integer >= 0 (0 = every task of the environment)', RUN),
    'task_seed': (_INT, None, 'an integer', RUN),
    'env_split_seed': (_INT, None, 'an integer', RUN),
    'train_env_ratio': (_FLOAT, _fraction, 'a number strictly between 0 and 1', RUN),
    # where the dataset lies, not what it holds (its name comes from the run keys)
    'datasets_dir': (_STR, None, 'a directory path', IO),
    'runs_dir': (_STR, None, 'a directory path', IO),
    'figs_dir': (_STR, None, 'a directory path', IO),
    # algorithm (PPO source)
    'alg': (_STR, _one_of('PPO'), "'PPO'", RUN),
    'alg_seed': (_INT, None, 'an integer', RUN),
    'n_stream': (_INT, _positive, 'a positive integer', RUN),
    'n_steps': (_INT, lambda v: v >= 2, 'an integer >= 2', RUN),
    'train_source_timesteps': (_INT, _positive, 'a positive integer', RUN),
    'ppo_batch_size': (_INT, lambda v: v >= 2, 'an integer >= 2', RUN),
    'ppo_n_epochs': (_INT, _positive, 'a positive integer', RUN),
    'ppo_learning_rate': (_FLOAT, _positive, 'a positive number', RUN),
    'ppo_gamma': (_FLOAT, lambda v: 0 < v <= 1, 'a number in (0, 1]', RUN),
    'ppo_gae_lambda': (_FLOAT, lambda v: 0 < v <= 1, 'a number in (0, 1]', RUN),
    'ppo_clip_range': (_FLOAT, _positive, 'a positive number', RUN),
    'ppo_ent_coef': (_FLOAT, _non_negative, 'a number >= 0', RUN),
    'ppo_vf_coef': (_FLOAT, _non_negative, 'a number >= 0', RUN),
    'ppo_max_grad_norm': (_FLOAT, _positive, 'a positive number', RUN),
    'ppo_net_arch': (_LIST, lambda v: all(isinstance(x, int) and x > 0 for x in v), 'a list of positive integers', RUN),
    # worker processes of collect.py: goal i is trained with alg_seed + i in whichever worker
    'n_process': (_INT, _non_negative, 'an integer >= 0 (0 = one per CPU core)', IO),
    # where collect.py runs its learners: a local pool of n_process workers, or one Ray task each on the cluster at
    # RAY_ADDRESS (the optional extra, compressed_ad/cluster.py); the histories are the same
    'collect_backend': (_STR, _one_of('local', 'ray'), "'local' or 'ray'", IO),
    'ppo_log_dir': (_STR, None, 'a directory path', IO),
    # model / training
    'model': (_STR, _one_of('AD'), "'AD'", RUN),
    'use_compressed_context': (_BOOL, None, 'true or false', RUN),
    # a registered mode's name, or 'module:ClassName'; '' = compressed when use_compressed_context, else standard
    # (the rule: compressed_ad/context_modes.py)
    'context_mode': (_STR, None, "'' (compressed when use_compressed_context, else standard), a registered mode's "
                                 "name or 'module:ClassName'", RUN),
    'compress_interval': (_INT, _positive, 'a positive integer', RUN),
    'n_transit': (_INT, lambda v: v >= 2, 'an integer >= 2', RUN),
    'tf_n_embd': (_INT, _positive, 'a positive integer', RUN),
    'tf_n_layer': (_INT, _positive, 'a positive integer', RUN),
    'tf_n_head': (_INT, _positive, 'a positive integer', RUN),
    'tf_dim_feedforward': (_INT, _positive, 'a positive integer', RUN),
    'tf_dropout': (_FLOAT, lambda v: 0 <= v < 1, 'a number in [0, 1)', RUN),
    'label_smoothing': (_FLOAT, lambda v: 0 <= v < 1, 'a number in [0, 1)', RUN),
    'token_type_loss_weight': (_FLOAT, _non_negative, 'a number >= 0', RUN),
    # sizes the memory of context_mode: memory (chooses no mode)
    'memory_tokens': (_INT, _non_negative, 'an integer >= 0 (0 = no memory)', RUN),
    'memory_unroll': (_INT, lambda v: v >= 2, 'an integer >= 2', RUN),
    'memory_walk_start': (_STR, _one_of('stream', 'random'), "'stream' or 'random'", RUN),
    # sliding mode: transitions of a training window after its first n_transit (-1 = n_transit)
    'sliding_tail': (_INT, lambda v: v >= -1, 'an integer >= -1 (-1 = n_transit)', RUN),
    'train_timesteps': (_INT, _positive, 'a positive integer', RUN),
    # fixed like the rest, but RESUMABLE_KEYS lets a resume lower it
    'train_batch_size': (_INT, _positive, 'a positive integer', RUN),
    # with test_n_batches: the held-out windows behind test/* and the final test metrics
    'test_batch_size': (_INT, _positive, 'a positive integer', RUN),
    'train_n_stream': (_INT, _non_negative, 'an integer >= 0 (0 = all streams)', RUN),
    'lr': (_FLOAT, _positive, 'a positive number', RUN),
    'min_lr_ratio': (_FLOAT, lambda v: 0 <= v <= 1, 'a number in [0, 1]', RUN),
    'beta1': (_FLOAT, lambda v: 0 <= v < 1, 'a number in [0, 1)', RUN),
    'beta2': (_FLOAT, lambda v: 0 <= v < 1, 'a number in [0, 1)', RUN),
    'weight_decay': (_FLOAT, _non_negative, 'a number >= 0', RUN),
    'num_warmup_steps': (_INT, _non_negative, 'an integer >= 0', RUN),
    'grad_clip': (_FLOAT, _non_negative, 'a number >= 0 (0 = off)', RUN),
    # how often train/* scalars are written; computing them draws no random number
    'summary_interval': (_INT, _positive, 'a positive integer', IO),
    # how often test/* scalars are computed, on fixed batches in eval mode (no random draw); the
    # final ones (train_summary.json) are computed at the last step whatever it is
    'eval_interval': (_INT, _positive, 'a positive integer', IO),
    # a resume restores every random stream, so where checkpoints fall changes nothing
    'ckpt_interval': (_INT, _positive, 'a positive integer', IO),
    # see test_batch_size
    'test_n_batches': (_INT, _positive, 'a positive integer', RUN),
    # model initialisation, batches and dropout
    'seed': (_INT, None, 'an integer', RUN),
    # chosen by each evaluation (evaluate.py: CUDA when present) and named in its setting, as the
    # random streams differ between devices; a training run may be resumed on another device
    'device': (_STR, lambda v: v in ('auto', 'cpu', 'mps') or v.startswith('cuda'),
               "'auto', 'cpu', 'mps' or 'cuda[:N]'", EVAL),
    # torch.compile runs the same training computation (on any device; fused kernels may round the last
    # bits differently, model.training.wrap_for_training); evaluate.py never compiles
    'compile': (_BOOL, None, 'true or false', IO),
    # the precision the model was trained in, and the one the evaluation uses on CUDA: fixed by the run,
    # so an evaluation never runs a bf16-trained model in another precision under the run's name
    'bf16': (_BOOL, None, 'true or false', RUN),
    # evaluation
    'eval_episodes': (_INT, _positive, 'a positive integer', EVAL),
    'eval_streams_per_goal': (_INT, _positive, 'a positive integer', EVAL),
    'eval_compress_trigger': (_STR, _one_of('fixed', 'model'), "'fixed' or 'model'", EVAL),
    'eval_seed': (_INT, None, 'an integer', EVAL),
    # memory mode: the memory starts again from the model's initial memory at every N-th region close (0 = never),
    # so an evaluation longer than the training streams hands a memory on no more often than training did
    'eval_memory_reset': (_INT, _non_negative, '0 (never) or a positive integer', EVAL),
}
SCOPES: dict[str, str] = {key: entry[3] for key, entry in SCHEMA.items()}
assert set(SCOPES.values()) <= {RUN, EVAL, IO}, SCOPES


def keys_of_scope(scope: str) -> frozenset[str]:
    """The config keys of one scope (``RUN``, ``EVAL`` or ``IO``)."""
    if scope not in (RUN, EVAL, IO):
        raise ValueError(f'unknown scope {scope!r}')
    return frozenset(key for key, s in SCOPES.items() if s == scope)


RUN_KEYS = keys_of_scope(RUN)    # what a trained run fixes
# keys a resumed run may change on purpose, e.g. a smaller batch after running out of memory; train.py announces
# each change and records it in the run directory. Every other run key must keep its value.
RESUMABLE_KEYS = frozenset({'train_batch_size'})
assert RESUMABLE_KEYS <= RUN_KEYS
EVAL_KEYS = keys_of_scope(EVAL)  # what an evaluation may choose
IO_KEYS = keys_of_scope(IO)      # what changes no result
# the run keys of the environment and PPO files that choose the goal split, which picks among the collected tasks
# rather than deciding what is collected
SPLIT_KEYS = frozenset({'env_split_seed', 'train_env_ratio'})
assert SPLIT_KEYS <= RUN_KEYS


def _type_ok(expected: type, value: Any) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check_key(key: str, value: Any, source: str) -> Any:
    """Validate one key/value pair; return the value (ints widened to float where a float is expected)."""
    if key not in SCHEMA:
        near = difflib.get_close_matches(key, SCHEMA.keys(), n=1, cutoff=0.6)
        hint = f" Did you mean '{near[0]}'?" if near else ' See the configuration table in README.md.'
        raise ConfigError(f"Unknown config key '{key}' in {source}.{hint}")
    typ, check, demand, _ = SCHEMA[key]
    if typ is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if not _type_ok(typ, value):
        raise ConfigError(f"Config key '{key}' in {source} must be {demand}, got {value!r} "
                          f"({type(value).__name__}).")
    if typ is float:
        value = float(value)
    if check is not None and not check(value):
        raise ConfigError(f"Config key '{key}' in {source} must be {demand}, got {value!r}.")
    return value


class Config(dict):
    """A flat config dict that remembers which file or override set each key, and through which files a key's
    value came (``files``: the file that set it, then each file that included that one; empty for overrides)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sources: dict[str, str] = {k: '<code>' for k in self}
        self.files: dict[str, tuple[Path, ...]] = {}

    def update(self, other=(), **kwargs):  # keeps the quick-start's `config.update(get_config(...))` idiom
        items = dict(other, **kwargs)
        for key, value in items.items():
            self[key] = value
            self.sources[key] = other.sources.get(key, '<code>') if isinstance(other, Config) else '<code>'
            self.files[key] = other.files.get(key, ()) if isinstance(other, Config) else ()

    def set(self, key: str, value: Any, source: str, files: tuple[Path, ...] = ()) -> None:
        self[key] = check_key(key, value, source)
        self.sources[key] = source
        self.files[key] = files

    def source(self, key: str) -> str:
        return self.sources.get(key, 'the config')


# ----------------------------------------------------------------------------- loading and merging
def resolve_path(path: str | os.PathLike) -> Path:
    """A config path as given, relative to the working directory or else to the project root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return PROJECT_ROOT / p


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as messages and ``--print-config`` show it: relative to the project root when it lies inside."""
    p = Path(path)
    if p.is_absolute() and p.is_relative_to(PROJECT_ROOT):
        return str(p.relative_to(PROJECT_ROOT))
    return str(path)


def get_config(path: str | os.PathLike, _seen: tuple = ()) -> Config:
    """Read one YAML config file (following ``include:``) and check every key in it."""
    file = resolve_path(path)
    shown = shown_path(path)
    if not file.is_file():
        raise ConfigError(f"Config file '{shown}' does not exist. Use one of the files under config/ "
                          f"(for example {MODEL_CONFIG} or {COMPRESSED_MODEL_CONFIG}).")
    if file.resolve() in _seen:
        raise ConfigError(f"Config file '{shown}' includes itself (through {', '.join(map(str, _seen))}).")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file '{shown}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file '{shown}' must hold a mapping of keys to values.")
    config = Config()
    include = raw.pop('include', None)
    if include is not None:
        includes = include if isinstance(include, list) else [include]
        for inc in includes:
            config.update(get_config(PROJECT_ROOT / inc if not Path(inc).is_absolute() else inc,
                                     _seen + (file.resolve(),)))
        config.files = {key: (*files, file.resolve()) for key, files in config.files.items()}
    for key, value in raw.items():
        config.set(str(key), value, shown, (file.resolve(),))
    return config


def apply_env_overlays(config: Config, env: str) -> None:
    """Give the keys that shared files set the values the environment has for them, in place.

    For every file a key's value came through (innermost first), ``config/env/{env}/{that file's name}``, where it
    exists, replaces the value; so ``config/env/darkkeytodoor/ad_dr.yaml`` gives Dark Key-to-Door its own context
    length and model wherever ``ad_dr.yaml``'s values are in force, and a later file or an override still wins.
    """
    overlays: dict[Path, Config] = {}
    for key in list(config):
        for file in config.files.get(key, ()):
            if file not in overlays:
                name = ENV_OVERLAY.format(env=env, name=file.name)
                path = PROJECT_ROOT / name
                overlays[file] = get_config(name) if path.is_file() and path.resolve() != file else Config()
            if key in overlays[file]:
                overlay = overlays[file]
                config.set(key, overlay[key], overlay.sources[key], config.files[key])
    for file, overlay in overlays.items():
        stray = sorted(set(overlay) - set(get_config(file))) if overlay else []
        if stray:
            raise ConfigError(f"{ENV_OVERLAY.format(env=env, name=file.name)} sets {', '.join(stray)}, which "
                              f"{file.name} does not set: an environment's file may only give its own values to "
                              f"the keys of the file it is named after.")


def parse_overrides(config: Config, overrides: Iterable[str]) -> None:
    """Apply ``KEY=VALUE`` strings (YAML-typed) to ``config`` in place."""
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f"Cannot read argument '{item}': overrides are written KEY=VALUE "
                              f"(for example train_timesteps=2000).")
        key, text = item.split('=', 1)
        if key.strip() == 'env':
            raise ConfigError(f"Cannot read argument '{item}': the environment is chosen with --env NAME, which loads "
                              f"config/env/NAME.yaml and its PPO settings (e.g. --env darkkeytodoor).")
        try:
            value = yaml.safe_load(text) if text != '' else ''
        except yaml.YAMLError:
            value = text
        config.set(key.strip(), value, f"override '{item}'")


def env_files(env: str = DEFAULT_ENV) -> tuple[str, str]:
    """(environment file, PPO file) of ``--env NAME``."""
    files = ENV_CONFIG.format(env=env), ALG_CONFIG.format(env=env)
    if env not in ENVS:
        raise ConfigError(f"--env {env}: no such environment. Choose one of {', '.join(sorted(ENVS))}.")
    missing = [f for f in files if not resolve_path(f).is_file()]
    if missing:
        raise ConfigError(f"--env {env}: {' and '.join(missing)} missing; every environment of compressed_ad.env.ENVS "
                          f"has its {ENV_CONFIG} and {ALG_CONFIG}.")
    return files


def base_config(env: str = DEFAULT_ENV) -> Config:
    """The env and algorithm files of ``env`` merged: what every model config is laid over."""
    env_file, alg_file = env_files(env)
    config = get_config(env_file)
    config.update(get_config(alg_file))
    return config


def collect_keys(env: str = DEFAULT_ENV) -> frozenset[str]:
    """The keys that decide what collect.py writes: the run keys of the environment and PPO files, less the goal
    split's (``SPLIT_KEYS``). Finished tasks of an unfinished collect are resumed only under the same values."""
    return frozenset(key for key in base_config(env) if SCOPES[key] == RUN) - SPLIT_KEYS


def load_config(model_config: str | None = None, presets: Iterable[str] = (), overrides: Iterable[str] = (),
                env: str = DEFAULT_ENV, context_mode: bool = True) -> Config:
    """The standard merge: env -> algorithm -> model -> presets -> overrides, then cross-key checks.

    ``presets`` are names of ``PRESETS`` ('quick', 'cpu'), as chosen by ``--quick`` / ``--cpu``; ``env`` names the
    environment files, as chosen by ``--env``. ``context_mode=False`` leaves out the context mode's checks (and
    the import of the modes and torch), for a script that trains no model: the collector.
    """
    config = base_config(env)
    config.update(get_config(model_config or MODEL_CONFIG))
    return finalize_config(config, presets, overrides, context_mode)


def saved_config(saved: dict, source: str) -> Config:
    """A config written earlier (a run's config.yaml), checked key by key; keys it lacks, added to the schema
    since, take their defaults. A config saved before ``context_mode`` named the memory mode
    (``saved_memory_mode``) names it now, so that it selects the mode it was trained in."""
    config = Config()
    for key, value in saved.items():
        config.set(key, value, source)
    defaults = load_config(env=saved.get('env', DEFAULT_ENV))
    for key in defaults.keys() - saved.keys():
        config.set(key, defaults[key], CONFIG_FILE_DEFAULTS)
    if saved_memory_mode(config):
        config.set('context_mode', 'memory', f'{source}, saved with context_mode empty and memory_tokens > 0')
    return config


def saved_memory_mode(config: dict) -> bool:
    """A run of the memory mode saved before ``context_mode`` named it: its config has ``context_mode`` empty,
    ``use_compressed_context: true`` and ``memory_tokens`` > 0, which then chose the memory mode (such a config is
    refused now: ``memory_tokens`` chooses no mode, ``context_modes.check_mode_keys``)."""
    return not config['context_mode'] and config['use_compressed_context'] and config['memory_tokens'] > 0


def finalize_config(config: Config, presets: Iterable[str] = (), overrides: Iterable[str] = (),
                    context_mode: bool = True) -> Config:
    """Apply presets and overrides, then check that all keys are present and consistent (with ``context_mode``,
    also against the context mode the config selects: ``check_context_mode``)."""
    for name in presets:
        config.update(get_config(PRESETS[name]))
    apply_env_overlays(config, config.get('env', DEFAULT_ENV))
    parse_overrides(config, overrides)
    missing = sorted(set(SCHEMA) - set(config))
    if missing:
        raise ConfigError(f"Config keys missing: {', '.join(missing)}. A model config should "
                          f"'include: {MODEL_CONFIG}' and override only what it changes.")
    if context_mode:
        check_context_mode(config)
    check_consistency(config)
    return config


def check_context_mode(config: Config) -> None:
    """The checks of the context mode the config selects (``context_modes.checked_mode``).

    The registry is imported here, on first use, not at the top: the modes load torch, which a config loaded
    without its context mode (the collector's, ``context_mode=False``) never needs. The modes never import this
    module, so the imports still run one way, config -> modes -> model.
    """
    from compressed_ad.context_modes import checked_mode
    checked_mode(config)


def check_consistency(config: Config) -> None:
    """Checks between keys that need no dataset and no context mode."""
    c = config
    if c['tf_n_embd'] % c['tf_n_head'] != 0:
        raise ConfigError(f"tf_n_embd={c['tf_n_embd']} ({c.source('tf_n_embd')}) must be divisible by "
                          f"tf_n_head={c['tf_n_head']} ({c.source('tf_n_head')}).")
    if c['ppo_batch_size'] > c['n_steps'] * c['n_stream']:
        raise ConfigError(f"ppo_batch_size={c['ppo_batch_size']} ({c.source('ppo_batch_size')}) is larger than "
                          f"one rollout (n_steps * n_stream = {c['n_steps'] * c['n_stream']}).")


# ----------------------------------------------------------------------------- command line
def add_config_args(parser, overrides: bool = True, env: bool = True) -> None:
    """``--env``, ``--quick``, ``--cpu``, ``--print-config`` and trailing ``KEY=VALUE`` overrides, shared by every
    script."""
    if env:
        parser.add_argument('--env', default=DEFAULT_ENV, metavar='NAME',
                            help=f'the environment: loads {ENV_CONFIG} and {ALG_CONFIG} (default {DEFAULT_ENV}; '
                                 f"one of {', '.join(sorted(ENVS))})")
    parser.add_argument('--quick', action='store_true',
                        help=f'apply {QUICK_CONFIG}: a tiny smoke-test setting, a few minutes on 2 CPU cores')
    parser.add_argument('--cpu', action='store_true',
                        help=f'apply {CPU_CONFIG}: a model and schedule sized for 2 CPU cores that learns in context')
    parser.add_argument('--print-config', action='store_true',
                        help='print the merged config with the file or override behind every key, then exit')
    if overrides:
        parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE', help='override any config key (YAML-typed)')


def config_from_args(args, model_config: str | None = None, context_mode: bool = True) -> Config:
    """The config a script's command line asks for (``--env``, presets, overrides) with ``model_config``
    (``context_mode``: as ``load_config``'s)."""
    return load_config(model_config, presets_of(args), args.overrides, args.env, context_mode)


def presets_of(args) -> list[str]:
    """The preset names chosen on the command line (``--quick``, ``--cpu``)."""
    chosen = [name for name in PRESETS if getattr(args, name, False)]
    if len(chosen) > 1:
        raise ConfigError('--quick and --cpu are two different settings (a smoke test, and a CPU setting that '
                          'learns); choose one.')
    return chosen


def preset_flags(presets: Iterable[str]) -> list[str]:
    """The command-line switches that choose ``presets``, for running another script with the same setting."""
    return [f'--{name}' for name in presets]


def format_config(config: Config) -> str:
    """The config as YAML, each key followed by the file or override it came from."""
    width = max(len(f'{k}: {yaml.safe_dump(v, default_flow_style=True).strip()}') for k, v in config.items())
    lines = []
    for key, value in config.items():
        text = f'{key}: {yaml.safe_dump(value, default_flow_style=True).strip()}'
        if text.endswith('\n...'):
            text = text[:-4]
        lines.append(f'{text.ljust(width)}  # {config.source(key)}')
    return '\n'.join(lines)
