"""Run the judge's ONNX graph in PyTorch, so that it can segment on a CUDA GPU.

ONNX Runtime runs the judge on the CPU (its wheel on PyPI has no GPU provider); on a lent GPU
machine the judge then dominates an audit (BENCHMARKS.md "GPU"), while the generators train in
minutes. This module executes the
same graph, node by node, with torch operators. It is written here because the library that
would do it (onnx2torch) requires torchvision, which this project must not install beside its
CPU torch; the judge uses only the ~20 operators below, and an unknown operator is an error,
never a silent skip.

Semantics follow the ONNX operator specification at the graph's opset (12): ``Softmax``
before opset 13 coerces its input to 2D at ``axis``; integer ``Div`` truncates; ``Slice``
clamps its bounds like Python slicing. Shape arithmetic (``Shape``/``Gather``/``Cast``/...)
stays in small int64 CPU tensors; activations live on the module's device.
``tests/cohorts/judge/test_torch_graph.py`` checks the outputs against ONNX Runtime.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from audit.core.errors import UserError

# ONNX TensorProto data types -> torch
_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


def _pads2d(pads: list[int]) -> tuple[int, int] | list[int]:
    """ONNX ``[top, left, bottom, right]`` -> torch's symmetric padding, or the F.pad list."""
    t, l, b, r = pads
    return (t, l) if (t, l) == (b, r) else [l, r, t, b]


def _conv(x, w, b=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, **_):
    p = _pads2d(list(pads))
    if isinstance(p, list):
        x, p = F.pad(x, p), (0, 0)
    return F.conv2d(x, w, b, stride=tuple(strides), padding=p, dilation=tuple(dilations), groups=group)


def _conv_transpose(x, w, b=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                    output_padding=(0, 0), output_shape=None, **_):
    if output_shape is not None:
        raise UserError("judge graph: ConvTranspose with output_shape is not supported by the torch runner")
    p = _pads2d(list(pads))
    y = F.conv_transpose2d(x, w, b, stride=tuple(strides), padding=0 if isinstance(p, list) else p,
                           output_padding=tuple(output_padding), groups=group, dilation=tuple(dilations))
    if isinstance(p, list):  # asymmetric pads remove rows/columns from the full output
        l, r, t, bt = p
        y = y[..., t: y.shape[-2] - bt, l: y.shape[-1] - r]
    return y


def _max_pool(x, *, kernel_shape, strides=None, pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0, **_):
    p = _pads2d(list(pads))
    if isinstance(p, list):
        x, p = F.pad(x, p, value=-math.inf), (0, 0)
    return F.max_pool2d(x, tuple(kernel_shape), tuple(strides or kernel_shape), p, tuple(dilations), bool(ceil_mode))


def _batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, **_):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(epsilon))


def _div(a, b, **_):
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _gather(data, idx, *, axis=0, **_):
    axis = axis % data.dim()
    flat = data.index_select(axis, idx.reshape(-1).to(data.device).long())
    return flat.reshape(data.shape[:axis] + idx.shape + data.shape[axis + 1:])


def _unsqueeze(x, *, axes, **_):
    for a in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(a)
    return x


def _slice(data, starts, ends, axes=None, steps=None, **_):
    n = data.dim()
    starts, ends = starts.tolist(), ends.tolist()
    axes = list(range(len(starts))) if axes is None else axes.tolist()
    steps = [1] * len(starts) if steps is None else steps.tolist()
    index: list[Any] = [slice(None)] * n
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st <= 0:
            raise UserError("judge graph: Slice with a non-positive step is not supported by the torch runner")
        index[a % n] = slice(s, e, st)
    return data[tuple(index)]


def _softmax(x, *, axis=1, opset: int = 12, **_):
    axis = axis % x.dim()
    if opset >= 13:
        return torch.softmax(x, dim=axis)
    shape = x.shape
    return torch.softmax(x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1), dim=1).reshape(shape)


def _flatten(x, *, axis=1, **_):
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "BatchNormalization": _batch_norm,
    "Sigmoid": lambda x, **_: torch.sigmoid(x),
    "Relu": lambda x, **_: torch.relu(x),
    "Mul": lambda a, b, **_: a * b,
    "Add": lambda a, b, **_: a + b,
    "Sub": lambda a, b, **_: a - b,
    "Div": _div,
    "Concat": lambda *xs, axis, **_: torch.cat(xs, dim=axis),
    "Shape": lambda x, **_: torch.tensor(tuple(x.shape), dtype=torch.int64),
    "Gather": _gather,
    "Cast": lambda x, *, to, **_: x.to(_DTYPES[to]),
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Transpose": lambda x, *, perm, **_: x.permute(*perm),
    "Softmax": _softmax,
    "GlobalAveragePool": lambda x, **_: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "Flatten": _flatten,
}


class TorchGraph(torch.nn.Module):
    """An ONNX ``ModelProto`` as a torch module: ``forward(input) -> [outputs...]`` in graph order."""

    def __init__(self, model: Any) -> None:
        super().__init__()

        g = model.graph
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=12)
        unknown = sorted({n.op_type for n in g.node if n.op_type not in OPS and n.op_type != "Constant"})
        if unknown:
            raise UserError(f"judge graph: operators {unknown} are not supported by the torch runner")
        self._names: dict[str, str] = {}
        for i, init in enumerate(g.initializer):
            key = f"w{i}"
            self.register_buffer(key, torch.from_numpy(np.array(numpy_helper.to_array(init))))
            self._names[init.name] = key
        self.constants: dict[str, torch.Tensor] = {}
        self.nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for n in g.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Constant":
                self.constants[n.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(attrs["value"])))
                continue
            if n.op_type == "Softmax":
                attrs["opset"] = self.opset
            self.nodes.append((n.op_type, list(n.input), list(n.output), attrs))
        self.input_name = g.input[0].name
        self.output_names = [o.name for o in g.output]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values: dict[str, torch.Tensor] = {self.input_name: x, **self.constants}
        for name, key in self._names.items():
            values[name] = getattr(self, key)
        for op, inputs, outputs, attrs in self.nodes:
            args = [values[i] if i else None for i in inputs]
            while args and args[-1] is None:  # trailing optional inputs left out
                args.pop()
            values[outputs[0]] = OPS[op](*args, **attrs)
        return [values[o] for o in self.output_names]
