"""`nas-predict MODEL_DIR PATH... [--csv FILE] [--top K] [--evaluate]`: the exported model on new images.

MODEL_DIR is an export folder (studies/NAME/best, or nas-export's --out): its model.onnx runs in onnxruntime,
in batches; its class names, input shape and how its training images were decoded (orientation, background)
come from the ONNX file's metadata (model_card.json for older exports). Images are decoded, converted and resized
by decode.py and images.py, the code that made the training tensors. An unreadable image is one line on stderr
and counted; the others go on.

--evaluate: PATH is one labelled folder (a sub-folder per class, or train/ and test/ holding them: test/ is
evaluated). Accuracy, balanced accuracy, per-class recall and the confusion matrix are printed and written as
JSON beside the CSV (default predictions.csv and predictions.json); a class folder the model does not know is one
line, exit 2, before anything is written.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from search import images as I
from search import metrics
from search.decode import Decoding
from search.errors import UserError

BATCH = 256
CONFUSION_SHOWN = 20  # classes up to which the confusion matrix is printed (the JSON always has it)


@dataclass(frozen=True)
class ModelInput:
    """What an exported model takes: channels, (height, width), its class names, how image files are decoded."""

    channels: int
    size: tuple[int, int]
    names: list[str]
    decoding: Decoding
    decoding_recorded: bool


def model_input(model_dir: Path, session) -> ModelInput:
    props = session.get_modelmeta().custom_metadata_map
    if "input" in props and "class_names" in props:
        shape = json.loads(props["input"])
        decoding = json.loads(props["decoding"]) if "decoding" in props else None
        return ModelInput(shape["channels"], (shape["height"], shape["width"]), json.loads(props["class_names"]),
                          Decoding.from_json(decoding), decoding is not None)
    card_file = model_dir / "model_card.json"
    if not card_file.is_file():
        raise UserError(f"{model_dir}: model.onnx has no input metadata and there is no model_card.json beside it")
    import models

    card = json.loads(card_file.read_text())
    c = card["config"]
    names = card.get("class_names") or [str(i) for i in range(c["num_classes"])]
    return ModelInput(c["in_channels"], models.hw(c["image_size"]), names, Decoding.from_json(card.get("decoding")),
                      "decoding" in card)


def image_files(paths: list[str]) -> list[Path]:
    """The image files named, and every image under the folders named (recursive, sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += _images_under(p)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder (expected image files or folders of them)")
    return out


def _images_under(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and I.is_image(f)
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))


def labelled_files(paths: list[str], names: list[str]) -> tuple[Path, list[Path], list[int]]:
    """(the folder evaluated, its images, each one's class index in `names`) for --evaluate."""
    if len(paths) != 1 or not Path(paths[0]).is_dir():
        raise UserError(f"{' '.join(paths)}: --evaluate takes one folder with a sub-folder of images per class")
    root = Path(paths[0])
    if (root / "test").is_dir() and (root / "train").is_dir():
        root = root / "test"  # nas-run's layout: the test images are the ones to evaluate on
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root}: no class folders (--evaluate expects a sub-folder of images per class)")
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise UserError(f"{root / unknown[0]}: class {unknown[0]!r} is not one the model knows ({shown})"
                        + (f"; {len(unknown) - 1} more such folder(s)" if len(unknown) > 1 else ""))
    files, labels = [], []
    for folder in folders:
        found = _images_under(folder)
        files += found
        labels += [names.index(folder.name)] * len(found)
    if not files:
        raise UserError(f"{root}: no images in its class folders (expected files ending in {', '.join(I.EXTENSIONS)})")
    return root, files, labels


def predict(model_dir: str, paths: list[str], csv_path: str | None = None, top: int = 1,
            evaluate: bool = False) -> int:
    import onnxruntime as ort

    folder = Path(model_dir)
    onnx_file = folder / "model.onnx"
    if not onnx_file.is_file():
        raise UserError(f"{folder}: no model.onnx (expected an export folder such as studies/NAME/best)")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    model = model_input(folder, session)
    names = model.names
    labels = None
    if evaluate:
        root, files, labels = labelled_files(paths, names)
        csv_path = csv_path or "predictions.csv"
    else:
        files = image_files(paths)
    if not files:
        raise UserError(f"{', '.join(paths)}: no images (expected files ending in {', '.join(I.EXTENSIONS)})")
    if not model.decoding_recorded:
        sys.stderr.write(f"nas-predict: {folder} was exported before nas-run recorded how it decodes images: they are "
                         "read as its training images were (EXIF orientation ignored, alpha dropped)\n")
    top = max(1, min(top, len(names)))
    out = open(csv_path, "w", newline="") if csv_path else sys.stdout
    writer = csv.writer(out)
    writer.writerow(["file", "label", "probability"] + [f"{k}_{i}" for i in range(2, top + 1) for k in ("label", "probability")]
                    + (["true_label"] if evaluate else []))
    unreadable, true, predicted = 0, [], []
    advance = I.progress_bar(len(files), "predicting")
    try:
        for start in range(0, len(files), BATCH):
            batch, kept = [], []
            for i in range(start, min(start + BATCH, len(files))):
                try:
                    batch.append(I.decode(files[i], model.channels, model.size, model.decoding))
                    kept.append(i)
                except UserError as e:
                    sys.stderr.write(f"nas-predict: {e}\n")
                    unreadable += 1
            if batch:
                x = torch.stack(batch).float().div_(255).numpy()
                logits = session.run(None, {session.get_inputs()[0].name: x})[0]
                p = _softmax(logits)
                order = np.argsort(-p, axis=1)[:, :top]
                for i, row, ranks in zip(kept, p, order):
                    truth = [names[labels[i]]] if evaluate else []
                    writer.writerow([str(files[i])] + [v for r in ranks for v in (names[r], f"{row[r]:.6f}")] + truth)
                    if evaluate:
                        true.append(labels[i])
                        predicted.append(int(ranks[0]))
            if advance:
                advance(min(BATCH, len(files) - start))
    finally:
        if csv_path:
            out.close()
    done = len(files) - unreadable
    if evaluate and done:
        report = evaluation(root, names, torch.tensor(true), torch.tensor(predicted))
        json_path = Path(csv_path).with_suffix(".json")
        json_path.write_text(json.dumps(report, indent=2))
        print_evaluation(report)
        csv_path = f"{csv_path} and {json_path}"
    sys.stderr.write(f"nas-predict: {done} image(s) predicted{f', {unreadable} unreadable (named above)' if unreadable else ''}"
                     f"{f'; written to {csv_path}' if csv_path else ''}\n")
    return 0 if done else 2


def evaluation(root: Path, names: list[str], true: torch.Tensor, predicted: torch.Tensor) -> dict:
    """The figures --evaluate prints and writes: accuracy, balanced accuracy, per class its images, recall and the
    class it is most often taken for, the confusion matrix (rows true, columns predicted)."""
    cm = metrics.confusion(predicted, true, len(names))
    recall, confused = metrics.recalls(cm), metrics.most_confused(cm)
    per_class = [{"class": n, "images": int(cm[k].sum()), "recall": recall[k],
                  "most_often_taken_for": None if confused[k] is None else names[confused[k]]}
                 for k, n in enumerate(names)]
    return {"folder": str(root), "images": int(cm.sum()), "accuracy": metrics.accuracy(cm),
            "balanced_accuracy": metrics.balanced_accuracy(cm), "per_class": per_class,
            "confusion": {"classes": names, "rows_true_columns_predicted": cm.tolist()}}


def print_evaluation(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{report['folder']}: {report['images']:,} images, accuracy {report['accuracy']:.4f}, balanced "
                  f"accuracy {report['balanced_accuracy']:.4f} (the mean of the per-class recalls)", highlight=False)
    table = Table(title="per class, worst recall first")
    for col in ("class", "images", "recall", "most often taken for"):
        table.add_column(col, justify="left" if col in ("class", "most often taken for") else "right")
    rows = sorted(report["per_class"], key=lambda r: (r["recall"] is None, r["recall"] or 0))
    for r in rows:
        table.add_row(r["class"], f"{r['images']:,}", "-" if r["recall"] is None else f"{r['recall']:.4f}",
                      r["most_often_taken_for"] or "")
    console.print(table)
    names, cm = report["confusion"]["classes"], report["confusion"]["rows_true_columns_predicted"]
    if len(names) > CONFUSION_SHOWN:
        console.print(f"confusion matrix ({len(names)} classes): in the JSON file", highlight=False)
        return
    matrix = Table(title="confusion matrix: rows true class, columns predicted")
    matrix.add_column("true \\ predicted")
    for n in names:
        matrix.add_column(n, justify="right")
    for n, row in zip(names, cm):
        matrix.add_row(n, *[str(v) if v else "." for v in row])
    console.print(matrix)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
