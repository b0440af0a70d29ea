"""`nas-predict MODEL_DIR PATH... [--csv FILE] [--top K]`: the exported model on new images.

MODEL_DIR is an export folder (studies/NAME/best, or nas-export's --out): its model.onnx runs in onnxruntime,
in batches; its class names and input shape come from the ONNX file's metadata (model_card.json for older
exports). Images are decoded, converted and resized by images.py, the code that made the training tensors.
An unreadable image is one line on stderr and counted; the others go on.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from search import images as I
from search.errors import UserError

BATCH = 256


def model_input(model_dir: Path, session) -> tuple[int, tuple[int, int], list[str]]:
    """(channels, (height, width), class names) of an exported model."""
    props = session.get_modelmeta().custom_metadata_map
    if "input" in props and "class_names" in props:
        shape = json.loads(props["input"])
        return shape["channels"], (shape["height"], shape["width"]), json.loads(props["class_names"])
    card_file = model_dir / "model_card.json"
    if not card_file.is_file():
        raise UserError(f"{model_dir}: model.onnx has no input metadata and there is no model_card.json beside it")
    import models

    card = json.loads(card_file.read_text())
    c = card["config"]
    names = card.get("class_names") or [str(i) for i in range(c["num_classes"])]
    return c["in_channels"], models.hw(c["image_size"]), names


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, and every image under the folders named (recursive, sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and I.is_image(f)
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder (expected image files or folders of them)")
    return out


def predict(model_dir: str, paths: list[str], csv_path: str | None = None, top: int = 1) -> int:
    import onnxruntime as ort

    folder = Path(model_dir)
    onnx_file = folder / "model.onnx"
    if not onnx_file.is_file():
        raise UserError(f"{folder}: no model.onnx (expected an export folder such as studies/NAME/best)")
    files = image_files(paths)
    if not files:
        raise UserError(f"{', '.join(paths)}: no images (expected files ending in {', '.join(I.EXTENSIONS)})")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    channels, size, names = model_input(folder, session)
    top = max(1, min(top, len(names)))
    out = open(csv_path, "w", newline="") if csv_path else sys.stdout
    writer = csv.writer(out)
    writer.writerow(["file", "label", "probability"] + [f"{k}_{i}" for i in range(2, top + 1) for k in ("label", "probability")])
    unreadable = 0
    advance = I.progress_bar(len(files), "predicting")
    try:
        for start in range(0, len(files), BATCH):
            batch, kept = [], []
            for f in files[start:start + BATCH]:
                try:
                    batch.append(I.decode(f, channels, size))
                    kept.append(f)
                except UserError as e:
                    sys.stderr.write(f"nas-predict: {e}\n")
                    unreadable += 1
            if batch:
                x = torch.stack(batch).float().div_(255).numpy()
                logits = session.run(None, {session.get_inputs()[0].name: x})[0]
                p = _softmax(logits)
                order = np.argsort(-p, axis=1)[:, :top]
                for f, row, ranks in zip(kept, p, order):
                    writer.writerow([str(f)] + [v for r in ranks for v in (names[r], f"{row[r]:.6f}")])
            if advance:
                advance(min(BATCH, len(files) - start))
    finally:
        if csv_path:
            out.close()
    done = len(files) - unreadable
    sys.stderr.write(f"nas-predict: {done} image(s) predicted{f', {unreadable} unreadable (named above)' if unreadable else ''}"
                     f"{f'; written to {csv_path}' if csv_path else ''}\n")
    return 0 if done else 2


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)

