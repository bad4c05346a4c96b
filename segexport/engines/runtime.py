"""Moved to :mod:`segexport.core.tensorrt`; this name stays so older imports keep working (same module object)."""

import sys

from segexport.core import tensorrt as _moved

sys.modules[__name__] = _moved
