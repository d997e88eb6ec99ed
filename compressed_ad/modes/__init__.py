"""The built-in context modes, one module each (standard.py, compressed.py, memory.py, sliding.py); the interface
they implement and their registry are ``compressed_ad.context_modes``."""
import compressed_ad.context_modes  # noqa: F401  (registers the modes; importing a mode module first needs it)
