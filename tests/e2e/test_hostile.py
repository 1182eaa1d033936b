"""Hostile clients (issue 7): what a client that knows the secret, or a
prober that does not, can make a worker hold or do. Each test drives one
way to crash, stall or exhaust the daemon and then checks that a normal
client is still served. Each failed on 04b1119 (said per test)."""
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from mtp import (SECRET, Daemon, FakeDC, FrontSite, check, free_port,
                 listener_conf, metrics, run_tests, tclient, tclient_wait,
                 telegram_conf, wait_for)
from test_middle import MSetup, expect_ok, listener

FRAME_MAX_PACKET = 1044480  # common/framing.h
# The largest packet a padded client can send (its padding fits too).
BIG = FRAME_MAX_PACKET - 16


def raise_nofile():
    lim = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim[1], lim[1]))


def worker_pids(d):
    return sorted(d.workers_now())


def served(port, proto="secure"):
    """A normal client gets its answer."""
    expect_ok(tclient(port, proto, "reqpq", timeout=10))


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# ------------------------------------------------------------ item 1

def test_bad_frame_after_the_header_middle():
    """A valid obfuscated2 header followed, in the same segment, by a
    frame the decoder refuses. On 04b1119 the worker freed the session
    twice and died ("double free"), and 11 of these stopped the daemon."""
    with MSetup(workers=2, extra="max_restarts = 3;\n") as s:
        before = worker_pids(s.d)
        tails = [("intermediate", "00000000"),   # empty frame
                 ("secure", "00000000"),
                 ("abridged", "00"),
                 ("intermediate", "ffffff7f"),   # length over the max
                 ("abridged", "7fffffff")]
        for proto, tail in tails:
            tclient(s.port, proto, "probe", tail=tail, conns=3, timeout=5)
        # A DC number no pool can take, then the same bad frame.
        tclient(s.port, "intermediate", "probe", tail="00000000",
                dc=31000, conns=3, timeout=5)
        time.sleep(0.5)
        check(s.d.proc.poll() is None,
              "the daemon stopped: %s" % s.d.output()[-2000:])
        check(worker_pids(s.d) == before,
              "workers died: %r -> %r" % (before, worker_pids(s.d)))
        served(s.port)


# ------------------------------------------------------------ item 3

def test_unknown_dcs_share_the_default_pool():
    """100 clients naming DCs 1000..1099. On 04b1119 each number became a
    pool with min_links links (128 links from one worker)."""
    raise_nofile()
    with MSetup(workers=2, middle={"min_links": 1,
                                   "pool_idle_timeout": 2}) as s:
        procs = [tclient(s.port, "intermediate", "hold", dc=1000 + i,
                         rounds=2, interval=1, timeout=20, wait=False)
                 for i in range(100)]
        peak = 0
        for p in procs:
            r = tclient_wait(p, 60)
            expect_ok(r)
            peak = max(peak, s.mp.stats()["links"])
        st = s.mp.stats()
        sys.stderr.write("  100 clients of DCs 1000..1099: %d links "
                         "opened (peak %d open)\n" % (st["links_total"],
                                                      peak))
        check(st["links_total"] <= 4,
              "%d links opened for 100 clients of unknown DCs (peak %d)"
              % (st["links_total"], peak))
        # No clients: the pools close their links.
        wait_for(lambda: s.mp.stats()["links"] == 0, 10, 0.2,
                 what="idle pools to close their links (%r)" %
                 s.mp.stats())
        check(s.d.log_has("no clients for 2 s"), "no log line for it")
        served(s.port, "intermediate")
        check(s.mp.stats()["links"] >= 1, "no new link for a new client")


# ------------------------------------------------------------ item 4

def test_out_of_descriptors_does_not_spin():
    """ulimit -n 64 and 150 connections: on 04b1119 the worker spun at
    100% of a core on its always-readable listener."""
    raise_nofile()
    dc = FakeDC("packets")
    d = Daemon(workers=1, extra=telegram_conf({2: dc.port}) +
               "handshake_timeout = 30;\n")
    d.proc = subprocess.Popen(
        ["prlimit", "--nofile=64:64", "--", os.environ["MTPROTOD"],
         "-f", "-c", d.conf], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    socks = []
    try:
        d.wait_ready()
        w = worker_pids(d)[0]
        for _ in range(150):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            c.send(b"\xef")  # a byte of a handshake, then nothing
            socks.append(c)
        wait_for(lambda: d.log_has("pausing accepts"), 10,
                 what="the worker to run out of descriptors")
        t0, c0 = time.time(), cpu_ticks(w)
        time.sleep(3)
        cpu = (cpu_ticks(w) - c0) / os.sysconf("SC_CLK_TCK") / (
            time.time() - t0)
        sys.stderr.write("  worker CPU with 150 held connections and 64 "
                         "fds: %.1f%%\n" % (cpu * 100))
        check(cpu < 0.30, "worker used %.0f%% of a CPU" % (cpu * 100))
        for c in socks:
            c.close()
        socks = []
        wait_for(lambda: d.proc.poll() is None and tclient(
            d.port, "secure", "reqpq", timeout=5).ok, 20, 0.5,
            what="a normal client served after they closed")
        check(worker_pids(d) == [w], "the worker was replaced")
    finally:
        for c in socks:
            c.close()
        d.kill_all()
        dc.stop()


# ------------------------------------------------------------ item 5

def test_client_that_does_not_read_does_not_stall_its_link():
    """A client that sends requests and never reads its answers, beside
    clients doing round trips on the same link, with a link_queue_max the
    offender alone can fill. On 04b1119 the link stopped for everyone
    until client_queue_timeout (10 s) closed the offender."""
    with MSetup(workers=1, middle={"link_queue_max": 262144,
                                   "min_links": 1}) as s:
        good = tclient(s.port, "secure", "hold", conns=10, rounds=8,
                       interval=0.5, timeout=30, wait=False)
        time.sleep(0.5)
        t0 = time.time()
        bad = tclient(s.port, "intermediate", "noread", packet=65536,
                      timeout=20, wait=False)
        r = tclient_wait(bad, 30)
        took = time.time() - t0
        g = tclient_wait(good, 30)
        total = time.time() - t0
        sys.stderr.write("  non-reading client closed after %.1f s; 10 "
                         "clients' 8 round trips done %.1f s after it "
                         "came\n" % (took, total))
        check(r.ok and "CLOSED after" in r.out, "not closed: %s" % r)
        expect_ok(g, 10)
        check(took < 4, "closed only after %.1f s (client_queue_timeout "
              "is 10 s)" % took)
        check(total < 8, "the others were held up: %.1f s" % total)
        check(s.d.log_has("client does not read"), "no log line")


# ------------------------------------------------------------ item 6

def test_largest_packets_both_ways():
    """Packets of the largest legal size (FRAME_MAX_PACKET) echoed byte
    for byte in both modes. On 04b1119 middle mode refused them (the
    client-side check counted the whole read; the link buffer stopped at
    1 MiB)."""
    n = 2 * BIG
    dc = FakeDC("packets")
    try:
        d = Daemon(workers=1, extra=telegram_conf({2: dc.port}))
        d.start()
        try:
            for proto in ("abridged", "intermediate", "secure", "tls"):
                expect_ok(tclient(d.port, proto, "echo", bytes=n,
                                  packet=BIG, timeout=60))
        finally:
            d.kill_all()
    finally:
        dc.stop()
    with MSetup(workers=1) as s:
        for proto in ("abridged", "intermediate", "secure", "tls"):
            r = tclient(s.port, proto, "echo", bytes=n,
                        packet=BIG, timeout=60)
            expect_ok(r)
            check("%d bytes" % n in r.out, str(r))


# ------------------------------------------------------------ item 7

def hold_clients(port, n, timeout=15):
    return tclient(port, "secure", "hold", conns=n, rounds=4, interval=1,
                   timeout=timeout, wait=False)


def test_max_connections():
    """limits.max_connections, global and per listener: connections over
    the cap are closed at once. On 04b1119 there was no cap."""
    raise_nofile()
    dc = FakeDC("packets")
    main, other = free_port(), free_port()
    mport = free_port()
    d = Daemon(workers=2, listeners=[
        listener_conf("main", main),
        listener_conf("small", other, extra="limits = { max_connections "
                      "= 5; };")],
        extra=telegram_conf({2: dc.port}) +
        "limits = { max_connections = 20; };\n"
        "metrics = { address = \"127.0.0.1\"; port = %d; };\n" % mport)
    d.port = main
    try:
        d.start()
        def on(listener):
            return metrics(mport).get(
                'mtprotod_listener_connections{listener="%s"}' % listener, 0)
        p = hold_clients(d.port, 20)
        wait_for(lambda: on("main") >= 20, 10, what="20 connections")
        over = tclient(d.port, "secure", "reqpq", conns=3, timeout=5)
        check(not over.ok and "0/3 ok" in over.out,
              "over the global cap: %s" % over)
        expect_ok(tclient_wait(p, 30), 20)
        # The listener's own cap, under the global one.
        wait_for(lambda: on("main") == 0, 10, what="the 20 to leave")
        p = hold_clients(other, 5)
        wait_for(lambda: on("small") >= 5, 10, what="5 connections")
        over = tclient(other, "secure", "reqpq", conns=2, timeout=5)
        check(not over.ok and "0/2 ok" in over.out,
              "over the listener's cap: %s" % over)
        served(d.port)  # the other listener is not full
        expect_ok(tclient_wait(p, 30), 5)
        m = metrics(mport)
        check(m["mtprotod_connections_refused_total"] >= 5,
              "refusals not counted: %r" % m)
        check(d.log_has("max_connections reached"), "no log line")
    finally:
        d.kill_all()
        dc.stop()


def test_handshake_memory():
    """limits.handshake_memory: 200 connections that send half a
    ClientHello and stay. The oldest are closed, a normal client is
    served. On 04b1119 nothing bounded them until handshake_timeout."""
    raise_nofile()
    dc = FakeDC("packets")
    mport = free_port()
    d = Daemon(workers=1, extra=telegram_conf({2: dc.port}) +
               "handshake_timeout = 30;\n"
               "limits = { handshake_memory = \"256K\"; };\n"
               "metrics = { address = \"127.0.0.1\"; port = %d; };\n"
               % mport)
    socks = []
    try:
        d.start()
        half = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + \
            os.urandom(240)
        for _ in range(200):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            c.sendall(half)
            socks.append(c)
        served(d.port)
        wait_for(lambda: metrics(mport).get(
            "mtprotod_handshakes_evicted_total", 0) > 0, 10,
            what="evictions")
        # The first ones went first.
        closed = 0
        for c in socks[:20]:
            c.settimeout(2)
            try:
                closed += c.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        check(closed == 20, "%d of the 20 oldest were closed" % closed)
        m = metrics(mport)
        check(0 < m["mtprotod_handshake_connections"] < 200 and
              0 < m["mtprotod_handshake_bytes"] <= 256 * 1024,
              "handshake gauges: %r" % {k: v for k, v in m.items()
                                        if "handshake" in k})
        check(d.log_has("limits.handshake_memory reached"), "no log line")
    finally:
        for c in socks:
            c.close()
        d.kill_all()
        dc.stop()


# ------------------------------------------------------------ items 2, 8

class FakeDNS:
    """A UDP DNS server on 127.0.0.1 answering A queries for NAME with
    127.0.0.1 (TTL 30), or never answering (silent). Counts queries."""

    def __init__(self, name, silent=False):
        self.name, self.silent = name.encode(), silent
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                q, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.silent or len(q) < 12:
                continue
            qid = q[:2]
            # The question: labels, then type and class.
            pos, labels = 12, []
            while pos < len(q) and q[pos]:
                labels.append(q[pos + 1:pos + 1 + q[pos]])
                pos += 1 + q[pos]
            qtype = struct.unpack(">H", q[pos + 1:pos + 3])[0]
            question = q[12:pos + 5]
            ok = b".".join(labels).lower() == self.name and qtype == 1
            hdr = qid + struct.pack(">HHHHH", 0x8180 if ok else 0x8183, 1,
                                    1 if ok else 0, 0, 0)
            ans = b""
            if ok:
                ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + \
                    socket.inet_aton("127.0.0.1")
            self.sock.sendto(hdr + question + ans, addr)

    def stop(self):
        self.stopped = True
        self.sock.close()


def fronting_setup(dns, site_port, workers=1):
    tmp = tempfile.mkdtemp(prefix="mtp-dns-")
    rc = os.path.join(tmp, "resolv.conf")
    with open(rc, "w") as f:
        f.write("nameserver 127.0.0.1:%d\n" % dns.port)
    port = free_port()
    d = Daemon(workers=workers, tmp=tmp, listeners=[listener_conf(
        "main", port, ["fake_tls"], fronting="site.test:%d" % site_port)],
        extra='resolv_conf = "%s";\nhandshake_timeout = 2;\n' % rc)
    d.port = port
    return d


def test_fronting_target_resolved_once():
    """A fronting target given by name is resolved once per worker and
    kept: 50 probes cost no lookups. On 04b1119 every probe did its own
    lookup (and a cancelled one was used after free)."""
    dns = FakeDNS("site.test")
    site = FrontSite()
    d = fronting_setup(dns, site.port)
    try:
        d.start()
        wait_for(lambda: d.log_has("fronting host site.test"), 10,
                 what="the fronting host resolved")
        before = dns.queries
        r = tclient(d.port, "tls", "probe", secret="ff" * 16, conns=50,
                    timeout=10)
        wait_for(lambda: len(site.received) >= 50, 10,
                 what="50 probes at the site (%d)" % len(site.received))
        check("GOT-DATA" in r.out, "the probes did not see the site: %s"
              % r)
        check(dns.queries - before == 0 and dns.queries <= 2,
              "%d DNS queries for 50 probes (%d at start)" % (
                  dns.queries - before, before))
    finally:
        d.kill_all()
        site.stop()
        dns.stop()


def test_fronting_with_a_dead_resolver():
    """The resolver never answers: probes wait at most handshake_timeout
    and are closed; the worker lives. On 04b1119 a cancelled lookup's
    callback wrote into the freed session."""
    dns = FakeDNS("site.test", silent=True)
    site = FrontSite()
    d = fronting_setup(dns, site.port)
    try:
        d.start()
        before = worker_pids(d)
        socks = []
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + \
            os.urandom(32) + b"\x20" + os.urandom(32)
        for _ in range(30):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            c.sendall(hello + os.urandom(600))  # malformed: fronted
            socks.append(c)
        t0 = time.time()
        for c in socks:
            c.settimeout(10)
            try:
                c.recv(1)
            except OSError:
                pass
        took = time.time() - t0
        check(took < 6, "probes held %.1f s (handshake_timeout 2)" % took)
        time.sleep(0.5)
        check(worker_pids(d) == before, "a worker died")
        check(len(site.received) == 0, "reached the site without DNS")
        for c in socks:
            c.close()
    finally:
        d.kill_all()
        site.stop()
        dns.stop()


# ------------------------------------------------------------ slow loris

def test_slow_handshakes_do_not_delay_others():
    """1,500 connections that send one byte a second: a normal client's
    round trip stays under a second."""
    raise_nofile()
    dc = FakeDC("packets")
    d = Daemon(workers=2, extra=telegram_conf({2: dc.port}) +
               "handshake_timeout = 30;\n")
    socks = []
    try:
        d.start()
        for _ in range(1500):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", d.port))
            socks.append(c)
        worst = 0.0
        for second in range(5):
            for c in socks:
                try:
                    c.send(b"\x16" if second == 0 else b"\x03")
                except OSError:
                    pass
            t0 = time.time()
            served(d.port)
            worst = max(worst, time.time() - t0)
            time.sleep(max(0, 1 - (time.time() - t0)))
        sys.stderr.write("  slowest round trip beside 1500 slow "
                         "handshakes: %.3f s\n" % worst)
        check(worst < 1.0, "a round trip took %.2f s" % worst)
    finally:
        for c in socks:
            c.close()
        d.kill_all()
        dc.stop()


if __name__ == "__main__":
    run_tests([
        test_bad_frame_after_the_header_middle,
        test_unknown_dcs_share_the_default_pool,
        test_out_of_descriptors_does_not_spin,
        test_client_that_does_not_read_does_not_stall_its_link,
        test_largest_packets_both_ways,
        test_max_connections,
        test_handshake_memory,
        test_fronting_target_resolved_once,
        test_fronting_with_a_dead_resolver,
        test_slow_handshakes_do_not_delay_others,
    ])
