"""Elementwise dropout whose mask costs a quarter of the random numbers.

`nn.Dropout` draws one random number per activation; on a CPU that is a large share of a small convnet's
training step (tests/benchmarks/RESULTS.md, "Dropout mask"). Here each 64-bit random word gives four 16-bit
uniforms: the same Bernoulli(1 - p) keep mask per element (p resolved to 1/65,536), the same 1 / (1 - p) scaling,
from the same seeded global generator, for a quarter of the random numbers. In eval mode it is the identity, so
exported models (ONNX, torch.export) hold no trace of it.
"""
from __future__ import annotations

import torch
from torch import nn


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bernoulli(1 - p) booleans of `shape`: 16-bit slices of 64-bit random words against a threshold."""
    n = shape.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape) >= round(p * 65536) - 32768


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = keep_mask(torch.Size([x.numel()]), self.p, x.device)
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # the mask in x's own layout: a product of an NHWC and an NCHW tensor takes a slow strided path
            # (RESULTS.md, "Dropout mask")
            n, c, h, w = x.shape
            mask = mask.view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            mask = mask.view(x.shape)
        return x * mask.to(x.dtype).mul_(1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
