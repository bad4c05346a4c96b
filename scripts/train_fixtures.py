"""Train the small fixtures that accuracy checks (parity mIoU, INT8/FP16 cost) are judged on.

    python scripts/train_fixtures.py                 # segnet, unet, deeplabv1, fcn8s
    python scripts/train_fixtures.py --models unet --steps 300

Real zoo architectures at width 1/16 or 1/8 on the deterministic synthetic set (4 classes, 64x64):
train on seed 0, report mIoU on held-out seed 1. CPU only, fixed seeds; writes
tests/fixtures/<model>.pt (state_dict) and tests/fixtures/fixtures.json with the figures and
the command. Measuring INT8 loss on untrained networks would mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
NUM_CLASSES, SIZE = 4, (64, 64)
# Narrowest widths that learn the task; skip-less SegNet and stride-8 DeepLab need 1/8.
WIDTHS = {"segnet": 0.125, "unet": 0.0625, "deeplabv1": 0.125, "fcn8s": 0.0625}
TRAIN_SEED, VAL_SEED = 0, 1


def tensors(count: int, seed: int, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    from segexport.data.synth import synthetic_arrays

    images, labels = synthetic_arrays(count, SIZE, NUM_CLASSES, seed=seed)
    x = (images.astype(np.float32) / 255 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(labels.astype(np.int64))


def evaluate(model, x, y) -> float:
    from segexport.checks.metrics import miou

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 32]).argmax(1) for i in range(0, len(x), 32)])
    return miou(pred.numpy(), y.numpy(), NUM_CLASSES)


def train(name: str, steps: int, batch: int, lr: float) -> dict:
    from segexport.models.registry import build_model, get_spec

    spec = get_spec(name)
    torch.manual_seed(0)
    width = WIDTHS.get(name, 0.0625)
    model = build_model(name, num_classes=NUM_CLASSES, width=width).train()
    xt, yt = tensors(512, TRAIN_SEED, spec.mean, spec.std)
    xv, yv = tensors(64, VAL_SEED, spec.mean, spec.std)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"  {name} step {step} loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"{name}.pt"
    torch.save(model.state_dict(), path)
    result = {"model": name, "width": width, "num_classes": NUM_CLASSES, "input_size": list(SIZE),
              "train_miou": round(evaluate(model, xt[:128], yt[:128]), 2), "val_miou": round(evaluate(model, xv, yv), 2),
              "steps": steps, "batch": batch, "lr": lr, "train_seconds": round(seconds, 1),
              "params": sum(p.numel() for p in model.parameters()), "file": path.name,
              "bytes": path.stat().st_size}
    print(f"{name}: val mIoU {result['val_miou']:.2f} (train {result['train_miou']:.2f}) in {seconds:.0f}s", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="segnet,unet,deeplabv1,fcn8s")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    index_path = FIXTURES / "fixtures.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"fixtures": {}}
    command = ("python scripts/train_fixtures.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    index["dataset"] = {"generator": "segexport.data.synth", "num_classes": NUM_CLASSES, "size": list(SIZE),
                        "train": {"seed": TRAIN_SEED, "count": 512}, "val": {"seed": VAL_SEED, "count": 64}}
    index["torch"] = torch.__version__
    for name in args.models.split(","):
        index["fixtures"][name] = train(name, args.steps, args.batch, args.lr)
        index["fixtures"][name]["command"] = command
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
