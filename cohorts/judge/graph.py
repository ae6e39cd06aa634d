"""Graph-level work on the judge ONNX model: a features output and int8 static quantisation.

* :func:`add_feature_output` exposes the encoder's deepest tensor (the input of the
  bottleneck dense block, ``/transDownBlocks.4/maxpool/MaxPool_output_0``: 288 channels at
  8 x 8 for a 256 x 256 input) as an extra graph output ``features``, global-average-pooled
  to ``(N, 288)``. Segmentation and features then come out of the same forward pass (issue
  10 uses them as a domain-aware embedding). ONNX Runtime only computes what is requested, so
  sessions that ask for ``output`` alone pay nothing for it.
* :func:`build_int8` performs static post-training quantisation with
  ``onnxruntime.quantization`` (per-channel int8 weights, uint8 activations, QOperator
  format, MinMax calibration on phantom-like slices preprocessed exactly like real input).
  The source model is opset 12, where ``DequantizeLinear`` has no ``axis``; per-channel
  quantisation needs opset >= 13, so it is converted to opset 17 first.

Why QOperator + u8/s8: on this CPU (AVX-512 VNNI) it was the fastest combination measured
(benchmarks/judge_speed.py; figures in BENCHMARKS.md). Per-tensor weights lose accuracy on
the many thin 12-channel dense-block convolutions, so per-channel is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, version_converter

from audit.atomic import atomic_write_bytes

__all__ = [
    "FEATURE_TENSOR",
    "FEATURE_OUTPUT",
    "QUANT_CONFIG",
    "add_feature_output",
    "prepared_fp32_bytes",
    "int8_cache_key",
    "build_int8",
]

log = logging.getLogger(__name__)

FEATURE_TENSOR = "/transDownBlocks.4/maxpool/MaxPool_output_0"
FEATURE_OUTPUT = "features"
#: Everything that changes the int8 model; hashed into its cache key.
QUANT_CONFIG: dict = {
    "version": 1,
    "opset": 17,
    "format": "QOperator",
    "per_channel": True,
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "calibrate_method": "MinMax",
    "features_output": FEATURE_TENSOR,
}


def add_feature_output(model: onnx.ModelProto, tensor: str = FEATURE_TENSOR) -> onnx.ModelProto:
    """Append ``GlobalAveragePool -> Flatten`` of ``tensor`` as graph output ``features``."""
    g = model.graph
    if any(o.name == FEATURE_OUTPUT for o in g.output):
        return model
    if not any(tensor in n.output for n in g.node):
        raise ValueError(f"judge graph has no tensor {tensor!r}")
    pooled = f"{FEATURE_OUTPUT}_gap"
    g.node.append(helper.make_node("GlobalAveragePool", [tensor], [pooled], name="features/GlobalAveragePool"))
    g.node.append(helper.make_node("Flatten", [pooled], [FEATURE_OUTPUT], name="features/Flatten", axis=1))
    g.output.append(helper.make_tensor_value_info(FEATURE_OUTPUT, onnx.TensorProto.FLOAT, ["batch_size", None]))
    return model


def prepared_fp32_bytes(fp32_path: Path, opset: int | None = None) -> bytes:
    """The fp32 judge with the features output (optionally converted to ``opset``), serialised."""
    model = onnx.load(str(fp32_path))
    if opset is not None and model.opset_import[0].version < opset:
        model = version_converter.convert_version(model, opset)
    model = add_feature_output(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def int8_cache_key(fp32_sha256: str, calibration_id: str) -> str:
    """Key of the int8 model: fp32 hash + quantisation config + calibration data identity."""
    import onnxruntime

    blob = json.dumps({"fp32": fp32_sha256, "quant": QUANT_CONFIG, "calibration": calibration_id,
                       "onnxruntime": onnxruntime.__version__.rsplit(".", 1)[0]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_int8(fp32_path: Path, out_path: Path, calibration: Callable[[], np.ndarray]) -> Path:
    """Quantise the judge statically to int8 and write it atomically to ``out_path``.

    ``calibration()`` returns preprocessed network inputs ``(N, 1, 256, 256)`` float32 in
    [0, 1]; every slice is fed once to collect MinMax activation ranges.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.asarray(calibration(), dtype=np.float32)
    if data.ndim != 4 or data.shape[1:] != (1, 256, 256) or len(data) == 0:
        raise ValueError(f"calibration data must be (N, 1, 256, 256), got {data.shape}")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(data[i : i + 1] for i in range(len(data)))

        def get_next(self) -> dict | None:
            x = next(self._it, None)
            return None if x is None else {"input": x}

    log.info("quantising the judge to int8 (%d calibration slices); this takes about a minute", len(data))
    with tempfile.TemporaryDirectory(prefix="cmr-audit-int8-") as tmp:
        src, pre, dst = Path(tmp, "src.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(prepared_fp32_bytes(fp32_path, opset=QUANT_CONFIG["opset"]))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre), str(dst), _Reader(),
            quant_format=QuantFormat.QOperator,
            per_channel=QUANT_CONFIG["per_channel"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        atomic_write_bytes(out_path, dst.read_bytes())
    return out_path
