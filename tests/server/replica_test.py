#!/usr/bin/python3
"""Replicas: two `imgret serve --store postgresql://...` on one real
PostgreSQL 15 cluster started by the test (initdb + pg_ctl as the postgres
user under root, a free port, the socket in a scratch folder; stopped at
the end), called through the same protobuf client as server_test.py.

  replica_test.py --imgret BIN --fixture BIN --protoc BIN --proto-root DIR --work DIR

- an Add through A is found through B with min_seq (read your writes);
  Stats and /metrics of B give the applied seq and the lag;
- kill -9 B, add more through A, restart B: it has caught up;
- the database ends B's listening connection (pg_terminate_backend): B
  still converges (polling), and listens again;
- the database down: Adds fail `unavailable`, Searches keep answering
  from the caches; the database back: Adds work again, by themselves.

Exits 77 (skipped) when the PostgreSQL server binaries are not installed."""
import argparse
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import server_test as st

PG_BIN = os.environ.get("IMGRET_PG_BIN", "/usr/lib/postgresql/15/bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """A cluster in work/NAME; a standby of `primary` (pg_basebackup -R:
    streaming from it) when one is given."""

    def __init__(self, work, name="pg", primary=None, extra=""):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.as_user = []
        self.extra = extra
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(work, 0o755)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        if primary:
            subprocess.run(self.as_user + [PG_BIN + "/pg_basebackup", "-D", self.dir + "/data",
                                           "-R", "-X", "stream", "-h", primary.dir, "-p",
                                           str(primary.port), "-U", "postgres"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            subprocess.run(self.as_user + [PG_BIN + "/initdb", "-D", self.dir + "/data", "-U",
                                           "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = free_port()
        self.start()

    def start(self):
        subprocess.run(self.as_user + [
            PG_BIN + "/pg_ctl", "-D", self.dir + "/data", "-w", "-t", "60", "-l", self.dir + "/log",
            "-o", "-p %d -k %s -c listen_addresses='' %s" % (self.port, self.dir, self.extra),
            "start"], check=True, stdout=subprocess.DEVNULL)

    def promote(self):
        subprocess.run(self.as_user + [PG_BIN + "/pg_ctl", "-D", self.dir + "/data", "-w",
                                       "promote"], check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(self.as_user + [PG_BIN + "/pg_ctl", "-D", self.dir + "/data", "-m",
                                       "immediate", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, db="postgres"):
        return "postgresql:///%s?host=%s&port=%d&user=postgres" % (db, self.dir, self.port)

    def sql(self, q):
        return subprocess.run([PG_BIN + "/psql", "-X", "-q", "-At", "-h", self.dir, "-p",
                               str(self.port), "-U", "postgres", "-c", q],
                              capture_output=True, text=True).stdout


SERVERS = []


def serve(name, url, *extra):
    srv = st.Server(st.A.work, name, url, *extra)
    SERVERS.append(srv)
    return srv


def add_vectors(srv, vecs, first_id):
    """(HTTP status, AddResponse or None); no check of its own."""
    add = st.pb.AddRequest()
    for i, v in enumerate(vecs):
        it = add.items.add()
        it.vector.values.extend(v)
        it.has_id = True
        it.id = first_id + i
        it.uri = "v%d" % (first_id + i)
    code, data, _ = st.http(srv, st.PREFIX + "Add", add.SerializeToString())
    if code != 200:
        return code, None
    r = st.pb.AddResponse()
    r.ParseFromString(data)
    return code, r


def finds(srv, vec, want_id, min_seq):
    req = st.pb.SearchRequest(vector=st.pb.Vector(values=vec), k=1, min_seq=min_seq)
    code, r = st.rpc(srv, "Search", req, st.pb.SearchResponse)
    return code == 200 and len(r.hits) == 1 and r.hits[0].id == want_id and r.hits[0].distance < 1e-3


def stats(srv):
    code, r = st.rpc(srv, "Stats", st.pb.StatsRequest(), st.pb.StatsResponse)
    return r


def metric(srv, name):
    code, body, _ = st.http(srv, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_replicas(pg):
    url = pg.url()
    rng = random.Random(5)
    a = serve("replica-a", url, "--timeout", "3")
    b = serve("replica-b", url, "--timeout", "3")
    vecs = [st.relu_vec(rng) for _ in range(8)]
    code, r = add_vectors(a, vecs[:4], 100)
    st.check(code == 200 and list(r.ids) == [100, 101, 102, 103] and r.seq == 4,
             "Add through A: %s %s" % (code, r))
    st.check(finds(b, vecs[3], 103, r.seq), "B with min_seq finds A's Add")
    s = stats(b)
    st.check(s.applied_seq == 4 and s.store_seq == 4, "B's Stats seqs %s" % s)
    st.check(metric(b, "imgret_applied_seq") == 4 and metric(b, "imgret_replication_lag") == 0,
             "B's /metrics seq and lag")
    # A seq nobody wrote: deadline_exceeded (HTTP 408) after the server's --timeout.
    req = st.pb.SearchRequest(vector=st.pb.Vector(values=vecs[0]), k=1, min_seq=10 ** 6)
    code, body, _ = st.http(a, st.PREFIX + "Search", req.SerializeToString())
    st.check(code == 408 and b'"deadline_exceeded"' in body,
             "min_seq never reached: HTTP %s %r" % (code, body))

    # kill -9 B; A adds; B restarts and has caught up.
    b.stop(signal.SIGKILL)
    code, r = add_vectors(a, vecs[4:6], 200)
    st.check(code == 200 and r.seq == 6, "Add while B is down: %s" % r)
    b = serve("replica-b2", url, "--timeout", "3")
    st.check(finds(b, vecs[5], 201, 6) and stats(b).applied_seq == 6, "B caught up at restart")

    # The database ends B's listener: B converges by polling.
    pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
           " WHERE application_name = 'imgret-listen'")
    code, r = add_vectors(a, vecs[6:7], 300)
    st.check(code == 200 and finds(b, vecs[6], 300, r.seq), "B converged without its listener")

    # The database down: writes unavailable, searches from the caches.
    pg.stop()
    code, r = add_vectors(a, vecs[7:8], 400)
    st.check(code == 503, "Add with the database down: HTTP %s" % code)
    st.check(finds(b, vecs[0], 100, 0) and finds(a, vecs[6], 300, 0),
             "Searches answer from the caches while the database is down")
    code, r = st.rpc(b, "Search", st.pb.SearchRequest(vector=st.pb.Vector(values=vecs[1]), k=3),
                     st.pb.SearchResponse)
    st.check(code == 200 and [h.id for h in r.hits][:1] == [101],
             "a k=3 Search while the database is down: %s" % r)
    pg.start()
    ok = False
    for _ in range(50):
        code, r = add_vectors(a, vecs[7:8], 400)
        if code == 200:
            ok = True
            break
        time.sleep(0.2)
    st.check(ok and finds(b, vecs[7], 400, r.seq), "Adds work again once the database is back")
    st.check(a.stop() == 0 and b.stop() == 0, "replicas exit 0 on SIGTERM")


def test_kill9_storm(pg, runs):
    """kill -9 of a server during an Add storm, `runs` times: every
    acknowledged id is in the database."""
    url = pg.url()
    lost = 0
    total = 0
    for run in range(runs):
        srv = serve("storm-%d" % run, url, "--threads", "2")
        acked = []
        lock = threading.Lock()
        stop = threading.Event()

        def storm(t):
            rng = random.Random(run * 10 + t)
            n = 0
            while not stop.is_set():
                first = (run + 1) * 10 ** 9 + t * 10 ** 7 + 3 * n
                n += 1
                try:
                    code, r = add_vectors(srv, [st.relu_vec(rng) for _ in range(3)], first)
                except Exception:
                    return  # the server is gone
                if code != 200:
                    return
                with lock:
                    acked.extend(r.ids)
        th = [threading.Thread(target=storm, args=(t,)) for t in range(3)]
        [t.start() for t in th]
        time.sleep(1.0)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
        stop.set()
        [t.join() for t in th]
        srv.log.close()
        total += len(acked)
        if acked:
            found = pg.sql("SELECT count(*) FROM imgret_items WHERE id IN (%s)" %
                           ",".join(str(i) for i in acked))
            lost += len(acked) - int(found.strip() or 0)
    print("  %d runs: %d acknowledged, %d lost" % (runs, total, lost), flush=True)
    st.check(total > 0 and lost == 0, "kill -9 storms: %d of %d acknowledged lost" % (lost, total))


def test_failover(work):
    """A primary with a synchronous streaming standby (so an acknowledged
    COMMIT is on both); a server on the libpq multi-host URL with
    target_session_attrs=read-write; an Add storm; the primary killed and
    the standby promoted: writes resume through the same server, and every
    acknowledged id is on the new primary."""
    primary = Cluster(work, "primary", extra="-c synchronous_standby_names='*'")
    standby = None
    try:
        standby = Cluster(work, "standby", primary=primary)
        url = ("postgresql:///postgres?host=%s,%s&port=%d,%d&user=postgres"
               "&target_session_attrs=read-write&connect_timeout=2" %
               (primary.dir, standby.dir, primary.port, standby.port))
        srv = serve("failover", url, "--timeout", "5")
        acked = []
        failed_after_kill = [0]
        failed_any = [0]  # every Add not answered 200, of 3 items each
        lock = threading.Lock()
        stop = threading.Event()
        killed = threading.Event()

        def storm(t):
            rng = random.Random(100 + t)
            n = 0
            while not stop.is_set():
                first = 7 * 10 ** 9 + t * 10 ** 7 + 3 * n
                n += 1
                code, r = add_vectors(srv, [st.relu_vec(rng) for _ in range(3)], first)
                if code == 200:
                    with lock:
                        acked.extend(r.ids)
                    continue
                with lock:
                    failed_any[0] += 1
                if killed.is_set():
                    failed_after_kill[0] += 1
                    time.sleep(0.05)
        th = [threading.Thread(target=storm, args=(t,)) for t in range(3)]
        [t.start() for t in th]
        time.sleep(1.5)
        with lock:
            before = len(acked)
        primary.stop()
        killed.set()
        standby.promote()
        # Writes resume by themselves through the multi-host URL.
        deadline = time.time() + 30
        while time.time() < deadline:
            with lock:
                if len(acked) > before + 30:
                    break
            time.sleep(0.2)
        stop.set()
        [t.join() for t in th]
        with lock:
            after = len(acked)
        print("  failover: %d acknowledged before the kill, %d in all, %d failed meanwhile" %
              (before, after, failed_after_kill[0]), flush=True)
        st.check(before > 0 and after > before + 30, "writes resumed after the promotion")
        found = standby.sql("SELECT count(*) FROM imgret_items WHERE id IN (%s)" %
                            ",".join(str(i) for i in acked))
        st.check(int(found.strip() or 0) == after,
                 "acknowledged ids on the promoted standby: %s of %d" % (found.strip(), after))
        code, r = st.rpc(srv, "Stats", st.pb.StatsRequest(), st.pb.StatsResponse)
        # An Add whose commit reached the database just before the primary
        # died may have been answered with an error (the client saw it fail):
        # the store can hold those too, never fewer than the acknowledged.
        st.check(code == 200 and after <= r.items <= after + 3 * failed_any[0],
                 "Stats after failover: %s items (%d acknowledged, %d Adds of 3 failed)" %
                 (r.items, after, failed_any[0]))
        st.check(srv.stop() == 0, "the server exits 0 after the failover")
    finally:
        primary.stop()
        if standby:
            standby.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--imgret", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--protoc", required=True)
    p.add_argument("--proto-root", required=True)
    p.add_argument("--work", required=True)
    st.A = p.parse_args()
    if not os.path.exists(PG_BIN + "/initdb"):
        print("skipped: the PostgreSQL 15 server binaries are not installed")
        sys.exit(77)
    st.setup()
    pg = Cluster(st.A.work)
    try:
        test_replicas(pg)
        test_kill9_storm(pg, 5)
        pg.stop()
        test_failover(st.A.work)
    finally:
        for srv in SERVERS:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        pg.stop()
    if st.FAILS:
        print("%d checks failed" % len(st.FAILS))
        sys.exit(1)
    print("replicas: all checks passed")


if __name__ == "__main__":
    main()
