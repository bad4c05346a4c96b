"""Moved to :mod:`segexport.calib.mixed_precision`; this name stays so older imports keep working (same module object)."""

import sys

from segexport.calib import mixed_precision as _moved

sys.modules[__name__] = _moved
