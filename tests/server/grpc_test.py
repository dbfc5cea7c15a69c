#!/usr/bin/python3
"""gRPC beside Twirp on the same port: `imgret serve` called by a real gRPC
client (Debian's python3-grpcio, stubs generated at test time from
proto/imgret/v1/service.proto by protoc and protobuf-compiler-grpc's
grpc_python_plugin), and by hand-made HTTP/2 frames for what no well-behaved
client sends.

  grpc_test.py calls|bad --imgret BIN --fixture BIN --protoc BIN
               --grpc-plugin BIN --proto-root DIR --work DIR

calls: every method (answers equal to Twirp's on the same port), error
       kinds (invalid_argument, not_found, already_exists, unimplemented,
       resource_exhausted over --max-body), missing and wrong tokens, a
       grpc-timeout that expires (client side and the server's own answer),
       grpc.health.v1.Health/Check, 100 concurrent calls on one channel,
       the gRPC counters in /metrics.
bad:   a bad preface, malformed frames, a length prefix claiming 4 GB, the
       compressed flag with no grpc-encoding, a stream reset mid-message,
       more streams than allowed: each answered with a status, RST_STREAM
       or GOAWAY, and the server still answering both protocols after.
"""
import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

A = None
pb = pbg = grpc = None
FAILS = []
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TOKEN = "s3cret"


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("  FAIL:", what, flush=True)


def setup():
    shutil.rmtree(A.work, ignore_errors=True)
    os.makedirs(A.work)
    subprocess.run([A.fixture, A.work], check=True, stdout=subprocess.DEVNULL)
    out = os.path.join(A.work, "pb")
    os.makedirs(out)
    subprocess.run([A.protoc, "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=" + A.grpc_plugin, "-I" + A.proto_root,
                    os.path.join(A.proto_root, "imgret/v1/service.proto")], check=True)
    sys.path.insert(0, out)
    global pb, pbg, grpc
    import grpc as grpc_module
    from imgret.v1 import service_pb2, service_pb2_grpc
    grpc, pb, pbg = grpc_module, service_pb2, service_pb2_grpc


class Server:
    def __init__(self, name, *extra):
        self.log = open(os.path.join(A.work, name + ".log"), "w")
        cmd = [A.imgret, "serve", "--model", os.path.join(A.work, "model.imgret"),
               "--autoencoder", os.path.join(A.work, "ae.imgret"),
               "--store", os.path.join(A.work, "store_" + name), "--port", "0"] + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise SystemExit("server did not start: %r" % line)
        self.port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.stub = pbg.ImageSearchStub(self.channel)

    def stop(self):
        self.channel.close()
        self.proc.terminate()
        rc = self.proc.wait(60)
        self.log.close()
        return rc


def http(srv, path, body=None, ctype="application/protobuf", token=None):
    req = urllib.request.Request(srv.url + path, data=body)
    if body is not None:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with OPENER.open(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def twirp(srv, method, msg, resp_type, token=None):
    st, body = http(srv, "/twirp/imgret.v1.ImageSearch/" + method, msg.SerializeToString(),
                    token=token)
    check(st == 200, "Twirp %s on the gRPC port: HTTP %d %r" % (method, st, body[:200]))
    out = resp_type()
    out.ParseFromString(body)
    return out


def metrics(srv):
    return http(srv, "/metrics")[1].decode()


def read(name):
    with open(os.path.join(A.work, name), "rb") as f:
        return f.read()


def auth(token=TOKEN):
    return [("authorization", "Bearer " + token)]


def expect_code(fn, code, what, needle=None):
    try:
        fn()
    except grpc.RpcError as e:
        ok = e.code() == code and (needle is None or needle in (e.details() or ""))
        check(ok, "%s: wanted %s %r, got %s %r" % (what, code, needle, e.code(), e.details()))
        return e
    check(False, "%s: wanted %s, the call succeeded" % (what, code))
    return None


def health(srv, service):
    call = srv.channel.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    name = service.encode()
    return call(b"\x0a" + bytes([len(name)]) + name if name else b"", timeout=10)


# ---------------------------------------------------------------- calls

def test_calls():
    srv = Server("calls", "--token", TOKEN, "--max-body", "65536", "--queue", "256")
    s = srv.stub
    stats = s.Stats(pb.StatsRequest(), timeout=30)
    check(stats.items == 0 and stats.fc7_dim == 256 and stats.code_bits == 32, "Stats %s" % stats)

    # Add: vectors and an image; the write scope needs the token.
    vecs = [[float((i * 7 + d) % 13) for d in range(256)] for i in range(12)]
    add = pb.AddRequest()
    for i, v in enumerate(vecs):
        it = add.items.add()
        it.vector.values.extend(v)
        it.uri = "vec-%d" % i
        it.label = i % 10
    it = add.items.add()
    it.image = read("a.jpg")
    it.uri = "a.jpg"
    it.label = -1
    added = s.Add(add, metadata=auth(), timeout=60)
    ids = list(added.ids)
    check(len(ids) == 13 and len(set(ids)) == 13, "Add ids %s" % ids)

    # Search: by vector, by id, by image, by code; equal to Twirp's answers.
    q = pb.SearchRequest(k=5)
    q.vector.values.extend(vecs[4])
    r = s.Search(q, timeout=30)
    check(r.hits and r.hits[0].id == ids[4] and r.hits[0].distance < 1e-3, "vector search %s" % r.hits[:1])
    check(r == twirp(srv, "Search", q, pb.SearchResponse), "gRPC and Twirp answer the same Search")
    r = s.Search(pb.SearchRequest(item_id=ids[2], k=3, include_query_item=True), timeout=30)
    check(r.hits and r.hits[0].id == ids[2], "id search %s" % r.hits[:1])
    r = s.Search(pb.SearchRequest(image=read("a.jpg"), k=2), timeout=60)
    check(r.hits and r.hits[0].id == ids[12] and len(r.classes) == 5, "image search %s" % r.hits[:1])

    # Extract (FC7 and codes), then a search by the code it gave.
    x = s.Extract(pb.ExtractRequest(images=[read("a.jpg"), read("b.jpg")], want_fc7=True,
                                    want_code=True), timeout=60)
    check(len(x.items) == 2 and len(x.items[0].fc7.values) == 256 and len(x.items[0].code) == 4,
          "Extract %d items" % len(x.items))
    r = s.Search(pb.SearchRequest(code=x.items[0].code, metric=pb.HAMMING, k=3), timeout=30)
    check(any(h.id == ids[12] and h.distance == 0 for h in r.hits), "code search %s" % r.hits)

    # Classify, centre and ten-crop.
    c = s.Classify(pb.ClassifyRequest(image=read("b.jpg"), k=3), timeout=60)
    check(len(c.classes) == 3 and c.classes[0].probability >= c.classes[1].probability, "Classify")
    c10 = s.Classify(pb.ClassifyRequest(image=read("b.jpg"), k=3, crops=pb.TEN), timeout=60)
    check(len(c10.classes) == 3, "Classify ten-crop")
    check(c == twirp(srv, "Classify", pb.ClassifyRequest(image=read("b.jpg"), k=3),
                     pb.ClassifyResponse), "gRPC and Twirp answer the same Classify")

    # Remove.
    rm = s.Remove(pb.RemoveRequest(ids=[ids[0]]), metadata=auth(), timeout=30)
    check(rm.removed == 1, "Remove %s" % rm)

    # Error kinds, through error.c's one table.
    bad = pb.SearchRequest(k=3)
    bad.vector.values.extend([1.0] * 7)
    expect_code(lambda: s.Search(bad, timeout=30), grpc.StatusCode.INVALID_ARGUMENT, "wrong dimension")
    expect_code(lambda: s.Search(pb.SearchRequest(item_id=999999), timeout=30),
                grpc.StatusCode.NOT_FOUND, "unknown item")
    expect_code(lambda: s.Remove(pb.RemoveRequest(ids=[ids[0]]), metadata=auth(), timeout=30),
                grpc.StatusCode.NOT_FOUND, "removed twice")
    dup = pb.AddRequest()
    it = dup.items.add()
    it.vector.values.extend(vecs[1])
    it.has_id = True
    it.id = ids[1]
    expect_code(lambda: s.Add(dup, metadata=auth(), timeout=30), grpc.StatusCode.ALREADY_EXISTS,
                "an id taken")
    nope = srv.channel.unary_unary("/imgret.v1.ImageSearch/Nope", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    expect_code(lambda: nope(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED, "unknown method")
    other = srv.channel.unary_unary("/some.Other/Call", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
    expect_code(lambda: other(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED, "unknown service")
    big = pb.ExtractRequest(images=[b"\xff" * 70000])
    expect_code(lambda: s.Extract(big, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED,
                "over --max-body", "limit")
    junk = srv.channel.unary_unary("/imgret.v1.ImageSearch/Search", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    expect_code(lambda: junk(b"\xff\xff\xff", timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                "a body that does not decode")

    # Tokens: writes need one (scope "write"), and it must be right.
    expect_code(lambda: s.Add(add, timeout=30), grpc.StatusCode.UNAUTHENTICATED, "no token")
    expect_code(lambda: s.Add(add, metadata=auth("wrong"), timeout=30),
                grpc.StatusCode.PERMISSION_DENIED, "wrong token")

    # Health.
    check(health(srv, "") == b"\x08\x01", "Health/Check '' SERVING")
    check(health(srv, "imgret.v1.ImageSearch") == b"\x08\x01", "Health/Check service SERVING")
    expect_code(lambda: health(srv, "no.Such"), grpc.StatusCode.NOT_FOUND, "Health/Check unknown")
    watch = srv.channel.unary_stream("/grpc.health.v1.Health/Watch",
                                     request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
    it = watch(b"", timeout=30)
    check(next(it) == b"\x08\x01", "Health/Watch '' SERVING first")
    it.cancel()
    it = watch(b"\x0a\x07no.Such", timeout=30)
    check(next(it) == b"\x08\x03", "Health/Watch unknown: SERVICE_UNKNOWN")
    it.cancel()
    check(health(srv, "") == b"\x08\x01", "Health/Check after cancelled Watches")

    # 100 concurrent calls on one channel (one HTTP/2 connection).
    q = pb.SearchRequest(k=3)
    q.vector.values.extend(vecs[6])
    want = s.Search(q, timeout=30)
    futures = [s.Search.future(q, timeout=60) for _ in range(100)]
    got = []
    for f in futures:
        try:
            got.append(f.result())
        except grpc.RpcError as e:
            got.append(e.code())
    check(all(g == want for g in got), "100 concurrent: %d of 100 as expected (%s)" %
          (sum(g == want for g in got), [g for g in got if g != want][:3]))
    futures = [s.Classify.future(pb.ClassifyRequest(image=read("c.png"), k=2), timeout=120)
               for _ in range(20)]
    check(all(len(f.result().classes) == 2 for f in futures), "20 concurrent image calls")

    # Metrics count the gRPC calls apart from Twirp's.
    m = metrics(srv)
    for needle in ('imgret_grpc_requests_total{method="Search",code="ok"}',
                   'imgret_grpc_requests_total{method="Search",code="not_found"} 1',
                   'imgret_grpc_requests_total{method="Add",code="already_exists"} 1',
                   'imgret_grpc_requests_total{method="Health",code="ok"} 5',
                   'imgret_requests_total{method="Search",code="ok"} 1'):
        check(needle in m, "metrics: %s" % needle)
    check(srv.stop() == 0, "calls server exit status")

    # Deadlines: the client's own, and the server's answer to grpc-timeout
    # (1 microsecond: gone before a ten-crop forward pass is done).
    srv = Server("deadline", "--threads", "1")
    heavy = pb.ExtractRequest(images=[read("b.jpg")] * 64)
    expect_code(lambda: srv.stub.Extract(heavy, timeout=0.05), grpc.StatusCode.DEADLINE_EXCEEDED,
                "grpcio deadline")
    sock = h2_connect(srv)
    msg = pb.ClassifyRequest(image=read("c.png"), crops=pb.TEN).SerializeToString()
    check(len(msg) < 16000, "the ClassifyRequest fits one DATA frame")
    send_call(sock, 1, "/imgret.v1.ImageSearch/Classify", msg, extra=[(b"grpc-timeout", b"1u")])
    frames = read_frames(sock, lambda f: f[0] == HEADERS and f[2] == 1 and f[1] & END_STREAM, 30)
    check(any(f[0] == HEADERS and f[2] == 1 and f[1] & END_STREAM for f in frames),
          "grpc-timeout 1u: the server answers the stream")
    sock.close()
    time.sleep(0.3)
    check('imgret_grpc_requests_total{method="Classify",code="deadline_exceeded"} 1' in metrics(srv),
          "the server's own deadline_exceeded counted")
    check(srv.stub.Stats(pb.StatsRequest(), timeout=60).fc7_dim == 256, "Stats after deadlines")
    check(srv.stop() == 0, "deadline server exit status")


# ------------------------------------------- raw HTTP/2 (bad input)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, ACK, END_HEADERS = 1, 1, 4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def literal(name, value):
    """HPACK literal header field without indexing, no Huffman (RFC 7541 6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request_headers(path, extra=()):
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
        (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
        + list(extra))
    return block


def h2_connect(srv):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def send_call(sock, sid, path, msg, extra=(), end=True):
    sock.sendall(frame(HEADERS, END_HEADERS, sid, request_headers(path, extra)) +
                 frame(DATA, END_STREAM if end else 0, sid, b"\x00" + struct.pack(">I", len(msg)) + msg))


def read_frames(sock, until, timeout=10):
    """Frames (type, flags, stream, payload) until `until(frame)` is true, the
    peer closes, or the timeout passes. Settings are acknowledged."""
    frames, buf = [], b""
    end = time.time() + timeout
    while time.time() < end:
        sock.settimeout(max(0.05, end - time.time()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n])
            buf = buf[9 + n:]
            frames.append(f)
            if f[0] == SETTINGS and not f[1] & ACK:
                try:
                    sock.sendall(frame(SETTINGS, ACK, 0))
                except OSError:
                    pass
            if until(f):
                return frames
    return frames


def closed(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (socket.timeout, OSError):
        return False


def still_serving(srv, what):
    try:
        st = srv.stub.Stats(pb.StatsRequest(), timeout=30)
        check(st.fc7_dim == 256, "%s: gRPC Stats after" % what)
    except grpc.RpcError as e:
        check(False, "%s: gRPC Stats after: %s" % (what, e.code()))
    code, _ = http(srv, "/healthz")
    check(code == 200, "%s: /healthz after: %d" % (what, code))


def test_bad():
    srv = Server("bad", "--max-body", "65536")

    # A preface that goes wrong after 18 bytes: not HTTP/2, so evhttp's to refuse.
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 64)
    sock.settimeout(10)
    try:
        head = sock.recv(100)
    except OSError:
        head = b""
    check(head == b"" or head.startswith(b"HTTP/1.1 4"), "bad preface answered %r" % head[:40])
    sock.close()
    still_serving(srv, "bad preface")

    # Malformed frames: a SETTINGS frame of 5 bytes, a DATA frame on stream 0,
    # HEADERS with a block that does not decode: each a GOAWAY and a close.
    for name, bad in (("SETTINGS of 5 bytes", frame(SETTINGS, 0, 0, b"\x00" * 5)),
                      ("DATA on stream 0", frame(DATA, 0, 0, b"abc")),
                      ("undecodable header block", frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff")),
                      ("a frame of 16 MB", b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")):
        sock = h2_connect(srv)
        sock.sendall(bad)
        frames = read_frames(sock, lambda f: f[0] == GOAWAY)
        check(any(f[0] == GOAWAY for f in frames), "%s: GOAWAY (got %s)" % (name, [f[0] for f in frames]))
        check(closed(sock), "%s: the connection closed" % name)
        sock.close()
        still_serving(srv, name)

    # A length prefix claiming 4 GB: RESOURCE_EXHAUSTED before the body comes.
    sock = h2_connect(srv)
    sock.sendall(frame(HEADERS, END_HEADERS, 1, request_headers("/imgret.v1.ImageSearch/Extract")) +
                 frame(DATA, 0, 1, b"\x00\xff\xff\xff\xff" + b"x" * 100))
    frames = read_frames(sock, lambda f: f[0] == HEADERS and f[2] == 1 and f[1] & END_STREAM)
    check(any(f[0] == HEADERS and f[1] & END_STREAM for f in frames), "4 GB prefix: answered at once")
    # The same connection still serves a call.
    send_call(sock, 3, "/imgret.v1.ImageSearch/Stats", b"")
    frames = read_frames(sock, lambda f: f[2] == 3 and f[1] & END_STREAM)
    check(any(f[0] == DATA and f[2] == 3 for f in frames), "a call after the 4 GB prefix")
    sock.close()

    # The compressed flag with no grpc-encoding: INTERNAL.
    sock = h2_connect(srv)
    sock.sendall(frame(HEADERS, END_HEADERS, 1, request_headers("/imgret.v1.ImageSearch/Stats")) +
                 frame(DATA, END_STREAM, 1, b"\x01\x00\x00\x00\x00"))
    frames = read_frames(sock, lambda f: f[0] == HEADERS and f[2] == 1 and f[1] & END_STREAM)
    check(any(f[0] == HEADERS and f[1] & END_STREAM for f in frames), "compressed flag: answered")
    sock.close()

    # A stream reset mid-message, then a PING on the same connection.
    sock = h2_connect(srv)
    sock.sendall(frame(HEADERS, END_HEADERS, 1, request_headers("/imgret.v1.ImageSearch/Extract")) +
                 frame(DATA, 0, 1, b"\x00\x00\x00\x10\x00" + b"y" * 100) +
                 frame(RST_STREAM, 0, 1, struct.pack(">I", 8)) + frame(PING, 0, 0, b"12345678"))
    frames = read_frames(sock, lambda f: f[0] == PING and f[1] & ACK)
    check(any(f[0] == PING and f[1] & ACK for f in frames), "PING answered after a reset stream")
    sock.close()

    # More streams at once than SETTINGS_MAX_CONCURRENT_STREAMS: the extra
    # ones are refused (RST_STREAM), the first ones answered.
    sock = h2_connect(srv)
    out = b"".join(frame(HEADERS, END_HEADERS, sid, request_headers("/imgret.v1.ImageSearch/Stats"))
                   for sid in range(1, 2 * 300, 2))
    sock.sendall(out)
    frames = read_frames(sock, lambda f: False, 5)
    check(any(f[0] == RST_STREAM for f in frames) or any(f[0] == GOAWAY for f in frames),
          "300 open streams: the extra ones refused")
    sock.close()

    m = metrics(srv)
    for needle in ('imgret_grpc_requests_total{method="Extract",code="resource_exhausted"} 1',
                   'imgret_grpc_requests_total{method="Stats",code="internal"} 1'):
        check(needle in m, "metrics: %s" % needle)
    still_serving(srv, "all bad input")
    st, body = http(srv, "/twirp/imgret.v1.ImageSearch/Stats", b"")
    check(st == 200, "Twirp on the same port after bad HTTP/2: %d" % st)
    check(srv.stop() == 0, "bad-input server exit status")


def main():
    global A
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=["calls", "bad"])
    for a in ("--imgret", "--fixture", "--protoc", "--grpc-plugin", "--proto-root", "--work"):
        p.add_argument(a, required=True)
    A = p.parse_args()
    setup()
    {"calls": test_calls, "bad": test_bad}[A.case]()
    if FAILS:
        print("%d checks failed" % len(FAILS))
        sys.exit(1)
    print("grpc %s: all checks passed" % A.case)


if __name__ == "__main__":
    main()
