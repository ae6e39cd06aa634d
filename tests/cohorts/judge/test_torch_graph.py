"""The torch runner of the judge graph (GPU path) against ONNX Runtime, the reference.

Runs on the CPU (``backend="torch"``), so CI checks the same code that a GPU machine runs
with ``device="cuda"``; the GPU itself is exercised by the ``gpu`` tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.core.errors import UserError

pytestmark = [pytest.mark.judge, pytest.mark.slow]


@pytest.fixture(scope="module")
def pair():
    from cohorts.judge import Judge, phantom_slices

    sets = phantom_slices(n_subjects=1, seed=4242)
    images = np.concatenate([s.images for s in sets])[:6]
    spacing = sets[0].spacing[0]
    ort = Judge("fp32", progress=False)
    th = Judge("fp32", progress=False, backend="torch", batch_size=4, model_path=ort.fp32_path)  # 6 slices: one full and one partial batch
    return ort, th, images, spacing


def test_graph_outputs_match_onnxruntime():
    import onnx
    import onnxruntime

    from cohorts.judge.fetch import fetch_judge
    from cohorts.judge.graph import FEATURE_OUTPUT, prepared_fp32_bytes
    from cohorts.judge.torch_graph import TorchGraph

    blob = prepared_fp32_bytes(fetch_judge())
    x = np.random.default_rng(0).random((2, 1, 256, 256), dtype=np.float32)
    ref = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(["output", FEATURE_OUTPUT], {"input": x})
    with torch.no_grad():
        out = [t.numpy() for t in TorchGraph(onnx.load_from_string(blob)).eval()(torch.from_numpy(x))]
    assert [o.shape for o in out] == [r.shape for r in ref]
    np.testing.assert_allclose(out[0], ref[0], atol=1e-5)
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-4, atol=1e-5)


def test_judge_labels_and_features_match(pair):
    ort, th, images, spacing = pair
    a_lab, a_feat = ort.segment_and_features(images, spacing)
    b_lab, b_feat = th.segment_and_features(images, spacing)
    assert (a_lab == b_lab).mean() > 0.9999
    np.testing.assert_allclose(b_feat, a_feat, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(th.segment(images[0], spacing), b_lab[0])


def test_memo_keeps_backends_apart(pair):
    from cohorts.judge.memo import JudgeMemo

    ort, th, _, _ = pair
    assert JudgeMemo(ort)._prefix != JudgeMemo(th)._prefix


def test_unknown_operator_is_refused():
    import onnx
    from onnx import helper, TensorProto

    from cohorts.judge.torch_graph import TorchGraph

    node = helper.make_node("Erf", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(UserError, match="Erf"):
        TorchGraph(helper.make_model(graph))


def test_bad_backend_and_device(pair):
    from cohorts.judge import Judge

    path = pair[0].fp32_path
    with pytest.raises(UserError, match="backend"):
        Judge("fp32", backend="tensorrt", model_path=path)
    with pytest.raises(UserError, match="onnxruntime runs on the CPU"):
        Judge("fp32", backend="onnxruntime", device="cuda", model_path=path)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            Judge("fp32", device="cuda", model_path=path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_judge_matches_onnxruntime(pair):
    import time

    from cohorts.judge import Judge

    ort, _, images, spacing = pair
    gpu = Judge("int8", progress=False, device="cuda", batch_size=64, model_path=ort.fp32_path)
    assert gpu.precision == "fp32" and gpu.backend == "torch"
    a_lab, a_feat = ort.segment_and_features(images, spacing)
    b_lab, b_feat = gpu.segment_and_features(images, spacing)
    assert (a_lab == b_lab).mean() > 0.999  # TF32/cuDNN kernels vs ONNX Runtime's fp32
    np.testing.assert_allclose(b_feat, a_feat, rtol=1e-2, atol=1e-3)
    many = np.tile(images, (40, 1, 1))
    t0 = time.perf_counter()
    gpu.segment(many, spacing)
    print(f"GPU judge: {len(many) / (time.perf_counter() - t0):.1f} slices/s over {len(many)} slices")
