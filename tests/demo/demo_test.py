#!/usr/bin/python3
"""The main job end to end, small: `imgret demo` on the first few thousand
Fashion-MNIST training images.

  demo_test.py --imgret BIN --protoc BIN --proto-root DIR --work DIR --web-dir DIR

1. Ctrl-C (SIGINT to the process group, as a terminal sends it) during
   training: the demo stops with a non-zero status, says how to resume,
   leaves a checkpoint and no model file.
2. The rerun resumes and finishes every stage; no temporary file is left.
3. A third run reuses every stage and is serving within seconds.
4. Through an independent client (Python's google.protobuf + urllib): a
   search with a test-set sneaker returns sneakers first; Stats counts the
   items; the web page in headless Chromium (tests/web/demo_page.js) shows
   sneakers first and a screenshot is taken; SIGTERM stops the server.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

FAILS = []


def check(cond, what):
    print(("  ok:   " if cond else "  FAIL: ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def demo_cmd(a, *extra):
    return [a.imgret, "demo", "--dir", os.path.join(a.work, "demo"), "--limit", "3000",
            "--val-limit", "500", "--epochs", "1", "--ae-epochs", "8"] + list(extra)


def leftovers(root):
    bad = []
    for d, _, files in os.walk(root):
        bad += [os.path.join(d, f) for f in files if f.endswith(".tmp") or ".tmp." in f]
    return bad


def main():
    p = argparse.ArgumentParser()
    for o in ("--imgret", "--protoc", "--proto-root", "--work", "--web-dir"):
        p.add_argument(o, required=True)
    a = p.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    demo = os.path.join(a.work, "demo")
    env = dict(os.environ, OMP_WAIT_POLICY="passive")

    print("1. Ctrl-C during training", flush=True)
    log1 = open(os.path.join(a.work, "run1.log"), "w+")
    proc = subprocess.Popen(demo_cmd(a, "--no-serve"), stdout=log1, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    deadline = time.time() + 600
    seen = False
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        log1.seek(0)
        if re.search(r"epoch \d+/\d+ step \d+", log1.read()):
            seen = True
            break
    check(seen, "training started and printed its progress")
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(300)
    log1.seek(0)
    out1 = log1.read()
    check(rc != 0, "interrupted demo exits non-zero (got %d)" % rc)
    check("run `imgret demo` again to resume" in out1, "it says how to resume")
    check(os.path.exists(os.path.join(demo, "model.imgret.ckpt")), "a checkpoint was written")
    check(not os.path.exists(os.path.join(demo, "model.imgret")), "no model file yet")
    check(not leftovers(demo), "no temporary files left: %s" % leftovers(demo))

    print("2. the rerun resumes and finishes", flush=True)
    r = subprocess.run(demo_cmd(a, "--no-serve"), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env, timeout=900)
    open(os.path.join(a.work, "run2.log"), "w").write(r.stdout)
    check(r.returncode == 0, "rerun exits 0 (got %d)" % r.returncode)
    check("resuming from" in r.stdout, "training resumed from the checkpoint")
    for f in ("model.imgret", "train.feat", "ae64.imgret", "index/items.db",
              "examples/sneaker.png"):
        check(os.path.exists(os.path.join(demo, f)), "%s exists" % f)
    check(not leftovers(demo), "no temporary files left: %s" % leftovers(demo))

    print("3. a third run reuses everything and serves", flush=True)
    t0 = time.time()
    log3 = open(os.path.join(a.work, "run3.log"), "w")
    proc = subprocess.Popen(demo_cmd(a, "--port", "0"), stdout=subprocess.PIPE, stderr=log3,
                            text=True, env=env)
    line = proc.stdout.readline()
    ready = time.time() - t0
    check("listening on" in line, "the server is listening (%r)" % line)
    if "listening on" not in line:
        proc.kill()
        return finish()
    check(ready < 60, "serving %.1f s after the start (all stages reused)" % ready)
    url = line.strip().split("listening on ", 1)[1].rstrip("/")
    log3.flush()
    out3 = open(os.path.join(a.work, "run3.log")).read()
    check(out3.count("reusing") >= 4, "every stage was reused")

    print("4. search with a test-set sneaker", flush=True)
    pbdir = os.path.join(a.work, "pb")
    os.makedirs(pbdir, exist_ok=True)
    subprocess.run([a.protoc, "--python_out=" + pbdir, "-I" + a.proto_root,
                    os.path.join(a.proto_root, "imgret/v1/service.proto")], check=True)
    sys.path.insert(0, pbdir)
    from imgret.v1 import service_pb2 as pb
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method, msg, cls):
        req = urllib.request.Request(url + "/twirp/imgret.v1.ImageSearch/" + method,
                                     data=msg.SerializeToString(),
                                     headers={"Content-Type": "application/protobuf"})
        with opener.open(req, timeout=60) as resp:
            out = cls()
            out.ParseFromString(resp.read())
            return out

    img = open(os.path.join(demo, "examples", "sneaker.png"), "rb").read()
    res = call("Search", pb.SearchRequest(image=img, k=10, metric=pb.EUCLIDEAN),
               pb.SearchResponse)
    labels = [h.label for h in res.hits]
    print("  hits:", [(h.id, h.label_name, round(h.distance, 3)) for h in res.hits])
    check(len(labels) == 10, "10 hits")
    check(labels[:1] == [7], "the nearest item is a sneaker (label 7)")
    check(sum(1 for x in labels if x == 7) >= 8, "at least 8 of the 10 are sneakers")
    res = call("Search", pb.SearchRequest(image=img, k=10, metric=pb.HAMMING),
               pb.SearchResponse)
    hl = [h.label for h in res.hits]
    check(sum(1 for x in hl if x in (5, 7, 9)) >= 8,
          "Hamming: at least 8 of 10 are footwear (%s)" % hl)
    st = call("Stats", pb.StatsRequest(), pb.StatsResponse)
    check(st.items == 3000, "Stats: 3000 items (got %d)" % st.items)

    print("5. the web page shows it (headless Chromium)", flush=True)
    node = shutil.which("node")
    if not node:
        print("  skipped: node is not installed (scripts/deps.sh installs it)")
    else:
        shot = os.path.join(a.work, "demo_page.png")
        r = subprocess.run([node, os.path.join(a.web_dir, "demo_page.js"), "--url", url,
                            "--image", os.path.join(demo, "examples", "sneaker.png"),
                            "--expect", "Sneaker", "--k", "10", "--min", "8", "--out", shot],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300)
        print(r.stdout.rstrip())
        if r.returncode == 77:
            print("  skipped: chromium or playwright-core missing")
        else:
            check(r.returncode == 0, "the page shows sneakers first; screenshot %s" % shot)
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(60) == 0, "SIGTERM: the server exits 0")
    return finish()


def finish():
    print("%d failed" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
