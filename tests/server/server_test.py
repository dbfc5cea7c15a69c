#!/usr/bin/python3
"""Integration tests of `imgret serve` through an independent client: Python's
google.protobuf (Debian's python3-protobuf, with service_pb2 generated at
test time by Debian's protoc from proto/imgret/v1/service.proto) and urllib.

  server_test.py rpc|errors|kill9 --imgret BIN --fixture BIN --protoc BIN
                 --proto-root DIR --work DIR

rpc:    every method (Search by image/vector/id/code, EUCLIDEAN/HAMMING,
        rerank; Classify centre and ten-crop; Extract; Add; Remove; Stats),
        /healthz, /metrics, /, /thumb, the `imgret search` client, SIGTERM
        and a restart on the same store; serve --devices on two cpu-staged
        columns answers as on the CPU, --device gpu:0 without a GPU is
        refused at start. Every method again in Twirp's JSON
        encoding, with google.protobuf.json_format as the oracle (requests
        written by MessageToJson, replies read by Parse, which refuses
        unknown names), answering as the protobuf calls do.
errors: every error path (malformed, content type, bad route, 413, corrupt
        and huge images, not_found, already_exists, tokens, full queue,
        deadline; malformed JSON of every kind) and the server still healthy
        afterwards.
kill9:  an Add storm from several threads, SIGKILL mid-storm, restart:
        every acknowledged id is there.
"""
import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

A = None  # parsed arguments
pb = None  # the generated module
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
PREFIX = "/twirp/imgret.v1.ImageSearch/"
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("  FAIL:", what, flush=True)


def generate_pb(work):
    out = os.path.join(work, "pb")
    os.makedirs(out, exist_ok=True)
    subprocess.run([A.protoc, "--python_out=" + out, "-I" + A.proto_root,
                    os.path.join(A.proto_root, "imgret/v1/service.proto")], check=True)
    sys.path.insert(0, out)
    global pb
    from imgret.v1 import service_pb2
    pb = service_pb2


class Server:
    def __init__(self, work, name, store, *extra, preexec_fn=None):
        self.log_path = os.path.join(work, name + ".log")
        self.log = open(self.log_path, "w")
        cmd = [A.imgret, "serve", "--model", os.path.join(work, "model.imgret"),
               "--autoencoder", os.path.join(work, "ae.imgret"), "--store", store,
               "--port", "0"] + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     preexec_fn=preexec_fn)
        line = self.proc.stdout.readline()  # "listening on http://127.0.0.1:PORT/"
        if "listening on" not in line:
            self.proc.wait(10)
            raise SystemExit("server did not start: %r (see %s.log)" % (line, name))
        self.port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        self.log.close()
        return rc


def http(srv, path, body=None, ctype="application/protobuf", token=None, method=None, timeout=60):
    req = urllib.request.Request(srv.url + path, data=body, method=method)
    if body is not None and ctype:
        req.add_header("Content-Type", ctype)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def rpc(srv, method, msg, resp_type=None, token=None, want=200):
    body = msg if isinstance(msg, bytes) else msg.SerializeToString()
    st, data, ct = http(srv, PREFIX + method, body, token=token)
    if st != 200:
        check(ct == "application/json", "%s error content type %r" % (method, ct))
        err = json.loads(data)
        check(set(err) >= {"code", "msg", "meta"}, "%s error fields %r" % (method, err))
        if want != st:
            check(False, "%s: HTTP %d %r (wanted %d)" % (method, st, err, want))
        return st, err
    check(want == 200, "%s: HTTP 200, wanted %d" % (method, want))
    out = resp_type()
    out.ParseFromString(data)
    return st, out


def rpc_json(srv, method, msg, resp_type=None, token=None, want=200, proto_names=False,
             ctype="application/json"):
    """The call in Twirp's JSON encoding: a message is written by json_format
    (bytes or str bodies are sent as they are); a reply is read back by
    json_format.Parse into resp_type. Returns (status, message or error,
    the reply's JSON as Python values)."""
    from google.protobuf import json_format
    if isinstance(msg, str):
        msg = msg.encode()
    body = msg if isinstance(msg, bytes) else json_format.MessageToJson(
        msg, preserving_proto_field_name=proto_names).encode()
    st, data, ct = http(srv, PREFIX + method, body, ctype=ctype, token=token)
    check(ct == "application/json", "%s JSON reply content type %r" % (method, ct))
    raw = json.loads(data)
    if st != 200:
        check(set(raw) >= {"code", "msg", "meta"}, "%s error fields %r" % (method, raw))
        if want != st:
            check(False, "%s (JSON): HTTP %d %r (wanted %d)" % (method, st, raw, want))
        return st, raw, raw
    check(want == 200, "%s (JSON): HTTP 200, wanted %d" % (method, want))
    return st, json_format.Parse(data, resp_type()), raw


def expect_json_error(srv, method, body, status, code, needle=None, token=None):
    st, err, _ = rpc_json(srv, method, body, token=token, want=status)
    ok = st == status and err.get("code") == code and (needle is None or needle in err.get("msg", ""))
    check(ok, "%s (JSON) %r: wanted %d %s %r, got %d %r" % (method, body[:80], status, code, needle,
                                                            st, err))
    return err


def expect_error(srv, method, msg, status, code, token=None):
    st, err = rpc(srv, method, msg, token=token, want=status)
    ok = st == status and isinstance(err, dict) and err.get("code") == code
    check(ok, "%s: wanted %d %s, got %d %r" % (method, status, code, st, err))
    return err


def relu_vec(rng, dim=256):
    return [max(0.0, rng.gauss(0, 1)) for _ in range(dim)]


def read(name):
    with open(os.path.join(A.work, name), "rb") as f:
        return f.read()


def setup():
    shutil.rmtree(A.work, ignore_errors=True)
    os.makedirs(A.work)
    subprocess.run([A.fixture, A.work], check=True, stdout=subprocess.DEVNULL)
    generate_pb(A.work)


# ------------------------------------------------------------------ rpc

def test_rpc():
    store = os.path.join(A.work, "store")
    srv = Server(A.work, "rpc", store)
    rng = random.Random(1)
    st, stats = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    check(stats.items == 0 and stats.fc7_dim == 256 and stats.code_bits == 32, "fresh Stats %s" % stats)
    check(list(stats.index_kinds) == ["fc7:Flat", "code:BFlat"], "index kinds %s" % stats.index_kinds)
    check(len(stats.class_names) == 10 and stats.class_names[9] == "Ankle boot", "class names")
    check(len(stats.model_hash) == 64, "model hash")

    # Add: 20 vectors (auto ids), 2 with our own ids, 3 images.
    vecs = [relu_vec(rng) for _ in range(22)]
    add = pb.AddRequest()
    for i, v in enumerate(vecs):
        it = add.items.add()
        it.vector.values.extend(v)
        it.uri = "vec-%d" % i
        it.label = i % 10 if i % 3 else -1
        if i >= 20:
            it.has_id = True
            it.id = 1000 + i
    for name in ("a.jpg", "b.jpg", "c.png"):
        it = add.items.add()
        it.image = read(name)
        it.uri = os.path.join(A.work, name)
        it.label = 3
        it.keep_thumbnail = name == "b.jpg"
    st, added = rpc(srv, "Add", add, pb.AddResponse)
    ids = list(added.ids)
    check(len(ids) == 25 and ids[20] == 1020 and ids[21] == 1021, "Add ids %s" % ids)
    check(len(set(ids)) == 25, "Add ids distinct")
    img_id = {"a.jpg": ids[22], "b.jpg": ids[23], "c.png": ids[24]}

    # Search by vector, EUCLIDEAN: the item itself first at distance ~0.
    q = pb.SearchRequest(k=5)
    q.vector.values.extend(vecs[7])
    st, r = rpc(srv, "Search", q, pb.SearchResponse)
    check(len(r.hits) == 5 and r.hits[0].id == ids[7] and r.hits[0].distance < 1e-3,
          "vector search %s" % r.hits[:1])
    check(r.hits[0].uri == "vec-7" and r.hits[0].label == 7 and r.hits[0].label_name == "Sneaker",
          "hit metadata %s" % r.hits[:1])
    check(all(r.hits[i].distance <= r.hits[i + 1].distance for i in range(4)), "sorted hits")
    check(r.metric == pb.EUCLIDEAN and not r.reranked and len(r.classes) == 0, "vector search fields")
    # The exact distance, checked by hand.
    by_id = {ids[i]: vecs[i] for i in range(22)}
    if r.hits[1].id in by_id:
        d = sum((a - b) ** 2 for a, b in zip(vecs[7], by_id[r.hits[1].id]))
        check(abs(r.hits[1].distance - d) <= 1e-3 * max(1.0, d), "squared L2 %g vs %g" % (r.hits[1].distance, d))

    # Search by stored item: itself left out unless asked.
    st, r = rpc(srv, "Search", pb.SearchRequest(item_id=ids[3], k=3), pb.SearchResponse)
    check(len(r.hits) == 3 and all(h.id != ids[3] for h in r.hits), "id search excludes itself")
    st, r = rpc(srv, "Search", pb.SearchRequest(item_id=ids[3], k=3, include_query_item=True),
                pb.SearchResponse)
    check(r.hits[0].id == ids[3] and r.hits[0].distance < 1e-3, "id search with itself")

    # Search by image: the same picture's item at ~0, and the top-5 classes.
    st, r = rpc(srv, "Search", pb.SearchRequest(image=read("a.jpg"), k=3), pb.SearchResponse)
    check(r.hits and r.hits[0].id == img_id["a.jpg"] and r.hits[0].distance < 1e-2,
          "image search %s" % r.hits[:1])
    check(len(r.classes) == 5 and all(r.classes[i].probability >= r.classes[i + 1].probability
                                      for i in range(4)), "image search classes")
    check(r.classes[0].name in stats.class_names, "class name")

    # HAMMING by vector (encoded by the server's autoencoder).
    q = pb.SearchRequest(k=4, metric=pb.HAMMING)
    q.vector.values.extend(vecs[5])
    st, r = rpc(srv, "Search", q, pb.SearchResponse)
    check(r.metric == pb.HAMMING and len(r.hits) == 4, "hamming search")
    check(any(h.id == ids[5] and h.distance == 0 for h in r.hits), "hamming finds itself at 0 bits")
    check(all(h.distance == int(h.distance) and 0 <= h.distance <= 32 for h in r.hits), "bit distances")
    # Rerank: candidates by Hamming, ordered by exact FC7 distance.
    q.rerank = True
    q.rerank_candidates = 20
    st, r = rpc(srv, "Search", q, pb.SearchResponse)
    check(r.reranked and r.hits[0].id == ids[5] and r.hits[0].distance < 1e-3, "rerank %s" % r.hits[:1])
    check(all(r.hits[i].distance <= r.hits[i + 1].distance for i in range(len(r.hits) - 1)),
          "reranked order")

    # Extract: FC7 and codes; the FC7 of a.jpg finds a.jpg's item.
    st, x = rpc(srv, "Extract", pb.ExtractRequest(images=[read("a.jpg"), read("b.jpg")],
                                                 want_fc7=True, want_code=True), pb.ExtractResponse)
    check(x.fc7_dim == 256 and x.code_bits == 32 and len(x.items) == 2, "extract shape")
    check(all(len(i.fc7.values) == 256 and len(i.code) == 4 for i in x.items), "extract items")
    check(all(v >= 0 for v in x.items[0].fc7.values), "FC7 after ReLU is >= 0")
    q = pb.SearchRequest(k=1)
    q.vector.values.extend(x.items[0].fc7.values)
    st, r = rpc(srv, "Search", q, pb.SearchResponse)
    check(r.hits[0].id == img_id["a.jpg"] and r.hits[0].distance < 1e-3, "extracted FC7 finds its image")
    st, x1 = rpc(srv, "Extract", pb.ExtractRequest(images=[read("b.jpg")]), pb.ExtractResponse)
    check(len(x1.items[0].code) == 0 and len(x1.items[0].fc7.values) == 256, "FC7 only by default")
    # Search by code (HAMMING): b.jpg's code finds b.jpg's item at 0 bits.
    st, r = rpc(srv, "Search", pb.SearchRequest(code=x.items[1].code, k=3), pb.SearchResponse)
    check(any(h.id == img_id["b.jpg"] and h.distance == 0 for h in r.hits), "code search")

    # Classify: centre and ten crops.
    for crops in (pb.CENTRE, pb.TEN):
        st, c = rpc(srv, "Classify", pb.ClassifyRequest(image=read("b.jpg"), k=3, crops=crops),
                    pb.ClassifyResponse)
        p = [s.probability for s in c.classes]
        check(len(p) == 3 and p == sorted(p, reverse=True) and 0 < sum(p) <= 1.0001,
              "classify %s" % p)
    st, c = rpc(srv, "Classify", pb.ClassifyRequest(image=read("c.png")), pb.ClassifyResponse)
    check(len(c.classes) == 5, "classify default k 5")

    # Concurrent image requests (batched by the workers) give the same answers.
    results = {}

    def one(i):
        _, rr = rpc(srv, "Classify", pb.ClassifyRequest(image=read("a.jpg")), pb.ClassifyResponse)
        results[i] = [(s.index, s.probability) for s in rr.classes]
    th = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    [t.start() for t in th]
    [t.join() for t in th]
    ref = results.get(0, [])
    same = all([k for k, _ in v] == [k for k, _ in ref] and
               all(abs(p - q) < 1e-4 for (_, p), (_, q) in zip(v, ref)) for v in results.values())
    check(len(results) == 12 and same, "batched classify agrees")

    # Concurrent searches (one index call per batch) answer as single ones do.
    single = {}
    for i in range(8):
        q = pb.SearchRequest(k=5)
        q.vector.values.extend(vecs[i])
        single[i] = [h.id for h in rpc(srv, "Search", q, pb.SearchResponse)[1].hits]
    together = {}

    def search_one(i):
        q = pb.SearchRequest(k=5)
        q.vector.values.extend(vecs[i % 8])
        _, rr = rpc(srv, "Search", q, pb.SearchResponse)
        together[i] = [h.id for h in rr.hits]
    th = [threading.Thread(target=search_one, args=(i,)) for i in range(24)]
    [t.start() for t in th]
    [t.join() for t in th]
    check(len(together) == 24 and all(together[i] == single[i % 8] for i in together),
          "batched searches agree with single ones")

    # Remove.
    st, rm = rpc(srv, "Remove", pb.RemoveRequest(ids=[ids[0], ids[1]]), pb.RemoveResponse)
    check(rm.removed == 2, "removed")
    expect_error(srv, "Search", pb.SearchRequest(item_id=ids[0]), 404, "not_found")
    st, stats = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    check(stats.items == 23, "items after remove %d" % stats.items)

    # Thumbnails: a file uri, a kept thumbnail, a dataset item, none.
    for name in ("a.jpg", "b.jpg", "c.png"):
        st, data, ct = http(srv, "/thumb/%d" % img_id[name])
        check(st == 200 and ct == "image/jpeg" and data[:2] == b"\xff\xd8", "thumb %s: %d %s" % (name, st, ct))
    check(os.path.exists(os.path.join(store, "thumbs", "%d.jpg" % img_id["b.jpg"])), "kept thumbnail")
    st, _, _ = http(srv, "/thumb/%d" % ids[2])  # uri "vec-2": nothing to draw
    check(st == 404, "thumb without picture %d" % st)
    st, _, _ = http(srv, "/thumb/99999")
    check(st == 404, "thumb of unknown id %d" % st)
    st, _, _ = http(srv, "/thumb/abc")
    check(st == 404, "thumb of a non-id %d" % st)
    fm = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    if os.path.exists(fm):
        add = pb.AddRequest()
        it = add.items.add()
        it.vector.values.extend(vecs[0])
        it.uri = fm + "[3]"  # as `imgret extract` writes dataset items
        st, a2 = rpc(srv, "Add", add, pb.AddResponse)
        st, data, ct = http(srv, "/thumb/%d" % a2.ids[0])
        check(st == 200 and data[:2] == b"\xff\xd8", "dataset item thumbnail %d" % st)

    # HTTP extras.
    st, body, ct = http(srv, "/healthz")
    check(st == 200 and body == b"ok\n", "healthz")
    st, body, ct = http(srv, "/")
    check(st == 200 and ct.startswith("text/html") and b"<html" in body.lower(), "web page")
    st, body, ct = http(srv, "/metrics")
    text = body.decode()
    check(st == 200 and ct.startswith("text/plain"), "metrics")
    for needle in ('imgret_requests_total{method="Search",code="ok"}',
                   'imgret_requests_total{method="Search",code="not_found"} 1',
                   'imgret_request_duration_seconds_bucket{method="Add",le="+Inf"}',
                   'imgret_request_duration_seconds_count{method="Classify"}',
                   'imgret_errors_total{method="Search"} 1', "imgret_queue_depth 0",
                   "imgret_items 24", "imgret_forward_batches_total",
                   "imgret_search_batches_total", "imgret_search_queries_total"):
        check(needle in text, "metrics has %s" % needle)
    st, _, _ = http(srv, "/nope")
    check(st == 404, "unknown page")

    # The C client.
    out = subprocess.run([A.imgret, "search", "--server", srv.url, "--id", str(ids[5]), "--k", "3"],
                         capture_output=True, text=True)
    check(out.returncode == 0 and len(out.stdout.strip().splitlines()) == 3, "imgret search --id: %r %r"
          % (out.stdout, out.stderr))
    out = subprocess.run([A.imgret, "search", "--server", srv.url, os.path.join(A.work, "a.jpg"),
                          "--k", "2", "--metric", "hamming"], capture_output=True, text=True)
    check(out.returncode == 0 and ("id %d " % img_id["a.jpg"]) in out.stdout, "imgret search IMAGE: %r %r"
          % (out.stdout, out.stderr))
    out = subprocess.run([A.imgret, "search", "--server", srv.url, "--id", "4242"],
                         capture_output=True, text=True)
    check(out.returncode == 1 and "not_found" in out.stderr, "imgret search unknown id: %r" % out.stderr)

    test_rpc_json(srv, ids, vecs, img_id)

    # SIGTERM: clean exit with a snapshot; a restart serves the same items.
    rc = srv.stop()
    check(rc == 0, "exit status after SIGTERM %d" % rc)
    srv = Server(A.work, "rpc2", store)
    st, stats = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    check(stats.items == 24, "items after restart %d" % stats.items)
    st, r = rpc(srv, "Search", pb.SearchRequest(item_id=ids[7], k=1, include_query_item=True),
                pb.SearchResponse)
    check(r.hits and r.hits[0].id == ids[7], "search after restart")
    with open(os.path.join(A.work, "rpc2.log")) as f:
        log = f.read()
    check("rebuilt" not in log, "restart loads the snapshot: %s" % log)
    check(srv.stop(signal.SIGINT) == 0, "exit after SIGINT")
    test_devices()


def net_answers(srv):
    """FC7 of a.jpg and the ten-crop classes of b.jpg, as this server gives them."""
    _, x = rpc(srv, "Extract", pb.ExtractRequest(images=[read("a.jpg")], want_fc7=True),
               pb.ExtractResponse)
    _, c = rpc(srv, "Classify", pb.ClassifyRequest(image=read("b.jpg"), k=3, crops=pb.TEN),
               pb.ClassifyResponse)
    fc7 = list(x.items[0].fc7.values) if len(x.items) == 1 else []
    return fc7, [(p.index, p.probability) for p in c.classes]


def same_answers(a, b, what):
    (fa, ca), (fb, cb) = a, b
    scale = max([abs(v) for v in fa] + [1e-30])
    diff = max([abs(u - v) for u, v in zip(fa, fb)] + [0.0]) if len(fa) == len(fb) else float("inf")
    check(len(fa) == len(fb) and diff <= 1e-4 * scale, "%s: FC7 differs by %g (max %g)" % (what, diff, scale))
    check([l for l, _ in ca] == [l for l, _ in cb] and
          all(abs(p - q) <= 1e-4 for (_, p), (_, q) in zip(ca, cb)),
          "%s: classes %s vs %s" % (what, ca, cb))


def test_devices():
    """serve --device/--devices: the nets of the workers on other devices give
    the CPU server's answers. Here: two cpu-staged columns (the GPU-shaped
    paths of the net: memory of its own, exchanges between devices, the host
    loss). gpu:0 where this machine has none: a clear refusal at start."""
    ref = Server(A.work, "dev_cpu", os.path.join(A.work, "store_dev_cpu"))
    want = net_answers(ref)
    check(ref.stop() == 0, "device reference server exit status")
    srv = Server(A.work, "dev_staged", os.path.join(A.work, "store_dev_staged"),
                 "--devices", "cpu-staged:0,cpu-staged:1")
    same_answers(net_answers(srv), want, "two cpu-staged columns")
    check(srv.stop() == 0, "cpu-staged server exit status")
    with open(os.path.join(A.work, "dev_staged.log")) as f:
        check("cpu-staged:0,cpu-staged:1 (two-column split)" in f.read(),
              "the log names the devices")
    cmd = [A.imgret, "serve", "--model", os.path.join(A.work, "model.imgret"), "--store",
           os.path.join(A.work, "store_dev_gpu"), "--port", "0", "--device", "gpu:0"]
    probe = subprocess.run([A.imgret, "forward", "--net", "alexnet-small", "--device", "gpu:0"],
                           capture_output=True, text=True, timeout=120)
    has_gpu = probe.returncode == 0
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    check(("listening on" in line) == has_gpu,
          "serve --device gpu:0 %s where imgret forward on gpu:0 %s" %
          ("started" if "listening on" in line else "did not start",
           "works" if has_gpu else "fails"))
    if "listening on" in line:  # a machine with a GPU
        srv = Server.__new__(Server)
        srv.proc, srv.log, srv.log_path = p, open(os.devnull, "w"), os.devnull
        srv.port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
        srv.url = "http://127.0.0.1:%d" % srv.port
        same_answers(net_answers(srv), want, "gpu:0")
        check(srv.stop() == 0, "gpu server exit status")
    else:
        err = p.stderr.read()
        rc = p.wait(30)
        check(rc != 0 and "gpu:0" in err and "asked for" in err,
              "serve --device gpu:0 without a GPU: exit %d, %r" % (rc, err))
    bad = subprocess.run(cmd[:-2] + ["--devices", "cpu:0,cpu:0"], capture_output=True, text=True,
                         timeout=30)
    check(bad.returncode == 2 and "appears twice" in bad.stderr,
          "serve --devices cpu:0,cpu:0: %d %r" % (bad.returncode, bad.stderr))


def test_rpc_json(srv, ids, vecs, img_id):
    """Every method in the JSON encoding answers as its protobuf call does."""
    def same(method, req, resp_type, what, proto_names=False):
        _, want = rpc(srv, method, req, resp_type)
        st, got, raw = rpc_json(srv, method, req, resp_type, proto_names=proto_names)
        check(st == 200 and got == want, "%s: JSON reply %s differs from protobuf %s" % (what, got, want))
        return got, raw

    # Stats: all but the clock and the request counter.
    _, want = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    st, got, raw = rpc_json(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    got.uptime_seconds, got.requests = want.uptime_seconds, want.requests
    check(st == 200 and got == want, "Stats JSON %s vs %s" % (got, want))
    check(isinstance(raw.get("items"), str) and isinstance(raw.get("requests"), str),
          "int64/uint64 are JSON strings: %r" % raw)
    check(raw.get("fc7Dim") == 256 and raw.get("codeBits") == 32 and raw.get("indexKinds") ==
          ["fc7:Flat", "code:BFlat"] and len(raw.get("classNames", [])) == 10 and "modelHash" in raw,
          "Stats JSON names are lowerCamelCase: %r" % sorted(raw))
    st, got, raw = rpc_json(srv, "Stats", "{}", pb.StatsResponse, ctype="application/json; charset=utf-8")
    check(st == 200 and got.fc7_dim == 256, "Content-Type parameters are ignored")

    # Search, every query kind.
    q = pb.SearchRequest(k=5)
    q.vector.values.extend(vecs[7])
    got, raw = same("Search", q, pb.SearchResponse, "vector search")
    check(raw.get("metric") == "EUCLIDEAN" and "reranked" not in raw and "classes" not in raw,
          "enum names, defaults left out: %r" % {k: raw[k] for k in raw if k != "hits"})
    h = raw["hits"][0]
    check(h["id"] == str(ids[7]) and h["uri"] == "vec-7" and h["label"] == 7 and
          h["labelName"] == "Sneaker" and "distance" not in h and
          isinstance(raw["hits"][1]["distance"], float), "hit JSON (distance 0 left out) %r" % h)
    same("Search", pb.SearchRequest(item_id=ids[3], k=3, include_query_item=True), pb.SearchResponse,
         "id search, proto field names", proto_names=True)
    same("Search", pb.SearchRequest(image=read("a.jpg"), k=3), pb.SearchResponse, "image search")
    q = pb.SearchRequest(k=4, metric=pb.HAMMING, rerank=True, rerank_candidates=20)
    q.vector.values.extend(vecs[5])
    got, raw = same("Search", q, pb.SearchResponse, "hamming rerank search")
    check(raw.get("metric") == "HAMMING" and raw.get("reranked") is True, "rerank JSON %r" % raw)
    # Codes (bytes) in URL-safe base64 without padding; int64 as a number.
    _, x = rpc(srv, "Extract", pb.ExtractRequest(images=[read("b.jpg")], want_code=True),
               pb.ExtractResponse)
    code = x.items[0].code
    _, want = rpc(srv, "Search", pb.SearchRequest(code=code, k=3), pb.SearchResponse)
    body = json.dumps({"code": base64.urlsafe_b64encode(code).decode().rstrip("="), "k": 3})
    st, got, _ = rpc_json(srv, "Search", body, pb.SearchResponse)
    check(st == 200 and got == want, "code search, URL-safe base64: %s vs %s" % (got, want))
    _, want = rpc(srv, "Search", pb.SearchRequest(item_id=ids[4], k=2), pb.SearchResponse)
    st, got, _ = rpc_json(srv, "Search", '{"item_id": %d, "k": 2, "metric": 1, "future": [1]}'
                          % ids[4], pb.SearchResponse)
    check(st == 200 and got == want, "int64 and enum as numbers, an unknown field: %s" % got)

    # Classify, Extract.
    same("Classify", pb.ClassifyRequest(image=read("b.jpg"), k=3, crops=pb.TEN), pb.ClassifyResponse,
         "ten-crop classify")
    got, raw = same("Extract", pb.ExtractRequest(images=[read("a.jpg"), read("c.png")], want_fc7=True,
                                                 want_code=True), pb.ExtractResponse, "extract")
    check(base64.b64decode(raw["items"][1]["code"], validate=True) == got.items[1].code and
          len(raw["items"][0]["fc7"]["values"]) == 256, "extract JSON: standard base64, FC7 arrays")

    # Add and Remove: float32 values exact through JSON (distance exactly 0
    # to the same vector sent as protobuf), ids as numbers and strings.
    rng = random.Random(3)
    v = [struct.unpack("f", struct.pack("f", max(0.0, rng.gauss(0, 1)) / 3.0))[0] for _ in range(256)]
    add = pb.AddRequest()
    it = add.items.add()
    it.vector.values.extend(v)
    it.uri = "json-\u00e9-\"q\""
    it.label = -1
    it.has_id = True
    it.id = 5000
    st, added, raw = rpc_json(srv, "Add", add, pb.AddResponse)
    check(st == 200 and list(added.ids) == [5000] and added.seq > 0 and
          raw == {"ids": ["5000"], "seq": str(added.seq)}, "JSON Add %r" % raw)
    q = pb.SearchRequest(k=1)
    q.vector.values.extend(v)
    _, r = rpc(srv, "Search", q, pb.SearchResponse)
    check(r.hits and r.hits[0].id == 5000 and r.hits[0].distance == 0.0 and
          r.hits[0].uri == "json-\u00e9-\"q\"", "JSON-added vector is exact: %s" % r.hits[:1])
    st, rm, raw = rpc_json(srv, "Remove", '{"ids":["5000"]}', pb.RemoveResponse)
    check(st == 200 and rm.removed == 1 and raw == {"removed": 1}, "JSON Remove %r" % raw)

    # Errors in the JSON encoding are the same Twirp errors.
    expect_json_error(srv, "Search", '{"itemId": "5000"}', 404, "not_found")
    expect_json_error(srv, "Search", '{"vector": {"values": [1, 2]}}', 400, "invalid_argument",
                      "vector has 2 values")
    expect_json_error(srv, "Search", '{"k": "five", "itemId": 1}', 400, "malformed",
                      "offset 6, field k")


# --------------------------------------------------------------- errors

def jpeg_with_size(data, w, h):
    """The JPEG with its SOF0 frame header saying w x h."""
    b = bytearray(data)
    i = 2
    while i < len(b) - 9:
        if b[i] != 0xFF:
            break
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + length
    raise SystemExit("no SOF marker")


def png_header(w, h):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_errors():
    store = os.path.join(A.work, "store")
    tok = "t0ken"
    srv = Server(A.work, "errors", store, "--token", tok, "--max-body", "65536",
                 "--max-pixels", "1000000")
    rng = random.Random(2)
    # Malformed protobuf, truncated protobuf.
    for body in (b"\xff\xff\xff\xff", b"\x0a\x10ab", b"\x12\x05\x0d\x00\x00"):
        expect_error(srv, "Search", body, 400, "malformed")
    # Content types and routes.
    st, data, ct = http(srv, PREFIX + "Stats", b"", ctype="text/plain")
    check(st == 404 and json.loads(data)["code"] == "bad_route", "text/plain: %d %s" % (st, data))
    st, data, ct = http(srv, PREFIX + "Stats", b"{}", ctype="application/x-protobuf")
    check(st == 404 and json.loads(data)["code"] == "bad_route", "x-protobuf: %d %s" % (st, data))
    # Malformed JSON bodies: the offset and the field in the message.
    for body, needle in ((b"", "offset 0: expected an object"),
                         (b'{"itemId": 1', "offset 12: expected ',' or '}'"),
                         (b'{"itemId": 1,}', "offset 13: expected a field name"),
                         (b'{"itemId": 1.5}', "field itemId: 1.5 is not a whole number for int64"),
                         (b'{"itemId": 9223372036854775808}', "out of range for int64"),
                         (b'{"k": -1, "itemId": 1}', "-1 is out of range for uint32"),
                         (b'{"metric": "hamming", "itemId": 1}', "not a value of imgret.v1.Metric"),
                         (b'{"image": "@@@@"}', "outside base64"),
                         (b'{"image": "QQ==", "itemId": 1}', "image is already set"),
                         (b'{"vector": {"values": [1, "x"]}}', "field vector.values[1]"),
                         (b'{"vector": [1]}', "expected an object for imgret.v1.Vector"),
                         (b'{"rerank": "yes", "itemId": 1}', "expected true or false"),
                         (b'{"itemId": 1, "itemId": 2}', "given twice"),
                         (b'{"future": "\\ud800", "itemId": 1}', "surrogate"),
                         (b'{"future": "\xff", "itemId": 1}', "invalid UTF-8"),
                         (b'{"future": ' + b"[" * 5000 + b"]" * 5000 + b', "itemId": 1}',
                          "nested deeper than 64"),
                         (b"{} {}", "after the object")):
        expect_json_error(srv, "Search", body, 400, "malformed", needle)
    st, data, ct = http(srv, PREFIX + "Search", b'{"image": "' + b"A" * 100000 + b'"}',
                        ctype="application/json")
    check(st == 413, "oversize JSON body: %d" % st)
    # Tokens apply to JSON calls alike.
    expect_json_error(srv, "Remove", '{"ids": [7]}', 401, "unauthenticated")
    expect_json_error(srv, "Remove", '{"ids": [7]}', 403, "permission_denied", token="nope")
    st, data, ct = http(srv, PREFIX + "Stats", b"", ctype=None)
    check(st == 404 and json.loads(data)["code"] == "bad_route", "no content type: %d" % st)
    st, data, ct = http(srv, PREFIX + "Frobnicate", b"")
    check(st == 404 and json.loads(data)["code"] == "bad_route", "unknown method: %d %s" % (st, data))
    st, data, ct = http(srv, "/twirp/other.Service/Search", b"")
    check(st == 404 and json.loads(data)["code"] == "bad_route", "unknown service: %d" % st)
    st, data, ct = http(srv, PREFIX + "Stats")  # GET
    check(st == 404 and json.loads(data)["code"] == "bad_route", "GET on an RPC: %d" % st)
    # Too large a body: 413 from evhttp, the connection answered, not reset.
    st, data, ct = http(srv, PREFIX + "Search", b"\0" * 200000)
    check(st == 413, "oversize body: %d" % st)
    # Images: corrupt, garbage, absurd sizes from the header.
    a = read("a.jpg")
    bad = bytearray(a)
    for i in range(len(bad) // 2, len(bad) - 2):
        bad[i] = rng.randrange(256)
    for name, img in (("corrupt jpeg", bytes(bad)), ("truncated jpeg", a[:len(a) // 2]),
                      ("garbage", os.urandom(500)),
                      ("65535x65535 jpeg", jpeg_with_size(a, 65535, 65535)),
                      ("100000x100000 png", png_header(100000, 100000)),
                      ("2000x2000 jpeg over --max-pixels", jpeg_with_size(a, 2000, 2000))):
        err = expect_error(srv, "Classify", pb.ClassifyRequest(image=img), 400, "invalid_argument")
        if "x" in name.split()[0]:
            check("pixel" in err.get("msg", "").lower() or "large" in err.get("msg", "").lower()
                  or "limit" in err.get("msg", "").lower(), "%s message: %s" % (name, err))
    expect_error(srv, "Search", pb.SearchRequest(image=png_header(100000, 100000)), 400,
                 "invalid_argument")
    ex = pb.ExtractRequest(images=[read("b.jpg"), bytes(bad)])
    expect_error(srv, "Extract", ex, 400, "invalid_argument")
    # Validation.
    q = pb.SearchRequest()
    q.vector.values.extend([1.0] * 10)
    expect_error(srv, "Search", q, 400, "invalid_argument")
    expect_error(srv, "Search", pb.SearchRequest(), 400, "invalid_argument")
    expect_error(srv, "Search", pb.SearchRequest(item_id=1, k=5000), 400, "invalid_argument")
    expect_error(srv, "Search", pb.SearchRequest(code=b"\1\2", metric=pb.HAMMING), 400, "invalid_argument")
    expect_error(srv, "Classify", pb.ClassifyRequest(image=a, k=11), 400, "invalid_argument")
    # not_found.
    expect_error(srv, "Search", pb.SearchRequest(item_id=424242), 404, "not_found")
    expect_error(srv, "Remove", pb.RemoveRequest(ids=[424242]), 404, "not_found", token=tok)
    # Tokens (scope write): reads are open, writes need the token.
    add = pb.AddRequest()
    it = add.items.add()
    it.vector.values.extend(relu_vec(rng))
    it.has_id = True
    it.id = 7
    expect_error(srv, "Add", add, 401, "unauthenticated")
    expect_error(srv, "Add", add, 403, "permission_denied", token="wrong")
    expect_error(srv, "Remove", pb.RemoveRequest(ids=[7]), 401, "unauthenticated")
    st, r = rpc(srv, "Add", add, pb.AddResponse, token=tok)
    check(st == 200 and list(r.ids) == [7], "Add with the token")
    expect_error(srv, "Add", add, 409, "already_exists", token=tok)
    # All-or-none: a batch with one bad id adds nothing.
    add2 = pb.AddRequest()
    for i in (8, 7):
        it = add2.items.add()
        it.vector.values.extend(relu_vec(rng))
        it.has_id = True
        it.id = i
    expect_error(srv, "Add", add2, 409, "already_exists", token=tok)
    expect_error(srv, "Search", pb.SearchRequest(item_id=8), 404, "not_found")
    st, stats = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    check(stats.items == 1, "all-or-none add left %d items" % stats.items)
    st, body, _ = http(srv, "/healthz")
    check(st == 200 and body == b"ok\n", "healthz after the errors")
    check(srv.stop() == 0, "errors server exit status")

    # A full queue: one worker, room for one waiting job, heavy requests.
    srv = Server(A.work, "queue", os.path.join(A.work, "store_q"), "--queue", "1", "--threads", "1",
                 "--max-batch", "4", "--batch-wait-ms", "0")
    heavy = pb.ExtractRequest(images=[read("b.jpg")] * 64).SerializeToString()
    codes = []
    lock = threading.Lock()

    def fire():
        st, data, _ = http(srv, PREFIX + "Extract", heavy)
        code = "ok" if st == 200 else json.loads(data)["code"]
        with lock:
            codes.append((st, code))
    th = [threading.Thread(target=fire) for _ in range(12)]
    [t.start() for t in th]
    [t.join() for t in th]
    check(("ok" in [c for _, c in codes]) and (429, "resource_exhausted") in codes,
          "full queue answers 429 resource_exhausted: %s" % codes)
    check(all(c in ((200, "ok"), (429, "resource_exhausted")) for c in codes), "only ok or 429: %s" % codes)
    # Clients that hang up while their request is queued or running: the
    # server answers into the void and carries on.
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"POST " + PREFIX.encode() + b"Extract HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/protobuf\r\nContent-Length: %d\r\n\r\n" % len(heavy)
                     + heavy)
        sock.close()
    sock = socket.create_connection(("127.0.0.1", srv.port))  # a body that never comes
    sock.sendall(b"POST " + PREFIX.encode() + b"Stats HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    sock.close()
    time.sleep(1.0)
    st, body, _ = http(srv, "/metrics")
    check('imgret_requests_total{method="Extract",code="resource_exhausted"}' in body.decode(),
          "metrics count the 429s")
    st, body, _ = http(srv, "/healthz")
    check(st == 200, "healthz after overload")
    check(srv.stop() == 0, "queue server exit status")

    # Deadlines and the "all" token scope.
    srv = Server(A.work, "deadline", os.path.join(A.work, "store_d"), "--timeout", "0.001",
                 "--threads", "1", "--token", tok, "--token-scope", "all")
    expect_error(srv, "Stats", pb.StatsRequest(), 401, "unauthenticated")
    expect_error(srv, "Stats", pb.StatsRequest(), 403, "permission_denied", token="nope")
    st, _, _ = http(srv, "/thumb/1")
    check(st == 401, "thumb needs the token under scope all: %d" % st)
    heavy = pb.ExtractRequest(images=[read("b.jpg")] * 64)
    got = []
    for _ in range(3):
        st, err = rpc(srv, "Extract", heavy, pb.ExtractResponse, token=tok, want=408)
        got.append(err.get("code") if isinstance(err, dict) else "ok")
        if got[-1] == "deadline_exceeded":
            break
    check("deadline_exceeded" in got, "deadline_exceeded: %s" % got)
    time.sleep(0.5)
    st, body, _ = http(srv, "/healthz")
    check(st == 200, "healthz after deadlines")
    check(srv.stop() == 0, "deadline server exit status")

    test_out_of_descriptors()


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors():
    """More connections than the server has file descriptors: accept() fails
    with EMFILE. The server must neither spin nor flood its log, and must
    serve again once the connections go."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    srv = Server(A.work, "emfile", os.path.join(A.work, "store_f"), preexec_fn=low_limit)
    cpu0 = cpu_seconds(srv.proc.pid)
    socks = []
    for _ in range(120):
        try:
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        except OSError:
            break
    time.sleep(2.0)
    cpu = cpu_seconds(srv.proc.pid) - cpu0
    check(cpu < 0.5, "out of descriptors: the server used %.2f s of CPU in 2 s (spinning?)" % cpu)
    for sk in socks:
        sk.close()
    time.sleep(0.5)
    st, body, _ = http(srv, "/healthz", timeout=10)
    check(st == 200, "healthz after the descriptors came back: %d" % st)
    st, body, _ = http(srv, "/metrics")
    pauses = [l for l in body.decode().splitlines() if l.startswith("imgret_accept_pauses_total ")]
    check(pauses and int(pauses[0].split()[1]) >= 1, "metrics count the accept pauses: %s" % pauses)
    check(srv.stop() == 0, "emfile server exit status")
    with open(srv.log_path) as f:
        lines = [l for l in f if "accept:" in l]
    check(1 <= len(lines) <= 3 and "Too many open files" in lines[0],
          "one log line per 10 s of accept failures, naming the error: %d lines %s" % (len(lines), lines[:2]))


# ---------------------------------------------------------------- kill9

def test_kill9():
    store = os.path.join(A.work, "store")
    srv = Server(A.work, "kill9", store, "--threads", "2")
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def storm(t):
        rng = random.Random(t)
        n = 0
        while not stop.is_set():
            add = pb.AddRequest()
            for j in range(3):
                it = add.items.add()
                it.vector.values.extend(relu_vec(rng))
                it.uri = "storm-%d-%d-%d" % (t, n, j)
                # Threads 0-1 let the store choose ids (one above the
                # largest ever given); 2-3 give their own, counting down
                # from below the first one, so the two never meet.
                if t >= 2:
                    it.has_id = True
                    it.id = (1 << 50) - (1 << 40) * (t - 1) - 3 * n - j
            n += 1
            try:
                st, r = rpc(srv, "Add", add, pb.AddResponse)
            except Exception:
                return  # the server is gone
            if st != 200:
                return
            with lock:
                acked.extend(r.ids)
    th = [threading.Thread(target=storm, args=(t,)) for t in range(4)]
    [t.start() for t in th]
    time.sleep(2.0)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(30)
    stop.set()
    [t.join() for t in th]
    srv.log.close()
    print("  acknowledged before the kill: %d items" % len(acked), flush=True)
    check(len(acked) > 0, "some adds were acknowledged")
    srv = Server(A.work, "kill9-restart", store)
    st, stats = rpc(srv, "Stats", pb.StatsRequest(), pb.StatsResponse)
    check(stats.items >= len(acked), "items %d >= acknowledged %d" % (stats.items, len(acked)))
    missing = 0
    for i in acked:
        st, r = rpc(srv, "Search", pb.SearchRequest(item_id=i, k=1, include_query_item=True),
                    pb.SearchResponse, want=200)
        if st != 200 or not r.hits or r.hits[0].id != i or r.hits[0].distance > 1e-3:
            missing += 1
    check(missing == 0, "%d acknowledged ids not searchable after kill -9" % missing)
    check(srv.stop() == 0, "restart exit status")


def main():
    global A
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=["rpc", "errors", "kill9"])
    p.add_argument("--imgret", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--protoc", required=True)
    p.add_argument("--proto-root", required=True)
    p.add_argument("--work", required=True)
    A = p.parse_args()
    setup()
    {"rpc": test_rpc, "errors": test_errors, "kill9": test_kill9}[A.case]()
    if FAILS:
        print("%d checks failed" % len(FAILS))
        sys.exit(1)
    print("server %s: all checks passed" % A.case)


if __name__ == "__main__":
    main()
