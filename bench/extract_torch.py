"""PyTorch peer for bench/extract.sh: FC7 (after ReLU) of a list of JPEGs the
way a PyTorch user writes it. A DataLoader's worker processes read and
decode each file (torchvision.io.decode_jpeg, full size), resize the shorter
side to 256 (antialiased, as imgret's area averaging is), centre-crop 227
and subtract the mean pixel; the main process runs the paper's AlexNet cut
after relu7 (the net of bench/alexnet_cpu_torch.py) in eval mode and keeps
the rows, which are saved with numpy at the end of the pass.

Usage: extract_torch.py LIST BATCH THREADS REPS R G B
One warm-up pass, then REPS timed passes; prints "extract_img_s X" (the
median pass) on stdout and each pass's seconds on stderr."""
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision.io as tvio
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Dataset

from alexnet_cpu_torch import median, paper_alexnet


class Photos(Dataset):
    def __init__(self, list_path, mean):
        folder = os.path.dirname(os.path.abspath(list_path))
        with open(list_path) as f:
            lines = [ln.rsplit(None, 1)[0] for ln in f if ln.strip() and not ln.startswith("#")]
        self.paths = [p if os.path.isabs(p) else os.path.join(folder, p) for p in lines]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        data = tvio.read_file(self.paths[i])
        img = tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB)
        img = TF.resize(img, 256, antialias=True)
        img = TF.center_crop(img, [227, 227])
        return img.float() - self.mean


def extract_pass(net, photos, batch, workers, out_path):
    rows = torch.empty(len(photos), 4096)
    loader = DataLoader(photos, batch_size=batch, shuffle=False, num_workers=workers)
    k = 0
    with torch.inference_mode():
        for x in loader:
            y = net(x)
            rows[k:k + len(y)] = y
            k += len(y)
    np.save(out_path, rows.numpy())
    return k


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    list_path = sys.argv[1]
    batch, threads, reps = (int(v) for v in sys.argv[2:5])
    mean = [float(v) for v in sys.argv[5:8]]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = paper_alexnet()[:-2].eval()  # without the last dropout and fc8: ends at relu7
    photos = Photos(list_path, mean)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "fc7.npy")
        for r in range(reps + 1):
            t0 = time.perf_counter()
            k = extract_pass(net, photos, batch, threads, out_path)
            dt = time.perf_counter() - t0
            if k != len(photos):
                sys.exit(f"extract_torch: {k} rows for {len(photos)} photos")
            print(f"torch pass {r}{' (warm-up)' if r == 0 else ''}: {dt:.3f} s", file=sys.stderr)
            if r > 0:
                times.append(dt)
    print(f"extract_img_s {len(photos) / median(times):.2f}", flush=True)


if __name__ == "__main__":
    main()
