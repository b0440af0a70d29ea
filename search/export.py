"""Export a trained model: checkpoint (rebuilds with `models.build`), ONNX (checked with onnxruntime on
real test images), torch.export `.pt2`, and a model card (markdown + json).

ONNX and .pt2 take pixels in [0, 1], shape (N, C, H, W), any batch size: normalization is inside them.
The checkpoint holds the bare model's state_dict plus mean/std, so it can be fine-tuned as it is.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

import models
from search import deploy
from search import metrics
from search.catalogue import Meta
from search.decode import Decoding
from search.data import Split
from search.measure import Normalized, count_macs, count_params, onnx_program, quiet
from search.record import Candidate, Deployment, RetrainResult

FORMATS = ("checkpoint", "onnx", "pt2")


def checkpoint(model: nn.Module, mean, std, cand: Candidate, results: RetrainResult, space_text: str,
               class_names: tuple[str, ...] = (), decoding: Decoding = Decoding()) -> dict:
    """The checkpoint's dict (this module alone writes and reads its keys): the bare model's config and weights,
    the normalization, the candidate and retrain results as JSON, the space, the class names, and how image files
    were decoded for training (nas-predict decodes new ones the same way)."""
    return {
        "family": model.family,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "candidate": json.dumps(cand.to_json()),
        "metrics": json.dumps(results.to_json()),
        "space": space_text,
        "class_names": list(class_names),
        "decoding": json.dumps(decoding.to_json()),
    }


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """-> (model in eval mode, checkpoint dict). Safe: weights_only=True."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build(ckpt["family"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def normalization(ckpt: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel of a checkpoint, in [0, 1] pixel units: what its model's input is normalized with."""
    return torch.tensor(ckpt["mean"]), torch.tensor(ckpt["std"])


def results_of(ckpt: dict) -> RetrainResult:
    """The retrain results a checkpoint was written with."""
    return RetrainResult.from_json(json.loads(ckpt["metrics"]))


@dataclass(frozen=True)
class Exported:
    """What an export wrote and measured: the folder, its files by format, the model's size, the ONNX check against
    PyTorch on real test images and the deployment figures (both None without ONNX)."""

    folder: Path
    files: dict[str, str]  # format -> file name in `folder` (checkpoint, onnx, onnx_int8, pt2)
    params: int
    macs: int
    onnx_check: OnnxCheck | None
    deployment: Deployment | None

    def uploads(self) -> list[str]:
        """The files a study keeps as artifacts: the exports and the model card."""
        return [*self.files.values(), "MODEL_CARD.md", "model_card.json"]


@dataclass(frozen=True)
class OnnxCheck:
    """model.onnx in onnxruntime against the PyTorch model on the same real test images."""

    images: int
    max_abs_diff: float
    same_predictions: int

    def line(self) -> str:
        return (f"ONNX max |diff| {self.max_abs_diff:.1e}, {self.same_predictions}/{self.images} identical "
                "predictions")


def export(model: nn.Module, ckpt: dict, test: Split, out: Path, formats=FORMATS,
           calibration: torch.Tensor | None = None) -> Exported:
    """Write the requested formats and the model card into `out`; -> what was written and measured (with ONNX the
    parity check and the deployment figures: latency, peak memory, and an int8 model calibrated on `calibration`
    images)."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    meta = input_meta(ckpt)
    wrapped = Normalized(model, ckpt["mean"], ckpt["std"]).eval()
    x = test.x[:256].cpu().float() / 255
    files = {}
    if "checkpoint" in formats:
        files["checkpoint"] = "checkpoint.pt"  # written last: it carries the deployment figures
    batch = torch.export.Dim("batch", min=1, max=65536)
    results, check, deployment = results_of(ckpt), None, None
    card = {
        "family": ckpt["family"], "config": ckpt["config"], "params": count_params(model),
        "macs": count_macs(model, meta), "metrics": results.to_json(),
        "recipe": Candidate.from_json(json.loads(ckpt["candidate"])).train.to_json(), "input": f"float32 pixels in [0, 1], shape (N, {meta.channels}, {meta.height}, {meta.width})",
        "class_names": list(meta.class_names), "decoding": decoding_of(ckpt).to_json(),
        "mean": ckpt["mean"], "std": ckpt["std"], "files": files,
    }
    if "onnx" in formats:
        onnx_program(wrapped, x[:2]).save(str(out / "model.onnx"), external_data=False)
        _label_onnx(out / "model.onnx", meta, decoding_of(ckpt))
        files["onnx"] = "model.onnx"
        check = onnx_parity(out / "model.onnx", wrapped, x)
        card["onnx_check"] = asdict(check)
        deployment = deploy.measure_export(out / "model.onnx", model, meta, test, calibration)
        card["deployment"] = deployment.to_json()
        if deployment.int8 is not None:
            files["onnx_int8"] = deployment.int8.file
    if "checkpoint" in formats:
        torch.save(ckpt | {"deployment": json.dumps(card.get("deployment"))}, out / "checkpoint.pt")
    if "pt2" in formats:
        with quiet():
            program = torch.export.export(wrapped, (x[:2],), dynamic_shapes={"x": {0: batch}})
            torch.export.save(program, str(out / "model.pt2"))
        files["pt2"] = "model.pt2"
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    (out / "MODEL_CARD.md").write_text(model_card_md(card, results))
    return Exported(out, files, card["params"], card["macs"], check, deployment)


def card_deployment(card: dict) -> Deployment | None:
    """The deployment figures of a model card (None: exported without ONNX)."""
    return Deployment.from_json(card.get("deployment"))


def decoding_of(ckpt: dict) -> Decoding:
    """How the checkpoint's training images were decoded (older checkpoints: as nas-run read them then)."""
    return Decoding.from_json(json.loads(ckpt["decoding"]) if "decoding" in ckpt else None)


def _label_onnx(path: Path, meta: Meta, decoding: Decoding) -> None:
    """The class names, the input shape and how images were decoded in the ONNX file's metadata, so the file alone
    is enough to deploy."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"class_names": json.dumps(list(meta.class_names)),
                                        "input": json.dumps({"channels": meta.channels, "height": meta.height,
                                                             "width": meta.width, "pixels": "float32 in [0, 1]"}),
                                        "decoding": json.dumps(decoding.to_json())})
    onnx.save(model, str(path))


def input_meta(ckpt: dict) -> Meta:
    """Input shape and class count of a checkpoint, from its config."""
    c = ckpt["config"]
    h, w = models.hw(c["image_size"])
    names = tuple(ckpt.get("class_names") or (str(i) for i in range(c["num_classes"])))  # older checkpoints: numbers
    return Meta(c["in_channels"], h, w, names)


def onnx_parity(path: Path, wrapped: nn.Module, x: torch.Tensor) -> OnnxCheck:
    """Run the ONNX file with onnxruntime on real images; compare with PyTorch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        want = wrapped(x)
    return OnnxCheck(len(x), float((got - want).abs().max()), int((got.argmax(1) == want.argmax(1)).sum()))


def deployment_line(d: Deployment) -> str:
    """The deployment figures in one line (model card, console)."""
    line = (f"onnxruntime, 1 CPU thread: {d.latency_1.ms:.3f} ms per image, {d.latency_64.ms:.2f} ms per "
            f"batch of 64; peak activations {d.peak_fp32_bytes / 1000:,.1f} KB fp32 "
            f"({d.peak_int8_bytes / 1000:,.1f} KB int8); model.onnx {d.onnx_bytes / 1000:,.1f} KB")
    q = d.int8
    if q:
        line += (f"; int8 ({q.file}, {q.bytes / 1000:,.1f} KB): test accuracy {q.test_acc:.4f} vs fp32 "
                 f"{q.fp32_test_acc:.4f}, {q.latency_1.ms:.3f} ms per image")
    return line


def _decoding_words(d: dict | None) -> str:
    decoding = Decoding.from_json(d)
    orient = "EXIF orientation applied" if decoding.orient else "EXIF orientation ignored"
    alpha = f"transparency composited onto RGB {list(decoding.background)}" if decoding.background else "alpha dropped"
    return f"{orient}, {alpha}"


def model_card_md(card: dict, m: RetrainResult) -> str:
    accs = ", ".join(f"{r.test_acc:.4f}" for r in m.runs)
    acc = f"- test: **{m.headline()}** (accuracy per seed: {accs}); {m.epochs} epochs on {m.train_on}\n"
    if m.search_val_acc is not None:
        acc += (f"- search: trial {m.trial} reached validation {metrics.NAMES[m.metric]} {m.search_val_acc:.4f} at "
                "search fidelity\n")
    onnx = card.get("onnx_check")
    parity = ""
    if onnx:
        parity = f"- ONNX check (onnxruntime, {onnx['images']} real test images): max |diff| {onnx['max_abs_diff']:.2e}, identical predictions {onnx['same_predictions']}/{onnx['images']}\n"
    deployment = card_deployment(card)
    deployed = f"- deployment (this machine): {deployment_line(deployment)}\n" if deployment else ""
    return f"""# Model card: {card['family']}

- parameters (trainable): {card['params']:,}
- MACs per image (fvcore, one multiply-add = 1): {card['macs']:,}
{acc}{parity}{deployed}- input: {card['input']} (normalization is built into model.onnx and model.pt2; mean {card['mean']}, std {card['std']})
- classes (output index order): {', '.join(card.get('class_names', []))}
- image files: {_decoding_words(card.get('decoding'))}
- new images: `nas-predict THIS_FOLDER IMAGES... --csv out.csv` (decodes and resizes them as the training data was)

## Config
```json
{json.dumps(card['config'], indent=2)}
```

## Training recipe
```json
{json.dumps(card['recipe'], indent=2)}
```

## How to load
```python
# checkpoint: rebuild the model from its config (needs this repository's `models` package)
from search.export import load_checkpoint
model, ckpt = load_checkpoint("checkpoint.pt")   # torch.load(..., weights_only=True) inside
logits = model((pixels - torch.tensor(ckpt["mean"]).view(1, -1, 1, 1)) / torch.tensor(ckpt["std"]).view(1, -1, 1, 1))

# torch.export program: no repository needed
program = torch.export.load("model.pt2"); logits = program.module()(pixels)

# ONNX
import onnxruntime as ort
session = ort.InferenceSession("model.onnx"); logits = session.run(None, {{"pixels": pixels.numpy()}})[0]
```
"""
