#!/usr/bin/python3
"""An image stored through `imgret extract` + `imgret index build` and the
same image's bytes sent to Search find that image first at distance 0: the
stored and the query FC7 come from one path (features/' extractor with the
model's one input rule, docs/server.md).

Three stores, 20 Fashion-MNIST images each, served by `imgret serve` and
queried over Twirp JSON:
  fmnist   the IDX dataset itself (28x28, the model's input size); the query
           is the item encoded as PNG;
  jpeg     a folder of 120x90 RGB JPEGs (the decoder's DCT scaling applies);
  png      a folder of 40x37 grey PNGs (another size than the 28x28 input).

The model: `imgret train --net alexnet-small` for one epoch on 256 images
(what matters is a net whose FC7 tells the images apart, not its accuracy).

Distance 0 within float rounding: the first hit's squared distance is at most
1e-5 of the query's squared FC7 norm (the store and the server may run the
same image in batches of different sizes, whose sums round differently; a
different preparation of the image gives 1e-2 and more). The first hit must
also be the image itself, and strictly nearer than the second.

Needs Debian's dataset-fashion-mnist and python3-pil (scripts/deps.sh).
"""
import argparse
import base64
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request

from PIL import Image

A = None
FAILS = []
N = 20
REL_TOL = 1e-4
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
PREFIX = "/twirp/imgret.v1.ImageSearch/"


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("  FAIL:", what, flush=True)


def imgret(*args):
    r = subprocess.run([A.imgret] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        raise SystemExit("imgret %s: exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout,
                                                        r.stderr))
    return r.stdout


def fashion_mnist(n):
    """The first n training images as 28x28 grey PIL images."""
    path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        head = f.read(16)
        rows, cols = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
        data = f.read(n * rows * cols)
    return [Image.frombytes("L", (cols, rows), data[i * rows * cols:(i + 1) * rows * cols])
            for i in range(n)]


def encode(im, fmt):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


class Server:
    def __init__(self, store, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([A.imgret, "serve", "--model", A.model, "--store", store,
                                      "--port", "0", "--threads", "1"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()  # "listening on http://127.0.0.1:PORT/"
        if "listening on" not in line:
            self.proc.wait(10)
            raise SystemExit("server did not start: %r (see %s)" % (line, log_path))
        self.url = line.split("listening on", 1)[1].strip().rstrip("/")

    def call(self, method, msg):
        req = urllib.request.Request(self.url + PREFIX + method, data=json.dumps(msg).encode())
        req.add_header("Content-Type", "application/json")
        with OPENER.open(req, timeout=60) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def run_case(name, data_spec, queries):
    """Stores data_spec (N items) and searches each item with queries[i], the
    bytes of item i's image; item i's uri ends with uri_tail[i]."""
    print("%s: extract %s, index build, serve, %d searches" % (name, data_spec, len(queries)),
          flush=True)
    feats = os.path.join(A.work, name + ".feat")
    store = os.path.join(A.work, name + "_store")
    imgret("extract", "--model", A.model, "--data", data_spec, "--limit", str(N), "-o", feats)
    imgret("index", "build", "--dir", store, "--features", feats)
    srv = Server(store, os.path.join(A.work, name + ".log"))
    worst, nearest = 0.0, float("inf")
    try:
        for i, (uri_tail, data) in enumerate(queries):
            b64 = base64.b64encode(data).decode()
            res = srv.call("Search", {"image": b64, "k": 2})
            hits = res.get("hits", [])
            ext = srv.call("Extract", {"images": [b64], "wantFc7": True})
            q = ext["items"][0].get("fc7", {}).get("values", [])
            norm2 = sum(v * v for v in q)
            if len(hits) < 2 or norm2 <= 0:
                check(False, "%s item %d: %d hits, |q|^2 %g" % (name, i, len(hits), norm2))
                continue
            d0, d1 = hits[0].get("distance", 0.0), hits[1].get("distance", 0.0)
            rel = d0 / norm2
            worst = max(worst, rel)
            nearest = min(nearest, d1 / norm2)
            check(hits[0].get("uri", "").endswith(uri_tail),
                  "%s item %d: first hit %s, wanted %s" % (name, i, hits[0].get("uri"), uri_tail))
            check(rel <= REL_TOL,
                  "%s item %d: distance %g to itself (%.3g of |q|^2 %g; second hit %g)" %
                  (name, i, d0, rel, norm2, d1))
            check(d1 > d0, "%s item %d: second hit at %g, not beyond the first %g" %
                  (name, i, d1, d0))
    finally:
        srv.stop()
    print("  distance to itself at most %.3g of |q|^2; to the nearest other image at least %.3g"
          % (worst, nearest), flush=True)


def main():
    global A
    p = argparse.ArgumentParser()
    p.add_argument("--imgret", required=True)
    p.add_argument("--work", required=True)
    A = p.parse_args()
    shutil.rmtree(A.work, ignore_errors=True)
    os.makedirs(A.work)
    A.model = os.path.join(A.work, "model.imgret")
    print("train alexnet-small, 1 epoch on 256 images", flush=True)
    imgret("train", "--net", "alexnet-small", "--limit", "256", "--val-limit", "64", "--epochs",
           "1", "--batch", "64", "--init", "he", "--bias-init", "zero",
           "--input-scale", "0.0039", "--threads", "2", "-o", A.model,
           "--csv", os.path.join(A.work, "train.csv"))

    ims = fashion_mnist(N)
    # The IDX dataset: items are named "FILE[i]".
    run_case("fmnist", "fashion-mnist",
             [("[%d]" % i, encode(im, "PNG")) for i, im in enumerate(ims)])

    # Folders: one class folder, files named so that their order is i's.
    jpeg_dir = os.path.join(A.work, "jpeg", "all")
    png_dir = os.path.join(A.work, "png", "all")
    os.makedirs(jpeg_dir)
    os.makedirs(png_dir)
    jq, pq = [], []
    for i, im in enumerate(ims):
        name = "img%02d" % i
        data = encode(im.convert("RGB").resize((120, 90), Image.BILINEAR), "JPEG")
        with open(os.path.join(jpeg_dir, name + ".jpg"), "wb") as f:
            f.write(data)
        jq.append((name + ".jpg", data))
        data = encode(im.resize((40, 37), Image.BILINEAR), "PNG")
        with open(os.path.join(png_dir, name + ".png"), "wb") as f:
            f.write(data)
        pq.append((name + ".png", data))
    run_case("jpeg", "folder:" + os.path.join(A.work, "jpeg"), jq)
    run_case("png", "folder:" + os.path.join(A.work, "png"), pq)

    if FAILS:
        print("%d checks failed" % len(FAILS))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
