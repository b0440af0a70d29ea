"""What only a GPU shows: bf16 autocast, channels_last and the fused optimizer train as the CPU path does, and a
run of several workers per GPU searches, retrains and exports a model that runs on CPU. Skipped (with that
reason) where torch sees no CUDA device, as on CI; run on a GPU machine with `pytest tests/test_cuda.py`."""
from __future__ import annotations

import json

import pytest
import torch

import models
from helpers import FM_SLICE, nas_run, tiny_space, write_space
from search import data as D
from search.space import data_config
from search.export import load_checkpoint
from search import space as S
from search.train import evaluate, make_optimizer, predict, train
from search.workers import plan_workers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (these run on GPU machines)")
CFG = data_config(dataset="fashion_mnist", root=str(FM_SLICE), val_fraction=0.2)


def recipe():
    return S.recipe(lr=0.05, batch_size=64, optimizer="sgd", momentum=0.9, scheduler="onecycle", augment={"rotate": 7.0})


def trained_on(device: str):
    data = D.load(CFG, device, 0)
    torch.manual_seed(0)
    model = models.build("convnet", widths=[8, 16, 16], depths=[1, 1, 1], padding="valid").to(device)
    hist = train(model, data.train, data.val, data.mean, data.std, recipe(), 4)
    return model, data, hist


def test_the_gpu_path_trains_as_well_as_the_cpu_path():
    """Same net, seed and recipe: on the GPU (bf16 autocast, NHWC, fused SGD) it learns as it does on CPU."""
    _, _, cpu = trained_on("cpu")
    model, data, gpu = trained_on("cuda")
    assert gpu.end_reason == "completed" and all(torch.isfinite(torch.tensor(gpu.train_loss)))
    assert gpu.train_loss[-1] < 0.7 * gpu.train_loss[0]
    assert gpu.val_acc[-1] > 0.6 and abs(gpu.val_acc[-1] - cpu.val_acc[-1]) < 0.06, (gpu.val_acc, cpu.val_acc)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert make_optimizer(model, recipe()).defaults["fused"] is True


def test_bf16_evaluation_agrees_with_fp32():
    """Validation runs in bf16 on the GPU, the test split in fp32 (as the export runs): they agree."""
    model, data, _ = trained_on("cuda")
    fp32 = predict(model, data.val, data.mean, data.std, fp32=True)
    bf16 = predict(model, data.val, data.mean, data.std, fp32=False)
    assert (fp32 == bf16).float().mean().item() > 0.97
    assert abs(evaluate(model, data.val, data.mean, data.std) - evaluate(model, data.val, data.mean, data.std, fp32=True)) < 0.02


def test_several_workers_per_gpu_search_retrain_and_export(tmp_path):
    """`--device cuda --workers auto`: several processes share each GPU (under MPS where it starts); the winner's
    checkpoint rebuilds on CPU and the ONNX model agrees with it."""
    k, threads = plan_workers("auto", "cuda")
    assert k > torch.cuda.device_count()
    space = write_space(tmp_path / "gpu.yaml", tiny_space(name="gpu"))
    r = nas_run(space, "--device", "cuda", "--workers", "auto", "--trials", k + 2, "--studies", tmp_path / "studies",
                cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    first = next(line for line in r.stdout.splitlines() if line.startswith("study gpu in "))
    assert f"{k} worker(s) x {threads} thread(s) on cuda:0 (" in first, first
    assert any(how in first for how in ("(MPS (started for this run))", "(MPS (running server))", "(time-sliced)")), first
    best = tmp_path / "studies" / "gpu" / "best"
    card = json.loads((best / "model_card.json").read_text())
    assert card["onnx_check"]["same_predictions"] == card["onnx_check"]["images"]
    model, _ = load_checkpoint(best / "checkpoint.pt")
    assert next(model.parameters()).device.type == "cpu"
