"""The forward contract every model segexport ships must keep.

A segmentation network here takes a float ``N x 3 x H x W`` image batch and returns one
tensor of logits ``N x num_classes x H x W`` at the input size. Every later step relies on
it: the ``--argmax`` head, parity against labels, calibration accuracy, the class names in
the ONNX metadata. Zoo models keep it by construction (their tests prove it); a user
factory may not, and without this check the mistake surfaces far away as an ONNX Runtime
shape error or a traceback in the parity metrics. So the first forward of a user model is
checked here and each breach becomes one line that says what to change in the model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from segexport.errors import UserError, exception_line


_DIVISIBLE = re.compile(r"divisible by (\d+)")


def forward_error(name: str, example: torch.Tensor, exc: BaseException) -> UserError:
    """A model's own forward failed on the image batch segexport feeds it.

    A model that checks its own input (smp: "Expected image height and width divisible by 32")
    is reported as the model's constraint, with the nearest sizes that satisfy it.
    """
    text = str(exc)
    missing = _missing_module(exc)
    if missing:
        return UserError(f"{name} needs the Python module {missing!r} in its forward, which is not installed "
                         f"({exception_line(exc)}): install it (pip install {missing.split('.')[0]}) and run again")
    m = _DIVISIBLE.search(text)
    if m and int(m.group(1)) > 1 and re.search(r"height|width|size|shape", text, re.IGNORECASE):
        k = int(m.group(1))
        h, w = example.shape[-2:]
        down = f"{max(k, h // k * k)}x{max(k, w // k * k)}"
        up = f"{-(-h // k) * k}x{-(-w // k) * k}"
        return UserError(f"{name} takes only sizes divisible by {k} (its own input check), not {h}x{w}: "
                         f"use --input-size {up} or {down} (and a --hw-range whose sizes are multiples of {k})")
    return UserError(
        f"{name} failed on a {_shape(example)} float image batch ({exception_line(exc)}): "
        "segexport feeds N x 3 x H x W RGB tensors; make the model's forward take that (or fix its --model-arg values)"
    )


def _missing_module(exc: BaseException) -> str | None:
    """The module an import inside the forward could not find, or None.

    Libraries import optional dependencies lazily (MONAI's SwinUNETR imports einops on its first
    forward and raises ``OptionalImportError``, an ImportError), so a missing package shows up
    here, not when the factory runs; telling the user to change the model's input would be wrong.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError):
            if getattr(exc, "name", None):
                return str(exc.name)
            m = re.search(r"No module named '([\w.]+)'", str(exc))
            return m.group(1) if m else None
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


class OutputAdapter(torch.nn.Module):
    """Turns a library's output container into the contract's one logits tensor.

    torchvision returns ``{"out": ..., "aux": ...}``; Hugging Face a ``ModelOutput`` (an
    OrderedDict with attribute access) whose ``logits`` are at 1/4 of the input. ``key`` picks
    the entry (a mapping key, a tuple index, or an attribute); ``upsample`` appends the bilinear
    resize to the input size (``align_corners=False``, as Hugging Face's
    ``post_process_semantic_segmentation`` does). Both are plain Python at trace time, so the
    exported graph holds only the chosen tensor (and one Resize).
    """

    wraps_user_model = True  # segexport.exporter.scopes.user_names: messages use the user's module names

    def __init__(self, model: torch.nn.Module, key: str | None = None, upsample: bool = False) -> None:
        super().__init__()
        self.model = model
        self.key = key
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.key is not None:
            out = pick_output(out, self.key)
        if self.upsample and tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            out = torch.nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def pick_output(output: Any, key: str) -> Any:
    """``output[key]`` for a mapping, ``output[int(key)]`` for a tuple/list, else ``output.key``."""
    if isinstance(output, Mapping):
        return output[key]
    if isinstance(output, (tuple, list)) and key.lstrip("-").isdigit():
        return output[int(key)]
    return getattr(output, key)


def _entries(output: Any) -> list[str]:
    """The keys/attributes an output container offers, for messages."""
    if isinstance(output, Mapping):
        return [str(k) for k in output]
    if isinstance(output, (tuple, list)):
        return [str(i) for i in range(len(output))]
    if dataclasses.is_dataclass(output):
        return [f.name for f in dataclasses.fields(output)]
    return [k for k, v in vars(output).items() if isinstance(v, torch.Tensor)] if hasattr(output, "__dict__") else []


def _has(output: Any, key: str) -> bool:
    try:
        pick_output(output, key)
    except (KeyError, IndexError, AttributeError, TypeError):
        return False
    return True


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


@dataclass
class OutputChoice:
    """What an export takes from a model's output: ``key`` (None: the tensor itself), whether
    logits are resized to the input, and a one-line note for the user when something was taken."""

    key: str | None
    upsample: bool
    output: torch.Tensor
    note: str | None = None


def choose_output(name: str, example: torch.Tensor, output: Any, *, key: str | None = None,
                  upsample: bool = False) -> OutputChoice:
    """Pick the logits out of ``output`` (``--output KEY``, else ``out`` / ``logits``) and, with
    ``upsample``, resize them to the input; refuse anything else with the fix."""
    kind = type(output).__name__
    taken = key
    if key is not None:
        if isinstance(output, torch.Tensor):
            raise UserError(f"--output {key}: {name} already returns one tensor; drop --output")
        if not _has(output, key):
            offered = ", ".join(_entries(output)[:6]) or "none"
            raise UserError(f"--output {key}: {name} returned {_a(kind)} without {key!r} (it has: {offered}); "
                            "pass one of those")
    elif not isinstance(output, torch.Tensor):
        taken = next((k for k in ("out", "logits") if not isinstance(output, (tuple, list)) and _has(output, k)), None)
        if taken is None:
            _refuse_container(name, output)
    logits = pick_output(output, taken) if taken is not None else output
    note = None
    if taken is not None:
        others = [e for e in _entries(output) if e != taken]
        how = f"[{taken!r}]" if isinstance(output, (Mapping, tuple, list)) else f".{taken}"
        note = (f"{name} returns {_a(kind)}; exporting its {how}" + (f" (dropping {', '.join(others[:4])})" if others else "")
                + ("" if key else "; pick another with --output KEY"))
    did_upsample = False
    if (upsample and isinstance(logits, torch.Tensor) and logits.dim() == 4
            and tuple(logits.shape[-2:]) != tuple(example.shape[-2:])):
        logits = torch.nn.functional.interpolate(logits, size=example.shape[-2:], mode="bilinear", align_corners=False)
        did_upsample = True
        note = (note + "; " if note else "") + "logits resized to the input size (bilinear, align_corners=False)"
    elif upsample:
        note = (note + "; " if note else "") + "--upsample-logits: the logits are already at the input size, nothing appended"
    return OutputChoice(key=taken, upsample=did_upsample, output=logits, note=note)


def _refuse_container(name: str, output: Any) -> None:
    found = _a(type(output).__name__)
    entries = _entries(output)
    if isinstance(output, Mapping) or entries:
        found += f" with {'keys' if isinstance(output, Mapping) else 'entries'} {', '.join(entries[:4])}"
    if isinstance(output, (tuple, list)):
        pick = "--output 0 to export the first" if entries else "one tensor"
        fix = f"pass {pick}, or make forward return N x classes x H x W"
    elif entries:
        fix = (f"pass --output KEY (one of {', '.join(entries[:4])}), or wrap it so forward returns "
               f"model(x)['{entries[0]}']" if isinstance(output, Mapping) else f"model(x).{entries[0]}")
    else:
        fix = "make forward return N x classes x H x W"
    raise UserError(f"{name} returned {found}, not one logits tensor: {fix}")


def check_segmentation_output(name: str, example: torch.Tensor, output: Any, num_classes: int | None,
                              *, adapters: bool = False) -> None:
    """Refuse an output that is not ``N x num_classes x H x W`` logits at the input size.

    ``adapters``: the caller (``segexport onnx``) offers ``--output`` / ``--upsample-logits``,
    so the fixes name them.
    """
    if not isinstance(output, torch.Tensor):
        found = _a(type(output).__name__)
        if isinstance(output, Mapping):
            found += f" with keys {', '.join(map(str, list(output)[:4]))}"
        key = "logits" if _has(output, "logits") and not _has(output, "out") else "out"
        how = f"model(x).{key}" if not isinstance(output, Mapping) else f"model(x)['{key}']"
        raise UserError(
            f"{name} returned {found}, not one logits tensor: make forward return N x classes x H x W "
            f"(wrap it so forward returns {how}; `segexport onnx` does this itself, see --output)"
        )
    n, _, h, w = example.shape
    if output.dim() != 4 or output.shape[0] != n or tuple(output.shape[-2:]) != (h, w):
        if output.dim() == 4 and output.shape[0] == n:
            oh, ow = output.shape[-2:]
            ratio = f" (1/{h // oh} of the input)" if oh and h % oh == 0 and w % ow == 0 and h // oh == w // ow else ""
            fix = "upsample inside the model, e.g. F.interpolate(logits, size=x.shape[-2:], mode='bilinear')"
            if adapters:
                fix = ("pass --upsample-logits to append a bilinear resize to the input size (as Hugging Face's "
                       "post-processing does), or " + fix)
            raise UserError(f"{name} returned {_shape(output)} for a {_shape(example)} input{ratio}: "
                            f"segmentation logits must be {n} x classes x {h} x {w}; {fix}")
        raise UserError(
            f"{name} returned {_shape(output)} for a {_shape(example)} input: segmentation logits must be "
            f"{n} x classes x {h} x {w}; return the logits unflattened, one map per class"
        )
    if not output.is_floating_point():
        raise UserError(f"{name} returned {output.dtype} values, not float logits: return the scores before argmax "
                        "(segexport adds the argmax itself with --argmax)")
    if num_classes is not None and output.shape[1] != num_classes:
        raise UserError(
            f"{name} returned {output.shape[1]} class channels but --num-classes is {num_classes}: "
            f"pass --num-classes {output.shape[1]} (or drop it: a user model's own output decides)"
        )


def check_forward(name: str, model: torch.nn.Module, size: tuple[int, int], num_classes: int | None) -> int:
    """Run ``model`` once on a 1 x 3 x H x W batch and hold it to the contract; for commands
    that do not already run a forward of their own before the real work. Returns the number of
    class channels (what a user model without ``num_classes`` predicts)."""
    example = torch.randn(1, 3, *size)
    try:
        with torch.no_grad():
            output = model(example)
    except Exception as exc:
        raise forward_error(name, example, exc) from exc
    check_segmentation_output(name, example, output, num_classes)
    return int(output.shape[1])


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape)
