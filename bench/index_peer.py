"""The peer of bench/index_bench.c: the same FAISS indexes driven directly
from Python (Debian's python3-faiss 1.7.3), on the same data files; and the
driver that runs both and alternates their timings.

  /usr/bin/python3 index_peer.py gen DIR
      writes the data files
  /usr/bin/python3 index_peer.py drive BENCH_INDEX DATA_DIR WORK_DIR
      runs bench_index, then this script's 'serve', and prints the table
  /usr/bin/python3 index_peer.py serve DATA_DIR NPROBE IVF_SNAPSHOT
      the peer: builds its indexes, prints 'figure value' lines, 'ready',
      then answers bench_index's commands (time TAG THREADS NLAT NBATCH, quit)

Data (deterministic): 1,000,000 64-bit codes (clustered: 20,000 centres, each
bit flipped with probability 1/16) and 1,000 query codes; 100,000 4096-d
"FC7-like" vectors (1,000 centres + Gaussian noise, ReLU) and 100 queries.

The driver runs the peer with the OpenBLAS that imgret links (Debian's
openblas-openmp, through LD_LIBRARY_PATH): Debian's default libblas.so.3 is
the pthreads build, whose threads faiss.omp_set_num_threads does not govern,
so "1 thread" would be 1 FAISS thread plus 2 BLAS threads. Both sides build
first, one after the other; then every figure is timed in ROUNDS rounds that
alternate the two sides (imgret first in odd rounds, the peer first in even
ones) after one warm-up round, and the table gives the median over rounds,
so that load from other work on the machine falls on both alike.
"""
import os
import subprocess
import sys
import threading
import time

import numpy as np

NB_CODE, NQ_CODE, CODE_BYTES = 1_000_000, 1000, 8
NB_FC7, NQ_FC7, D = 100_000, 100, 4096
K = 10
ROUNDS = 5  # counted rounds per figure, after one warm-up round
# Per side and round: single queries timed (median latency), whole batches
# timed (median QPS).
PLAN = {"bflat": (40, 1), "bhash": (40, 1), "l2flat": (3, 1), "ivf": (20, 1)}


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


def time_search(index, q, threads, nlat, nbatch, tag):
    """One 'time' command, as bench/index_bench.c answers it: wall time and
    the process's CPU time (time.process_time: all threads), on a worker
    thread as bench_index does (index_bench.c: the main thread's malloc heap
    slows FAISS's BHash search on both sides)."""
    failed = []

    def run():
        try:
            time_search_here(index, q, threads, nlat, nbatch, tag)
        except BaseException as e:  # re-raised on the main thread
            failed.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]


def time_search_here(index, q, threads, nlat, nbatch, tag):
    import faiss
    faiss.omp_set_num_threads(threads)
    wall, cpu = [], []
    for i in range(nlat):
        t0, c0 = time.perf_counter(), time.process_time()
        index.search(q[i % len(q) : i % len(q) + 1], K)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    out(f"{tag}_t{threads}_latency_ms", 1000 * float(np.median(wall)))
    out(f"{tag}_t{threads}_latency_cpu_ms", 1000 * float(np.median(cpu)))
    wall, cpu = [], []
    for _ in range(nbatch):
        t0, c0 = time.perf_counter(), time.process_time()
        index.search(q, K)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    out(f"{tag}_t{threads}_qps", len(q) / float(np.median(wall)))
    out(f"{tag}_t{threads}_batch_cpu_ms_per_q", 1000 * float(np.median(cpu)) / len(q))


def recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / K for a, e in zip(approx, exact)])


def load_imgret_snapshot(path):
    """The FAISS index inside an imgret snapshot file (index/vectors.c): a
    header whose bytes 24..32 hold the payload length, then FAISS's own
    serialisation, which ends the file."""
    import faiss
    raw = np.fromfile(path, dtype=np.uint8)
    payload = int(raw[24:32].view(np.uint64)[0])
    return faiss.deserialize_index(np.ascontiguousarray(raw[len(raw) - payload :]))


def serve(d, nprobe, ivf_snapshot):
    import faiss
    codes = np.fromfile(os.path.join(d, "codes.u8"), dtype=np.uint8).reshape(-1, CODE_BYTES)
    qc = np.fromfile(os.path.join(d, "codes_q.u8"), dtype=np.uint8).reshape(-1, CODE_BYTES)
    ids = np.arange(len(codes), dtype=np.int64)
    indexes, keep = {}, []
    exact_codes = None
    faiss.omp_set_num_threads(2)
    for fac, tag in (("BFlat", "bflat"), ("BHash4x16", "bhash")):
        r0 = rss_mb()
        sub = faiss.index_binary_factory(CODE_BYTES * 8, fac)
        index = faiss.IndexBinaryIDMap(sub)
        keep.append(sub)  # the IDMap does not own it
        index.add_with_ids(codes, ids)
        out(f"{tag}_memory_mb", rss_mb() - r0)
        if fac.startswith("BHash"):
            faiss.downcast_IndexBinary(index.index).nflip = 2
        _, labels = index.search(qc, K)
        if exact_codes is None:
            exact_codes = labels
        else:
            out(f"{tag}_recall10", recall(labels, exact_codes))
        indexes[tag] = (index, qc)
    del codes

    x = np.fromfile(os.path.join(d, "fc7.f32"), dtype=np.float32).reshape(-1, D)
    q = np.fromfile(os.path.join(d, "fc7_q.f32"), dtype=np.float32).reshape(-1, D)
    ids = np.arange(len(x), dtype=np.int64)
    r0 = rss_mb()
    sub = faiss.index_factory(D, "Flat")
    index = faiss.IndexIDMap(sub)
    keep.append(sub)
    index.add_with_ids(x, ids)
    out("l2flat_memory_mb", rss_mb() - r0)
    _, exact = index.search(q, K)
    indexes["l2flat"] = (index, q)
    # IVF stores ids itself (imgret uses it bare too). The build is timed on
    # the peer's own index, trained on a sample of 256 vectors per list as
    # imgret's is; but another sample gives other centroids and other list
    # sizes, hence another search cost at a given nprobe, so searches run on
    # imgret's trained and filled index, read from its snapshot.
    t0 = time.perf_counter()
    own = faiss.index_factory(D, "IVF256,Flat")
    rs = np.random.RandomState(7)
    own.train(x[rs.choice(len(x), 256 * 256, replace=False)])
    own.add_with_ids(x, ids)
    out("ivf_build_s", time.perf_counter() - t0)
    del own, x
    index = load_imgret_snapshot(ivf_snapshot)
    assert index.ntotal == NB_FC7, index.ntotal
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    _, labels = index.search(q, K)
    out("ivf_recall10", recall(labels, exact))
    indexes["ivf"] = (index, q)

    print("ready", flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        tag, threads, nlat, nbatch = w[1], int(w[2]), int(w[3]), int(w[4])
        index, queries = indexes[tag]
        time_search(index, queries, threads, nlat, nbatch, tag)
        print("done", flush=True)


class Side:
    """A benchmark process answering 'time' commands on its stdin."""

    def __init__(self, name, cmd, env=None):
        self.name = name
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.build = self.read_until("ready")

    def read_until(self, end):
        got = {}
        for line in self.p.stdout:
            line = line.strip()
            print(f"  {self.name}: {line}", file=sys.stderr, flush=True)
            if line == end:
                return got
            name, value = line.split()
            got[name] = float(value)
        raise SystemExit(f"index bench: {self.name} ended early (exit {self.p.wait()})")

    def time(self, tag, threads, nlat, nbatch):
        self.p.stdin.write(f"time {tag} {threads} {nlat} {nbatch}\n")
        self.p.stdin.flush()
        return self.read_until("done")

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        self.p.wait()


def drive(bench, d, work):
    print("index bench: imgret builds", file=sys.stderr, flush=True)
    ours = Side("imgret", [bench, d, work])
    nprobe = int(ours.build["ivf_nprobe"])
    blas = f"/usr/lib/{subprocess.check_output(['gcc', '-print-multiarch'], text=True).strip()}/openblas-openmp"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = blas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    print(f"index bench: the peer builds (python3-faiss, BLAS from {blas}, IVF nprobe {nprobe})",
          file=sys.stderr, flush=True)
    peer = Side("peer", [sys.executable, os.path.abspath(__file__), "serve", d, str(nprobe),
                         os.path.join(work, "fc7", "fc7.index")], env)
    rounds = {}  # figure -> side -> values
    for tag, (nlat, nbatch) in PLAN.items():
        for t in (1, 2):
            for r in range(ROUNDS + 1):
                order = (ours, peer) if r % 2 == 0 else (peer, ours)
                for side in order:
                    got = side.time(tag, t, nlat, nbatch)
                    if r == 0:
                        continue  # warm-up round
                    for name, v in got.items():
                        rounds.setdefault(name, {}).setdefault(side.name, []).append(v)
    ours.close()
    peer.close()
    figures = list(ours.build) + list(rounds)
    print(f"| {'figure':<28} | {'imgret':>10} | {'peer':>10} | {'ratio':>7} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    for name in figures:
        if name in rounds:
            a = float(np.median(rounds[name]["imgret"]))
            b = float(np.median(rounds[name]["peer"]))
        else:
            a, b = ours.build[name], peer.build.get(name)
        r = f"{a / b:.3f}" if b else "-"
        print(f"| {name:<28} | {a:>10.4g} | {'-' if b is None else f'{b:10.4g}':>10} | {r:>7} |")
    print(f"\n{ROUNDS} rounds after a warm-up, alternating the two sides; medians over rounds. "
          "Ratio = imgret / peer.")


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    elif sys.argv[1] == "drive":
        drive(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
