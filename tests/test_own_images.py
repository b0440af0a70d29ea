"""Your own images: image folders and .npz files written from the real Fashion-MNIST slice, loaded as the search
loads them; nas-init -> nas-run -> nas-predict end to end on a 32-px colour JPEG folder."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import FM_SLICE, WORDS, console_script, in_process, write_image_folder
from search import data as D
from search import images as I
from search.space import data_config


def _idx_raw():
    return D._cached_raw(data_config(dataset="fashion_mnist", root=str(FM_SLICE)))


def _first_per_class(raw: dict, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The IDX images a folder written with per_class=n holds, in its order: class by class, by index."""
    y = raw[f"{split}_y"]
    idx = torch.cat([(y == c).nonzero().squeeze(1)[:n] for c in range(10)])
    return raw[f"{split}_x"][idx], y[idx]


def test_the_same_pixels_through_idx_a_png_folder_and_an_npz(tmp_path):
    idx = _idx_raw()
    folder = write_image_folder(tmp_path / "png", "png", per_class=20)
    got = D._cached_raw(data_config(dataset="folder", root=str(folder)))
    for split in ("train", "test"):
        x, _ = _first_per_class(idx, split, 20)
        blocks = [x[20 * WORDS.index(name):20 * WORDS.index(name) + 20] for name in got["classes"]]  # sorted folders
        assert torch.equal(got[f"{split}_x"], torch.cat(blocks))
        assert [got["classes"][c] for c in got[f"{split}_y"].tolist()] == [n for n in got["classes"] for _ in range(20)]
    npz = tmp_path / "fm.npz"
    np.savez(npz, x_train=idx["train_x"][:, 0].numpy(), y_train=idx["train_y"].numpy(),  # (N, H, W), Keras' layout
             x_test=idx["test_x"].permute(0, 2, 3, 1).numpy(), y_test=idx["test_y"].numpy(),  # (N, H, W, C)
             class_names=np.array(WORDS))
    arrays = D._cached_raw(data_config(dataset="arrays", root=str(npz)))
    for k in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(arrays[k], idx[k])
    assert arrays["classes"] == WORDS
    floats = tmp_path / "float.npz"  # floats in [0, 1] are pixels / 255
    np.savez(floats, x_train=idx["train_x"].numpy() / 255.0, y_train=idx["train_y"].numpy(),
             x_test=idx["test_x"].numpy() / 255.0, y_test=idx["test_y"].numpy())
    assert torch.equal(D._cached_raw(data_config(dataset="arrays", root=str(floats)))["train_x"], idx["train_x"])


def test_a_jpeg_colour_folder_at_its_own_size_with_a_held_out_test_split(tmp_path, monkeypatch):
    """40-px RGB JPEGs, class folders straight under the root (no test/), one class cut to a tenth: 3 channels,
    class names from the folders, a stratified 20% test split that is the same on every load, the cache used."""
    root = write_image_folder(tmp_path / "jpg", "jpg", channels=3, size=40, test=False, cut=3, per_class=50)
    (root / "bag" / ".DS_Store").write_text("x")
    (root / "bag" / "notes.txt").write_text("x")
    cfg = data_config(dataset="folder", root=str(root), val_fraction=0.2)
    d = D.load(cfg, "cpu", 0)
    assert d.meta.channels == 3 and (d.meta.height, d.meta.width) == (40, 40)
    assert d.meta.class_names == tuple(sorted(WORDS)) and d.skipped == 2
    per_class = torch.bincount(torch.cat([d.train.y, d.val.y, d.test.y]), minlength=10)
    cut = d.meta.class_names.index(WORDS[3])
    assert per_class[cut] == 30 and all(per_class[c] == 50 for c in range(10) if c != cut)  # a tenth of 300 is 30
    assert torch.bincount(d.test.y, minlength=10)[cut] == 6 and len(d.test) == 9 * 10 + 6
    assert d.test_split["images"] == len(d.test)
    monkeypatch.setattr(I, "decode_all", lambda *a, **k: pytest.fail("decoded again: the cache was not used"))
    again = D.load(cfg, "cpu", 1)  # another study seed: another validation split, the same test split
    assert again.test_split == d.test_split and torch.equal(again.test.x, d.test.x)


def test_grey_and_colour_mixed_are_converted_and_image_size_resizes(tmp_path):
    root = write_image_folder(tmp_path / "mixed", "png", channels=1, per_class=5)
    colour = write_image_folder(tmp_path / "colour", "png", channels=3, per_class=5)
    for f in (colour / "train" / "bag").iterdir():  # one class in colour, the rest grey
        (root / "train" / "bag" / f.name).write_bytes(f.read_bytes())
    d = D.load(data_config(dataset="folder", root=str(root), image_size=[24, 32], val_fraction=0.2), "cpu", 0)
    assert d.train.x.shape[1:] == (3, 24, 32) and d.meta.image_size == [24, 32]
    grey = D.load(data_config(dataset="folder", root=str(root), channels=1, val_fraction=0.2), "cpu", 0)
    assert grey.train.x.shape[1:] == (1, 28, 28)


def test_nas_init_pools_large_images_early_so_the_macs_budget_holds(tmp_path):
    """96-px colour images and an 8k-param budget: the plain design's stages halve the map down to 6 px (four
    pools: 96 -> 48 -> 24 -> 12 -> 6) and a candidate within params and MACs exists (nas-init checks it as nas-run's
    preflight does)."""
    images = write_image_folder(tmp_path / "big", "png", channels=3, size=96, per_class=3)
    r = console_script("nas-init", images, "--out", tmp_path / "big.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 pool(s) for 96x96 px" in r.stdout
    raw = yaml.safe_load((tmp_path / "big.yaml").read_text())
    assert [st.get("pool") for st in raw["model"]["stages"]] == [None, True, True, True, True]
    assert raw["budget"]["macs"] < 25_000_000 and raw["data"]["channels"] == 3


def _designs(space_file):
    """The space nas-init wrote, and its first_trials designs' model configs as the run builds them. Each design sets
    every value the space searches on its path (a FixedTrial raises on one it does not name): a value left out would
    be sampled, and the design would no longer be the net it says."""
    import optuna

    from search import check
    from search import space as S

    space = S.load(space_file)
    meta = D.load(space.data, "cpu", 0).meta
    for design in space.search.first_trials:
        space.sample(optuna.trial.FixedTrial(design), meta)
    return space, [model.config for _, model in check.design_models(space, meta)]


def test_nas_init_on_a_64_px_colour_folder_writes_designs_that_pool_to_8_px_and_trains_small_sets_longer(tmp_path):
    """The plain net a user would write for 64-px colour images: its convs end at <= 8 px before the last pool and
    the head, AdamW + OneCycle, crops and flips; the training length grows as the training set shrinks."""
    from search.init import training_epochs

    lengths = {}
    for per_class in (100, 30):
        images = write_image_folder(tmp_path / f"c{per_class}", "png", channels=3, size=64, per_class=per_class)
        out = tmp_path / f"c{per_class}.yaml"
        r = in_process("nas-init", images, "--params", 25000, "--out", out, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        space, configs = _designs(out)
        assert len(configs) == 2 and [c.separable for c in configs] == [False, True]
        for c in configs:
            assert max(c.final_size()) <= 8 and c.final_pool and c.head == "gap"  # convs end at 8 px, pooled to 4
        design = space.search.first_trials[0]
        assert design["train.optimizer"] == "adamw" and design["train.scheduler"] == "onecycle"
        assert design["train.augment.flip"] is True and design["train.augment.crop"] > 0
        assert {"brightness", "contrast"} <= set(yaml.safe_load(out.read_text())["train"]["augment"])
        lengths[per_class] = space.retrain.epochs
        batches = yaml.safe_load(out.read_text())["train"]["batch_size"]
        n_search = round(len(list((images / "train").rglob("*.png"))) * (1 - space.data.val_fraction))
        assert design["train.batch_size"] in batches and (n_search / max(batches) >= 15 or batches == [16])
    assert lengths[30] > lengths[100]  # 300 training images train longer than 1,000
    assert training_epochs(8000) == training_epochs(3800) == training_epochs(60_000) == 30 and training_epochs(1000) == 42


def test_nas_init_searches_batch_sizes_that_give_an_epoch_enough_steps_and_puts_the_first_rung_after_enough():
    """A small set at a large batch takes few optimizer steps an epoch: nearly every such trial was at chance at its
    first rung. The three largest batch sizes with >= 15 steps an epoch are searched; the first rung comes after >= 45
    steps at the largest, at most half the trial; nas-run's default (~epochs / 7) where that is later."""
    from search.init import batch_sizes, first_rung

    assert batch_sizes(6000) == [64, 128, 256] and batch_sizes(2250) == [32, 64, 128] and batch_sizes(1500) == [16, 32, 64]
    assert batch_sizes(100) == [16]  # too few images for 15 steps at any: the smallest
    assert first_rung(15, 6000, 256) == 2  # 23 steps an epoch: the default, 2 epochs (46 steps)
    assert first_rung(14, 2250, 128) == 3  # 17 steps an epoch: 3 epochs (51 steps), not 2
    assert first_rung(4, 2250, 128) == 2 and first_rung(60, 6000, 256) == 9  # at most half; the default when later


def test_with_minutes_nas_init_plans_search_trials_short_enough_for_the_designs_to_leave_the_search_time(tmp_path):
    """The two designs train first at full planned length; with --minutes, nas-init plans search trials so that they
    take at most a third of the search's 60%: 20 min, designs of 20 s an epoch on 2 workers -> 12 epochs; on 1
    worker -> 6; the slower design sets the pace; never below 4 (or the retrain's length); the retrain's when it fits."""
    from search.init import search_epochs

    assert search_epochs(22, [20.0, 20.0], 20, 2) == 12 and search_epochs(22, [20.0, 20.0], 20, 1) == 6
    assert search_epochs(22, [5.0, 20.0], 20, 2) == 12 and search_epochs(22, [5.0, 20.0], 20, 1) == 9
    assert search_epochs(22, [20.0, 20.0], 1, 2) == 4 and search_epochs(3, [20.0] * 2, 1, 2) == 3
    assert search_epochs(22, [1.0, 1.0], 60, 2) == 22
    images = write_image_folder(tmp_path / "c", "png", channels=3, size=64, per_class=30)
    r = in_process("nas-init", images, "--params", 25000, "--minutes", 0.5, "--out", tmp_path / "c.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    space, _ = _designs(tmp_path / "c.yaml")
    assert space.search.epochs < space.retrain.epochs and "to fit --minutes 0.5" in r.stdout
    assert "# --minutes 0.5: an epoch of the designs takes" in (tmp_path / "c.yaml").read_text()


@pytest.mark.parametrize("timed, designs", [([4.0, 12.0], 1), ([4.0, 6.0], 2)])
def test_with_minutes_nas_init_leaves_out_a_separable_design_that_trains_over_twice_as_slow(
        tmp_path, monkeypatch, timed, designs):
    """Trained first at full length, a design whose epoch takes over twice the plain one's (the separable one on a
    CPU: depthwise convs run far below their MACs) would take the search's time: nas-init leaves it out and says why;
    within twice, both stay."""
    from search import init as nas_init

    monkeypatch.setattr(nas_init, "design_epoch_seconds", lambda *a: list(timed))
    images = write_image_folder(tmp_path / "c", "png", channels=3, size=64, per_class=30)
    r = in_process("nas-init", images, "--params", 25000, "--minutes", 20, "--out", tmp_path / "c.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    space, configs = _designs(tmp_path / "c.yaml")
    assert [c.separable for c in configs] == [False, True][:designs]
    text = (tmp_path / "c.yaml").read_text()
    assert ("# the separable design is left out: an epoch of it takes ~12 s here, 3.0x the plain one's" in text) == (
        designs == 1)
    assert "separable: [false, true]" in text  # the search may still sample it


def test_nas_init_keeps_the_digit_design_for_small_grey_images(tmp_path):
    images = write_image_folder(tmp_path / "grey", "png", channels=1, per_class=30)
    out = tmp_path / "grey.yaml"
    assert in_process("nas-init", images, "--out", out, cwd=tmp_path).returncode == 0
    space, configs = _designs(out)
    assert configs[0].padding == "valid" and configs[0].transition == "pool_1x1"  # spaces/mnist_8k.yaml's hand net
    assert space.search.first_trials[0]["train.lr.sgd"] == 0.1
    assert space.search.startup == "neighbourhood"  # the first sampled trials start near the designs (RESULTS.md)


def test_nas_init_gives_large_grey_images_the_plain_design_without_rotation(tmp_path):
    images = write_image_folder(tmp_path / "grey64", "png", channels=1, size=64, per_class=30)
    out = tmp_path / "grey64.yaml"
    assert in_process("nas-init", images, "--out", out, cwd=tmp_path).returncode == 0
    space, configs = _designs(out)
    assert configs[0].padding == "same" and configs[0].final_pool and max(configs[0].final_size()) <= 8
    assert space.search.first_trials[0]["train.augment.rotate"] == 0.0  # searched, but the plain net does not rotate


def _tiny(space_file, name):
    """The nas-init space cut to a minute of training: 1 epoch, 1 retrain seed, no race."""
    raw = yaml.safe_load(space_file.read_text())
    raw["name"] = name
    raw["search"].update(trials=2, min_epochs=1, race_top=0)
    raw["retrain"].update(epochs=1, seeds=1)
    raw["search"]["first_trials"] = raw["search"]["first_trials"][:1]
    out = space_file.with_name(name + ".yaml")
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def test_nas_init_then_nas_run_then_nas_predict_on_a_jpeg_folder(tmp_path):
    from search.export import load_checkpoint

    images = write_image_folder(tmp_path / "clothes", "jpg", channels=3, size=32, per_class=40)
    r = console_script("nas-init", images, "--params", 8000, "--minutes", 30, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 channel(s)" in r.stdout and "32x32" in r.stdout and "10 (bag, boot" in r.stdout
    space_file = tmp_path / "clothes_8k.yaml"
    assert f"next: nas-run {space_file.name} --trials 40 --minutes 30" in r.stdout
    again = in_process("nas-init", images, cwd=tmp_path)
    assert again.returncode == 2 and "does not overwrite" in again.stderr
    quick = _tiny(space_file, "clothes_quick")
    r = in_process("nas-run", quick, "--studies", tmp_path / "studies", "--workers", 1, "--format", "onnx",  # nas-predict's
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    best = tmp_path / "studies" / "clothes_quick" / "best"
    card = yaml.safe_load((best / "model_card.json").read_text())
    assert card["class_names"] == sorted(WORDS) and "(N, 3, 32, 32)" in card["input"]
    test_dir = images / "test"
    r = console_script("nas-predict", best, test_dir, "--top", 2, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 400 and set(rows[0]) == {"file", "label", "probability", "label_2", "probability_2"}
    model, ckpt = load_checkpoint(best / "checkpoint.pt")
    x = torch.stack([I.decode(Path(row["file"]), 3, (32, 32)) for row in rows]).float() / 255
    mean, std = (torch.tensor(ckpt[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        want = model((x - mean) / std).argmax(1)
    assert [row["label"] for row in rows] == [ckpt["class_names"][i] for i in want.tolist()]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = in_process("nas-predict", best, tmp_path / "broken.jpg", next(test_dir.rglob("*.jpg")),
                   "--csv", tmp_path / "out.csv", cwd=tmp_path)
    assert r.returncode == 0 and "broken.jpg: not a readable image" in r.stderr and "1 unreadable" in r.stderr
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 2  # header + the readable image


def test_an_imbalanced_folder_is_searched_on_balanced_accuracy_and_nas_predict_evaluates_a_labelled_folder(tmp_path):
    """Ten classes, one cut to a tenth (10:1): nas-init picks balanced accuracy and says why; the study's objective is
    named for it; the retrain's balanced test accuracy is the mean per-class recall a by-hand count of the exported
    model's test predictions gives; nas-predict --evaluate's figures equal a by-hand count of its own CSV; a class
    folder the model does not know is one line, exit 2, nothing written."""
    import json

    import optuna

    from search import space as S
    from search.export import load_checkpoint
    from search.record import retrain_results

    images = write_image_folder(tmp_path / "shop", "png", channels=1, cut=3)
    r = in_process("nas-init", images, "--out", tmp_path / "shop.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "imbalanced 10.0:1" in r.stdout and "selected on balanced accuracy" in r.stdout
    assert "metric: balanced_accuracy   # classes imbalanced 10.0:1" in (tmp_path / "shop.yaml").read_text()
    assert "class_weight: [none, balanced]" in (tmp_path / "shop.yaml").read_text()
    assert S.load(tmp_path / "shop.yaml").search.first_trials[0]["train.class_weight"] == "balanced"
    quick = _tiny(tmp_path / "shop.yaml", "shop_quick")
    r = in_process("nas-run", quick, "--studies", tmp_path / "studies", "--workers", 1, "--format", "onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "test balanced accuracy" in r.stdout
    study = optuna.load_study(study_name="shop_quick", storage=f"sqlite:///{tmp_path}/studies/shop_quick.db")
    assert study.metric_names == ["val balanced accuracy"]
    result = retrain_results(study)
    best = tmp_path / "studies" / "shop_quick" / "best"
    model, ckpt = load_checkpoint(best / "checkpoint.pt")
    data = D.load(S.load(quick).data, "cpu", 0)
    with torch.no_grad():
        mean, std = (torch.tensor(ckpt[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
        pred = model((data.test.x.float() / 255 - mean) / std).argmax(1).tolist()
    truth = data.test.y.tolist()
    recalls = [sum(p == t for p, t in zip(pred, truth) if t == c) / truth.count(c) for c in range(10)]
    assert result.metric == "balanced_accuracy"
    assert result.runs[0].test_balanced_acc == pytest.approx(sum(recalls) / 10, abs=1e-12)
    assert "val balanced accuracy" in (tmp_path / "studies" / "shop_quick" / "report.html").read_text()

    out = tmp_path / "eval" / "shop.csv"
    out.parent.mkdir()
    r = in_process("nas-predict", best, images, "--evaluate", "--csv", out, cwd=tmp_path)  # train/ + test/: test/
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(data.test) and all(f"{images}/test/" in row["file"] for row in rows)
    report = json.loads(out.with_suffix(".json").read_text())
    names = report["confusion"]["classes"]
    by_class = {n: [row for row in rows if row["true_label"] == n] for n in names}
    hand = {n: sum(row["label"] == n for row in rs) / len(rs) for n, rs in by_class.items()}
    assert report["accuracy"] == pytest.approx(sum(row["label"] == row["true_label"] for row in rows) / len(rows))
    assert report["balanced_accuracy"] == pytest.approx(sum(hand.values()) / 10)
    assert {c["class"]: c["recall"] for c in report["per_class"]} == pytest.approx(hand)
    cm = report["confusion"]["rows_true_columns_predicted"]
    assert cm[names.index("bag")][names.index("boot")] == sum(1 for row in by_class["bag"] if row["label"] == "boot")
    assert "confusion matrix" in r.stdout and "worst recall first" in r.stdout

    (images / "test" / "socks").mkdir()
    (images / "test" / "socks" / "1.png").write_bytes(next((images / "test" / "bag").iterdir()).read_bytes())
    r = in_process("nas-predict", best, images, "--evaluate", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "class 'socks' is not one the model knows" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "predictions.csv").exists() and not (tmp_path / "predictions.json").exists()


def test_nas_predict_decodes_as_the_model_was_trained_upright_and_over_its_background(tmp_path):
    """A PNG stored sideways with EXIF orientation 6 and an RGBA PNG with noise under its transparent pixels get the
    same probabilities as the upright image and as the transparent one's composite on white: nas-predict reads the
    model's recorded decoding. An export without that record decodes as its model was trained (one line says so)."""
    from PIL import Image

    from helpers import tiny_space, write_space

    space = tiny_space(name="tiny_png")
    space["search"].update(trials=1, race_top=0)
    space["retrain"].update(seeds=1)
    r = in_process("nas-run", write_space(tmp_path / "s.yaml", space), "--studies", tmp_path / "studies", "--workers", 1,
                   "--format", "onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    best = tmp_path / "studies" / "tiny_png" / "best"
    picture = _idx_raw()["test_x"][3, 0, :, 2:26].numpy()  # 28 x 24: sideways shows
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(picture).save(tmp_path / "a_upright.png")
    Image.fromarray(np.rot90(picture, 1).copy()).save(tmp_path / "b_sideways.png", exif=exif.tobytes())
    alpha = np.where(picture > 30, 255, 0).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, picture.shape, dtype=np.uint8)
    Image.fromarray(np.where(alpha == 0, 255, picture).astype(np.uint8)).save(tmp_path / "c_on_white.png")
    Image.fromarray(np.dstack([np.where(alpha == 0, noise, picture)] * 3 + [alpha]).astype(np.uint8), "RGBA").save(
        tmp_path / "d_transparent.png")
    r = in_process("nas-predict", best, tmp_path, "--top", 3, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    probs = {Path(row["file"]).name: [row[k] for k in row if k != "file"] for row in rows}
    # the sideways file is resized before it is turned (cheaper): its pixels may round the other way, by 1 at most
    upright, turned = (I.decode(tmp_path / f, 1, (28, 28)).int() for f in ("a_upright.png", "b_sideways.png"))
    assert (upright - turned).abs().max() <= 1 and (upright != turned).float().mean() < 0.05
    labels, numbers = probs["a_upright.png"][::2], [float(p) for p in probs["a_upright.png"][1::2]]
    assert probs["b_sideways.png"][::2] == labels
    assert [float(p) for p in probs["b_sideways.png"][1::2]] == pytest.approx(numbers, abs=1e-3)
    assert probs["c_on_white.png"] == probs["d_transparent.png"]
    import onnx

    old = tmp_path / "old_export"
    old.mkdir()
    model = onnx.load(str(best / "model.onnx"))
    kept = [p for p in model.metadata_props if p.key != "decoding"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(old / "model.onnx"))
    r = in_process("nas-predict", old, tmp_path / "a_upright.png", tmp_path / "b_sideways.png", "--top", 3, cwd=tmp_path)
    assert r.returncode == 0 and "exported before nas-run recorded how it decodes images" in r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    upright, sideways = ([row[k] for k in row if k != "file"] for row in rows)
    assert upright != sideways  # read as the model was trained: the tag ignored
