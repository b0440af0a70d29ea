"""Datasets from local IDX files, the cache, the validation split, and on-device augmentation."""
from __future__ import annotations

from dataclasses import replace

import gzip
import shutil

import pytest
import torch

from helpers import FM_SLICE
from search import augment
from search.record import Augment
from search import data as D
from search.space import data_config
from search.errors import UserError

CFG = data_config(dataset="fashion_mnist", root=str(FM_SLICE), val_fraction=0.2)


def test_idx_slice_loads_split_and_normalizes():
    d = D.load(CFG, "cpu", seed=0)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape[1:] == (1, 28, 28)
    assert (len(d.train), len(d.val), len(d.test)) == (2400, 600, 1000)
    assert 0.2 < d.mean.item() < 0.4 and 0.25 < d.std.item() < 0.45  # Fashion-MNIST: 0.286 / 0.353
    assert set(d.test.y.tolist()) == set(range(10))


def test_plain_and_gzipped_idx_and_torchvision_layout_give_the_same_data(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in FM_SLICE.glob("*.gz"):
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    a = D.load(CFG, "cpu", 0)
    b = D.load(replace(CFG, root=str(tmp_path)), "cpu", 0)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "fm"
    shutil.copytree(FM_SLICE, root)
    first = D.load(replace(CFG, root=str(root)), "cpu", 0)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again instead of reading the cache")

    monkeypatch.setattr(D, "_read_idx", no_decoding)
    second = D.load(replace(CFG, root=str(root)), "cpu", 0)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.val.y, second.val.y)
    (root / "t10k-labels-idx1-ubyte.gz").touch()  # a changed file is a new cache entry: decoded again
    with pytest.raises(AssertionError, match="decoded"):
        D.load(replace(CFG, root=str(root)), "cpu", 0)


def test_split_is_deterministic_stratified_and_disjoint():
    y = torch.arange(1000) % 10
    rest, part = D.stratified_split(y, 0.1, seed=3)
    rest2, part2 = D.stratified_split(y, 0.1, seed=3)
    assert torch.equal(part, part2) and torch.equal(rest, rest2)
    assert not set(rest.tolist()) & set(part.tolist()) and len(rest) + len(part) == 1000
    assert torch.bincount(y[part]).tolist() == [10] * 10
    assert not torch.equal(part, D.stratified_split(y, 0.1, seed=4)[1])


def test_race_folds_hold_out_fresh_images_and_train_on_the_rest():
    """Race round r validates on a stratified split the size of the search's, drawn from the training split: no
    image the search selected on, the same images for every finalist in a round, other images in another round;
    the search's validation images are trained on instead, so each round trains on as many images as the search."""
    d = D.load(CFG, "cpu", seed=0)
    key = lambda x: {bytes(img.numpy()) for img in x}  # noqa: E731 (images as a set: the split permutes them)
    train1, val1 = D.race_fold(d, 1, len(d.val))
    again_train, again_val = D.race_fold(d, 1, len(d.val))
    assert torch.equal(val1.x, again_val.x) and torch.equal(train1.y, again_train.y)
    assert (len(train1), len(val1)) == (len(d.train), len(d.val))
    assert torch.bincount(val1.y).tolist() == torch.bincount(d.val.y).tolist()  # stratified like the search's
    assert not key(val1.x) & key(d.val.x) and not key(val1.x) & key(train1.x)
    assert key(train1.x) | key(val1.x) == key(d.train.x) | key(d.val.x)
    _, val2 = D.race_fold(d, 2, len(d.val))
    assert key(val2.x) != key(val1.x) and not key(val2.x) & key(d.val.x)


def test_a_race_round_can_validate_on_more_images_than_the_search():
    """`size` images held out (stratified) from the training split; the rest and the search's validation images
    train: the round still uses every image once, and a round's split is the same for every finalist."""
    d = D.load(CFG, "cpu", seed=0)
    size = 2 * len(d.val)
    train, val = D.race_fold(d, 1, size)
    assert (len(train), len(val)) == (len(d.train) + len(d.val) - size, size)
    assert torch.bincount(val.y).tolist() == [2 * c for c in torch.bincount(d.val.y).tolist()]
    assert torch.equal(val.x, D.race_fold(d, 1, size)[1].x)
    with pytest.raises(ValueError):
        D.race_fold(d, 1, len(d.train))


def test_missing_files_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_RUN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError) as e:
        D.load(replace(CFG, root=str(tmp_path / "nothing")), "cpu", 0)
    msg = str(e.value)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "nothing") in msg


@pytest.fixture
def batch(fm_data):
    return fm_data.train.x[:64].float() / 255


@pytest.mark.parametrize("aug", [{"crop": 2}, {"flip": True}, {"rotate": 15.0}, {"scale": 0.2},
                                 {"brightness": 0.2}, {"contrast": 0.3}])
def test_each_augmentation_keeps_shape_and_dtype_and_changes_the_batch(batch, aug):
    torch.manual_seed(0)
    out = augment.pixels(batch.clone(), Augment(**aug))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert not torch.equal(out, batch)
    assert 0 <= out.min() and out.max() <= 1


def test_cutout_zeroes_a_square(batch):
    out = augment.cutout(batch.clone() + 1, 8)
    zeros = (out == 0).flatten(1).sum(1)
    assert out.shape == batch.shape and (zeros > 0).all() and (zeros <= 64).all()
    assert zeros.max() == 64  # a square away from the border is exactly 8 x 8


def test_off_means_identity(batch):
    assert torch.equal(augment.pixels(batch.clone(), Augment()), batch)
    assert torch.equal(augment.cutout(batch, 0), batch)


def test_crop_is_a_translation(batch):
    torch.manual_seed(1)
    out = augment.random_crop(batch, 2)
    # every output image equals its input shifted by at most 2 px in each direction (zeros filled in)
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    for i in range(8):
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 28, dx:dx + 28]) for dy in range(5) for dx in range(5))
