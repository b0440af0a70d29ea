"""What a model costs where it ships: latency in onnxruntime on this CPU, peak activation memory, and an int8 copy.

- latency: one image and a batch of 64 through onnxruntime with 1 thread (intra- and inter-op), after warm-up.
  Timings on a shared machine are only ever slowed by the neighbours, never sped up: the runs are timed in
  blocks, each block's median taken, and the fastest block's median reported (with the blocks' spread), so a
  burst of other work moves the figure little.
- peak memory: the largest sum of activation tensors live at once in a forward pass at batch 1, for a runtime that
  runs one op at a time, frees a tensor after its last use, runs elementwise ops (BN, ReLU, add) in place when their
  input dies there and shares memory for views (flatten). Weights are not activations: they are `params`.
- int8: onnxruntime static quantization (QDQ, int8 weights per tensor, uint8 activations, min-max calibration on
  training images); its accuracy is measured on the test split beside fp32's. Per-tensor weights: on three
  winners of 2k-8k params (separable convs) they lost 0.9, 0.6 and -0.1 pt, per-channel weights 2.3 and 9.5 pt
  with uint8 activations, 9.3 and 1.6 with symmetric int8 ones (RESULTS.md, "Deployment figures").
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search.data import Meta

LATENCY_BLOCKS = 5
CALIBRATION_IMAGES = 256
# modules and functions whose output may overwrite their input (same shape) when the input dies there
IN_PLACE_MODULES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU,
                    nn.Sigmoid, nn.Dropout, nn.Dropout2d, nn.GELU, nn.LeakyReLU)
ALIAS_MODULES = (nn.Flatten, nn.Identity)
IN_PLACE_FUNCTIONS = ("add", "mul", "relu", "sigmoid", "hardswish")
ALIAS_METHODS = ("view", "reshape", "flatten", "squeeze", "unsqueeze")


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
    from search.export import onnx_program

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


def quantize_int8(fp32: Path, out: Path, calibration: torch.Tensor) -> Path:
    """Static int8 quantization of the ONNX file `fp32` (QDQ; int8 weights per tensor, uint8 activations),
    calibrated on `calibration` (uint8 training images, N x C x H x W); -> `out`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self, x: torch.Tensor):
            self.batches = iter([{"pixels": (x[i:i + 32].float() / 255).numpy()} for i in range(0, len(x), 32)])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Images(calibration[:CALIBRATION_IMAGES].cpu()),
                        quant_format=QuantFormat.QDQ, per_channel=False, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    return out


def onnx_accuracy(model: str | Path, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Accuracy of an ONNX file (pixels in [0, 1] in, logits out) on uint8 images `x` with labels `y`."""
    s = session(model)
    name = s.get_inputs()[0].name
    right = 0
    for i in range(0, len(x), batch):
        logits = s.run(None, {name: (x[i:i + batch].float() / 255).cpu().numpy()})[0]
        right += int((torch.from_numpy(logits).argmax(1) == y[i:i + batch].cpu()).sum())
    return right / max(1, len(x))


def figures(onnx_path: Path, model: nn.Module, meta: Meta, test, calibration: torch.Tensor | None) -> dict:
    """The deployment figures of an exported model: latency (batch 1 and 64), peak memory, and with `calibration`
    images the int8 model (written beside the fp32 one as model.int8.onnx), its size and both accuracies."""
    out = {"latency_ms": {"batch_1": latency_ms(onnx_path, meta, 1), "batch_64": latency_ms(onnx_path, meta, 64)},
           "peak_memory_bytes": peak_memory(model, meta), "onnx_bytes": onnx_path.stat().st_size}
    if calibration is not None:
        q = quantize_int8(onnx_path, onnx_path.with_name("model.int8.onnx"), calibration)
        out["int8"] = {"file": q.name, "bytes": q.stat().st_size,
                       "test_acc": round(onnx_accuracy(q, test.x, test.y), 4),
                       "fp32_test_acc": round(onnx_accuracy(onnx_path, test.x, test.y), 4),
                       "latency_ms": {"batch_1": latency_ms(q, meta, 1), "batch_64": latency_ms(q, meta, 64)}}
    return out

