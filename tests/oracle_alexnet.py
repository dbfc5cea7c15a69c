"""Oracle, part 2 of 2: recomputes in PyTorch what oracle_alexnet wrote and
compares. The reference runs in float64, so the figures are imgret's own
float32 error. Pass: logits relative error < 1e-4, every parameter gradient's
relative error < 1e-3 (relative error = ||imgret - torch|| / ||torch||)."""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

LOGITS_TOL = 1e-4
GRAD_TOL = 1e-3


def load(d):
    shapes = {}
    with open(os.path.join(d, "manifest.txt")) as f:
        for line in f:
            parts = line.split()
            shapes[parts[0]] = [int(v) for v in parts[1:]]
    out = {}
    for name, shape in shapes.items():
        a = np.fromfile(os.path.join(d, name + ".f32"), dtype=np.float32)
        out[name] = a.reshape(shape)
    return out


CONV, RELU, LRN, MAXPOOL, FC, DROPOUT = range(6)


def read_spec(d):
    layers = []
    with open(os.path.join(d, "spec.txt")) as f:
        for line in f:
            v = line.split()
            layers.append(dict(kind=int(v[0]), name=v[1], out=int(v[2]), kernel=int(v[3]),
                               stride=int(v[4]), pad=int(v[5]), groups=int(v[6]),
                               ceil=bool(int(v[7])), k=float(v[8]), alpha=float(v[9]),
                               beta=float(v[10]), size=int(v[11])))
    return layers


def alexnet(layers, t, x, masks, lrn=True):
    """The network of spec.txt in PyTorch. The paper's LRN multiplies the plain
    sum by alpha; PyTorch divides alpha by size, so it is given alpha*size."""
    for l in layers:
        n, kind = l["name"], l["kind"]
        if kind == CONV:
            x = F.conv2d(x, t[n + ".weight"], t[n + ".bias"], stride=l["stride"],
                         padding=l["pad"], groups=l["groups"])
        elif kind == RELU:
            x = F.relu(x)
        elif kind == LRN and lrn:
            x = F.local_response_norm(x, size=l["size"], alpha=l["alpha"] * l["size"],
                                      beta=l["beta"], k=l["k"])
        elif kind == MAXPOOL:
            x = F.max_pool2d(x, l["kernel"], l["stride"], l["pad"], ceil_mode=l["ceil"])
        elif kind == FC:
            x = F.linear(x.flatten(1), t[n + ".weight"], t[n + ".bias"])
        elif kind == DROPOUT:
            x = x * masks[n]
    return x


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    d = sys.argv[1]
    v = load(d)
    params = [n for n in v if n.endswith(".weight") or n.endswith(".bias")]
    t = {n: torch.tensor(v[n], dtype=torch.float64, requires_grad=True) for n in params}
    x = torch.tensor(v["input"], dtype=torch.float64)
    layers = read_spec(d)
    masks = {n: torch.tensor(v[n + ".mask"], dtype=torch.float64) for n in ("drop6", "drop7")}
    labels = torch.tensor(v["labels"].astype(np.int64))
    logits = alexnet(layers, t, x, masks)
    loss = F.cross_entropy(logits, labels)
    loss.backward()

    failures = 0
    e = rel(v["logits"], logits.detach().numpy())
    ok = e < LOGITS_TOL
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} logits            rel err {e:.3e} (tol {LOGITS_TOL:g}); "
          f"|logits| max {float(logits.abs().max()):.3g}")
    e = abs(float(v["loss"][0]) - loss.item()) / max(abs(loss.item()), 1e-30)
    ok = e < LOGITS_TOL
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} loss              rel err {e:.3e} "
          f"(imgret {float(v['loss'][0]):.6f}, torch {loss.item():.6f})")
    for n in params:
        e = rel(v[n + ".grad"], t[n].grad.numpy())
        ok = e < GRAD_TOL
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {n + '.grad':18s} rel err {e:.3e} (tol {GRAD_TOL:g})")
    # The comparison must be able to see the paper's LRN: without it (or
    # with Caffe's alpha convention mistaken for the paper's) the logits
    # move by far more than the tolerance.
    with torch.no_grad():
        e_nolrn = rel(alexnet(layers, t, x, masks, lrn=False).numpy(), logits.detach().numpy())
    ok = e_nolrn > 100 * LOGITS_TOL
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} sensitivity       logits without LRN differ by {e_nolrn:.3e}")
    checks = 3 + len(params)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
