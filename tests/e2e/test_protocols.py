"""Client transports end to end: abridged, intermediate, secure and fake
TLS through the daemon in direct mode to a fake DC; byte-exact echo,
volume, concurrency over two workers, DC routing, per-listener protocol
allow-lists, wrong secrets, replays and the fake-TLS clock window."""
import os
import re
import sys
import subprocess
import tempfile
import time

from mtp import (asan_without_quarantine, PROTOS, SECRET, WRONG_SECRET, Daemon, FakeDC, FrontSite,
                 vm_rss_kib,
                 check, free_port, listener_conf, log_pids, run_tests,
                 tclient, tclient_wait, telegram_conf, wait_for)

MIB = 1 << 20


class Setup:
    """A daemon whose DC 2 (and default DC) is a fake DC, plus optional
    extra fake DCs {id: mode} and listeners."""

    def __init__(self, workers=2, listeners=None, dcs=None, extra="",
                 fronting=None):
        self.front = FrontSite() if fronting is None else None
        self.dc = FakeDC("packets")
        self.extra_dcs = {}
        table = {2: self.dc.port}
        for dc_id, mode in (dcs or {}).items():
            f = FakeDC(*mode) if isinstance(mode, tuple) else FakeDC(mode)
            self.extra_dcs[dc_id] = f
            table[dc_id] = f.port
        self.port = free_port()
        fr = fronting or "127.0.0.1:%d" % self.front.port
        if listeners is None:
            listeners = [listener_conf("main", self.port, fronting=fr)]
        else:
            listeners = [l % {"front": fr} if isinstance(l, str) else l
                         for l in listeners]
        self.d = Daemon(workers=workers, listeners=listeners,
                        extra=telegram_conf(table) + extra)
        self.d.port = self.port
        self.d.start()

    def stop(self):
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()
            for f in self.extra_dcs.values():
                f.stop()
            if self.front:
                self.front.stop()

    def __enter__(self):
        return self

    def __exit__(self, etype, *exc):
        if etype is not None:
            dump_logs(self)
        self.stop()


def dump_logs(s):
    """On a failure, the end of the daemon's and fake DCs' logs."""
    import sys
    lines = [l for l in s.d.read_log().splitlines() if "libevent" not in l]
    sys.stderr.write("--- daemon log (last 40 lines)\n%s\n" %
                     "\n".join(lines[-40:]))
    for name, f in [("2", s.dc)] + sorted(s.extra_dcs.items()):
        sys.stderr.write("--- fake DC %s (last 10 lines)\n%s\n" % (
            name, "\n".join(f.log().splitlines()[-10:])))


def expect_ok(r, n=1):
    check(r.ok and ("%d/%d ok" % (n, n)) in r.out, str(r))


def test_reqpq_every_transport():
    with Setup() as s:
        for proto in PROTOS:
            expect_ok(tclient(s.d.port, proto, "reqpq", conns=4), 4)
        tags = [t for t, _ in s.dc.conns()]
        for tag in ("efefefef", "eeeeeeee", "dddddddd"):
            check(tag in tags, "fake DC saw no %s header: %r" % (tag, tags))


def test_echo_1mib_byte_exact():
    with Setup() as s:
        for proto in PROTOS:
            r = tclient(s.d.port, proto, "echo", bytes=MIB, timeout=60)
            expect_ok(r)
            check("%d bytes" % MIB in r.out, str(r))
        # odd sizes, small packets and a packet just under a TLS record
        for proto in PROTOS:
            expect_ok(tclient(s.d.port, proto, "echo", bytes=300004,
                              packet=2876, timeout=60))
            expect_ok(tclient(s.d.port, proto, "echo", bytes=40000,
                              packet=4, timeout=60))


def test_tls_first_flight_larger_than_a_hello():
    # An app may send its header and a big packet at once after the
    # ServerHello (e.g. an upload): all of it must be relayed.
    with Setup() as s:
        for n in (16384, 65536, 262144):
            expect_ok(tclient(s.d.port, "tls", "echo", bytes=n, packet=n,
                              timeout=15))


def test_echo_100mib_byte_exact():
    with Setup() as s:
        for proto in PROTOS:
            r = tclient(s.d.port, proto, "echo", bytes=100 * MIB,
                        packet=65536, timeout=120)
            expect_ok(r)


def test_upload_download_stream_echo():
    # DC 3 counts what arrives, DC 4 sends a stream, DC 5 echoes the
    # raw byte stream: half-close and the passthrough download path.
    n = 32 * MIB
    with Setup(dcs={3: "sink", 4: ("source", n), 5: "echo"}) as s:
        for proto in PROTOS:
            expect_ok(tclient(s.d.port, proto, "upload", dc=3, bytes=n,
                              timeout=60))
            expect_ok(tclient(s.d.port, proto, "download", dc=4, bytes=n,
                              timeout=60))
            expect_ok(tclient(s.d.port, proto, "echo", dc=5, bytes=4 * MIB,
                              timeout=60))
        log = s.extra_dcs[3].log()
        check(len(re.findall(r"sink received %d\b" % n, log)) == 4,
              "sink DC counts: " + log)


def test_200_concurrent_clients_over_two_workers():
    with Setup(workers=2) as s:
        procs = [tclient(s.d.port, proto, "echo", conns=50, bytes=256 * 1024,
                         packet=8192, timeout=90, wait=False)
                 for proto in PROTOS]
        for p in procs:
            expect_ok(tclient_wait(p, 150), 50)
        served = log_pids(s.d, r"client of main/")
        workers = set(s.d.workers_now())
        check(sum(served.values()) >= 200,
              "daemon logged %d handshakes for 200 clients: %r" %
              (sum(served.values()), served))
        check(all(served.get(w, 0) > 0 for w in workers),
              "not every worker served clients: %r, workers %r" %
              (served, workers))
        check(len(s.dc.conns()) >= 200, "fake DC saw %d connections" %
              len(s.dc.conns()))


def test_dc_index_reaches_the_dc():
    with Setup(dcs={4: "packets"}) as s:
        other = s.extra_dcs[4]
        for dc, where in ((2, s.dc), (-2, s.dc), (4, other), (-4, other)):
            before = len(where.conns())
            expect_ok(tclient(s.d.port, "intermediate", "reqpq", dc=dc))
            got = where.conns()[before:]
            check([d for _, d in got] == [dc],
                  "client asked for DC %d, fake DC got %r" % (dc, got))
        # an unknown DC goes to default_dc, and the daemon says so
        before = len(s.dc.conns())
        expect_ok(tclient(s.d.port, "secure", "reqpq", dc=99))
        got = s.dc.conns()[before:]
        check(len(got) == 1 and got[0][1] in (99, 2),
              "unknown DC 99 did not reach default DC 2: %r" % got)
        line = s.d.wait_log("unknown DC", 5)
        check("99" in line, "log line does not name DC 99: " + line)
        check(len(other.conns()) == 2, "DC 4 got extra connections: %r" %
              other.conns())


def refused(s, port, proto, secret=SECRET):
    before = len(s.dc.conns())
    r = tclient(port, proto, "reqpq", secret=secret, timeout=2)
    check(not r.ok, "%s client was served: %s" % (proto, r))
    check(len(s.dc.conns()) == before,
          "%s client reached the DC: %r" % (proto, s.dc.conns()[before:]))


def test_protocol_allow_lists():
    ports = {n: free_port() for n in ("tls", "classic", "secure")}
    with Setup(listeners=[
            listener_conf("tlsonly", ports["tls"], ["fake_tls"],
                          fronting="%(front)s"),
            listener_conf("classiconly", ports["classic"], ["classic"]),
            listener_conf("secureonly", ports["secure"], ["secure"])]) as s:
        expect_ok(tclient(ports["tls"], "tls", "reqpq"))
        for proto in ("abridged", "intermediate", "secure"):
            refused(s, ports["tls"], proto)
        for proto in ("abridged", "intermediate"):
            expect_ok(tclient(ports["classic"], proto, "reqpq"))
        for proto in ("secure", "tls"):
            refused(s, ports["classic"], proto)
        expect_ok(tclient(ports["secure"], "secure", "reqpq"))
        for proto in ("abridged", "intermediate", "tls"):
            refused(s, ports["secure"], proto)
        # refused obfuscated2 clients get no answer at all
        for port, proto in ((ports["classic"], "secure"),
                            (ports["secure"], "abridged")):
            r = tclient(port, proto, "probe", timeout=2)
            check(r.lines == ["SILENT"], "refused client got: %s" % r)


def test_wrong_secret_gets_nothing():
    with Setup() as s:
        for proto in PROTOS:
            refused(s, s.d.port, proto, secret=WRONG_SECRET)
            r = tclient(s.d.port, proto, "probe", secret=WRONG_SECRET,
                        timeout=2)
            if proto == "tls":
                # fronted: the site answers, never a ServerHello of ours
                check(r.lines and r.lines[0].startswith("GOT-DATA") and
                      FrontSite.MARKER.hex()[:40] in r.lines[0],
                      "wrong-secret ClientHello not fronted: %s" % r)
            else:
                check(r.lines == ["SILENT"],
                      "wrong-secret client got an answer: %s" % r)
        # a probe with the right secret does get answers (control)
        for proto in PROTOS:
            r = tclient(s.d.port, proto, "probe", timeout=2)
            want = "GOT-SERVERHELLO" if proto == "tls" else "GOT-DATA"
            check(r.lines and r.lines[0].startswith(want),
                  "good %s probe: %s" % (proto, r))


def test_replayed_handshakes_are_not_served():
    tmp = tempfile.mkdtemp(prefix="mtp-replay-")
    with Setup(workers=2) as s:
        for proto in PROTOS:
            rec = os.path.join(tmp, proto + ".bin")
            expect_ok(tclient(s.d.port, proto, "reqpq", record=rec))
            wire = open(rec, "rb").read()
            check(len(wire) > 64, "nothing recorded for %s" % proto)
            front_before = s.front.count()
            r = tclient(s.d.port, proto, None, replay=rec, conns=20,
                        timeout=3)
            check(len(r.lines) == 20, "replay output: %s" % r)
            if proto == "tls":
                check(all(l.startswith("GOT-DATA") and
                          FrontSite.MARKER.hex()[:40] in l
                          for l in r.lines),
                      "replayed ClientHello not fronted: %s" % r)
                # the site got the replayed bytes, untouched
                wait_for(lambda: s.front.count() >= front_before + 20, 10,
                         what="20 fronted connections at the site")
                fronted = s.front.received[front_before:]
                check(all(x == wire for x in fronted),
                      "the site got other bytes than the hello: %r" %
                      [x[:16] for x in fronted if x != wire])
            else:
                check(all(l in ("SILENT", "CLOSED") for l in r.lines),
                      "replayed %s header was answered: %s" % (proto, r))
        # the shared cache: replays were caught by both workers
        caught = log_pids(s.d, r"replay")
        workers = set(s.d.workers_now())
        check(sum(caught.values()) >= 80,
              "daemon logged %d replays of 80: %r" %
              (sum(caught.values()), caught))
        check(all(caught.get(w, 0) > 0 for w in workers),
              "replays not caught by every worker: %r of %r" %
              (caught, workers))


def test_fake_tls_clock_window():
    with Setup() as s:
        expect_ok(tclient(s.d.port, "tls", "reqpq", ts_offset=-60))
        expect_ok(tclient(s.d.port, "tls", "reqpq", ts_offset=60))
        for off in (-3600, 3600):
            r = tclient(s.d.port, "tls", "probe", ts_offset=off, timeout=2)
            check(r.lines and r.lines[0] != "GOT-SERVERHELLO",
                  "ClientHello %+d s off was answered: %s" % (off, r))
        # bigger hellos (post-quantum key shares) are fine, spec A.4.1
        expect_ok(tclient(s.d.port, "tls", "reqpq", hello_len=1800))

BARE_CLIENT = r"""
import os, socket, sys
port, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    if (i + seed) % 3 == 0:
        c.sendall(os.urandom(40))   # a bad client, held until it leaves
    c.close()
"""


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_no_fd_or_memory_leak_after_100k_connections():
    """100,000 connections opened and closed (10,000 full sessions over
    every transport, 90,000 bare or bad ones): every worker ends with
    the descriptors it had and about the memory it had."""
    with asan_without_quarantine() as asan, Setup(workers=2) as s:
        ws = list(s.d.workers_now())
        for proto in PROTOS:            # warm up allocator and caches
            expect_ok(tclient(s.d.port, proto, "reqpq", conns=250), 250)
        time.sleep(0.5)
        fds0 = {w: fd_count(w) for w in ws}
        rss0 = {w: vm_rss_kib(w) for w in ws}
        for i in range(10):
            proto = PROTOS[i % len(PROTOS)]
            expect_ok(tclient(s.d.port, proto, "reqpq", conns=1000,
                              timeout=90), 1000)
        bare = [subprocess.Popen([sys.executable, "-c", BARE_CLIENT,
                                  str(s.d.port), "22500", str(k)])
                for k in range(4)]
        for p in bare:
            check(p.wait(300) == 0, "bare client process failed")
        wait_for(lambda: all(fd_count(w) == fds0[w] for w in ws), 30,
                 what="workers back to their descriptors %r (now %r)" % (
                     fds0, {w: fd_count(w) for w in ws}))
        check(set(s.d.workers_now()) == set(ws), "a worker restarted")
        grown = {w: vm_rss_kib(w) - rss0[w] for w in ws}
        limit = 16 * 1024 if asan else 4 * 1024
        check(all(g < limit for g in grown.values()),
              "worker memory grew by %r KiB over 100k connections" % grown)


if __name__ == "__main__":
    run_tests([
        test_no_fd_or_memory_leak_after_100k_connections,
        test_reqpq_every_transport,
        test_echo_1mib_byte_exact,
        test_tls_first_flight_larger_than_a_hello,
        test_echo_100mib_byte_exact,
        test_upload_download_stream_echo,
        test_200_concurrent_clients_over_two_workers,
        test_dc_index_reaches_the_dc,
        test_protocol_allow_lists,
        test_wrong_secret_gets_nothing,
        test_replayed_handshakes_are_not_served,
        test_fake_tls_clock_window,
    ])
