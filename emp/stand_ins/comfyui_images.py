"""Pixels for the fake ComfyUI, in pure Python (no Pillow, no numpy, no torch).

An IMAGE travelling between fake nodes is a list of :class:`Frame` (ComfyUI's ``[B, H, W, 3]``
float tensor, one frame per batch item), each frame 8-bit RGB. This module writes and reads PNG,
writes the JPEG preview frames and the ``/view?preview=webp|jpeg`` re-encodes, and renders a frame
batch the way ``str(torch.Tensor)`` does (``execution_error.current_inputs`` shows inputs so).

Simplified on purpose: the JPEG writer keeps each 8x8 block's mean only (a valid baseline JFIF
image, blocky); the WebP writer is lossless VP8L without compression tricks (valid, large);
PNG reading covers non-interlaced 1/2/4/8/16-bit images of every colour type.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Frame:
    """One image: ``rgb`` holds ``width * height * 3`` bytes, row-major; ``alpha`` optional."""

    width: int
    height: int
    rgb: bytes
    alpha: bytes | None = field(default=None, repr=False)

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * 3
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]


def solid(width: int, height: int, color: int) -> Frame:
    """EmptyImage's frame: ``color`` is 0xRRGGBB."""
    px = bytes(((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
    return Frame(width, height, px * (width * height))


def gradient(width: int, height: int, seed: int) -> Frame:
    """A deterministic picture for a seed (what the fake sampler 'generates')."""
    r0, g0, b0 = (seed * 73) % 256, (seed * 151) % 256, (seed * 199) % 256
    rows = bytearray()
    for y in range(height):
        gy = (g0 + (y * 255) // max(1, height - 1)) % 256
        for x in range(width):
            rows += bytes(((r0 + (x * 255) // max(1, width - 1)) % 256, gy, (b0 + x + y) % 256))
    return Frame(width, height, bytes(rows))


_INVERT = bytes(255 - v for v in range(256))


def invert(frame: Frame) -> Frame:
    return Frame(frame.width, frame.height, frame.rgb.translate(_INVERT))


def crop_center(frame: Frame, width: int, height: int) -> Frame:
    """ComfyUI's ``common_upscale(..., crop="center")`` crop before the resize."""
    ow, oh = frame.width, frame.height
    old_aspect, new_aspect = ow / oh, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((ow - ow * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((oh - oh * (old_aspect / new_aspect)) / 2)
    if x == 0 and y == 0:
        return frame
    nw, nh = ow - 2 * x, oh - 2 * y
    rows = bytearray()
    for row in range(y, y + nh):
        start = (row * ow + x) * 3
        rows += frame.rgb[start : start + nw * 3]
    return Frame(nw, nh, bytes(rows))


def resize(frame: Frame, width: int, height: int, method: str) -> Frame:
    """nearest-exact is exact; every other method is done as bilinear (a simplification)."""
    sw, sh, src = frame.width, frame.height, frame.rgb
    out = bytearray(width * height * 3)
    if method == "nearest-exact":
        for y in range(height):
            sy = min(sh - 1, int((y + 0.5) * sh / height))
            for x in range(width):
                sx = min(sw - 1, int((x + 0.5) * sw / width))
                si, di = (sy * sw + sx) * 3, (y * width + x) * 3
                out[di : di + 3] = src[si : si + 3]
        return Frame(width, height, bytes(out))
    for y in range(height):
        fy = max(0.0, (y + 0.5) * sh / height - 0.5)
        y0 = min(sh - 1, int(fy))
        y1, wy = min(sh - 1, y0 + 1), fy - int(fy)
        for x in range(width):
            fx = max(0.0, (x + 0.5) * sw / width - 0.5)
            x0 = min(sw - 1, int(fx))
            x1, wx = min(sw - 1, x0 + 1), fx - int(fx)
            a, b = (y0 * sw + x0) * 3, (y0 * sw + x1) * 3
            c, d = (y1 * sw + x0) * 3, (y1 * sw + x1) * 3
            di = (y * width + x) * 3
            for k in range(3):
                top = src[a + k] * (1 - wx) + src[b + k] * wx
                bottom = src[c + k] * (1 - wx) + src[d + k] * wx
                out[di + k] = int(top * (1 - wy) + bottom * wy + 0.5)
    return Frame(width, height, bytes(out))


# ---------------------------------------------------------------- PNG


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(frame: Frame, text: list[tuple[str, str]] | None = None, compress_level: int = 4) -> bytes:
    """An 8-bit RGB (RGBA when the frame has alpha) PNG with optional tEXt chunks (ComfyUI's metadata)."""
    w, h = frame.width, frame.height
    if frame.alpha is not None:
        color_type, stride = 6, w * 4
        px = bytearray(w * h * 4)
        px[0::4], px[1::4], px[2::4], px[3::4] = frame.rgb[0::3], frame.rgb[1::3], frame.rgb[2::3], frame.alpha
        data = bytes(px)
    else:
        color_type, stride, data = 2, w * 3, frame.rgb
    raw = b"".join(b"\x00" + data[r * stride : (r + 1) * stride] for r in range(h))
    out = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))]
    for key, value in text or []:
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw, compress_level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


class UnidentifiedImageError(OSError):
    """What PIL raises for a file it cannot read (the fake's LoadImage raises it the same way)."""


UnidentifiedImageError.__module__ = "PIL"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    out = bytearray(height * stride)
    prev = bytearray(stride)
    pos = 0
    for r in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        elif ftype != 0:
            raise UnidentifiedImageError(f"bad PNG filter type {ftype}")
        out[r * stride : (r + 1) * stride] = line
        prev = line
    return out


def decode_png(data: bytes) -> Frame:
    """A PNG file as an 8-bit RGB frame (alpha kept when present). UnidentifiedImageError otherwise."""
    if not data.startswith(PNG_SIGNATURE):
        raise UnidentifiedImageError("not a PNG file")
    pos, idat, palette, trns = 8, bytearray(), b"", b""
    width = height = depth = ctype = interlace = -1
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if width <= 0 or channels is None or depth not in (1, 2, 4, 8, 16) or interlace != 0:
        raise UnidentifiedImageError("unsupported PNG (the fake reads non-interlaced PNGs only)")
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise UnidentifiedImageError(f"broken PNG data: {exc}") from exc
    bits = channels * depth
    stride, bpp = (width * bits + 7) // 8, max(1, bits // 8)
    px = _unfilter(raw, height, stride, bpp)
    samples = _samples(px, width, height, stride, depth, channels, ctype)
    return _to_frame(samples, width, height, channels, ctype, palette, trns)


def _samples(px: bytearray, width: int, height: int, stride: int, depth: int, channels: int, ctype: int) -> list[int]:
    """Unfiltered scanlines as one 8-bit sample per channel (palette indices kept as they are)."""
    samples: list[int] = []
    for r in range(height):
        row = px[r * stride : (r + 1) * stride]
        if depth == 8:
            samples.extend(row)
        elif depth == 16:
            samples.extend(row[0::2])
        else:
            per, mask = 8 // depth, (1 << depth) - 1
            vals = [(byte >> (8 - depth * (k + 1))) & mask for byte in row for k in range(per)]
            vals = vals[: width * channels]
            samples.extend(vals if ctype == 3 else [v * 255 // mask for v in vals])
    return samples


def _to_frame(
    samples: list[int], width: int, height: int, channels: int, ctype: int, palette: bytes, trns: bytes
) -> Frame:
    rgb, alpha = bytearray(), bytearray()
    n = width * height
    if ctype == 3:
        for i in range(n):
            idx = samples[i]
            rgb += palette[idx * 3 : idx * 3 + 3]
            alpha.append(trns[idx] if idx < len(trns) else 255)
        return Frame(width, height, bytes(rgb), bytes(alpha) if trns else None)
    for i in range(n):
        s = samples[i * channels : (i + 1) * channels]
        rgb += bytes((s[0], s[0], s[0])) if ctype in (0, 4) else bytes(s[:3])
        if ctype in (4, 6):
            alpha.append(s[-1])
    return Frame(width, height, bytes(rgb), bytes(alpha) if ctype in (4, 6) else None)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF or WebP file; None when the format is unknown."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        if data[12:16] == b"VP8L":
            b = data[21:25]
            return 1 + (((b[1] & 0x3F) << 8) | b[0]), 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | (b[1] >> 6))
        if data[12:16] == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        return None
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if marker in (0xC0, 0xC1, 0xC2, 0xC3) and pos + 9 <= len(data):
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return w, h
            pos += 2 + length
    return None


def decode_any(data: bytes) -> Frame:
    """LoadImage's reader: PNG exactly; JPEG/GIF/WebP as a mid-grey frame of the right size."""
    if data.startswith(PNG_SIGNATURE):
        return decode_png(data)
    size = image_size(data)
    if size is None:
        raise UnidentifiedImageError("cannot identify image file")
    return solid(size[0], size[1], 0x808080)


# ---------------------------------------------------------------- JPEG (block means only)

_DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
_DC_VALS = list(range(12))
_AC_BITS = [0, 2] + [0] * 14  # a two-symbol table: EOB and ZRL, two bits each
_AC_VALS = [0x00, 0xF0]


def _huffman_codes(bits: list[int], vals: list[int]) -> dict[int, tuple[int, int]]:
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class _BitWriterMSB:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc = self.n = 0

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def encode_jpeg(frame: Frame) -> bytes:
    """A baseline JFIF JPEG whose 8x8 blocks carry their mean colour (starts ffd8ffe0 like PIL's)."""
    w, h, rgb = frame.width, frame.height, frame.rgb
    dc_codes, ac_codes = _huffman_codes(_DC_BITS, _DC_VALS), _huffman_codes(_AC_BITS, _AC_VALS)
    bw = _BitWriterMSB()
    pred = [0, 0, 0]
    for by in range(0, h, 8):
        for bx in range(0, w, 8):
            sums = [0.0, 0.0, 0.0]
            for y in range(by, by + 8):
                yy = min(y, h - 1)
                for x in range(bx, bx + 8):
                    i = (yy * w + min(x, w - 1)) * 3
                    r, g, b = rgb[i], rgb[i + 1], rgb[i + 2]
                    sums[0] += 0.299 * r + 0.587 * g + 0.114 * b
                    sums[1] += -0.168736 * r - 0.331264 * g + 0.5 * b + 128
                    sums[2] += 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            for c in range(3):
                dc = max(-1024, min(1016, round(8 * (sums[c] / 64 - 128))))
                diff, pred[c] = dc - pred[c], dc
                size = abs(diff).bit_length()
                code, length = dc_codes[size]
                bw.write(code, length)
                if size:
                    bw.write(diff if diff > 0 else diff + (1 << size) - 1, size)
                code, length = ac_codes[0x00]
                bw.write(code, length)
    scan = bw.flush()

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    dqt = bytes([0]) + bytes([1] * 64)
    sof = struct.pack(">BHHB", 8, h, w, 3) + b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    dht = bytes([0x00]) + bytes(_DC_BITS) + bytes(_DC_VALS) + bytes([0x10]) + bytes(_AC_BITS) + bytes(_AC_VALS)
    sos = bytes([3]) + b"".join(bytes([i, 0x00]) for i in (1, 2, 3)) + bytes([0, 63, 0])
    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xDB, dqt)
        + segment(0xC0, sof)
        + segment(0xC4, dht)
        + segment(0xDA, sos)
        + scan
        + b"\xff\xd9"
    )


# ---------------------------------------------------------------- WebP (lossless, uncompressed codes)


class _BitWriterLSB:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc |= (value & ((1 << length) - 1)) << self.n
        self.n += length
        while self.n >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.n -= 8

    def flush(self) -> bytes:
        if self.n:
            self.out.append(self.acc & 0xFF)
            self.acc = self.n = 0
        return bytes(self.out)


_CODE_LENGTH_ORDER = [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]


def _write_flat_code(bw: _BitWriterLSB, alphabet: int) -> None:
    """A normal prefix code giving symbols 0..255 8-bit codes and the rest none."""
    bw.write(0, 1)  # not a simple code
    bw.write(12 - 4, 4)  # code-length code lengths for the first 12 entries of the order
    for sym in _CODE_LENGTH_ORDER[:12]:
        bw.write(1 if sym in (0, 8) else 0, 3)
    bw.write(0, 1)  # no max_symbol: every alphabet entry follows
    for s in range(alphabet):
        bw.write(1 if s < 256 else 0, 1)  # code-length code: '0' = length 0, '1' = length 8


def _write_simple_code(bw: _BitWriterLSB, symbol: int) -> None:
    bw.write(1, 1)  # simple code
    bw.write(0, 1)  # one symbol
    bw.write(1, 1)  # 8-bit symbol
    bw.write(symbol, 8)


def encode_webp(frame: Frame) -> bytes:
    """A lossless VP8L WebP of the frame (opaque)."""
    w, h, rgb = frame.width, frame.height, frame.rgb
    bw = _BitWriterLSB()
    bw.write(0x2F, 8)
    bw.write(w - 1, 14)
    bw.write(h - 1, 14)
    bw.write(0, 1)  # alpha unused
    bw.write(0, 3)  # version
    bw.write(0, 1)  # no transform
    bw.write(0, 1)  # no colour cache
    bw.write(0, 1)  # no meta prefix codes
    _write_flat_code(bw, 256 + 24)  # green + length prefixes
    _write_flat_code(bw, 256)  # red
    _write_flat_code(bw, 256)  # blue
    _write_simple_code(bw, 255)  # alpha: always 255
    _write_simple_code(bw, 0)  # distance: unused
    rev = [int(f"{v:08b}"[::-1], 2) for v in range(256)]  # canonical codes are read MSB first
    for i in range(0, w * h * 3, 3):
        bw.write(rev[rgb[i + 1]], 8)
        bw.write(rev[rgb[i]], 8)
        bw.write(rev[rgb[i + 2]], 8)
    body = bw.flush()
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


# ---------------------------------------------------------------- str(torch.Tensor)


def tensor_repr(frames: list[Frame]) -> str:
    """``str()`` of the ``[B, H, W, 3]`` float32 tensor these frames stand for (torch's print options:
    precision 4, summarised with 3 edge items past 1000 elements)."""
    if not frames:
        return "tensor([], size=(0, 0, 0, 3))"
    b, h, w = len(frames), frames[0].height, frames[0].width
    summarize = b * h * w * 3 > 1000

    def pick(n: int) -> list[int | None]:
        return [*range(3), None, *range(n - 3, n)] if summarize and n > 6 else list(range(n))

    shown = [
        (fi, y, x)
        for fi in pick(b)
        if fi is not None
        for y in pick(h)
        if y is not None
        for x in pick(w)
        if x is not None
    ]
    values = {v for fi, y, x in shown for v in frames[fi].pixel(x, y)}
    int_mode = all(v in (0, 255) for v in values)

    def fmt(v: int) -> str:
        return f"{v // 255:.0f}." if int_mode else f"{v / 255:.4f}"

    width = max(len(fmt(v)) for v in values)

    def row(fi: int, y: int, indent: int) -> str:
        items = []
        for x in pick(w):
            if x is None:
                items.append("...")
                continue
            items.append("[" + ", ".join(fmt(c).rjust(width) for c in frames[fi].pixel(x, y)) + "]")
        return "[" + (",\n" + " " * (indent + 1)).join(items) + "]"

    def image(fi: int, indent: int) -> str:
        rows = ["..." if y is None else row(fi, y, indent + 1) for y in pick(h)]
        return "[" + (",\n\n" + " " * (indent + 1)).join(rows) + "]"

    images = ["..." if fi is None else image(fi, 8) for fi in pick(b)]
    return "tensor([" + (",\n\n\n" + " " * 8).join(images) + "])"
