"""Moved to :mod:`segexport.core.metrics`; this name stays so older imports keep working (same module object)."""

import sys

from segexport.core import metrics as _moved

sys.modules[__name__] = _moved
