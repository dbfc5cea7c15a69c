#!/usr/bin/env python3
"""PyTorch peer for bench/alexnet_gpu.sh: the paper's AlexNet (grouped conv2,
conv4, conv5; LRN k=2 n=5 alpha=1e-4 beta=0.75 in the paper's convention;
overlapping 3/2 max pooling; 227x227 input; 1000 classes), fp32 with TF32
off, eager mode, cudnn.benchmark on. Prints img/s for a training step at
batch 128 (forward, cross-entropy, backward, SGD momentum 0.9 wd 5e-4) and
inference at batch 1 and 256, medians of --iters timed passes, then the
machine's measured ceilings (fp32 matmul FLOP/s, copy bandwidth) and the
resulting floor for this net.

Output lines (parsed by alexnet_gpu.sh): "<figure> <value>"."""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn


def paper_alexnet():
    # PyTorch's LocalResponseNorm divides alpha by size: 5e-4 / 5 = the paper's 1e-4.
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 1000))


def median_seconds(fn, iters, warmup, dev):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(dev)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def net_cost(model):
    """Forward FLOPs (2 per multiply-add) and activation bytes (written once,
    read once) per image, and parameter bytes."""
    flops, act = 0, 0
    x = torch.zeros(1, 3, 227, 227)
    with torch.no_grad():
        for m in model:
            y = m(x)
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
                flops += 2 * y.numel() * k
            elif isinstance(m, nn.Linear):
                flops += 2 * m.in_features * m.out_features
            act += 2 * 4 * y.numel()
            x = y
    params = sum(p.numel() for p in model.parameters()) * 4
    return flops, act, params


def per_module(model, dev, iters, warmup):
    """Each module's forward in milliseconds (mean over iters passes at batch
    128, train mode with autograd recording, synchronizing before and after
    every module, as imgret forward --layers waits after every layer)."""
    x = torch.randn(128, 3, 227, 227, device=dev) * 50
    names = {0: "conv1", 1: "relu1", 2: "norm1", 3: "pool1", 4: "conv2", 5: "relu2", 6: "norm2",
             7: "pool2", 8: "conv3", 9: "relu3", 10: "conv4", 11: "relu4", 12: "conv5",
             13: "relu5", 14: "pool5", 15: "flatten", 16: "fc6", 17: "relu6", 18: "drop6",
             19: "fc7", 20: "relu7", 21: "drop7", 22: "fc8"}
    totals = [0.0] * len(model)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    model.train()  # with autograd on, as in a training step
    for it in range(warmup + iters):
        y = x
        for k, m in enumerate(model):
            sync()
            t0 = time.perf_counter()
            y = m(y)
            sync()
            if it >= warmup:
                totals[k] += time.perf_counter() - t0
    print("  %-10s %10s" % ("module", "forward"))
    for k in range(len(model)):
        print("  %-10s %10.3f" % (names.get(k, str(k)), totals[k] * 1e3 / iters))
    print("  sum of the modules: %.3f ms" % (sum(totals) * 1e3 / iters))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--layers", action="store_true",
                    help="only the per-module forward times at batch 128 (train mode)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("alexnet_gpu_peer.py: this PyTorch (%s) sees no CUDA GPU" % torch.__version__)
    # The legacy flags only: PyTorch refuses a mix of these and fp32_precision.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    print("peer_version torch %s cudnn %s on %s" % (torch.__version__, torch.backends.cudnn.version(),
                                                    torch.cuda.get_device_name(dev)))
    print("peer_settings matmul.allow_tf32 %s cudnn.allow_tf32 %s cudnn.benchmark %s" %
          (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.backends.cudnn.benchmark))
    model = paper_alexnet().to(dev)
    if a.layers:
        per_module(model, dev, a.iters, a.warmup)
        return
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    x = torch.randn(128, 3, 227, 227, device=dev) * 50
    y = torch.randint(0, 1000, (128,), device=dev)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    t = median_seconds(step, a.iters, a.warmup, dev)
    print("train128 %.1f" % (128 / t))

    # The same step with the batch copied from pageable host memory first
    # (imgret forward without --resident does the same).
    x_host = x.cpu()

    def step_upload():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x_host.to(dev)), y).backward()
        opt.step()

    t = median_seconds(step_upload, a.iters, a.warmup, dev)
    print("train128_upload %.1f" % (128 / t))
    model.eval()
    for b in (1, 256):
        xb = torch.randn(b, 3, 227, 227, device=dev) * 50
        with torch.no_grad():
            t = median_seconds(lambda: model(xb), a.iters, a.warmup, dev)
        print("infer%d %.1f" % (b, b / t))

    # Ceilings measured here: fp32 (no TF32) matmul and device copy bandwidth.
    n = 8192
    A = torch.randn(n, n, device=dev)
    B = torch.randn(n, n, device=dev)
    t = median_seconds(lambda: A @ B, 5, 2, dev)
    peak = 2 * n ** 3 / t
    buf = torch.empty(1 << 28, device=dev)  # 1 GiB
    t = median_seconds(lambda: buf.clone(), 5, 2, dev)
    bw = 2 * buf.numel() * 4 / t
    flops, act, params = net_cost(paper_alexnet())
    print("ceiling_fp32_tflops %.1f" % (peak / 1e12))
    print("ceiling_copy_gbs %.0f" % (bw / 1e9))
    print("net_gflop_per_image %.3f" % (flops / 1e9))
    # Floors: inference at batch b reads the weights once per batch; a
    # training step does about 3x the forward work and moves the weights,
    # gradients and momentum about 5 times.
    for name, b, work, wmoves in (("train128", 128, 3, 5), ("infer1", 1, 1, 1), ("infer256", 256, 1, 1)):
        secs = max(work * flops * b / peak, (work * act * b + wmoves * params) / bw)
        print("floor_%s %.1f" % (name, b / secs))


if __name__ == "__main__":
    main()
