"""Later steps read the export's target: the calibration cache header names that TensorRT,
build_engine.sh has its trtexec's flags, nvinfer runs on DLA for a DLA board."""

from __future__ import annotations

import pytest

from segexport.calib.trt_cache import cache_version, read_cache
from segexport.deploy.deepstream import deploy_deepstream
from segexport.deploy.triton import deploy_triton
from segexport.errors import UserError
from segexport.exporter.export import ExportOptions, export_onnx
from tests.conftest import TINY_WIDTH
from tests.deploy.test_bundles import nvinfer_properties


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    cache = {}

    def get(target):
        if target not in cache:
            out = root / f"fcn-{target}.onnx"
            export_onnx(ExportOptions(model="fcn8s", out=out, width=TINY_WIDTH, input_size=(64, 64), target=target))
            cache[target] = out
        return cache[target]

    return get


def test_cache_version_follows_the_target():
    assert cache_version(None, "jetpack5") == "8.5.2"
    assert cache_version(None, "jetpack6.0") == "8.6.2"
    assert cache_version("8.5.2", "xavier-dla") == "8.5.2"
    with pytest.raises(UserError, match="contradicts the export's.*jetpack5"):
        cache_version("10.3.0", "jetpack5")


def test_calibrate_writes_the_target_tensorrt_header(exported, tmp_path):
    from segexport.api import calibrate

    result = calibrate(onnx=exported("jetpack5"), precision="int8", calib_count=8, out=tmp_path / "m.int8.onnx",
                       trt_cache=tmp_path / "m.cache", max_miou_drop=1.0, max_agreement_drop=1.0)
    version, _algo, _scales = read_cache(result.trt_cache)
    assert version == 8502  # TRT-8502-...: what TensorRT 8.5.2 reads; a 10.3 header would be ignored there


def _script(bundle) -> str:
    folder = getattr(bundle, "model_dir", bundle.out)  # Triton: inside the model's folder, not the repository root
    return (folder / "build_engine.sh").read_text()


def test_xavier_dla_bundle(exported, tmp_path):
    onnx_path = exported("xavier-dla")
    with pytest.raises(UserError, match="FP16/INT8 only"):
        deploy_deepstream(onnx_path, tmp_path / "fp32")
    ds = deploy_deepstream(onnx_path, tmp_path / "ds", precision="fp16")
    text = _script(ds)
    assert '"--useDLACore=${DLA_CORE:-0}"' in text and "--allowGPUFallback" in text and "--fp16" in text
    assert "--stronglyTyped" not in text and "--memPoolSize=workspace:1024 " in text + " "  # TensorRT 8: plain MiB
    assert "xavier-dla" in text and "TensorRT 8.5.2" in text
    # TensorRT 8.5's trtexec has --buildOnly only: --skipInference would be an "Unknown option" there
    assert "--buildOnly" in text and "--skipInference" not in text
    props = nvinfer_properties(ds.config)  # deploy also ran the nvinfer key checker on it
    assert props["enable-dla"] == "1" and props["use-dla-core"] == "0"
    assert ds.engine_name.endswith("_b1_dla0_fp16.engine") and props["model-engine-file"] == ds.engine_name


def test_gpu_targets_keep_their_flags(exported, tmp_path):
    jp6 = _script(deploy_deepstream(exported("jetpack6"), tmp_path / "jp6", precision="fp16"))
    assert "--memPoolSize=workspace:1024M" in jp6 and "useDLACore" not in jp6 and "jetpack6" in jp6
    assert "--skipInference" in jp6 and "--buildOnly" not in jp6  # TensorRT 10: --buildOnly is gone
    tr = deploy_triton(exported("jetpack5"), tmp_path / "tr")
    assert "TensorRT 8.5.2" in _script(tr) and "useDLACore" not in _script(tr)
    assert "enable-dla" not in (tmp_path / "jp6" / "nvinfer_config.txt").read_text()


def test_build_only_flag_per_tensorrt():
    """trtexec's own parsers (NVIDIA/TensorRT samples/common/sampleOptions.cpp): 8.5.2 has only
    --buildOnly, 8.6 has both (--buildOnly deprecated), 10.3 only --skipInference."""
    from segexport.core.targets import get_target
    from segexport.deploy.trtexec import build_only_flag

    assert [build_only_flag(get_target(t)) for t in ("jetpack5", "xavier-dla", "jetpack6.0", "jetpack6", "orin-dla")] \
        == ["--buildOnly", "--buildOnly", "--skipInference", "--skipInference", "--skipInference"]
