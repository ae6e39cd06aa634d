"""Graph-level work on the judge ONNX model: a features output and int8 static quantisation.

* :func:`add_feature_output` exposes the encoder's deepest tensor (the input of the
  bottleneck dense block, ``/transDownBlocks.4/maxpool/MaxPool_output_0``: 288 channels at
  8 x 8 for a 256 x 256 input) as an extra graph output ``features``, global-average-pooled
  to ``(N, 288)``. Segmentation and features then come out of the same forward pass (the
  fidelity audit uses them as a domain-aware embedding). ONNX Runtime only computes what is requested, so
  sessions that ask for ``output`` alone pay nothing for it.
* :func:`pad_growth_channels` is an exact rewrite (output identical to ~1e-6) that pads the
  12-channel dense-layer convolutions to 16 channels, which int8 kernels handle far better.
* :func:`build_int8` performs static post-training quantisation with
  ``onnxruntime.quantization`` (QOperator format, per-channel int8 weights, uint8
  activations, MinMax calibration on phantom slices preprocessed exactly like real input).
  The source model is opset 12, where ``DequantizeLinear`` has no ``axis``; per-channel
  quantisation needs opset >= 13, so it is converted to opset 17 first.

Dice of the variants (held-out phantom ED/ES slices, 5 subjects, Dice RV/MYO/LV; fp32 gives
0.962/0.921/0.977). The 16-channel padding leaves Dice as it is and cuts the CPU time per slice,
and the chosen variant is also the fastest of those that keep Dice (CPU time per variant:
BENCHMARKS.md "Judge network"):

==================================================  ======================
variant                                             Dice RV/MYO/LV
==================================================  ======================
everything quantised (QLinearConcat, BN in fp32)    0.402 / 0.815 / 0.959
BN rewritten as depthwise conv, all int8            0.103 / 0.780 / 0.926
... plus 16-channel padding                         0.103 / 0.780 / 0.927
Concat + BN kept fp32 (Conv/Sigmoid/Mul/MaxPool)    0.957 / 0.912 / 0.971
... plus 16-channel padding                         0.956 / 0.912 / 0.971
... plus first/last conv fp32 (**chosen**)          0.962 / 0.921 / 0.977
==================================================  ======================

Why quantising the concatenations fails: a DenseNet concatenates feature maps of very
different ranges and then applies a *per-channel* BatchNormalization; a per-tensor uint8
scale on the concatenation (which QLinearConcat, and a BN-as-depthwise-conv input, impose)
crushes the small-range channels before BN can rescale them. Keeping Concat and BN in fp32
quantises only after BN, where ranges are normalised. QOperator format is used because QDQ
format was slower for the all-int8 graph.
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
from onnx import helper, numpy_helper, version_converter

from audit.core.atomic import atomic_write_bytes

__all__ = [
    "FEATURE_TENSOR",
    "FEATURE_OUTPUT",
    "QUANT_CONFIG",
    "add_feature_output",
    "pad_growth_channels",
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
    "rewrites": ["pad_growth_channels"],
    # Concat and BatchNormalization stay fp32 (see build_int8)
    "op_types_to_quantize": ["Conv", "Sigmoid", "Mul", "MaxPool"],
    # the 1-channel input conv and the 1x1 classifier are cheap and the most sensitive
    "nodes_to_exclude": ["/firstconv/Conv", "/finalConv/Conv"],
    "calibration_slices_per_merge": 16,
}


def pad_growth_channels(model: onnx.ModelProto, block: int = 16) -> onnx.ModelProto:
    """Exactly pad every convolution whose output channel count is not a multiple of ``block``.

    The FC-DenseNet's dense layers have a growth rate of 12: each 3x3 conv makes only 12
    channels, a shape that int8 GEMM kernels (which work on 16-wide blocks of output channels
    with AVX-512 VNNI) handle poorly, and every concatenation of 12-channel pieces leaves the
    blocked layout. We append zero filters (zero bias) to such convs, and give every consumer
    zero weights (convs) or an identity-like entry (BatchNormalization: scale 1, shift 0,
    mean 0, var 1) for the padded channels. Padded channels are therefore exactly zero
    everywhere, and the network's output is unchanged (max |difference| ~1e-7 measured);
    only the memory layout gets friendlier. Measured effect in BENCHMARKS.md.

    Channel bookkeeping: for every tensor we keep ``cmap`` (for each channel of the padded
    tensor, its index in the original tensor, or -1 for padding) and propagate it through
    Concat (axis 1), BN/Sigmoid/Mul/MaxPool/Slice (channel-preserving) and into the input
    side of Conv/ConvTranspose weights.
    """
    g = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    new: dict[str, np.ndarray] = {}
    cmap: dict[str, np.ndarray] = {g.input[0].name: np.arange(1)}

    def arr(name: str) -> np.ndarray:
        return new[name] if name in new else init[name]

    for n in g.node:
        ins = list(n.input)
        if n.op_type == "Conv" and ins[0] in cmap and ins[1] in init:
            w = _spread(arr(ins[1]), cmap[ins[0]], 1)
            groups = next((a.i for a in n.attribute if a.name == "group"), 1)
            if groups != 1:
                raise ValueError(f"pad_growth_channels: grouped conv {n.name} not supported")
            cout = w.shape[0]
            extra = (-cout) % block if cout > block // 2 else 0
            m = np.arange(cout)
            if extra:
                w = np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)])
                m = np.concatenate([m, -np.ones(extra, dtype=np.int64)])
                if len(ins) > 2:
                    new[ins[2]] = np.concatenate([arr(ins[2]), np.zeros(extra, arr(ins[2]).dtype)])
            new[ins[1]] = w
            cmap[n.output[0]] = m
        elif n.op_type == "ConvTranspose" and ins[0] in cmap:
            w = _spread(arr(ins[1]), cmap[ins[0]], 0)
            new[ins[1]] = w
            cmap[n.output[0]] = np.arange(w.shape[1])
        elif n.op_type == "BatchNormalization" and ins[0] in cmap:
            m = cmap[ins[0]]
            for name, fill in zip(ins[1:5], (1.0, 0.0, 0.0, 1.0)):
                v = arr(name)
                new[name] = np.where(m >= 0, v[np.maximum(m, 0)], fill).astype(v.dtype)
            cmap[n.output[0]] = m
        elif n.op_type == "Concat" and all(i in cmap for i in ins):
            cmap[n.output[0]] = _concat_map(n, [cmap[i] for i in ins])
        elif n.op_type in ("Sigmoid", "Mul", "MaxPool", "Slice") and ins[0] in cmap:
            if n.op_type == "Mul" and cmap.get(ins[1]) is not None and not np.array_equal(cmap[ins[0]], cmap[ins[1]]):
                raise ValueError(f"pad_growth_channels: {n.name} multiplies differently padded tensors")
            cmap[n.output[0]] = cmap[ins[0]]
    for t in g.initializer:
        if t.name in new:
            t.CopyFrom(numpy_helper.from_array(new[t.name], t.name))
    del g.value_info[:]  # stale intermediate shapes; ORT re-infers them
    return model


def _spread(w: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """``w`` with its ``axis`` laid out per channel map ``m`` (original index per channel, -1 = a
    zero padding channel)."""
    shape = list(w.shape)
    shape[axis] = len(m)
    out = np.zeros(shape, w.dtype)
    keep = np.flatnonzero(m >= 0)
    idx_out = [slice(None)] * w.ndim
    idx_out[axis] = keep
    idx_in = [slice(None)] * w.ndim
    idx_in[axis] = m[keep]
    out[tuple(idx_out)] = w[tuple(idx_in)]
    return out


def _concat_map(node: onnx.NodeProto, maps: list[np.ndarray]) -> np.ndarray:
    """Channel map of a channel concatenation of tensors with channel maps ``maps``."""
    if next(a.i for a in node.attribute if a.name == "axis") != 1:
        raise ValueError(f"pad_growth_channels: concat {node.name} is not along channels")
    parts, off = [], 0
    for m in maps:
        parts.append(np.where(m >= 0, m + off, -1))
        off += int((m >= 0).sum())
    return np.concatenate(parts)


REWRITES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {"pad_growth_channels": pad_growth_channels}


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


def prepared_fp32_bytes(fp32_path: Path, opset: int | None = None, rewrites: tuple[str, ...] = ()) -> bytes:
    """The fp32 judge with the features output (optionally converted to ``opset`` and with
    exact graph ``rewrites`` from :data:`REWRITES` applied), serialised."""
    model = onnx.load(str(fp32_path))
    if opset is not None and model.opset_import[0].version < opset:
        model = version_converter.convert_version(model, opset)
    for name in rewrites:
        model = REWRITES[name](model)
    model = add_feature_output(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def int8_cache_key(fp32_sha256: str, calibration_id: str) -> str:
    """Key of the int8 model: fp32 hash + quantisation config + calibration data identity."""
    import onnxruntime  # lazy: onnxruntime only when the judge network runs

    blob = json.dumps({"fp32": fp32_sha256, "quant": QUANT_CONFIG, "calibration": calibration_id,
                       "onnxruntime": onnxruntime.__version__.rsplit(".", 1)[0]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merge_chunk(n: int, preferred: int) -> int:
    for c in range(preferred, 1, -1):
        if n % c:
            return c
    return max(n + 1, 2)


def build_int8(fp32_path: Path, out_path: Path, calibration: Callable[[], np.ndarray]) -> Path:
    """Quantise the judge statically to int8 and write it atomically to ``out_path``.

    ``calibration()`` returns preprocessed network inputs ``(N, 1, 256, 256)`` float32 in
    [0, 1]; every slice is fed once to collect MinMax activation ranges.
    """
    from onnxruntime.quantization import (  # lazy: onnxruntime only when the judge network runs
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import (
        quant_pre_process,  # lazy: onnxruntime only when the judge network runs
    )

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
        src.write_bytes(prepared_fp32_bytes(fp32_path, opset=QUANT_CONFIG["opset"], rewrites=tuple(QUANT_CONFIG["rewrites"])))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre), str(dst), _Reader(),
            quant_format=QuantFormat.QOperator,
            per_channel=QUANT_CONFIG["per_channel"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(QUANT_CONFIG["op_types_to_quantize"]),
            nodes_to_exclude=list(QUANT_CONFIG["nodes_to_exclude"]),
            # merge ranges every few slices: keeping every intermediate tensor of 96 slices at
            # 256 x 256 would take several GiB (the chunk must not divide N: ORT raises "No data
            # is collected" when the last chunk is empty)
            extra_options={"CalibMaxIntermediateOutputs": _merge_chunk(len(data), QUANT_CONFIG["calibration_slices_per_merge"])},
        )
        atomic_write_bytes(out_path, dst.read_bytes())
    return out_path
