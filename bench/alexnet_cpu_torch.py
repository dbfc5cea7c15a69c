"""PyTorch peer for bench/alexnet_cpu: the same grouped AlexNet with the
paper's LRN (227 input), and the demo's alexnet-small (1x28x28, 10 classes,
dropout 0: bench_spec_demo_small), same figures, same batches, same thread
count. Prints one "figure value" line each.

    alexnet_cpu_torch.py [REPS [THREADS [b1|b64|train|small]]]   (the last: that figure alone)"""
import sys
import time

import torch
import torch.nn as nn


def paper_alexnet():
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # paper alpha 1e-4, torch divides by n
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 1000))


def small_alexnet(in_c=1, classes=10, dropout=0.0):
    """model_spec_alexnet_small: the paper's layers at widths 64-128-192-192-128,
    conv1 5x5/1 pad 2, FC7 still 4096-d."""
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(in_c, 64, 5, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 128, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(192, 128, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(128 * 2 * 2, 4096), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(4096, classes))


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def time_it(net, batch, train, reps, shape=(3, 227, 227), std=50.0, classes=1000):
    x = torch.randn(batch, *shape) * std
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    net.train(train)
    times = []
    for r in range(reps + 2):
        t0 = time.perf_counter()
        if train:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)
        if r >= 2:
            times.append(time.perf_counter() - t0)
    return median(times)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    only = sys.argv[3] if len(sys.argv) > 3 else ""  # b1, b64, train or small: that figure alone
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = paper_alexnet() if only in ("", "b1", "b64", "train") else None
    if only in ("", "b1"):
        print(f"infer_b1_ms {time_it(net, 1, False, reps * 3) * 1e3:.2f}", flush=True)
    if only in ("", "b64"):
        print(f"infer_b64_img_s {64 / time_it(net, 64, False, reps):.1f}", flush=True)
    if only in ("", "train"):
        print(f"train_b32_img_s {32 / time_it(net, 32, True, reps):.1f}", flush=True)
    if only in ("", "small"):
        t = time_it(small_alexnet(), 128, True, reps, shape=(1, 28, 28), std=1.4, classes=10)
        print(f"small_train_b128_img_s {128 / t:.1f}", flush=True)


if __name__ == "__main__":
    main()
