"""Moved to :mod:`segexport.core.noise_floor`; this name stays so older imports keep working (same module object)."""

import sys

from segexport.core import noise_floor as _moved

sys.modules[__name__] = _moved
