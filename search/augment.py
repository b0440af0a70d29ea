"""Batched augmentation on the training device: one call per batch, no PIL, no per-image Python.

Geometric and colour ops work on [0, 1] pixels (padding and rotation fill black, as torchvision does);
cutout runs after normalization so the cut square holds the mean colour (0), as in DeVries & Taylor.
Every op is off at its zero value. Parameters are the space's `train.augment` keys (record.Augment).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from search.record import Augment


def pixels(x: torch.Tensor, aug: Augment) -> torch.Tensor:
    """x: float (B, C, H, W) in [0, 1] -> augmented batch (every op but cutout), same shape and dtype."""
    b = x.shape[0]
    if aug.crop:
        x = random_crop(x, int(aug.crop))
    if aug.flip:
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if aug.rotate or aug.scale:
        x = random_affine(x, float(aug.rotate), float(aug.scale))
    if aug.brightness or aug.contrast:
        x = colour_jitter(x, float(aug.brightness), float(aug.contrast))
    return x


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by `pad` and cut a random HxW window per image (= a random translation up to `pad`)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    rows = (oy + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # indexing puts channels last


def random_affine(x: torch.Tensor, degrees: float, scale: float) -> torch.Tensor:
    """Rotate by U(-degrees, degrees) and zoom by U(1-scale, 1+scale), per image, bilinear."""
    b = x.shape[0]
    angle = (torch.rand(b, device=x.device) * 2 - 1) * math.radians(degrees)
    zoom = 1 + (torch.rand(b, device=x.device) * 2 - 1) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colour_jitter(x: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """Add U(-brightness, brightness) and scale contrast by U(1-contrast, 1+contrast), per image."""
    b = x.shape[0]
    if contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        factor = 1 + (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * contrast
        x = (x - mean) * factor + mean
    if brightness:
        x = x + (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * brightness
    return x.clamp(0, 1)


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size x size square at a random centre per image (may be clipped by the border)."""
    if not size:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    lo, hi = -(size // 2), size - size // 2
    inside = (ys - cy >= lo) & (ys - cy < hi) & (xs - cx >= lo) & (xs - cx < hi)  # (B, H, W)
    return x.masked_fill(inside[:, None], 0.0)
