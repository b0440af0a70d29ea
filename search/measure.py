"""Measuring a model: parameters, MACs, peak activation memory, its deployable form and ONNX program, onnxruntime
sessions and latency. A leaf that the budget (before training), the deployment figures and the export all use.

- params: trainable parameters, exact. MACs: multiply-accumulates for one image as fvcore counts them (fvcore calls
  them "flops" but counts one multiply-add as 1).
- latency: one image (or a batch) through onnxruntime with 1 thread (intra- and inter-op), after warm-up. Timings
  on a shared machine are only ever slowed by the neighbours, never sped up: the runs are timed in blocks, each
  block's median taken, and the fastest block's median reported (with the blocks' spread), so a burst of other
  work moves the figure little.
- peak memory: the largest sum of activation tensors live at once in a forward pass at batch 1, for a runtime that
  runs one op at a time, frees a tensor after its last use, runs elementwise ops (BN, ReLU, add) in place when their
  input dies there and shares memory for views (flatten). Weights are not activations: they are `params`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search.catalogue import Meta

logging.getLogger("fvcore").setLevel(logging.ERROR)  # it warns about every op it does not count (relu, pool)
warnings.filterwarnings("ignore", message=r".*torch\.jit\.(script|trace).*deprecated")  # fvcore traces with jit

LATENCY_BLOCKS = 5
# modules and functions whose output may overwrite their input (same shape) when the input dies there
IN_PLACE_MODULES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU,
                    nn.Sigmoid, nn.Dropout, nn.Dropout2d, nn.GELU, nn.LeakyReLU)
ALIAS_MODULES = (nn.Flatten, nn.Identity)
IN_PLACE_FUNCTIONS = ("add", "mul", "relu", "sigmoid", "hardswish")
ALIAS_METHODS = ("view", "reshape", "flatten", "squeeze", "unsqueeze")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, meta: Meta) -> int:
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()  # tracing in train mode would update BatchNorm's running statistics
    try:
        with torch.no_grad():
            x = torch.zeros(1, meta.channels, meta.height, meta.width, device=next(model.parameters()).device)
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())
    finally:
        model.train(was_training)


def peak_activation_elements(model: nn.Module, meta: Meta) -> int:
    """Peak number of activation elements live at once at batch 1 (the input image included); see the module
    docstring for the runtime it assumes."""
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    model = model.cpu().eval()
    graph = symbolic_trace(model)
    with torch.no_grad():
        ShapeProp(graph).propagate(torch.zeros(1, meta.channels, meta.height, meta.width))
    nodes = [n for n in graph.graph.nodes if n.op != "output"]
    order = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max([order.get(u, len(nodes)) for u in n.users] or [order[n]]) for n in nodes}
    buffer, size, ends = {}, {}, {}  # node -> buffer id; buffer -> elements; buffer -> index of its last use
    live, peak = set(), 0
    for i, n in enumerate(nodes):
        meta_n = n.meta.get("tensor_meta")
        elements = int(np.prod(meta_n.shape)) if meta_n is not None and hasattr(meta_n, "shape") else 0
        kind = _kind(graph, n)
        dying = [buffer[a] for a in n.all_input_nodes if a in buffer and ends[buffer[a]] <= i]
        if kind == "alias" and n.all_input_nodes and n.all_input_nodes[0] in buffer:
            b = buffer[n.all_input_nodes[0]]
        elif kind == "in_place" and any(size[b] == elements for b in dying):
            b = next(b for b in dying if size[b] == elements)
        else:
            b = len(size)
            size[b] = elements
            live.add(b)
        buffer[n] = b
        ends[b] = max(ends.get(b, i), last_use[n])
        peak = max(peak, sum(size[x] for x in live))
        live = {x for x in live if ends[x] > i}
    return peak


def _kind(graph, n) -> str:
    if n.op == "call_module":
        module = graph.get_submodule(n.target)
        return "alias" if isinstance(module, ALIAS_MODULES) else "in_place" if isinstance(module, IN_PLACE_MODULES) else "new"
    name = getattr(n.target, "__name__", str(n.target))
    if n.op in ("call_function", "call_method") and name in ALIAS_METHODS:
        return "alias"
    return "in_place" if n.op in ("call_function", "call_method") and name.strip("_") in IN_PLACE_FUNCTIONS else "new"


def peak_memory(model: nn.Module, meta: Meta) -> dict:
    """{"fp32": bytes, "int8": bytes} of the activation peak at batch 1."""
    n = peak_activation_elements(model, meta)
    return {"fp32": 4 * n, "int8": n}


def onnx_bytes(wrapped: nn.Module, meta: Meta) -> bytes:
    """The model as nas-run exports it (torch.onnx, dynamo exporter, any batch size), in memory."""
    return onnx_program(wrapped, torch.zeros(2, meta.channels, meta.height, meta.width)).model_proto.SerializeToString()


def session(model: bytes | str | Path):
    """An onnxruntime CPU session with 1 thread: the deployment figure, and steady on a machine with neighbours."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"])


def latency_ms(model: bytes | str | Path, meta: Meta, batch: int = 1, seconds: float = 0.5) -> dict:
    """{"ms": the fastest block's median milliseconds per call, "spread": (slowest - fastest block) / fastest}
    for `batch` random images, after warm-up; about `seconds` of timing in LATENCY_BLOCKS blocks."""
    s = session(model)
    feed = {s.get_inputs()[0].name: np.random.default_rng(0).random((batch, meta.channels, meta.height, meta.width),
                                                                  dtype=np.float32)}
    t0 = time.perf_counter()
    for _ in range(3):
        s.run(None, feed)
    one = max((time.perf_counter() - t0) / 3, 1e-6)
    per_block = max(3, min(200, int(seconds / LATENCY_BLOCKS / one)))
    medians = []
    for _ in range(LATENCY_BLOCKS):
        times = []
        for _ in range(per_block):
            t = time.perf_counter()
            s.run(None, feed)
            times.append(time.perf_counter() - t)
        medians.append(statistics.median(times) * 1000)
    return {"ms": round(min(medians), 4), "spread": round(max(medians) / min(medians) - 1, 3)}


class Normalized(nn.Module):
    """The deployable form: pixels in [0, 1] -> normalize with the training statistics -> model."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


def quiet():
    """torch.onnx's dynamo exporter prints progress lines; keep them off the user's terminal."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    return stack


def onnx_program(wrapped: nn.Module, x: torch.Tensor):
    """torch.onnx's program for `wrapped` (pixels in, logits out, any batch size), not yet saved."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    with quiet():
        return torch.onnx.export(wrapped, (x,), None, input_names=["pixels"], output_names=["logits"],
                                 dynamic_shapes={"x": {0: batch}}, dynamo=True)


def deployed_latency_ms(model: nn.Module, meta: Meta) -> float:
    """One image through the model as exported (ONNX in onnxruntime, 1 thread): latency_ms at batch 1."""
    wrapped = Normalized(copy.deepcopy(model).cpu().eval(), [0.5] * meta.channels, [0.25] * meta.channels).eval()
    return latency_ms(onnx_bytes(wrapped, meta), meta, 1)["ms"]
