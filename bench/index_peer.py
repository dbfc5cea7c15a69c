"""The peer of bench/index_bench.c: the same FAISS indexes driven directly
from Python (Debian's python3-faiss 1.7.3), on the same data files.

  /usr/bin/python3 index_peer.py gen DIR          writes the data files
  /usr/bin/python3 index_peer.py run DIR NPROBE   prints 'figure value' lines

Data (deterministic): 1,000,000 64-bit codes (clustered: 20,000 centres, each
bit flipped with probability 1/16) and 1,000 query codes; 100,000 4096-d
"FC7-like" vectors (1,000 centres + Gaussian noise, ReLU) and 100 queries.
"""
import os
import sys
import time

import numpy as np

NB_CODE, NQ_CODE, CODE_BYTES = 1_000_000, 1000, 8
NB_FC7, NQ_FC7, D = 100_000, 100, 4096
K = 10
LAT_CODE, LAT_FC7 = 200, 10  # single queries timed for latency


def gen(d):
    rs = np.random.RandomState(1234)
    centres = rs.randint(0, 256, (20000, CODE_BYTES), dtype=np.uint8)
    n = NB_CODE + NQ_CODE
    which = rs.randint(0, len(centres), n)
    flips = np.packbits(rs.random_sample((n, CODE_BYTES * 8)) < 1 / 16, axis=1)
    codes = centres[which] ^ flips
    codes[:NB_CODE].tofile(os.path.join(d, "codes.u8"))
    codes[NB_CODE:].tofile(os.path.join(d, "codes_q.u8"))
    centres = (rs.random_sample((1000, D)) * 2).astype(np.float32)
    with open(os.path.join(d, "fc7.f32"), "wb") as f:
        for start in range(0, NB_FC7 + NQ_FC7, 10000):
            m = min(10000, NB_FC7 + NQ_FC7 - start)
            x = centres[rs.randint(0, 1000, m)] + 0.3 * rs.standard_normal((m, D)).astype(np.float32)
            np.maximum(x, 0, out=x)
            if start + m <= NB_FC7:
                x.tofile(f)
            else:
                cut = NB_FC7 - start
                x[:cut].tofile(f)
                x[cut:].tofile(os.path.join(d, "fc7_q.f32"))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def out(name, value):
    print(f"{name} {value:.6g}", flush=True)


def time_search(index, q, nlat, tag):
    """Median single-query latency (ms) and batch QPS at 1 and 2 threads."""
    import faiss
    for t in (1, 2):
        faiss.omp_set_num_threads(t)
        lat = []
        for i in range(nlat):
            t0 = time.perf_counter()
            index.search(q[i : i + 1], K)
            lat.append(time.perf_counter() - t0)
        out(f"{tag}_t{t}_latency_ms", 1000 * float(np.median(lat)))
        best = 1e30
        for _ in range(2):
            t0 = time.perf_counter()
            index.search(q, K)
            best = min(best, time.perf_counter() - t0)
        out(f"{tag}_t{t}_qps", len(q) / best)


def recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / K for a, e in zip(approx, exact)])


def run(d, nprobe):
    import faiss
    codes = np.fromfile(os.path.join(d, "codes.u8"), dtype=np.uint8).reshape(-1, CODE_BYTES)
    qc = np.fromfile(os.path.join(d, "codes_q.u8"), dtype=np.uint8).reshape(-1, CODE_BYTES)
    ids = np.arange(len(codes), dtype=np.int64)
    exact_codes = None
    for fac, tag in (("BFlat", "bflat"), ("BHash4x16", "bhash")):
        faiss.omp_set_num_threads(2)
        r0 = rss_mb()
        index = faiss.IndexBinaryIDMap(faiss.index_binary_factory(CODE_BYTES * 8, fac))
        index.add_with_ids(codes, ids)
        out(f"{tag}_memory_mb", rss_mb() - r0)
        if fac.startswith("BHash"):
            faiss.downcast_IndexBinary(index.index).nflip = 2
        time_search(index, qc, LAT_CODE, tag)
        _, labels = index.search(qc, K)
        if exact_codes is None:
            exact_codes = labels
        else:
            out(f"{tag}_recall10", recall(labels, exact_codes))
        del index
    del codes

    x = np.fromfile(os.path.join(d, "fc7.f32"), dtype=np.float32).reshape(-1, D)
    q = np.fromfile(os.path.join(d, "fc7_q.f32"), dtype=np.float32).reshape(-1, D)
    ids = np.arange(len(x), dtype=np.int64)
    faiss.omp_set_num_threads(2)
    r0 = rss_mb()
    index = faiss.IndexIDMap(faiss.index_factory(D, "Flat"))
    index.add_with_ids(x, ids)
    out("l2flat_memory_mb", rss_mb() - r0)
    time_search(index, q, LAT_FC7, "l2flat")
    _, exact = index.search(q, K)
    del index
    # IVF stores ids itself (imgret uses it bare too); trained on a sample of
    # 256 vectors per list, as imgret does.
    t0 = time.perf_counter()
    index = faiss.index_factory(D, "IVF256,Flat")
    rs = np.random.RandomState(7)
    index.train(x[rs.choice(len(x), 256 * 256, replace=False)])
    index.add_with_ids(x, ids)
    out("ivf_build_s", time.perf_counter() - t0)
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    time_search(index, q, LAT_FC7 * 5, "ivf")
    _, labels = index.search(q, K)
    out("ivf_recall10", recall(labels, exact))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]))
