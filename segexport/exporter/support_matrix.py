"""How the ONNX support of TensorRT 8.5 and 8.6 differs from the TensorRT 10 table in lint.py.

Our own summary of onnx-tensorrt's ``docs/operators.md`` on its release branches, read from
git: ``8.5-GA`` at fdeeaca (2023-03-10), ``8.6-GA`` at ee0b139 (2024-04-04), compared with
``10.1-GA`` at 96e7811 (the TensorRT 10 table of lint.py). Only the rows that change a verdict
for a graph of opset <= 17 are kept:

| op / rule                      | 8.5            | 8.6            | 10.x            |
|--------------------------------|----------------|----------------|-----------------|
| opset                          | up to 17       | up to 17       | 9 to 20         |
| LayerNormalization, IsInf      | not supported  | supported      | supported       |
| Hardmax                        | not supported  | not supported  | supported       |
| CastLike, Gelu, Mish, DeformConv | not listed   | not listed     | supported       |
| GroupNormalization             | not listed     | supported      | supported       |
| TopK ``K``                     | an initializer | any            | < 3840          |
| Q/DQ types                     | INT8           | INT8           | INT8, FP8, INT4 |

Ops the 8.x tables do not list are treated as unsupported: the 8.x parsers have no importer
for them. Everything else (Resize modes, MaxPool ``Indices``, Q/DQ zero points, constant
``axes``) reads the same in all three tables.
"""

from __future__ import annotations

import onnx

SOURCES = {
    "8.5": "onnx-tensorrt docs/operators.md, branch 8.5-GA @ fdeeaca",
    "8.6": "onnx-tensorrt docs/operators.md, branch 8.6-GA @ ee0b139",
    "10": "onnx-tensorrt docs/operators.md, branch 10.1-GA @ 96e7811",
}
_NOT_IN_8X = frozenset({"Hardmax", "CastLike", "Gelu", "Mish", "DeformConv"})
EXTRA_UNSUPPORTED: dict[str, frozenset[str]] = {
    "8.5": _NOT_IN_8X | {"LayerNormalization", "IsInf", "GroupNormalization"},
    "8.6": _NOT_IN_8X,
    "10": frozenset(),
}
TOPK_K_MUST_BE_INITIALIZER = frozenset({"8.5"})
QDQ_TYPES: dict[str, frozenset[int]] = {
    "8.5": frozenset({onnx.TensorProto.INT8}),
    "8.6": frozenset({onnx.TensorProto.INT8}),
    "10": frozenset({onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}),
}
