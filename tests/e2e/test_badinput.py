"""Bad input from the network: garbage, HTTP, truncated and malformed
ClientHellos, floods. The daemon must not crash, must not grow, must say
nothing to bad clients on non-TLS listeners and close them after
handshake_timeout, and must go on serving good clients."""
import os
import random
import resource
import select
import socket
import struct
import tempfile
import time

from mtp import (asan_without_quarantine, MTPROTOD, PROTOS, SECRET, Daemon, FakeDC, FrontSite, check,
                 free_port, listener_conf, run_tests, socket_fds, tclient,
                 telegram_conf, vm_rss_kib, wait_for)

HANDSHAKE_TIMEOUT = 2


class Setup:
    """Listeners: .plain (classic + secure), .mixed (all three, fronting
    to a FrontSite), .tls (fake TLS only, same fronting)."""

    def __init__(self):
        lim = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim[1], lim[1]))
        self.front = FrontSite()
        self.dc = FakeDC("packets")
        self.plain, self.mixed, self.tls = (free_port(), free_port(),
                                            free_port())
        fr = "127.0.0.1:%d" % self.front.port
        self.d = Daemon(workers=2, listeners=[
            listener_conf("plain", self.plain, ["classic", "secure"]),
            listener_conf("mixed", self.mixed,
                          ["classic", "secure", "fake_tls"], fronting=fr),
            listener_conf("tls", self.tls, ["fake_tls"], fronting=fr),
        ], extra=telegram_conf({2: self.dc.port}) +
            "handshake_timeout = %d;\n" % HANDSHAKE_TIMEOUT)
        self.d.port = self.plain
        self.d.start()
        self.workers = set(self.d.workers_now())
        self.base_fds = {p: socket_fds(p) for p in self.workers}

    def healthy(self):
        """Same workers as at start, and every listener serves."""
        check(self.d.proc.poll() is None, "the supervisor died")
        now = set(self.d.workers_now())
        check(now == self.workers, "workers changed (crash?): %r -> %r; %s"
              % (self.workers, now, self.crash_lines()))
        for port, protos in ((self.plain, ("abridged", "secure")),
                             (self.mixed, PROTOS), (self.tls, ("tls",))):
            for proto in protos:
                r = tclient(port, proto, "reqpq", timeout=10)
                check(r.ok, "good client after bad input: %s" % r)

    def crash_lines(self):
        return "\n".join(l for l in self.d.read_log().splitlines()
                         if "signal" in l or "exited" in l)

    def drained(self):
        """Wait until the workers hold no more client sockets."""
        def back():
            return all(socket_fds(p) <= self.base_fds[p]
                       for p in self.workers)
        wait_for(back, HANDSHAKE_TIMEOUT + 10,
                 what="workers to drop the bad connections: %r vs %r" % (
                     {p: socket_fds(p) for p in self.workers},
                     self.base_fds))

    def __enter__(self):
        return self

    def __exit__(self, etype, *exc):
        import sys
        if etype is not None:
            lines = [l for l in self.d.read_log().splitlines()
                     if "libevent" not in l]
            sys.stderr.write("--- daemon log\n%s\n" % "\n".join(lines[-30:]))
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()
            self.front.stop()


def open_many(port, payloads):
    """Connect once per payload and send it; returns the sockets."""
    socks = []
    for p in payloads:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if p:
            s.sendall(p)
        socks.append(s)
    return socks


def observe(socks, timeout):
    """For each socket: (bytes received, seconds until the daemon closed
    it, or None if still open at the end)."""
    t0 = time.time()
    got = {s: b"" for s in socks}
    closed = {}
    for s in socks:
        s.setblocking(False)
    while len(closed) < len(socks):
        left = timeout - (time.time() - t0)
        if left <= 0:
            break
        r, _, _ = select.select([s for s in socks if s not in closed], [],
                                [], min(left, 0.5))
        for s in r:
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if d:
                got[s] += d
            else:
                closed[s] = time.time() - t0
    res = [(got[s], closed.get(s)) for s in socks]
    for s in socks:
        s.close()
    return res


def garbage(rng, n):
    """Random bytes that cannot be taken for a ClientHello."""
    b = bytearray(rng.getrandbits(8) for _ in range(n))
    if b and b[0] == 0x16:
        b[0] = 0x17
    return bytes(b)


def valid_hello(tmp):
    """A real ClientHello of ours (right secret, current time): tclient
    records what it sends to a throw-away listener."""
    path = os.path.join(tmp, "hello.bin")
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    try:
        r = tclient(ls.getsockname()[1], "tls", "probe", record=path,
                    timeout=1)
    finally:
        ls.close()
    check(os.path.exists(path), "could not record a ClientHello: %s" % r)
    return open(path, "rb").read()


def test_garbage_is_held_silently_then_closed():
    rng = random.Random(1)
    with Setup() as s:
        payloads = [
            garbage(rng, 100), garbage(rng, 64), garbage(rng, 63),
            garbage(rng, 1), garbage(rng, 5000), b"\0" * 64,
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"\xef" + garbage(rng, 80), b"\xee" * 64, b"\xdd" * 64,
            b"",    # says nothing at all
        ]
        for port in (s.plain, s.mixed):
            res = observe(open_many(port, payloads), HANDSHAKE_TIMEOUT + 6)
            for p, (got, closed) in zip(payloads, res):
                what = "%r... on port %d" % (p[:16], port)
                check(got == b"", "bad client %s got %r" % (what, got[:64]))
                check(closed is not None,
                      "bad client %s not closed after %d s" % (
                          what, HANDSHAKE_TIMEOUT + 6))
                check(HANDSHAKE_TIMEOUT - 0.5 <= closed <=
                      HANDSHAKE_TIMEOUT + 3,
                      "bad client %s closed after %.1f s, handshake_timeout"
                      " is %d" % (what, closed, HANDSHAKE_TIMEOUT))
        s.healthy()


def test_malformed_client_hellos():
    tmp = tempfile.mkdtemp(prefix="mtp-bad-")
    hello = valid_hello(tmp)
    check(hello[:3] == b"\x16\x03\x01" and len(hello) == 517,
          "recorded hello: %r" % hello[:8])
    wrong_hmac = bytearray(hello)
    wrong_hmac[20] ^= 1     # inside the client random
    huge = (b"\x16\x03\x01\xff\xff\x01\xff\xff\xff\x03\x03" +
            os.urandom(32) + b"\x20" + os.urandom(32) + b"\xff\xff" +
            os.urandom(300))
    inner_huge = bytearray(hello)
    inner_huge[6:9] = b"\xff\xff\xff"      # handshake length
    inner_huge[43] = 0xff                   # session id length
    cases = {
        "truncated": hello[:100],
        "header only": hello[:5],
        "one byte": hello[:1],
        "wrong hmac": bytes(wrong_hmac),
        "huge lengths": huge,
        "inner lengths": bytes(inner_huge),
        "not a hello": b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
        "alert record": b"\x15\x03\x01\x00\x02\x02\x32",
        "hello + data": hello + b"\x14\x03\x03\x00\x01\x01",
        "sslv2": b"\x80\x2e\x01\x00\x02\x00\x15" + os.urandom(40),
    }
    with Setup() as s:
        for port in (s.mixed, s.tls):
            names = list(cases)
            res = observe(open_many(port, [cases[n] for n in names]),
                          HANDSHAKE_TIMEOUT + 8)
            for name, (got, closed) in zip(names, res):
                # nothing of ours: either silence or the fronted site
                check(got == b"" or got.startswith(FrontSite.MARKER),
                      "%s on port %d got %r" % (name, port, got[:64]))
                check(not got.startswith(b"\x16\x03\x03"),
                      "%s got a ServerHello" % name)
                check(closed is not None, "%s on port %d never closed" %
                      (name, port))
            # a ClientHello that fails the HMAC check goes to the site
            got = dict(zip(names, res))["wrong hmac"][0]
            check(got.startswith(FrontSite.MARKER),
                  "wrong-HMAC hello not fronted: %r" % got[:64])
        s.healthy()


def test_flood_of_500_garbage_connections():
    rng = random.Random(2)
    with Setup() as s:
        ports = [s.plain, s.mixed, s.tls]
        socks = []
        for i in range(500):
            p = ports[i % 3]
            c = socket.create_connection(("127.0.0.1", p), timeout=5)
            kind = i % 5
            if kind == 0:
                data = garbage(rng, rng.randint(1, 4000))
            elif kind == 1:
                data = b"\x16\x03\x01" + struct.pack(">H", rng.randint(
                    0, 65535)) + garbage(rng, rng.randint(0, 2000))
            elif kind == 2:
                data = b"GET /%d HTTP/1.1\r\n\r\n" % i
            elif kind == 3:
                data = b"\0" * rng.randint(1, 200)
            else:
                data = b""
            try:
                if data:
                    c.sendall(data)
            except OSError:
                pass
            socks.append(c)
        time.sleep(0.5)
        check(set(s.d.workers_now()) == s.workers,
              "workers changed during the flood: " + s.crash_lines())
        # half leave with a reset, half politely
        for i, c in enumerate(socks):
            if i % 2:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            c.close()
        s.drained()
        s.healthy()


def bad_batch(s, rng, n):
    """n bad connections that come, send something and leave."""
    for start in range(0, n, 100):
        socks = []
        for i in range(start, min(n, start + 100)):
            port = (s.plain, s.mixed, s.tls)[i % 3]
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            kind = i % 4
            if kind == 0:
                data = garbage(rng, rng.randint(64, 3000))
            elif kind == 1:
                data = b"\x16\x03\x01\x02\x00\x01" + garbage(rng, 300)
            elif kind == 2:
                data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            else:
                data = b"\x16\x03\x01\x40\x00" + garbage(rng, 9000)
            try:
                c.sendall(data)
            except OSError:
                pass
            socks.append(c)
        time.sleep(0.05)
        for c in socks:
            c.close()
    s.drained()


def test_memory_does_not_grow_with_bad_clients():
    rng = random.Random(3)
    with asan_without_quarantine() as asan:
        limit_kib = 16384 if asan else 2048
        with Setup() as s:
            bad_batch(s, rng, 400)          # warm up allocator and caches
            before = {p: vm_rss_kib(p) for p in s.workers}
            bad_batch(s, rng, 2000)
            after = {p: vm_rss_kib(p) for p in s.workers}
            grew = sum(after[p] - before[p] for p in s.workers)
            check(grew < limit_kib,
                  "workers' RSS grew by %d KiB over 2000 bad connections:"
                  " %r -> %r" % (grew, before, after))
            s.healthy()

if __name__ == "__main__":
    run_tests([
        test_garbage_is_held_silently_then_closed,
        test_malformed_client_hellos,
        test_flood_of_500_garbage_connections,
        test_memory_does_not_grow_with_bad_clients,
    ])
