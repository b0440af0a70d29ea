"""Image files as people have them, written from the real Fashion-MNIST slice: phone photos stored sideways with an
EXIF orientation tag, transparent PNGs (RGBA, grey + alpha, palette + tRNS), 16-bit PNGs; each decodes to what a
viewer shows, in training (the folder reader) and in nas-predict (the same decode, as the model recorded it)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from helpers import FM_SLICE
from search import data as D
from search import images as I
from search import metrics
from search.errors import UserError
from search.decode import BEFORE_DECODING_RECORDED, Decoding, header, orientation, read_image, resize, to_channels
from search.space import data_config

WHITE, BLACK = Decoding(), Decoding(background=(0, 0, 0))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real Fashion image as an upright 3-channel (H, W, 3) uint8 picture, 20 x 28 so that sideways shows."""
    raw = D._cached_raw(data_config(dataset="fashion_mnist", root=str(FM_SLICE)))
    x = raw["train_x"][7, 0, 4:24].numpy()
    tint = np.stack([x, (x * 0.6).astype(np.uint8), 255 - x], -1)
    return np.ascontiguousarray(tint)


def _save(img: Image.Image, path, fmt: str, orientation: int | None = None, **kw):
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    img.save(path, fmt, **kw)
    return str(path)


def _upright(stored: Image.Image, orientation: int) -> np.ndarray:
    """The stored pixels as a viewer shows them, by PIL's own table."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    return np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))


def test_a_phone_jpeg_stored_sideways_with_orientation_6_decodes_upright(tmp_path, photo):
    stored = Image.fromarray(np.rot90(photo, 1).copy())  # a camera held sideways: the sensor's pixels, turned
    tagged = _save(stored, tmp_path / "tagged.jpg", "JPEG", 6, quality=95)
    plain = _save(stored, tmp_path / "plain.jpg", "JPEG", quality=95)  # the same JPEG data without the tag
    got = read_image(tagged, 3).permute(1, 2, 0).numpy()
    assert got.shape == photo.shape  # 20 x 28, as shown, not 28 x 20 as stored
    assert np.array_equal(got, np.rot90(read_image(plain, 3).permute(1, 2, 0).numpy(), -1))  # exactly the turn
    luma = to_channels(torch.from_numpy(photo).permute(2, 0, 1)[None], 1)[0, 0].numpy().astype(int)
    seen = read_image(tagged, 1)[0].numpy().astype(int)
    assert np.abs(seen - luma).mean() < 2 < 8 < np.abs(np.flip(seen, 0) - luma).mean()  # the picture, up to JPEG's loss
    assert header(tagged) == (20, 28, False)  # nas-init's scan of sizes sees it upright too
    assert read_image(tagged, 3, BEFORE_DECODING_RECORDED).shape[1:] == (28, 20)  # older models: as they trained
    small = read_image(tagged, 3, size=(10, 14))  # resized as stored, then turned: the same pixels, up to rounding
    assert (small.int() - resize(torch.from_numpy(got).permute(2, 0, 1)[None], (10, 14))[0].int()).abs().max() <= 1
    for c in ("a", "b"):  # in training: a folder of such photos loads upright
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "photos" / c / f"{i}.jpg").write_bytes(open(tagged, "rb").read())
    raw = D._cached_raw(data_config(dataset="folder", root=str(tmp_path / "photos"), channels=3, test_fraction=0.5))
    assert all(np.array_equal(x.permute(1, 2, 0).numpy(), got) for x in (*raw["train_x"], *raw["test_x"]))


def test_the_orientation_is_read_from_either_byte_order_among_other_tags(tmp_path, photo):
    exif = Image.Exif()  # PIL writes big-endian ("MM"), the orientation after the camera's make and model
    exif[0x010F], exif[0x0110], exif[0x0112] = "Phone", "Model X", 8
    Image.fromarray(photo).save(tmp_path / "mm.jpg", "JPEG", exif=exif.tobytes())
    data = (tmp_path / "mm.jpg").read_bytes()
    assert data[data.find(b"Exif") + 6:][:2] == b"MM" and orientation(data, ".jpg") == 8
    entries = [(0x010F, 2, 1, 0), (0x0112, 3, 1, 3)]  # little-endian ("II"), by hand: make, then orientation 3
    tiff = b"II*\0" + (8).to_bytes(4, "little") + len(entries).to_bytes(2, "little") + b"".join(
        t.to_bytes(2, "little") + k.to_bytes(2, "little") + n.to_bytes(4, "little") + v.to_bytes(4, "little")
        for t, k, n, v in entries) + bytes(4)
    segment = b"Exif\0\0" + tiff
    jpeg = data[:2] + b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment + data[data.find(b"\xff\xdb"):]
    assert orientation(jpeg, ".jpg") == 3  # PIL's block replaced by the little-endian one
    assert read_image(str(tmp_path / "mm.jpg"), 3).shape[1:] == (28, 20)
    assert orientation(b"\xff\xd8\xff\xda" + bytes(100), ".jpg") == 1  # no Exif before the pixels: upright


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_every_orientation_in_png_webp_and_tiff_matches_what_a_viewer_shows(tmp_path, photo, fmt):
    """PNG (its eXIf chunk), WebP (its EXIF chunk), TIFF (PIL), lossless each."""
    stored = Image.fromarray(photo)
    for turn in range(1, 9):
        kw = {"lossless": True} if fmt == "WEBP" else {}
        path = _save(stored, tmp_path / f"o{turn}.{fmt.lower()}", fmt, turn, **kw)
        got = read_image(path, 3).permute(1, 2, 0).numpy()
        assert np.array_equal(got, _upright(stored, turn)), (fmt, turn)
        assert header(path)[:2] == got.shape[:2]


def _composite(rgba: np.ndarray, background) -> np.ndarray:
    """By hand: alpha * pixel + (1 - alpha) * background, rounded half up."""
    a = rgba[..., 3:].astype(np.int64)
    return ((rgba[..., :3].astype(np.int64) * a + np.array(background) * (255 - a) + 127) // 255).astype(np.uint8)


def test_an_rgba_png_decodes_to_its_composite_on_the_background_whatever_colour_hides_under_alpha_0(tmp_path, photo):
    rng = np.random.default_rng(0)
    alpha = np.where(photo[..., 0] > 40, 255, 0).astype(np.uint8)  # the garment opaque, the rest transparent
    alpha[:, :3] = 128  # and a half-transparent edge
    files = []
    for i in range(2):  # two files that differ only under alpha 0 (one vendor's black, another's noise)
        hidden = rng.integers(0, 256, photo.shape, dtype=np.uint8)
        rgb = np.where(alpha[..., None] == 0, hidden, photo)
        files.append(_save(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), tmp_path / f"icon{i}.png", "PNG"))
    want = _composite(np.dstack([photo, alpha]), (255, 255, 255))
    for f in files:
        assert np.array_equal(read_image(f, 3).permute(1, 2, 0).numpy(), want)
        assert np.array_equal(read_image(f, 3, BLACK).permute(1, 2, 0).numpy(), _composite(np.dstack([photo, alpha]), (0, 0, 0)))
    dropped = [read_image(f, 3, BEFORE_DECODING_RECORDED) for f in files]
    assert not torch.equal(*dropped)  # what nas-run did before: the hidden colours leaked into the pixels
    webp = _save(Image.open(files[1]), tmp_path / "icon.webp", "WEBP", lossless=True, exact=True)
    assert np.array_equal(read_image(webp, 3).permute(1, 2, 0).numpy(), want)
    # in training: the folder reader decodes through the same function
    for c in ("a", "b"):
        (tmp_path / "folder" / c).mkdir(parents=True)
        for i, f in enumerate(files):
            (tmp_path / "folder" / c / f"{i}.png").write_bytes(open(f, "rb").read())
    raw = D._cached_raw(data_config(dataset="folder", root=str(tmp_path / "folder"), test_fraction=0.5))
    for x in (*raw["train_x"], *raw["test_x"]):
        assert np.array_equal(x.permute(1, 2, 0).numpy(), want)


def test_grey_alpha_palette_trns_and_16_bit_pngs_decode(tmp_path, photo):
    grey = photo[..., 0]
    alpha = np.where(grey > 40, 255, 0).astype(np.uint8)
    la = _save(Image.fromarray(np.dstack([grey, 255 - grey]), "LA"), tmp_path / "la.png", "PNG")
    got = read_image(la, None)
    assert got.shape[0] == 1  # grey over a white background stays grey
    want = ((grey.astype(int) * (255 - grey) + 255 * grey.astype(int) + 127) // 255).astype(np.uint8)
    assert np.array_equal(got[0].numpy(), want)
    assert read_image(la, None, Decoding(background=(255, 0, 0))).shape[0] == 3  # over red it turns colour

    palette = Image.fromarray(photo).quantize(16)
    p = _save(palette, tmp_path / "p.png", "PNG")
    assert np.array_equal(read_image(p, None).permute(1, 2, 0).numpy(), np.array(palette.convert("RGB")))  # colours
    index = int(np.array(palette)[0, 0])
    ptrns = _save(palette, tmp_path / "ptrns.png", "PNG", transparency=index)
    rgba = np.array(Image.open(ptrns).convert("RGBA"))
    assert (rgba[..., 3] == 0).any()
    assert np.array_equal(read_image(ptrns, 3).permute(1, 2, 0).numpy(), _composite(rgba, (255, 255, 255)))
    gtrns = _save(Image.fromarray(grey), tmp_path / "gtrns.png", "PNG", transparency=int(grey[0, 0]))  # colour key
    assert read_image(gtrns, 1)[0, 0, 0] == 255

    deep = (grey.astype(np.uint16) * 257 + (grey < 255) * 100).astype(np.uint16)  # rounds to the 8-bit image
    g16 = _save(Image.fromarray(deep), tmp_path / "g16.png", "PNG")
    assert np.array_equal(read_image(g16, 1)[0].numpy(), grey)
    rgba16 = np.dstack([photo, alpha]).astype(np.uint16) * 257
    f = tmp_path / "rgba16.png"
    f.write_bytes(_png16(rgba16))
    assert np.array_equal(read_image(str(f), 3).permute(1, 2, 0).numpy(), _composite(np.dstack([photo, alpha]), (255,) * 3))
    assert Image.open(f).mode == "RGBA"  # a real 16-bit RGBA PNG, as PIL reads it


def _png16(rgba: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG (colour type 6, depth 16), written by hand: PIL writes no such files."""
    h, w, _ = rgba.shape
    rows = b"".join(b"\0" + rgba[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_the_folder_cache_is_keyed_by_how_files_are_decoded(tmp_path, photo):
    """A changed background decodes again (the pixels differ); an unchanged one reads the cache."""
    for c in ("a", "b"):
        (tmp_path / "f" / c).mkdir(parents=True)
        for i in range(2):
            _save(Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 100, np.uint8)]), "RGBA"),
                  tmp_path / "f" / c / f"{i}.png", "PNG")
    white = D._cached_raw(data_config(dataset="folder", root=str(tmp_path / "f"), test_fraction=0.5))
    black = D._cached_raw(data_config(dataset="folder", root=str(tmp_path / "f"), test_fraction=0.5, background="black"))
    assert (white["train_x"].int() - black["train_x"].int()).min() > 0


def test_balanced_accuracy_is_the_mean_per_class_recall_counted_by_hand():
    y = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0])
    assert metrics.score(pred, y, "accuracy") == pytest.approx(8 / 11)
    assert metrics.score(pred, y, "balanced_accuracy") == pytest.approx((7 / 8 + 1 / 2 + 0 / 1) / 3)
    cm = metrics.confusion(pred, y, 4)  # a class without images counts in no mean
    assert metrics.recalls(cm)[3] is None and metrics.balanced_accuracy(cm) == pytest.approx((7 / 8 + 1 / 2) / 3)


def test_an_npz_says_the_pixel_range_it_found(tmp_path):
    x = np.random.default_rng(0).integers(0, 17, (20, 8, 8), dtype=np.uint8)  # scikit-learn's digits, stored as is
    y = np.arange(20) % 2
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    d = D.load(data_config(dataset="arrays", root=str(tmp_path / "digits.npz")), "cpu", 0)
    assert len(d.notes) == 1 and "uint8 pixels from 0 to 16" in d.notes[0] and "nas-predict" in d.notes[0]
    np.savez(tmp_path / "f255.npz", x_train=x.astype(np.float32) * 15, y_train=y, x_test=x * 15.0, y_test=y)
    d = D.load(data_config(dataset="arrays", root=str(tmp_path / "f255.npz")), "cpu", 0)
    assert "whole-number floats from 0 to 240" in d.notes[0] and d.train.x.max() == 240
    np.savez(tmp_path / "norm.npz", x_train=x / 8.0 - 1, y_train=y, x_test=x / 8.0 - 1, y_test=y)
    with pytest.raises(UserError, match=r"x_train: dtype float64, from -1 to 1 \(expected uint8 pixels"):
        I.read_npz(tmp_path / "norm.npz")
