"""Camera-size JPEG "photos" for bench/extract.sh: smooth colour gradients,
soft-edged shapes and sensor-like noise, so they decode and compress like
photographs (hundreds of KB each), not like flat synthetic images.

Usage: extract_photos.py DIR N WIDTHxHEIGHT [QUALITY]
Writes DIR/photo-00000.jpg ... for the first N indexes (every fourth one
portrait: HEIGHTxWIDTH), keeping files already there (image i depends only
on i and the size, so a rerun or a larger N reuses them), and DIR/list-N.txt
with one "path label" line per image, as `imgret extract --images` reads.
Prints the photos' average size in KiB."""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo(i, w, h):
    rng = np.random.default_rng(1000 + i)
    # Sky-to-ground style gradients: a coarse grid of colours, upsampled smoothly.
    grid = rng.integers(20, 236, size=(4, 5, 3), dtype=np.uint8)
    img = Image.fromarray(grid, "RGB").resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1 = x0 + int(rng.integers(w // 20, w // 2))
        y1 = y0 + int(rng.integers(h // 20, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            pts = [(int(rng.integers(x0, x1)), int(rng.integers(y0, y1))) for _ in range(5)]
            draw.polygon(pts, fill=fill)
    # A lens is never perfectly sharp.
    img = img.filter(ImageFilter.GaussianBlur(radius=2))
    px = np.asarray(img, dtype=np.int16)
    # Vignetting and sensor noise (with some fine texture in the shapes).
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    vignette = (1.0 - 0.6 * r2)[..., None]
    noise = rng.normal(0.0, 6.0, size=(h, w, 3)).astype(np.float32)
    out = np.clip(px * vignette + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    folder, n = sys.argv[1], int(sys.argv[2])
    w, h = (int(v) for v in sys.argv[3].split("x"))
    quality = int(sys.argv[4]) if len(sys.argv) > 4 else 90
    os.makedirs(folder, exist_ok=True)
    made = 0
    names = []
    for i in range(n):
        name = f"photo-{i:05d}.jpg"
        names.append(name)
        path = os.path.join(folder, name)
        if os.path.exists(path):
            continue
        pw, ph = (h, w) if i % 4 == 3 else (w, h)
        tmp = path + ".tmp"
        photo(i, pw, ph).save(tmp, "JPEG", quality=quality)
        os.replace(tmp, path)  # an interrupted run leaves no truncated photo behind
        made += 1
    with open(os.path.join(folder, f"list-{n}.txt"), "w") as f:
        for name in names:
            f.write(f"{name} 0\n")
    total = sum(os.path.getsize(os.path.join(folder, m)) for m in names)
    print(f"photos: {n} in {folder} ({made} new)", file=sys.stderr)
    print(f"{total / n / 1024:.0f}")  # KiB per photo on average, for the bench's header


if __name__ == "__main__":
    main()
