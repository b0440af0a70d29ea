"""What an exported model costs where it ships, measured on its files: latency in onnxruntime on this CPU (batch 1
and 64, 1 thread), peak activation memory, and an int8 copy written beside it with its test accuracy.

int8: onnxruntime static quantization (QDQ, int8 weights per tensor, uint8 activations, min-max calibration on
training images); its accuracy is measured on the test split beside fp32's. Per-tensor weights with uint8
activations lost the least accuracy of the schemes tried (RESULTS.md, "Deployment figures").
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from search import measure as M
from search.catalogue import Meta
from search.record import Deployment, Int8Figures, Latency

CALIBRATION_IMAGES = 256


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
    s = M.session(model)
    name = s.get_inputs()[0].name
    right = 0
    for i in range(0, len(x), batch):
        logits = s.run(None, {name: (x[i:i + batch].float() / 255).cpu().numpy()})[0]
        right += int((torch.from_numpy(logits).argmax(1) == y[i:i + batch].cpu()).sum())
    return right / max(1, len(x))


def measure_export(onnx_path: Path, model: nn.Module, meta: Meta, test, calibration: torch.Tensor | None) -> Deployment:
    """The deployment figures of an exported model: latency (batch 1 and 64), peak memory, and with `calibration`
    images an int8 copy, written beside the fp32 file as model.int8.onnx, with its size and both accuracies."""
    peak = M.peak_memory(model, meta)
    int8 = None
    if calibration is not None:
        q = quantize_int8(onnx_path, onnx_path.with_name("model.int8.onnx"), calibration)
        int8 = Int8Figures(q.name, q.stat().st_size, round(onnx_accuracy(q, test.x, test.y), 4),
                           round(onnx_accuracy(onnx_path, test.x, test.y), 4), *_latencies(q, meta))
    return Deployment(*_latencies(onnx_path, meta), peak["fp32"], peak["int8"], onnx_path.stat().st_size, int8)


def _latencies(onnx: Path, meta: Meta) -> tuple[Latency, Latency]:
    return Latency(**M.latency_ms(onnx, meta, 1)), Latency(**M.latency_ms(onnx, meta, 64))
