"""The built-in context modes, one module each (standard.py, compressed.py, memory.py, sliding.py), and the
interface they implement (base.py). Their registry, and the rule that turns a config into a mode, is
``compressed_ad.context_modes``. A mode imports nothing above it: no config loading, no model.

Importing this package loads no mode (and no torch): it names the model config file of each built-in mode, which
the config layer (``config_schema``) needs without the modes themselves.
"""
MODEL_CONFIG = 'config/model/ad_dr.yaml'                             # standard mode (and the default)
COMPRESSED_MODEL_CONFIG = 'config/model/ad_dr_compressed.yaml'       # compressed mode
MEMORY_MODEL_CONFIG = 'config/model/ad_dr_compressed_memory.yaml'    # compressed mode with memory
SLIDING_MODEL_CONFIG = 'config/model/ad_dr_sliding.yaml'             # sliding-window mode
