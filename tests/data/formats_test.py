#!/usr/bin/python3
"""data_decode against files written by other programs (PIL, ImageMagick's
convert, exiftool, libjpeg-turbo through ctypes for YCCK): every format and
colour type decodes to the pixels PIL (or ImageMagick, where PIL cannot read
the file) decodes, within a stated tolerance; the eight EXIF orientations are
applied (and kept raw with --raw); truncated, damaged and bomb files of each
format give the right error kind and a sentence naming the format.

  formats_test.py DECODE_DUMP [FC7_DUMP]   (tests/data's decode_dump, fc7_dump)

Tolerances (max abs difference per channel value):
  lossless files (PNG, lossless WebP, GIF, TIFF, BMP): 0 against the source;
    alpha composited on white: 1 (rounding of (a*c + (255-a)*255) / 255)
  JPEG against PIL's decode of the same file: 2 (both are libjpeg-turbo's
    islow IDCT with fancy upsampling; TurboJPEG and PIL's libjpeg build may
    round the colour conversion differently)
  CMYK/YCCK JPEG against PIL: 2 (the same naive conversion, PIL's rounding)
  lossy WebP against PIL's decode (the same libwebp): 0
  HEIF/AVIF against ImageMagick's decode: mean 1.0, max 16 (both decode
    through libheif, but ImageMagick's coder upsamples the 4:2:0 chroma and
    converts YCbCr to RGB itself: 0.4% of the values differ by more than 2,
    at the sharp colour edges; the mean difference is 0.7)
"""
import ctypes
import io
import os
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
from PIL import Image, ImageOps

DUMP = sys.argv[1]
FC7 = sys.argv[2] if len(sys.argv) > 2 else None
TMP = tempfile.mkdtemp(prefix="imgret-formats-")
FAILS = []
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        FAILS.append(what)
        print("FAIL", what)


def path(name):
    return os.path.join(TMP, name)


def decode(p, *flags):
    """(array HxWxC uint8, None) or (None, 'KIND message')."""
    out = p + ".pnm"
    r = subprocess.run([DUMP, *flags, p, out], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None, r.stdout.strip() + r.stderr.strip()
    with Image.open(out) as im:
        a = np.asarray(im)
    return (a[:, :, None] if a.ndim == 2 else a), None


def arr(im):
    a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def on_white(rgba):
    a = rgba.astype(np.int64)
    al = a[:, :, 3:4]
    return ((al * a[:, :, :3] + (255 - al) * 255 + 127) // 255).astype(np.uint8)


def compare(name, p, expect, tol, *flags, mean_tol=None):
    got, err = decode(p, *flags)
    if got is None:
        check(False, f"{name}: decode failed: {err}")
        return None
    if got.shape != expect.shape:
        check(False, f"{name}: shape {got.shape}, expected {expect.shape}")
        return got
    diff = np.abs(got.astype(np.int64) - expect.astype(np.int64))
    d, mean = int(diff.max()), float(diff.mean())
    check(d <= tol, f"{name}: max difference {d} > {tol}")
    if mean_tol is not None:
        check(mean <= mean_tol, f"{name}: mean difference {mean:.3f} > {mean_tol}")
    print(f"ok {name}: {got.shape[1]}x{got.shape[0]}x{got.shape[2]}, max diff {d} (tol {tol}), "
          f"mean {mean:.3f}")
    return got


def expect_error(name, p, kinds, fmt):
    got, err = decode(p)
    check(got is None, f"{name}: decoded, expected an error")
    if got is not None:
        return
    kind = err.split(" ", 1)[0]
    check(kind in kinds, f"{name}: kind {kind}, expected {kinds}: {err}")
    check(fmt in err, f"{name}: message does not name {fmt}: {err}")
    check(p in err, f"{name}: message does not name the file: {err}")
    print(f"ok {name}: {err}")


def im_convert(*args):
    subprocess.run(["convert", *args], check=True, capture_output=True, timeout=120)


# ---------------------------------------------------------------- sources
W, H = 67, 45  # odd sizes: row padding and strides
yy, xx = np.mgrid[0:H, 0:W]
SRC = np.stack([(xx * 255 // (W - 1)), (yy * 255 // (H - 1)), ((xx + yy) * 7) % 256], axis=2)
SRC = SRC.astype(np.uint8)
SRC[10:20, 30:40] = (250, 10, 10)
ALPHA = ((xx * 255) // (W - 1)).astype(np.uint8)
ALPHA[:, :5] = 0
SRC_RGBA = np.dstack([SRC, ALPHA])
GREY = ((xx * 3 + yy * 2) % 256).astype(np.uint8)
Image.fromarray(SRC).save(path("src.png"))
Image.fromarray(SRC_RGBA, "RGBA").save(path("src_rgba.png"))
Image.fromarray(GREY, "L").save(path("grey.png"))
PAL = Image.fromarray(SRC).quantize(64)  # a P image: its own RGB is the reference
PAL_RGB = arr(PAL.convert("RGB"))

# ------------------------------------------------------------------- JPEG
Image.fromarray(SRC).save(path("rgb.jpg"), quality=95)
compare("JPEG RGB (PIL)", path("rgb.jpg"), arr(Image.open(path("rgb.jpg")).convert("RGB")), 2)
Image.fromarray(GREY, "L").save(path("grey.jpg"), quality=95)
compare("JPEG grey (PIL)", path("grey.jpg"), arr(Image.open(path("grey.jpg"))), 2)
compare("JPEG grey as RGB", path("grey.jpg"),
        np.repeat(arr(Image.open(path("grey.jpg"))), 3, axis=2), 2, "--channels", "3")
im_convert(path("src.png"), "-colorspace", "CMYK", "-quality", "95", path("cmyk.jpg"))
check(Image.open(path("cmyk.jpg")).mode == "CMYK", "convert wrote a CMYK JPEG")
got = compare("JPEG CMYK (convert -colorspace CMYK)", path("cmyk.jpg"),
              arr(Image.open(path("cmyk.jpg")).convert("RGB")), 2)
if got is not None:  # and near the RGB original it was made from
    mean = np.abs(got.astype(float) - SRC).mean()
    check(mean < 6, f"CMYK JPEG vs its RGB original: mean difference {mean:.2f}")
    print(f"ok CMYK JPEG vs RGB original: mean diff {mean:.2f}")


def write_ycck(p, rgb):
    """A YCCK JPEG (Adobe APP14, transform 2) from TurboJPEG's encoder: it
    writes YCCK from CMYK pixels. Pixels in Adobe's inverted convention."""
    tj = ctypes.CDLL("libturbojpeg.so.0")
    tj.tjInitCompress.restype = ctypes.c_void_p
    h = tj.tjInitCompress()
    r, g, b = [rgb[:, :, i].astype(np.int64) for i in range(3)]
    k = 255 - np.maximum(np.maximum(r, g), b)  # ink
    den = np.maximum(255 - k, 1)
    ink = [((255 - v - k) * 255 + den // 2) // den for v in (r, g, b)]
    cmyk = np.dstack([255 - ink[0], 255 - ink[1], 255 - ink[2], 255 - k]).astype(np.uint8)
    cmyk = np.ascontiguousarray(cmyk)
    buf = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    TJPF_CMYK, TJSAMP_444 = 11, 0
    tj.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(
                                   ctypes.c_ubyte)), ctypes.POINTER(ctypes.c_ulong),
                               ctypes.c_int, ctypes.c_int, ctypes.c_int]
    rc = tj.tjCompress2(h, cmyk.ctypes.data, rgb.shape[1], 0, rgb.shape[0], TJPF_CMYK,
                        ctypes.byref(buf), ctypes.byref(size), TJSAMP_444, 95, 0)
    assert rc == 0
    data = ctypes.string_at(buf, size.value)
    tj.tjFree(buf)
    tj.tjDestroy.argtypes = [ctypes.c_void_p]
    tj.tjDestroy(h)
    with open(p, "wb") as f:
        f.write(data)


write_ycck(path("ycck.jpg"), SRC)
got = compare("JPEG YCCK (TurboJPEG)", path("ycck.jpg"),
              arr(Image.open(path("ycck.jpg")).convert("RGB")), 2)
if got is not None:
    mean = np.abs(got.astype(float) - SRC).mean()
    check(mean < 6, f"YCCK JPEG vs its RGB original: mean difference {mean:.2f}")
    print(f"ok YCCK JPEG vs RGB original: mean diff {mean:.2f}")

# -------------------------------------------------------------------- PNG
compare("PNG RGB", path("src.png"), SRC, 0)
compare("PNG grey", path("grey.png"), GREY[:, :, None], 0)
PAL.save(path("pal.png"))
compare("PNG palette", path("pal.png"), PAL_RGB, 0)
Image.fromarray(SRC_RGBA, "RGBA").convert("LA").save(path("la.png"))
la = arr(Image.open(path("la.png")))
grey_on_white = ((la[:, :, 1:2].astype(int) * la[:, :, 0:1] + (255 - la[:, :, 1:2].astype(int)) *
                  255 + 127) // 255).astype(np.uint8)
compare("PNG grey+alpha on white", path("la.png"), grey_on_white, 1)
compare("PNG RGBA on white", path("src_rgba.png"), on_white(SRC_RGBA), 1)
im_convert(path("src.png"), "-depth", "16", "PNG48:" + path("rgb16.png"))
compare("PNG 16-bit RGB (convert)", path("rgb16.png"), SRC, 0)
im_convert(path("grey.png"), "-depth", "16", path("grey16.png"))
compare("PNG 16-bit grey (convert)", path("grey16.png"), GREY[:, :, None], 0)

# ------------------------------------------------------------------- WebP
Image.fromarray(SRC).save(path("lossy.webp"), quality=90)
compare("WebP lossy (PIL)", path("lossy.webp"), arr(Image.open(path("lossy.webp")).convert("RGB")),
        0)
Image.fromarray(SRC).save(path("lossless.webp"), lossless=True)
compare("WebP lossless", path("lossless.webp"), SRC, 0)
Image.fromarray(SRC_RGBA, "RGBA").save(path("alpha.webp"), lossless=True, exact=True)
compare("WebP lossless alpha on white", path("alpha.webp"), on_white(SRC_RGBA), 1)
Image.fromarray(SRC_RGBA, "RGBA").save(path("alpha_lossy.webp"), quality=90)
compare("WebP lossy alpha on white (PIL)", path("alpha_lossy.webp"),
        on_white(arr(Image.open(path("alpha_lossy.webp")).convert("RGBA"))), 1)
frames = [Image.fromarray(SRC), Image.fromarray(255 - SRC), Image.fromarray(SRC[::-1].copy())]
frames[0].save(path("anim.webp"), save_all=True, append_images=frames[1:], lossless=True)
compare("WebP animated: first frame", path("anim.webp"), SRC, 0)

# -------------------------------------------------------------------- GIF
PAL.save(path("pal.gif"))
compare("GIF", path("pal.gif"), PAL_RGB, 0)
im_convert(path("pal.png"), "-interlace", "GIF", path("interlaced.gif"))
compare("GIF interlaced (convert)", path("interlaced.gif"),
        arr(Image.open(path("interlaced.gif")).convert("RGB")), 0)
gframes = [f.quantize(64) for f in frames]
gframes[0].save(path("anim.gif"), save_all=True, append_images=gframes[1:])
compare("GIF animated: first frame", path("anim.gif"), arr(gframes[0].convert("RGB")), 0)
# Transparency: index 0 transparent, drawn white.
tp = PAL.copy()
tpa = np.asarray(tp).copy()
tpa[:, :5] = 0
tp = Image.fromarray(tpa, "P")
tp.putpalette(PAL.getpalette())
tp.save(path("transparent.gif"), transparency=0)
exp = arr(tp.convert("RGB")).copy()
exp[tpa == 0] = 255
compare("GIF transparent index on white", path("transparent.gif"), exp, 0)

# ------------------------------------------------------------------- TIFF
Image.fromarray(SRC).save(path("strips.tif"))
compare("TIFF 8-bit RGB strips (PIL)", path("strips.tif"), SRC, 0)
im_convert(path("src.png"), "-compress", "LZW", "-define", "tiff:rows-per-strip=7",
           path("lzw.tif"))
compare("TIFF LZW, 7-row strips (convert)", path("lzw.tif"), SRC, 0)
im_convert(path("src.png"), "-define", "tiff:tile-geometry=16x16", "-compress", "zip",
           path("tiles.tif"))
compare("TIFF 16x16 tiles, deflate (convert)", path("tiles.tif"), SRC, 0)
im_convert(path("src.png"), "-depth", "16", path("rgb16.tif"))
compare("TIFF 16-bit RGB (convert)", path("rgb16.tif"), SRC, 0)
im_convert(path("grey.png"), "-depth", "16", path("grey16.tif"))
compare("TIFF 16-bit grey (convert)", path("grey16.tif"), GREY[:, :, None], 0)
Image.fromarray(GREY, "L").save(path("grey.tif"))
compare("TIFF 8-bit grey (PIL)", path("grey.tif"), GREY[:, :, None], 0)
PAL.save(path("pal.tif"))
compare("TIFF palette (PIL)", path("pal.tif"), PAL_RGB, 0)
im_convert(path("src.png"), path("grey.png"), path("pal.png"), path("multipage.tif"))
compare("TIFF multipage: first page (convert)", path("multipage.tif"), SRC, 0)
Image.fromarray(SRC_RGBA, "RGBA").save(path("rgba.tif"))
compare("TIFF RGBA (unassociated) on white", path("rgba.tif"), on_white(SRC_RGBA), 2)

# -------------------------------------------------------------------- BMP
Image.fromarray(SRC).save(path("rgb24.bmp"))
compare("BMP 24-bit bottom-up (PIL)", path("rgb24.bmp"), SRC, 0)
PAL.save(path("pal8.bmp"))
compare("BMP 8-bit palette (PIL)", path("pal8.bmp"), PAL_RGB, 0)
Image.fromarray(GREY > 128).save(path("bw1.bmp"))
compare("BMP 1-bit (PIL)", path("bw1.bmp"), np.repeat(((GREY > 128) * 255).astype(np.uint8)[:, :,
        None], 3, axis=2), 0)
im_convert(path("src_rgba.png"), path("argb32.bmp"))
compare("BMP 32-bit with alpha (convert)", path("argb32.bmp"), on_white(SRC_RGBA), 1)
im_convert(path("src.png"), "-define", "bmp3:alpha=false", "BMP3:" + path("bmp3.bmp"))
compare("BMP3 (convert)", path("bmp3.bmp"), SRC, 0)


def bmp_bytes(rgb, top_down, bpp=24):
    h, w, _ = rgb.shape
    stride = (w * bpp // 8 + 3) // 4 * 4
    rows = []
    for y in range(h):
        row = rgb[y][:, ::-1]
        if bpp == 32:
            row = np.hstack([row, np.full((w, 1), 7, np.uint8)])
        rows.append(row.tobytes().ljust(stride, b"\0"))
    if not top_down:
        rows.reverse()
    px = b"".join(rows)
    hdr = (b"BM" + (54 + len(px)).to_bytes(4, "little") + b"\0\0\0\0" + (54).to_bytes(4, "little")
           + (40).to_bytes(4, "little") + w.to_bytes(4, "little", signed=True) +
           (-h if top_down else h).to_bytes(4, "little", signed=True) + (1).to_bytes(2, "little") +
           bpp.to_bytes(2, "little") + bytes(24))
    return hdr + px


for td in (0, 1):
    for bpp in (24, 32):
        p = path(f"own_{bpp}_{'topdown' if td else 'bottomup'}.bmp")
        with open(p, "wb") as f:
            f.write(bmp_bytes(SRC, td, bpp))
        compare(f"BMP {bpp}-bit {'top-down' if td else 'bottom-up'} (PIL agrees)", p,
                arr(Image.open(p).convert("RGB")), 0)
        check(np.array_equal(arr(Image.open(p).convert("RGB")), SRC), f"PIL reads {p}")

# ------------------------------------------------------------------- HEIF
heif_ok = {}
for ext in ("heic", "avif"):
    p = path("src." + ext)
    try:
        im_convert(path("src.png"), "-quality", "90", p)
        r = subprocess.run(["convert", p, "-depth", "8", "rgb:-"], capture_output=True,
                           timeout=120, check=True)
        ref = np.frombuffer(r.stdout, np.uint8).reshape(H, W, 3)
        heif_ok[ext] = True
    except (subprocess.CalledProcessError, ValueError) as e:
        print(f"SKIP {ext}: ImageMagick cannot write/read it here: {e}")
        continue
    compare(f"{ext.upper()} (convert, vs convert's decode)", p, ref, 16, mean_tol=1.0)
    mean = np.abs(decode(p)[0].astype(float) - SRC).mean() if decode(p)[0] is not None else 99
    check(mean < 8, f"{ext}: mean difference to the source {mean:.2f}")

# ------------------------------------------------------------ orientation
ORIENT_SRC = SRC[:, :40].copy()  # 40x45: not square, so 5..8 swap the sides
TRANSPOSE = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM,
             5: Image.TRANSPOSE, 6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90}
for o in range(1, 9):
    ex = Image.Exif()
    ex[0x0112] = o
    for fmt, ext, kw, tol in (("JPEG", "jpg", {"quality": 95}, 2), ("WEBP", "webp",
                                                                     {"lossless": True}, 0),
                              ("TIFF", "tif", {}, 0), ("PNG", "png", {}, 0)):
        p = path(f"orient{o}.{ext}")
        if fmt == "TIFF":
            Image.fromarray(ORIENT_SRC).save(p, tiffinfo={274: o})
        else:
            Image.fromarray(ORIENT_SRC).save(p, fmt, exif=ex.tobytes(), **kw)
        pil = Image.open(p)
        check(pil.getexif().get(0x0112) == o, f"PIL wrote orientation {o} in {p}")
        if fmt == "TIFF":
            # PIL's TIFF reader turns some oriented TIFFs itself while loading,
            # so its exif_transpose is no oracle there: the source turned by
            # exif_transpose's own method, and ImageMagick's -auto-orient.
            upright = ORIENT_SRC if o == 1 else arr(Image.fromarray(ORIENT_SRC).transpose(
                TRANSPOSE[o]))
            raw = ORIENT_SRC
            r = subprocess.run(["convert", p, "-auto-orient", "-depth", "8", "rgb:-"],
                               capture_output=True, check=True, timeout=60)
            check(np.frombuffer(r.stdout, np.uint8).reshape(upright.shape).tobytes() ==
                  upright.tobytes(), f"convert -auto-orient agrees for {p}")
        else:
            upright = arr(ImageOps.exif_transpose(pil).convert("RGB"))
            raw = arr(Image.open(p).convert("RGB"))
        compare(f"{fmt} orientation {o}", p, upright, tol)
        compare(f"{fmt} orientation {o} raw", p, raw, tol, "--raw")
# exiftool as a second writer of the tag.
for o in (3, 6, 8):
    p = path(f"exiftool{o}.jpg")
    Image.fromarray(ORIENT_SRC).save(p, quality=95)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-n", f"-Orientation={o}", p],
                   check=True, timeout=60)
    compare(f"JPEG orientation {o} (exiftool)", p,
            arr(ImageOps.exif_transpose(Image.open(p)).convert("RGB")), 2)
# DCT scaling and orientation together: a 6 (90 degrees) photo scaled 1/2.
big = np.kron(ORIENT_SRC, np.ones((8, 8, 1), np.uint8))
ex = Image.Exif()
ex[0x0112] = 6
Image.fromarray(big).save(path("big6.jpg"), quality=95, exif=ex.tobytes())
got, err = decode(path("big6.jpg"), "--min-short-side", "100")
# 320x360 upright; 3/8 is the smallest factor keeping the short side >= 100.
check(got is not None and got.shape[:2] == (big.shape[1] * 3 // 8, big.shape[0] * 3 // 8),
      f"scaled + oriented: {None if got is None else got.shape} {err}")

# -------------------------------------------- truncated and damaged files
CASES = {  # file, format name in messages, header bytes kept when damaging
    "JPEG": ("rgb.jpg", 20), "PNG": ("src.png", 33), "WebP": ("lossy.webp", 30),
    "GIF": ("pal.gif", 13), "TIFF": ("lzw.tif", 8), "BMP": ("rgb24.bmp", 0),
}
if heif_ok.get("heic"):
    CASES["HEIF"] = ("src.heic", 32)
for fmt, (name, keep) in CASES.items():
    data = open(path(name), "rb").read()
    p = path(f"truncated_{name}")
    open(p, "wb").write(data[: len(data) // 2])
    expect_error(f"{fmt} truncated to half", p, ("CORRUPT",), fmt)
    p = path(f"damaged_{name}")
    if fmt == "BMP":  # uncompressed pixels cannot be damaged; a header field can
        bad = bytearray(data)
        bad[26] = 9  # planes
    else:
        bad = bytearray(data[:keep] + bytes((i * 131 + 7) % 256 for i in range(len(data) - keep)))
    open(p, "wb").write(bad)
    expect_error(f"{fmt} damaged after {keep} header bytes", p, ("CORRUPT", "UNSUPPORTED",
                                                                 "LIMIT"), fmt)
    for cut in (1, 4, 9, 17, 40, 100, 300):  # short prefixes: errors, never crashes
        if cut < len(data):
            p = path(f"prefix{cut}_{name}")
            open(p, "wb").write(data[:cut])
            got, err = decode(p)
            check(got is None and err.split(" ")[0] in ("CORRUPT", "INVALID"),
                  f"{fmt} first {cut} bytes: {err}")
print("ok truncated prefixes of every format refused")
# The orientation tag itself damaged: an IFD offset far outside the block.
data = bytearray(open(path("orient6.jpg"), "rb").read())
i = data.find(b"Exif\0\0")
for off in (0x7FFFFFF0, 0xFFFFFFFF, 2):
    bad = bytearray(data)
    bad[i + 6 + 4:i + 6 + 8] = off.to_bytes(4, "little" if bad[i + 6] == ord("I") else "big")
    open(path("badexif.jpg"), "wb").write(bad)
    compare(f"JPEG with IFD offset {off:#x}: as stored", path("badexif.jpg"),
            arr(Image.open(path("orient1.jpg")).convert("RGB")), 2)

# ------------------------------------------------------------------ bombs


def put_le(b, at, v, n):
    b[at:at + n] = v.to_bytes(n, "little")


bombs = {}
png = bytearray(open(path("src.png"), "rb").read())  # IHDR at 16: big-endian w, h
png[16:24] = (100000).to_bytes(4, "big") * 2
png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
bombs["PNG"] = png
gif = bytearray(open(path("pal.gif"), "rb").read())
put_le(gif, 6, 65535, 2)
put_le(gif, 8, 65535, 2)
bombs["GIF"] = gif
# WebP: a VP8X header (extended format) with a 100000x100000 canvas.
vp8x = b"VP8X" + (10).to_bytes(4, "little") + bytes(4) + (99999).to_bytes(3, "little") * 2
bombs["WebP"] = b"RIFF" + (4 + len(vp8x)).to_bytes(4, "little") + b"WEBP" + vp8x
bmp = bytearray(open(path("rgb24.bmp"), "rb").read())
put_le(bmp, 18, 100000, 4)
put_le(bmp, 22, 100000, 4)
bombs["BMP"] = bmp


def tiff_bytes(w, h, strips):
    """A little-endian TIFF: one IFD, w x h 8-bit grey, `strips` strips."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, strips, 200), (277, 3, 1, 1), (278, 4, 1, max(1, h // strips)),
               (279, 4, strips, 200)]
    ifd = len(entries).to_bytes(2, "little")
    for tag, typ, cnt, val in entries:
        ifd += (tag.to_bytes(2, "little") + typ.to_bytes(2, "little") + cnt.to_bytes(4, "little")
                + val.to_bytes(4, "little"))
    return b"II*\0" + (8).to_bytes(4, "little") + ifd + bytes(4) + bytes(300)


bombs["TIFF"] = tiff_bytes(100000, 100000, 1)
if heif_ok.get("heic"):
    heic = bytearray(open(path("src.heic"), "rb").read())
    at = heic.find(b"ispe")
    while at >= 0:
        heic[at + 8:at + 16] = (100000).to_bytes(4, "big") * 2
        at = heic.find(b"ispe", at + 4)
    bombs["HEIF"] = heic
for fmt, data in bombs.items():
    p = path(f"bomb.{fmt.lower()}")
    open(p, "wb").write(data)
    t = time.time()
    expect_error(f"{fmt} bomb (header claims 100000x100000)", p, ("LIMIT",), "")
    check(time.time() - t < 5, f"{fmt} bomb refused in {time.time() - t:.1f} s")
# A TIFF whose strip count is 2^28 (offsets far past the end of the file).
p = path("strips_bomb.tif")
open(p, "wb").write(tiff_bytes(64, 64, 1 << 28))
t = time.time()
got, err = decode(p)
check(got is None and err.split(" ")[0] in ("CORRUPT", "LIMIT") and "TIFF" in err,
      f"TIFF with 2^28 strips: {err}")
check(time.time() - t < 5, f"TIFF strip bomb took {time.time() - t:.1f} s")
print(f"ok TIFF with 2^28 strips: {err}")
# A GIF of 10,000 frames: only the first is read, quickly.
one = (b",\0\0\0\0\x01\0\x01\0\0" + b"\x02\x02D\x01\0")
gif = (b"GIF89a\x01\0\x01\0\x80\0\0\xff\0\0\0\0\xff" + one * 10000 + b";")
open(path("frames.gif"), "wb").write(gif)
t = time.time()
compare("GIF of 10,000 frames: the first", path("frames.gif"), np.array([[[255, 0, 0]]],
                                                                        np.uint8), 0)
check(time.time() - t < 2, f"10,000-frame GIF took {time.time() - t:.2f} s")
# Not an image at all, and a caller's pixel limit.
open(path("text.webp"), "wb").write(b"hello, this is not an image at all")
expect_error("text named .webp", path("text.webp"), ("INVALID",), "not a JPEG, PNG, WebP")
for name in ("lossy.webp", "pal.gif", "lzw.tif", "rgb24.bmp") + (("src.heic",) if heif_ok.get(
        "heic") else ()):
    got, err = decode(path(name), "--max-pixels", "1000")
    check(got is None and err.startswith("LIMIT") and "1000 pixels" in err,
          f"{name} over a 1000-pixel limit: {err}")

# ------------------------------------------------------------------- FC7
# Through the server's path (fc7_dump): each orientation of a lossless WebP
# gives the FC7 of the picture physically turned upright (PIL's
# exif_transpose, saved as PNG),
# within float rounding (1e-5 of |f|^2), and not the stored picture's; a
# CMYK JPEG's nearest original among eight is its own RGB original.


def fc7(*paths):
    r = subprocess.run([FC7, *paths], capture_output=True, text=True, timeout=120, check=True)
    rows = []
    for line in r.stdout.splitlines():
        check(not line.startswith("ERROR"), f"fc7_dump: {line}")
        rows.append(None if line.startswith("ERROR") else np.array(line.split(), float))
    return rows


if FC7:
    for o in range(1, 9):
        # Lossless WebP: a JPEG would be DCT-scaled here and its PNG copy not.
        p = path(f"orient{o}.webp")
        up = path(f"upright{o}.png")
        ImageOps.exif_transpose(Image.open(p)).convert("RGB").save(up)
        got, turned, raw = fc7(p, up, path("orient1.webp"))
        if got is None or turned is None:
            continue
        norm = float(got @ got)
        d = float((got - turned) @ (got - turned))
        check(d <= 1e-5 * norm, f"FC7 orientation {o}: |f - f_turned|^2 = {d:.3g} of {norm:.3g}")
        if o != 1:
            dr = float((got - raw) @ (got - raw))
            check(dr > 1e-3 * norm, f"FC7 orientation {o}: as close to the stored picture ({dr:.3g})")
        print(f"ok FC7 of orientation {o} = FC7 of the turned picture ({d:.2g} of {norm:.3g})")
    originals, queries = [], []
    rng = np.random.default_rng(5)
    for k in range(8):
        img = np.rot90(SRC, k % 4) if k < 4 else 255 - np.rot90(SRC, k % 4)
        img = np.clip(img.astype(int) + rng.integers(-40, 40, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.ascontiguousarray(img)).save(path(f"orig{k}.png"))
        im_convert(path(f"orig{k}.png"), "-colorspace", "CMYK", "-quality", "92",
                   path(f"orig{k}_cmyk.jpg"))
        originals.append(path(f"orig{k}.png"))
        queries.append(path(f"orig{k}_cmyk.jpg"))
    store = fc7(*originals)
    for k, q in enumerate(fc7(*queries)):
        if q is None or any(f is None for f in store):
            continue
        dist = [float((q - f) @ (q - f)) for f in store]
        check(int(np.argmin(dist)) == k, f"CMYK JPEG {k}: nearest original {int(np.argmin(dist))}")
    print("ok each CMYK JPEG's nearest original (FC7) is its RGB original")

print(f"{CHECKS - len(FAILS)} of {CHECKS} checks passed")
if FAILS:
    sys.exit(1)
