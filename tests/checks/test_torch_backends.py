"""PyTorch-at-its-best backends: which run where, that they compute what eager computes, that
compilation stays out of the latency, and the best-PyTorch speedup arithmetic (scripted timings).

torch.compile is exercised with its "eager" backend here (dynamo tracing, guards and recompiles
per shape, without inductor's C++ build, which takes minutes on a 2-core machine); inductor
itself runs in benchmarks/bench_zoo.py and `segexport bench --backends torch-compile`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segexport.checks.latency import measure, summarize
from segexport.checks.runners import BACKENDS, available_backends, backend_device
from segexport.checks.torch_backends import (TORCH_VARIANTS, TorchVariantRunner, add_best_torch_speedups,
                                             torch_reasons)
from tests.conftest import TINY_WIDTH


def test_every_torch_variant_is_a_bench_backend_with_a_device():
    assert set(TORCH_VARIANTS) <= set(BACKENDS)
    assert {b for b in BACKENDS if b.startswith("torch")} == set(TORCH_VARIANTS)
    assert {backend_device(b) for b in ("torch", "torch-channels-last", "torch-compile")} == {"cpu"}
    assert {backend_device(b) for b in ("torch-cuda", "torch-cuda-fp16", "torch-cuda-compile")} == {"cuda"}


def test_without_cuda_the_cuda_variants_are_skipped_with_the_reason():
    reasons = torch_reasons(cuda=False, compiler="/usr/bin/g++", dynamo_ok=True)
    assert [n for n, r in reasons.items() if r is None] == ["torch", "torch-channels-last", "torch-compile"]
    assert all("CUDA" in reasons[n] for n in ("torch-cuda", "torch-cuda-fp16", "torch-cuda-channels-last",
                                             "torch-cuda-compile"))
    with_gpu = torch_reasons(cuda=True, compiler="/usr/bin/g++", dynamo_ok=True, triton_ok=True)
    assert all(r is None for r in with_gpu.values())


def test_compile_needs_a_compiler_on_the_cpu_and_dynamo_everywhere():
    no_cxx = torch_reasons(cuda=True, compiler="", dynamo_ok=True, triton_ok=True)
    assert "C++ compiler" in no_cxx["torch-compile"] and no_cxx["torch-cuda-compile"] is None
    no_dynamo = torch_reasons(cuda=True, compiler="/usr/bin/g++", dynamo_ok=False, triton_ok=True)
    assert {n for n, r in no_dynamo.items() if r} == {"torch-compile", "torch-cuda-compile"}
    no_triton = torch_reasons(cuda=True, compiler="/usr/bin/g++", dynamo_ok=True, triton_ok=False)
    assert {n for n, r in no_triton.items() if r} == {"torch-cuda-compile"} and "triton" in no_triton["torch-cuda-compile"]


def test_available_backends_here_lists_every_backend(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    reasons = available_backends()
    assert tuple(reasons) == BACKENDS
    assert reasons["torch-cuda-compile"] == "no CUDA device visible to PyTorch"
    assert reasons["torch-channels-last"] is None


def test_best_torch_speedup_arithmetic_from_scripted_timings():
    stats = [summarize([100.0], backend="torch", batch=1), summarize([80.0], backend="torch-channels-last", batch=1),
             summarize([50.0], backend="torch-compile", batch=1), summarize([40.0], backend="ort-cpu", batch=1),
             summarize([300.0], backend="torch", batch=4), summarize([400.0], backend="torch-compile", batch=4),
             summarize([150.0], backend="ort-cpu", batch=4),
             summarize([10.0], backend="torch-cuda", batch=1), summarize([4.0], backend="torch-cuda-fp16", batch=1),
             summarize([2.0], backend="trt", batch=1), summarize([5.0], backend="ort-cuda", batch=4)]
    add_best_torch_speedups(stats)
    by = {(s.backend, s.batch): s for s in stats}
    assert by[("ort-cpu", 1)].best_torch == "torch-compile"
    assert by[("ort-cpu", 1)].speedup_vs_best_torch == pytest.approx(1.25)
    assert by[("torch-compile", 1)].speedup_vs_best_torch == pytest.approx(1.0)
    assert by[("torch", 1)].speedup_vs_best_torch == pytest.approx(0.5)
    # batch 4: compile lost to eager there, so eager is the best PyTorch at that batch
    assert by[("ort-cpu", 4)].best_torch == "torch" and by[("ort-cpu", 4)].speedup_vs_best_torch == pytest.approx(2.0)
    # GPU candidates against the fastest CUDA PyTorch (fp16 autocast), never against a CPU run when one ran
    assert by[("trt", 1)].best_torch == "torch-cuda-fp16" and by[("trt", 1)].speedup_vs_best_torch == pytest.approx(2.0)
    # ... and against the fastest CPU run where no CUDA PyTorch ran at that batch
    assert by[("ort-cuda", 4)].best_torch == "torch" and by[("ort-cuda", 4)].speedup_vs_best_torch == pytest.approx(60.0)


class Counting(nn.Module):
    """A tiny conv net that counts its forward calls (a compiled call still runs forward once per trace)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.relu(self.conv(x))


@pytest.mark.parametrize("name", ["torch-channels-last", "torch-compile"])
def test_variants_compute_what_eager_computes_on_a_zoo_model(name):
    from segexport.models.registry import build_model

    model = build_model("segnet", width=TINY_WIDTH, num_classes=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 37, 29), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with TorchVariantRunner(model, TORCH_VARIANTS[name], compile_backend="eager") as runner:
        got = runner.infer({"input": x})["logits"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_runs_the_model_in_channels_last_memory():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x)

    probe = Probe()
    with TorchVariantRunner(probe, TORCH_VARIANTS["torch-channels-last"]) as runner:
        runner.infer({"input": np.ones((1, 3, 4, 5), dtype=np.float32)})
        assert probe.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert seen == [True]
    # the next backend (eager) gets the model as it was, not channels-last weights
    assert probe.conv.weight.is_contiguous()


def test_compilation_is_untimed_once_per_shape_and_reported_apart():
    model = Counting()
    runner = TorchVariantRunner(model, TORCH_VARIANTS["torch-compile"], compile_backend="eager")
    a = np.zeros((1, 3, 8, 8), dtype=np.float32)
    stats = measure(runner, {"input": a}, backend="torch-compile", batch=1, warmup=0, iterations=3)
    assert stats.iterations == 3 and stats.compile_s is not None and stats.compile_s > 0
    # one untimed compiling call for the shape, then the three timed ones (dynamo replays the counter's update)
    assert model.calls == 4
    with runner:
        runner.infer({"input": np.zeros((1, 3, 9, 8), dtype=np.float32)})  # a new shape: compiled again, untimed
    assert len(runner._seen) == 2


def test_eager_backends_report_no_compile_time():
    model = Counting()
    stats = measure(TorchVariantRunner(model, TORCH_VARIANTS["torch"]), {"input": np.zeros((1, 3, 8, 8), np.float32)},
                    backend="torch", batch=1, warmup=1, iterations=2)
    assert stats.compile_s is None and model.calls == 3


def test_bench_cli_reports_the_best_pytorch_column_and_skips_cuda(run_cli, tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "b.json"
    result = run_cli("bench", "--model", "segnet", "--width", TINY_WIDTH, "--input-size", "32x32", "--backends",
                     "torch,torch-channels-last,torch-cuda-compile", "--iterations", "2", "--warmup", "0", "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "vs best" in result.stdout and "skipped torch-cuda-compile: no CUDA" in result.stdout
    doc = json.loads(out.read_text())
    rows = {r["backend"]: r for r in doc["results"]}
    assert set(rows) == {"torch", "torch-channels-last"}
    fastest = min(rows.values(), key=lambda r: r["p50_ms"])
    for r in rows.values():
        assert r["best_torch"] == fastest["backend"]
        assert r["speedup_vs_best_torch"] == pytest.approx(fastest["p50_ms"] / r["p50_ms"])
        assert r["compile_s"] is None
    assert doc["skipped"]["torch-cuda-compile"] == "no CUDA device visible to PyTorch"


def test_a_model_torch_compile_cannot_compile_is_one_line_naming_the_backend():
    from segexport.errors import UserError

    def broken(gm, example_inputs):  # a compiler backend that fails, as inductor does on some models
        raise RuntimeError("codegen exploded\nwith a long\ntraceback")

    runner = TorchVariantRunner(Counting(), TORCH_VARIANTS["torch-compile"], compile_backend=broken,
                                name="torch-compile")
    with runner, pytest.raises(UserError, match="torch.compile failed.*drop torch-compile from") as info:
        runner.infer({"input": np.zeros((1, 3, 8, 8), dtype=np.float32)})
    assert "\n" not in str(info.value) and "RuntimeError: codegen exploded" in str(info.value)
