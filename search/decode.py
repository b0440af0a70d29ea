"""One image file -> uint8 (C, H, W) pixels as an image viewer shows them: the EXIF orientation applied, transparent
pixels composited onto a background, 16-bit samples brought to 8 bits, 1 or 3 channels. The one decoding path for
training data (images.py) and nas-predict alike; `Decoding` says how, and travels with the exported model.

torchvision.io's decode op does the work (libjpeg-turbo, libpng, libwebp, gif). PIL reads what it does not: BMP and
TIFF, a PNG whose transparency is a tRNS colour key on grey or RGB pixels, a GIF with a transparent index. The
orientation tag of a JPEG, PNG or WebP is read here from its EXIF block and applied after any resize: turning a
phone photo's full-size pixels costs a third of decoding them, turning the resized ones almost nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.errors import UserError

GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes without colour
ORIENTATION = 0x0112  # the EXIF tag
SIDEWAYS = (5, 6, 7, 8)  # orientations that swap height and width
# torchvision.io.ImageReadMode values, as the op takes them
UNCHANGED, GRAY, GRAY_ALPHA, RGB, RGB_ALPHA = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Decoding:
    """How a file's pixels are read. `orient`: apply the EXIF orientation (phones store the sensor's pixels and a tag
    that every viewer rotates by). `background`: the RGB colour transparent pixels are composited onto; None drops
    alpha, which exposes whatever colour the file keeps under transparent pixels (how nas-run read them before)."""

    orient: bool = True
    background: tuple[int, int, int] | None = (255, 255, 255)

    def to_json(self) -> dict:
        return {"exif_orientation": self.orient, "background": list(self.background) if self.background else None}

    @classmethod
    def from_json(cls, d: dict | None) -> Decoding:
        """A model's decoding; None (exported before it was recorded): how those models' images were read."""
        if d is None:
            return BEFORE_DECODING_RECORDED
        return cls(bool(d["exif_orientation"]), tuple(d["background"]) if d.get("background") else None)


BEFORE_DECODING_RECORDED = Decoding(orient=False, background=None)


def read_image(path: str, channels: int | None, decoding: Decoding = Decoding(),
               size: tuple[int, int] | None = None) -> torch.Tensor:
    """One image file -> uint8 (C, H, W), upright when `decoding.orient`, resized to `size` (H, W as shown) or at its
    own size (None): C = `channels`, or (None) its own, 1 or 3. UserError names the file."""
    ext = path[path.rfind("."):].lower()
    turn = 1
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        x = _torchvision(data, ext, channels, decoding) if ext in (".png", ".jpg", ".jpeg", ".gif", ".webp") else None
        if x is None:
            x = _pil(path, channels, decoding)  # PIL turns it itself
        elif decoding.orient:
            turn = orientation(data, ext)
    except (RuntimeError, OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError for some broken files
        raise UserError(f"{path}: not a readable image ({_reason(e)})") from None
    if x.shape[0] not in (1, 3) or (channels and x.shape[0] != channels):
        x = to_channels(x.unsqueeze(0), channels or (1 if x.shape[0] == 2 else 3))[0]
    if size is not None:
        x = resize(x.unsqueeze(0), size[::-1] if turn in SIDEWAYS else size)[0]
    return orient(x, turn)


def _torchvision(data: bytes, ext: str, channels: int | None, decoding: Decoding) -> torch.Tensor | None:
    """The decode op (its wrapper, torchvision.io.decode_image, costs more than decoding a small PNG); None for the
    files PIL reads instead."""
    import torchvision.io  # noqa: F401  (registers torch.ops.image)

    grey_out = channels == 1
    alpha = False
    if ext == ".png":
        kind, colour_key = _png_header(data)
        if colour_key and kind in (0, 2):  # tRNS on grey or RGB: libpng's modes ignore it
            return None if decoding.background else _decode(data, GRAY if grey_out or kind == 0 else RGB)
        alpha = kind in (4, 6) or (kind == 3 and colour_key)
        grey_in = kind in (0, 4)
        if alpha and decoding.background:
            mode = GRAY_ALPHA if grey_in else RGB_ALPHA
        else:  # libpng converts; a palette image asked for UNCHANGED comes back as raw indices, so never that
            mode = GRAY if grey_out or (channels is None and grey_in) else RGB
    elif ext == ".gif":
        if decoding.background and _gif_transparent(data):
            return None
        mode = RGB  # GIF and WebP decode in colour whatever mode is asked: converted below
    elif ext == ".webp":
        mode = UNCHANGED if decoding.background else RGB  # 4 channels when the file has alpha
        alpha = True
    else:
        mode = GRAY if grey_out else UNCHANGED if channels is None else RGB
    x = _decode(data, mode)
    if x.dim() == 4:  # an animated GIF: its first frame
        x = x[0]
    if x.dtype != torch.uint8:  # 16-bit PNG samples
        x = ((x.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    if alpha and x.shape[0] in (2, 4):
        x = composite(x, decoding.background, channels) if decoding.background else x[:-1]
    return x


def _decode(data: bytes, mode: int) -> torch.Tensor:
    """The pixels as stored (read_image applies the orientation, after any resize)."""
    return torch.ops.image.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode, False)


def _pil(path: str, channels: int | None, decoding: Decoding) -> torch.Tensor:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if decoding.orient:
            im = ImageOps.exif_transpose(im)
        grey = channels == 1 or (channels is None and im.mode in GREY_MODES)
        if decoding.background and (im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info):
            a = np.array(im.convert("LA" if im.mode in GREY_MODES else "RGBA"), dtype=np.uint8)
            return composite(torch.from_numpy(a).permute(2, 0, 1), decoding.background, channels)
        if im.mode.startswith("I;16") or (im.mode == "I" and im.getextrema()[1] > 255):  # 16-bit grey (TIFF, PNG)
            a = np.array(im, dtype=np.int64).clip(0, 65535)
            a = ((a * 255 + 32767) // 65535).astype(np.uint8)
        else:
            a = np.array(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    x = torch.from_numpy(a)
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)


def composite(x: torch.Tensor, background: tuple[int, int, int], channels: int | None) -> torch.Tensor:
    """uint8 (C + 1, H, W), alpha last -> the pixels over `background`, alpha * pixel + (1 - alpha) * background,
    rounded; in `channels`, or (None) the image's own (a grey image over a coloured background turns colour)."""
    pixels, a = x[:-1], x[-1:].to(torch.int32)
    grey_background = len(set(background)) == 1
    out = channels or (3 if pixels.shape[0] == 3 or not grey_background else 1)
    pixels = to_channels(pixels.unsqueeze(0), out)[0].to(torch.int32)
    bg = torch.tensor(background, dtype=torch.int32).view(1, 3, 1, 1)
    bg = (bg if out == 3 else to_channels(bg.to(torch.uint8), 1).to(torch.int32))[0]
    return ((pixels * a + bg * (255 - a) + 127) // 255).to(torch.uint8)


def orient(x: torch.Tensor, turn: int) -> torch.Tensor:
    """(C, H, W) stored pixels -> as shown, for EXIF orientation 1-8 (mirrors, quarter turns and their products)."""
    if turn in SIDEWAYS:
        x = x.transpose(-1, -2)
    flips = {2: (-1,), 3: (-1, -2), 4: (-2,), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(turn, ())
    return x.flip(flips) if flips else x.contiguous()


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, *size): bilinear, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x.float(), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def orientation(data: bytes, ext: str) -> int:
    """The EXIF orientation (1-8; 1 without a tag) of a JPEG (its APP1 block), PNG (an eXIf chunk before the pixels)
    or WebP (its EXIF chunk), read from the bytes: a few microseconds, no decoder."""
    if ext in (".jpg", ".jpeg"):
        tiff = _jpeg_exif(data)
    elif ext == ".png":
        tiff = _png_chunk(data, b"eXIf") or b""
    elif ext == ".webp":
        at = data.find(b"EXIF", 12)
        tiff = data[at + 8:at + 8 + int.from_bytes(data[at + 4:at + 8], "little")] if at > 0 else b""
    else:
        return 1
    return _tiff_orientation(tiff[6:] if tiff.startswith(b"Exif\0\0") else tiff)


def _jpeg_exif(data: bytes) -> bytes:
    """The TIFF block of a JPEG's APP1 "Exif" segment (b"" without one); the scan stops where the pixels begin."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            break
        size = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\0\0":
            return data[pos + 10:pos + 2 + size]
        pos += 2 + size
    return b""


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of a TIFF block's first directory (EXIF keeps the orientation there)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = ifd + 2 + 12 * i
        if int.from_bytes(tiff[entry:entry + 2], order) == ORIENTATION:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def _png_header(data: bytes) -> tuple[int, bool]:
    """(colour type, has a tRNS chunk) of a PNG (16-bit samples are found by the decoder's dtype)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33:
        raise ValueError("not a PNG file")
    return data[25], _png_chunk(data, b"tRNS") is not None


def _png_chunk(data: bytes, name: bytes) -> bytes | None:
    """The data of a PNG's chunk `name` among those before the pixels (None without one)."""
    pos = 8
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            break
        if kind == name:
            return data[pos + 8:pos + 8 + size]
        pos += 12 + size
    return None


def _gif_transparent(data: bytes) -> bool:
    """A GIF graphic control extension with its transparency flag set (a stray match only sends it through PIL)."""
    return any(data[m.end()] & 1 for m in re.finditer(rb"\x21\xf9\x04", data) if m.end() < len(data))


def header(path: Path, decoding: Decoding = Decoding()) -> tuple[int, int, bool]:
    """(height, width, grey) as `read_image` will return them (sideways orientations swap the two), from the file's
    header without decoding the pixels."""
    from PIL import Image

    ext = str(path)[str(path).rfind("."):].lower()
    try:
        with Image.open(path) as im:
            if im.format == "TIFF":  # PIL's TIFF reader gives an oriented size until it loads, the stored one after
                im.load()
            h, w, grey = im.height, im.width, im.mode in GREY_MODES
            if decoding.orient:
                own = ext in (".jpg", ".jpeg", ".png", ".webp")  # read_image reads these tags itself
                turn = orientation(Path(path).read_bytes(), ext) if own else int(im.getexif().get(ORIENTATION, 1))
                if turn in SIDEWAYS:
                    h, w = w, h
            return h, w, grey
    except Exception as e:  # PIL raises many types for a bad file; each is the same one line to the user
        raise UserError(f"{path}: not a readable image ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    """The decoder's own words, without the C++ source location torchvision's errors start with."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"^.*?\.cpp:\d+,\s*", "", text)
    return text[:160]


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in 1-4 (alpha dropped) -> `channels` channels. Colour to grey with ITU-R 601
    luma weights (PIL's "L"), grey to colour by repeating."""
    if x.shape[1] in (2, 4):
        x = x[:, :x.shape[1] - 1]
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    return ((x.int() * w).sum(1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)
