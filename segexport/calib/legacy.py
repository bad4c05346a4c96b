"""Moved to :mod:`segexport.calib.trt10_calibrator`; this name stays so older imports keep working (same module object)."""

import sys

from segexport.calib import trt10_calibrator as _moved

sys.modules[__name__] = _moved
