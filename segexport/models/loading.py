"""Resolve a model reference to a ready ``nn.Module``, and load checkpoints safely.

A reference is a zoo name (``deeplabv1``) or a user factory: ``package.module:factory``
or ``path/to/file.py:factory``. User factories get ``--model-arg`` values as keyword
arguments, plus ``num_classes``/``width`` when their signature accepts them. A user
model may carry its own contract as a ``segexport_spec`` attribute (a dict of
:class:`ModelSpec` fields such as ``default_input_size``, ``mean``, ``std``,
``class_names``, ``min_size``) — the per-model export config idea of Optimum, kept to
plain data so a user's package does not need to import segexport.

Checkpoints load with ``torch.load(weights_only=True)``: a checkpoint is data, and
unpickling arbitrary objects from a downloaded file executes code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segexport.core.hashing import sha256_file
from segexport.errors import UserError, exception_line
from segexport.models.registry import ZOO_NUM_CLASSES, build_model, check_build_args, get_spec, is_zoo_name
from segexport.models.spec import ModelSpec

# Containers that training frameworks wrap a state dict in, most specific first.
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
# Prefixes added by DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class LoadedModel:
    """A model ready for export or comparison, with what we know about it.

    ``num_classes`` is ``None`` only for a user factory that takes no ``num_classes`` argument
    and was given no ``--num-classes``: its own output decides, see :func:`settle_num_classes`.
    """

    model: nn.Module
    name: str
    spec: ModelSpec
    num_classes: int | None
    width: float
    weights_sha256: str | None = None
    num_classes_source: str = "--num-classes"  # or: "zoo default", "factory default", "checkpoint head", "model output"
    notes: list[str] = field(default_factory=list)  # how the checkpoint was read, for the user to see


def load_model(
    ref: str,
    *,
    num_classes: int | None = None,
    width: float = 1.0,
    model_args: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    output_key: str | None = None,
    upsample_logits: bool = False,
) -> LoadedModel:
    """Build ``ref`` in eval mode and, when given, load ``weights`` strictly.

    ``num_classes=None`` means "not given": the zoo uses 21, a user factory its own default
    (or the class count of the checkpoint's head when ``weights`` are given). ``output_key``
    and ``upsample_logits`` wrap the model in the :class:`~segexport.models.contract.OutputAdapter`
    an export recorded, so every later step compares against the same function.
    """
    model_args = dict(model_args or {})
    # Initialise deterministically: an export of an untrained model (no --weights) must be
    # reproducible by `segexport parity`, which rebuilds the reference from the ONNX metadata.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        loaded = _load(ref, num_classes=num_classes, width=width, model_args=model_args, weights=weights)
    if output_key is not None or upsample_logits:
        from segexport.models.contract import OutputAdapter

        loaded.model = OutputAdapter(loaded.model, output_key, upsample_logits).eval()
    return loaded


INIT_SEED = 0


def _load(ref: str, *, num_classes: int | None, width: float, model_args: dict[str, Any], weights) -> LoadedModel:
    # user factories too: the values land in the ONNX metadata
    check_build_args(ZOO_NUM_CLASSES if num_classes is None else num_classes, width)
    source = "--num-classes"
    if is_zoo_name(ref):
        spec = get_spec(ref)
        if num_classes is None:
            num_classes, source = ZOO_NUM_CLASSES, "zoo default"
        try:
            model = build_model(spec.name, num_classes=num_classes, width=width, **model_args)
        except TypeError as exc:
            raise UserError(f"--model-arg not accepted by {spec.name}: {exc}") from exc
        name = spec.name
    else:
        factory = _import_factory(ref)
        given = num_classes
        num_classes, source = _factory_num_classes(ref, factory, num_classes, model_args, weights)
        model, spec = _build_user_model(ref, factory, num_classes=num_classes, width=width, model_args=model_args)
        if given is None and weights is not None and num_classes is not None:
            head = _checkpoint_head_classes(model, align_to_model(read_state_dict(weights), model.state_dict(),
                                                                 weights), num_classes)
            if source == "placeholder":  # the head fits the build (or load_weights below names the mismatch)
                source = "checkpoint head"
            if head is not None and head != num_classes:
                num_classes, source = head, "checkpoint head"
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(INIT_SEED)
                    model, spec = _build_user_model(ref, factory, num_classes=num_classes, width=width,
                                                    model_args=model_args)
        if num_classes is None and spec.class_names and "class_names" in (getattr(model, "segexport_spec", None) or {}):
            num_classes, source = len(spec.class_names), "segexport_spec class_names"
        name = spec.name
    sha, notes = None, []
    if weights is not None:
        sha = load_weights(model, weights, model_name=name, num_classes=num_classes, width=width, notes=notes)
    return LoadedModel(model=model.eval(), name=name, spec=spec, num_classes=num_classes, width=width,
                       weights_sha256=sha, num_classes_source=source, notes=notes)


def _factory_num_classes(ref: str, factory, given: int | None, model_args: dict[str, Any], weights) -> tuple[int | None, str]:
    """The class count to build a user factory with, and where it came from.

    An explicit ``--num-classes`` wins. Otherwise the factory's own default (``def build(
    num_classes=5)``) is the user's intent; 21 would silently give their model a VOC head.
    A factory that takes no ``num_classes`` (smp's ``classes``, MONAI's ``out_channels``,
    Hugging Face's ``num_labels``) decides by its output: ``None`` here.
    """
    if given is not None:
        return given, "--num-classes"
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "num_classes" in model_args:
        value = model_args["num_classes"]
        return (value if isinstance(value, int) else None), "--model-arg num_classes"
    param = params.get("num_classes")
    if param is None:
        return None, "model output"
    if isinstance(param.default, int) and not isinstance(param.default, bool):
        return param.default, "factory default"
    if weights is not None:  # required argument: build once at the zoo's count, then read the checkpoint's head
        return ZOO_NUM_CLASSES, "placeholder"
    raise UserError(f"{ref} requires num_classes and has no default: pass --num-classes N")


def _checkpoint_head_classes(model: nn.Module, state: dict[str, torch.Tensor], built: int) -> int | None:
    """The class count a checkpoint's head was trained with, when its shapes say so unambiguously:
    every tensor that differs from the model built with ``built`` classes differs only in its
    first dimension, which is ``built`` in the model and one same ``k`` in the checkpoint."""
    own = model.state_dict()
    differing = [(tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and state[k].shape != v.shape]
    if not differing:
        return None
    heads = {got[0] for got, want in differing if got and want and want[0] == built and got[1:] == want[1:]}
    if len(heads) != 1 or len(differing) != sum(1 for got, want in differing if want and want[0] == built and got[1:] == want[1:]):
        return None
    return heads.pop()


def settle_num_classes(loaded: LoadedModel, channels: int) -> None:
    """Give a model whose class count was not known before its first forward the one it returned."""
    if loaded.num_classes is None:
        loaded.num_classes, loaded.num_classes_source = channels, "model output"
        if loaded.spec.family == "user" and loaded.spec.class_names and all(
                c.startswith("class_") for c in loaded.spec.class_names) and len(loaded.spec.class_names) != channels:
            loaded.spec = replace(loaded.spec, class_names=_default_class_names(channels))


def _default_class_names(num_classes: int | None) -> tuple[str, ...]:
    if num_classes is None:
        return ()
    return ("background", "foreground") if num_classes == 1 else tuple(f"class_{i}" for i in range(num_classes))


def model_from_file(ref: object, source: str, *, trust_model_code: bool = False) -> str:
    """A model reference read from a file (ONNX metadata, a sidecar, a manifest): only a zoo name.

    The command line is trusted, files are data: a ``module:factory`` or ``file.py:factory``
    inside a downloaded ONNX would import and run that code (with the current folder
    importable). It is refused unless the user opts in on the command line.
    """
    if not isinstance(ref, str) or not ref:
        raise UserError(f"{source} names no model: pass --model explicitly")
    if is_zoo_name(ref) or trust_model_code:
        return ref
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    raise UserError(f"{source} names user code as its model ({shown!r}); segexport runs no code named in a file: "
                    f"pass --model {shown} explicitly if you trust it (or --trust-model-code)")


def _import_factory(ref: str):
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise UserError(f"model reference {ref!r} must look like package.module:factory or path/to/file.py:factory")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise UserError(f"model file {target!r} not found: check the path in {ref!r}")
        mod_name = f"segexport_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"cannot import {target!r}: is it a Python file?")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code failed to import
            raise UserError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    else:
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the working dir is importable
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise UserError(
                f"cannot import module {target!r} ({exc}): install the package or run from the directory that holds it"
            ) from exc
        except Exception as exc:
            raise UserError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserError(f"{target!r} has no callable {attr!r}: check the name after ':' in {ref!r}")
    return factory


def _check_declared_spec(ref: str, declared: dict[str, Any]) -> None:
    """Hold a user's ``segexport_spec`` to what the preprocessing contract needs, converting
    lists to tuples; a bad value would otherwise travel into the ONNX metadata (a zero std is a
    division by zero in every runtime that preprocesses by it)."""
    def fail(key: str, want: str) -> None:
        raise UserError(f"{ref}: segexport_spec[{key!r}] = {declared[key]!r} must be {want}")

    def numbers(key: str, n: int | None) -> tuple:
        try:
            values = tuple(declared[key])
        except TypeError:
            fail(key, f"a sequence of {n or 'some'} numbers")
        if (n is not None and len(values) != n) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            fail(key, f"a sequence of {n} finite numbers")
        return values

    if "default_input_size" in declared:
        size = numbers("default_input_size", 2)
        if not all(isinstance(v, int) and v > 0 for v in size):
            fail("default_input_size", "two positive integers (H, W)")
        declared["default_input_size"] = size
    if "mean" in declared:
        declared["mean"] = numbers("mean", 3)
    if "std" in declared:
        std = numbers("std", 3)
        if not all(v > 0 for v in std):
            fail("std", "three positive numbers (the input is divided by them)")
        declared["std"] = std
    for key in ("min_size", "output_stride"):
        if key in declared and not (isinstance(declared[key], int) and declared[key] >= 1):
            fail(key, "an integer >= 1")
    if "class_names" in declared:
        if isinstance(declared["class_names"], str):
            fail("class_names", "a sequence of names")
        try:
            declared["class_names"] = tuple(str(c) for c in declared["class_names"])
        except TypeError:
            fail("class_names", "a sequence of names")
        from segexport.core.limits import check_label

        try:
            for i, name in enumerate(declared["class_names"]):
                check_label(name, f"class_names[{i}]")
        except ValueError as exc:
            raise UserError(f"{ref}: segexport_spec['class_names']: {exc} (each name is one line of labels.txt)") from None


def _build_user_model(ref: str, factory, *, num_classes: int | None, width: float,
                      model_args: dict[str, Any]) -> tuple[nn.Module, ModelSpec]:
    kwargs = dict(model_args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for key, value in (("num_classes", num_classes), ("width", width)):
        if key in params and key not in kwargs and value is not None:
            kwargs[key] = value
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise UserError(f"calling {ref} failed: {exc} (pass arguments with --model-arg key=value)") from exc
    except Exception as exc:  # the user's own code raised: name it, with its message, on one line
        raise UserError(f"calling {ref} failed: {exception_line(exc)} (fix the factory, or its "
                        "--model-arg values)") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
    declared = dict(getattr(model, "segexport_spec", None) or {})
    known = {f.name for f in fields(ModelSpec)} - {"factory", "name", "family"}
    unknown = set(declared) - known
    if unknown:
        raise UserError(f"{ref}: unknown segexport_spec keys {sorted(unknown)}; allowed: {sorted(known)}")
    _check_declared_spec(ref, declared)
    if "class_names" not in declared:  # one sigmoid channel is binary: two names
        declared["class_names"] = _default_class_names(num_classes)
    spec = ModelSpec(
        name=ref,
        family="user",
        factory=factory,
        paper=declared.pop("paper", "user model"),
        default_input_size=declared.pop("default_input_size", (512, 512)),
        output_stride=declared.pop("output_stride", 1),
        min_size=declared.pop("min_size", 1),
        **declared,
    )
    return model, spec


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from the usual containers."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"weights file {str(path)!r} not found: check the --weights path")
    if path.is_dir():
        raise UserError(f"--weights {str(path)!r} is a directory: give the checkpoint file (.pt/.pth)")
    if not path.is_file():  # a FIFO or a device: torch.load would block or read forever
        raise UserError(f"--weights {str(path)!r} is not a regular file: give the checkpoint file (.pt/.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch.load's own messages can be bare (a KeyError on a pickle opcode prints "174812789"),
        # so the exception type goes first to keep the line readable.
        text = str(exc)
        if "WeightsUnpickler error:" in text:  # torch's two-paragraph preamble; the cause follows the marker
            text = text.split("WeightsUnpickler error:", 1)[1].strip()
        detail = text.splitlines()[0].split(". ")[0] if text else ""  # first sentence only
        msg = f"torch.load: {type(exc).__name__}{': ' + detail if detail else ''}"
        if "Unsupported global" in str(exc):  # a pickled Python object, which weights_only refuses to build
            raise UserError(
                f"{str(path)!r} holds Python objects, not just tensors; refusing to unpickle it. "
                "Re-save it with torch.save(model.state_dict(), path)"
            ) from exc
        raise UserError(f"{str(path)!r} is not a PyTorch checkpoint ({msg}): pass a file written by torch.save") from exc
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is not None:
                obj = inner
                continue
            others = {k: type(v).__name__ for k, v in obj.items() if not isinstance(v, torch.Tensor)}
            if 0 < len(others) < len(obj):  # a state dict with training extras mixed in
                listed = ", ".join(f"{k}: {t}" for k, t in list(others.items())[:3])
                raise UserError(f"{str(path)!r} mixes non-tensor entries ({listed}) into its tensors: save the "
                                "weights alone with torch.save(model.state_dict(), path)")
        raise UserError(
            f"{str(path)!r} holds no state dict (found {type(obj).__name__}"
            f"{' with keys ' + ', '.join(map(str, list(obj)[:5])) if isinstance(obj, dict) else ''}): "
            "save one with torch.save(model.state_dict(), path)"
        )
    state = dict(obj)
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def align_to_model(state: dict[str, torch.Tensor], own_keys, path: str | Path,
                   notes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under the model's own key names.

    Training frameworks save the network under the attribute that held it: a Lightning
    checkpoint's ``state_dict`` reads ``model.encoder.conv1.weight`` (``self.model = net``),
    next to entries of the loss or metrics. When the keys do not match as they are, and exactly
    one prefix puts *every* model key in the checkpoint, the tensors under that prefix are the
    model and the rest is the framework's. Two such prefixes (a model and its EMA copy) are a
    choice only the user can make: refused, naming both.
    """
    own_keys = list(own_keys)
    if not own_keys or all(k in state for k in own_keys):
        return state
    probe = own_keys[0]
    prefixes = {k[: -len(probe)] for k in state if k.endswith("." + probe)}
    fitting = sorted(p for p in prefixes if all(p + k in state for k in own_keys))
    if len(fitting) == 1:
        if notes is not None:
            others = len(state) - len(own_keys)
            notes.append(f"weights: the {fitting[0]!r} entries of {Path(path).name}"
                         + (f" (ignored {others} other tensor(s) of the training framework)" if others else ""))
        return {k: state[fitting[0] + k] for k in own_keys}
    if len(fitting) > 1:
        raise UserError(f"checkpoint {str(path)!r} holds the model {len(fitting)} times, under "
                        f"{', '.join(repr(p) for p in fitting[:4])}: save the copy you want alone with "
                        "torch.save(model.state_dict(), path)")
    return state


def load_weights(model: nn.Module, path: str | Path, *, model_name: str, num_classes: int, width: float,
                 notes: list[str] | None = None) -> str:
    """Load ``path`` strictly into ``model``; return the file's SHA-256.

    A mismatch is summarised on one line (first missing, unexpected and mis-shaped keys)
    with the likely fix, instead of PyTorch's multi-page RuntimeError.
    """
    own = model.state_dict()
    state = align_to_model(read_state_dict(path), own, path, notes)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k, got, want = shapes[0]
            parts.append(f"shape mismatch {k}: checkpoint {list(got)} vs model {list(want)}"
                         + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""))
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}" + (f" (+{len(unexpected) - 3} more)" if len(unexpected) > 3 else ""))
        raise UserError(
            f"checkpoint {str(path)!r} does not fit {model_name} (num_classes={num_classes}, width={width}): "
            + "; ".join(parts) + f"; fix: {_guess_fix(shapes, missing, unexpected, num_classes)}"
        )
    broken = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:  # PyTorch would compute the same NaNs, and every check would blame the export
        raise UserError(f"checkpoint {str(path)!r} has NaN/inf values in {broken}: it is no usable model "
                        "(a diverged training run?); pass another checkpoint")
    model.load_state_dict(state, strict=True)
    return sha256_file(path)


def _guess_fix(shapes, missing, unexpected, num_classes: int) -> str:
    if shapes:
        k, got, want = shapes[-1]
        if got and want and got[0] != want[0] and got[1:] == want[1:] and want[0] == num_classes:
            return f"pass --num-classes {got[0]}"
        return "pass the --width / --model the checkpoint was trained with"
    return "pass the --model the checkpoint was trained with (or the matching --model-arg values)"


def spec_of(loaded: LoadedModel) -> ModelSpec:
    """The spec with class names matching the built model's class count."""
    if loaded.num_classes is None:  # not known before the first forward (see settle_num_classes)
        return loaded.spec
    return replace(loaded.spec, class_names=loaded.spec.class_names_for(loaded.num_classes))


describe = spec_of  # the name older callers use; it returns a spec, it describes nothing


def check_input_size(spec: ModelSpec, size: tuple[int, int], flag: str = "--input-size") -> None:
    """Refuse sizes the network cannot take, before PyTorch fails cryptically deep inside."""
    h, w = size
    from segexport.core.limits import check_side

    check_side(h, w, flag)
    if min(h, w) < spec.min_size:
        raise UserError(
            f"{flag} {h}x{w} is below {spec.name}'s minimum of {spec.min_size}x{spec.min_size}: "
            f"use at least {spec.min_size} per side"
        )
