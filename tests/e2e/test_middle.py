#!/usr/bin/env python3
"""Middle-proxy mode end to end (spec B.2): the daemon's workers carry
clients over RPC links to a fake middle proxy (tests/peers/fake_mp), which
records what arrives (conn_ids, flags, ad tags, addresses) and can
acknowledge, close, ping and rotate links on command.

Every client protocol through the links, byte-exact; many clients on few
links; the ad tag and the addresses Telegram gets; backend auto; quick
acks; CLOSE_EXT and CLOSE_CONN; link rotation; a dcpool crash; pings;
flow control; the Telegram config over HTTPS and from the cache.
"""
import os
import re
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import https  # noqa: E402
from mtp import (asan_without_quarantine, PROTOS, SECRET, Daemon, FakeDC, FakeMP,  # noqa: E402
                 TClientResult, check, free_port, log_pids, metrics,
                 proxy_config_text, run_tests, tclient, tclient_wait,
                 vm_rss_kib, wait_for, write_proxy_config,
                 write_proxy_secret)

MIB = 1 << 20

SECRET2 = "00112233445566778899aabbccddeeff"
TAG_L = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"     # a listener's ad tag
TAG_U = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"     # a user's own ad tag

# RPC_PROXY_REQ flags, spec B.2.7.
F_NOT_ENCRYPTED = 0x00000002
F_HAS_AD_TAG = 0x00000008
F_MAGIC = 0x00001000
F_EXTMODE2 = 0x00020000
F_PAD = 0x08000000
F_INTERMEDIATE = 0x20000000
F_ABRIDGED = 0x40000000
F_QUICKACK = 0x80000000
TRANSPORT_BIT = {"abridged": F_ABRIDGED, "intermediate": F_INTERMEDIATE,
                 "secure": F_INTERMEDIATE, "tls": F_INTERMEDIATE}


def users_conf(users):
    """users = [(name, secret, ad_tag or None)]"""
    out = []
    for name, secret, tag in users:
        t = ' ad_tag = "%s";' % tag if tag else ""
        out.append('{ name = "%s"; secret = "%s";%s }' % (name, secret, t))
    return ", ".join(out)


def listener(name, port, users=(("u0", SECRET, None),), ad_tag=None,
             backend=None):
    extra = ""
    if ad_tag:
        extra += 'ad_tag = "%s"; ' % ad_tag
    if backend:
        extra += 'backend = "%s"; ' % backend
    return """  {
    name = "%s"; address = "127.0.0.1"; port = %d;
    protocols = [ "classic", "secure", "fake_tls" ];
    tls_domain = "www.example.com";
    fronting = "127.0.0.1:9";
    users = ( %s );
    %s
  }""" % (name, port, users_conf(users), extra)


def group(name, opts):
    if not opts:
        return ""
    return "%s = { %s };\n" % (name, " ".join(
        "%s = %s;" % (k, ("true" if v else "false") if isinstance(v, bool)
                      else v) for k, v in opts.items()))


class MSetup:
    """A daemon in middle mode whose DC 2 middle proxy is a fake_mp, with
    its own metrics port. mps = {dc: FakeMP options} adds DCs; dcs =
    {dc: port} gives direct-mode DC addresses; listeners as Daemon's."""

    def __init__(self, workers=2, middle=None, listeners=None,
                 backend="middle", mode="echo", no_pong=False, mps=None,
                 dcs=None, telegram=None, extra="", start=True,
                 mp_opts=None, mp_host="127.0.0.1"):
        self.tmp = tempfile.mkdtemp(prefix="mtp-middle-")
        os.chmod(self.tmp, 0o755)
        self.secret_file = write_proxy_secret(self.tmp)
        self.mps = {}
        self.dc_fakes = []
        self.https = None
        self.d = None
        try:
            self.mp = self.mps[2] = FakeMP(self.secret_file, mode=mode,
                                           no_pong=no_pong, tmp=self.tmp,
                                           host=mp_host, **(mp_opts or {}))
            for dc, opts in (mps or {}).items():
                self.mps[dc] = FakeMP(self.secret_file, tmp=self.tmp,
                                      **opts)
            self.proxy_conf = write_proxy_config(
                self.tmp, {dc: mp.port for dc, mp in self.mps.items()},
                host=mp_host)
            self.metrics_port = free_port()
            self.port = free_port()
            if listeners is None:
                listeners = [listener("main", self.port, ad_tag=TAG_L)]
            tg = telegram(self) if callable(telegram) else telegram
            if tg is None:
                tg = 'proxy_secret_file = "%s"; proxy_config_file = ' \
                     '"%s";' % (self.secret_file, self.proxy_conf)
            if dcs:
                tg += " dc = ( %s );" % ", ".join(
                    '{ id = %d; address = "127.0.0.1:%d"; }' % (i, p)
                    for i, p in sorted(dcs.items()))
            body = ""
            if backend:
                body += 'backend = "%s";\n' % backend
            body += "metrics = { address = \"127.0.0.1\"; port = %d; };\n" \
                % self.metrics_port
            body += "telegram = { %s };\n" % tg
            body += group("middle", middle)
            body += extra
            self.d = Daemon(workers=workers, listeners=listeners,
                            extra=body, tmp=self.tmp)
            self.d.port = self.port
            if start:
                self.d.start()
        except BaseException:
            self.stop()
            raise

    def metrics(self):
        return metrics(self.metrics_port)

    def stop(self):
        try:
            if self.d is not None:
                self.d.kill_all()
        finally:
            for mp in self.mps.values():
                mp.stop()
            for f in self.dc_fakes:
                f.stop()

    def __enter__(self):
        return self

    def __exit__(self, etype, *exc):
        if etype is not None:
            dump_logs(self)
        self.stop()


def dump_logs(s):
    lines = [l for l in s.d.read_log().splitlines() if "libevent" not in l] \
        if s.d else []
    sys.stderr.write("--- daemon log (last 40 lines)\n%s\n" %
                     "\n".join(lines[-40:]))
    for dc, mp in sorted(s.mps.items()):
        sys.stderr.write("--- fake_mp of DC %d (last 15 lines)\n%s\n" % (
            dc, "\n".join(mp.log().splitlines()[-15:])))


def expect_ok(r, n=1):
    check(r.ok and ("%d/%d ok" % (n, n)) in r.out, str(r))


def live(mp):
    return {k: c for k, c in mp.conns().items() if not c["closed"]}


def wait_conns(mp, n, pred=lambda c: True, timeout=30, what=None):
    """At least n conns (closed or not) for which pred holds; returns
    them all."""
    def enough():
        got = {k: c for k, c in mp.conns().items() if pred(c)}
        return got if len(got) >= n else None
    return wait_for(enough, timeout, 0.1,
                    what=what or "%d conns at the fake middle proxy" % n)


def flags(c):
    return int(c["flags"], 16)


def local_ports(pid, remote_port):
    """Local ports of pid's TCP sockets connected to remote_port on this
    host (from /proc: the client's own view of its address)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return []
    ports = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            rem = int(fields[2].split(":")[1], 16)
            if fields[9] in inodes and rem == remote_port:
                ports.append(int(fields[1].split(":")[1], 16))
    return ports


class Watched:
    """A tclient started with wait=False whose stdout lines are collected
    as they come (hold mode prints one per event)."""

    def __init__(self, popen):
        import threading
        self.p = popen
        self.pid = popen.pid
        self.out = []
        self.err = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(f, l),
                                         daemon=True)
                        for f, l in ((popen.stdout, self.out),
                                     (popen.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _read(self, f, into):
        for line in f:
            with self.lock:
                into.append(line.decode(errors="replace"))

    def count(self, rx):
        with self.lock:
            return len([l for l in self.out if re.match(rx, l)])

    def wait(self, timeout):
        self.p.wait(timeout)
        for t in self.threads:
            t.join(5)
        with self.lock:
            return TClientResult(self.p.args[1:], self.p.returncode,
                                 "".join(self.out), "".join(self.err))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def conn_of_client(conns, pid, port):
    """The conn whose client address is one of pid's sockets to port."""
    def find():
        mine = {"127.0.0.1:%d" % p for p in local_ports(pid, port)}
        got = [(k, c) for k, c in conns().items() if c["client"] in mine]
        return got[0] if got else None
    return wait_for(find, 30, 0.1, what="the conn of tclient %d" % pid)


# ------------------------------------------------------------ tests


def test_every_transport_byte_exact():
    with MSetup() as s:
        for proto in PROTOS:
            s.mp.reset()
            expect_ok(tclient(s.port, proto, "reqpq", conns=4), 4)
            conns = s.mp.conns()
            check(len(conns) == 4 and all(
                c["packets"] == 1 and 40 <= c["bytes"] <= 52
                for c in conns.values()),
                "%s req_pq at the ME: %r" % (proto, conns))
            for n in (MIB, 32 * MIB):
                s.mp.reset()
                r = tclient(s.port, proto, "echo", bytes=n, packet=16384,
                            timeout=90)
                expect_ok(r)
                check("%d bytes" % n in r.out, str(r))
                conns = list(s.mp.conns().values())
                check(len(conns) == 1, "%s echo: conns %r" % (proto, conns))
                c = conns[0]
                check(c["packets"] == n // 16384,
                      "%s: %d packets reached the ME, sent %d" % (
                          proto, c["packets"], n // 16384))
                # Padded clients' 4, 8 or 12 padding bytes may stick
                # (spec A.3.3); nothing else may change.
                slack = 12 * c["packets"] if proto in ("secure", "tls") \
                    else 0
                check(n <= c["bytes"] <= n + slack,
                      "%s: %d bytes reached the ME, sent %d" % (
                          proto, c["bytes"], n))
                check(flags(c) & TRANSPORT_BIT[proto] and
                      not flags(c) & F_NOT_ENCRYPTED,
                      "%s echo flags %s" % (proto, c["flags"]))


def test_stream_cut_everywhere():
    # The proxy decrypts each whole frame's packet straight into its
    # PROXY_REQ and keeps only a frame cut by the end of a read: 5-byte
    # writes cut every frame header and packet at every offset.
    with MSetup() as s:
        for proto in PROTOS:
            s.mp.reset()
            r = tclient(s.port, proto, "echo", bytes=1536, packet=64,
                        timeout=60, dribble=5)
            expect_ok(r)
            check("1536 bytes" in r.out, str(r))
            c = list(s.mp.conns().values())
            check(len(c) == 1 and c[0]["packets"] == 1536 // 64,
                  "%s: packets at the ME %r" % (proto, c))


def test_links_encrypted_side_by_side():
    # With AES-NI a worker encrypts the CBC chains of all its links in
    # one pass per turn (common/aescbc.c): 8 clients spread over 4 links
    # echo 4 MiB each at once, byte for byte; a chain mixed up with
    # another's would make fake_mp close the link (bad frame).
    with MSetup(workers=1, middle={"min_links": 4}) as s:
        expect_ok(tclient(s.port, "secure", "reqpq", conns=1), 1)
        wait_for(lambda: s.mp.stats()["links"] >= 4, 10, 0.1,
                 what="4 links")
        s.mp.reset()
        r = tclient(s.port, "secure", "echo", conns=8, bytes=4 * MIB,
                    packet=16384, timeout=60)
        expect_ok(r, 8)
        conns = list(s.mp.conns().values())
        used = {c["link"] for c in conns}
        check(len(conns) == 8 and len(used) == 4,
              "8 clients on 4 links: %r" % conns)
        check(s.mp.stats()["links_total"] == 4,
              "links were replaced: %r" % s.mp.stats())


def test_crc32c_negotiated():
    # We ask every middle proxy for CRC32C; one that takes it gets
    # CRC32C frames from seq 0 (a wrong CRC would end the link), one
    # that does not keeps CRC32. Both carry 4 MiB echoes byte-exact.
    for takes in (True, False):
        with MSetup(mp_opts={"crc32c": takes}) as s:
            for proto in ("secure", "tls"):
                r = tclient(s.port, proto, "echo", bytes=4 * MIB,
                            packet=16384, timeout=60)
                expect_ok(r)
            links = s.mp.stats()["open_links"]
            check(links and all(lk["crc32c"] is takes for lk in links),
                  "crc32c %s: links %r" % (takes, links))


def test_many_clients_share_few_links():
    for per_link, min_links in ((300, 2), (40, 1)):
        with MSetup(middle={"min_links": min_links,
                            "clients_per_link": per_link}) as s:
            p = tclient(s.port, "intermediate", "hold", conns=200,
                        rounds=4, interval=1, timeout=40, wait=False)
            try:
                wait_conns(s.mp, 200, lambda c: not c["closed"])
                check(s.metrics()["mtprotod_connections"] == 200,
                      "connections gauge: %r" % s.metrics())
                served = log_pids(s.d, r"client of main/")
                check(sum(served.values()) == 200 and len(served) == 2,
                      "clients per worker: %r" % served)
                # A pool grows to ceil(clients / clients_per_link) links
                # per worker, never below min_links.
                want = sum(max(min_links, -(-n // per_link))
                           for n in served.values())
                bound = 2 * max(min_links, -(-200 // per_link))

                def settled():
                    st = s.mp.stats()
                    return st if st["links"] >= want else None
                st = wait_for(settled, 10, 0.2,
                              what="%d links (clients per worker %r)" %
                              (want, served))
                check(1 <= st["links"] <= bound and st["links"] == want,
                      "%d links for 200 clients (per worker %r, "
                      "clients_per_link %d, min_links %d): want %d, "
                      "at most %d" % (st["links"], served, per_link,
                                      min_links, want, bound))
                r = tclient_wait(p, 60)
                expect_ok(r, 200)
                check(len([l for l in r.lines if l.startswith(
                    "RESPQ ok")]) == 800, "answers: %s" % r.out[-500:])
                check(s.mp.stats()["links_total"] == want,
                      "links were replaced: %r" % s.mp.stats()["links_total"])
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def test_ad_tag_and_addresses():
    p2 = free_port()
    port = free_port()
    with MSetup(listeners=[
            listener("main", port, ad_tag=TAG_L,
                     users=(("u0", SECRET, None), ("u1", SECRET2, TAG_U))),
            listener("plain", p2)]) as s:
        cases = []
        for proto in PROTOS:
            for lport, secret, tag in ((port, SECRET, TAG_L),
                                       (port, SECRET2, TAG_U),
                                       (p2, SECRET, None)):
                pr = tclient(lport, proto, "hold", secret=secret,
                             rounds=6, interval=0.7, timeout=20,
                             wait=False)
                cases.append((pr, proto, lport, tag))
        try:
            # A client's own address, read while it is surely alive (a
            # busy machine may reach the later cases after they ended).
            mine = {}
            for pr, proto, lport, tag in cases:
                mine[pr.pid] = wait_for(
                    lambda pid=pr.pid, lp=lport: {
                        "127.0.0.1:%d" % p for p in local_ports(pid, lp)},
                    30, 0.02, what="the socket of tclient %d" % pr.pid)
            for pr, proto, lport, tag in cases:
                def find(addrs=mine[pr.pid]):
                    got = [(k, c) for k, c in s.mp.conns().items()
                           if c["client"] in addrs]
                    return got[0] if got else None
                cid, c = wait_for(find, 30, 0.1,
                                  what="the conn of tclient %d" % pr.pid)
                want = F_MAGIC | F_EXTMODE2 | F_NOT_ENCRYPTED | \
                    TRANSPORT_BIT[proto] | (F_HAS_AD_TAG if tag else 0)
                got = flags(c)
                if proto in ("secure", "tls"):
                    got &= ~F_PAD      # C does not forward it (B.2.7)
                what = "%s client on port %d: %r" % (proto, lport, c)
                check(got == want, "flags %08x, want %08x: %s" %
                      (flags(c), want, what))
                check(c["ad_tag"] == tag, "ad tag: " + what)
                check(c["client"].startswith("127.0.0.1:"), what)
                check(c["proxy"] == "127.0.0.1:%d" % lport,
                      "proxy address: " + what)
            for pr, proto, lport, tag in cases:
                r = tclient_wait(pr, 30)
                expect_ok(r)
        finally:
            for pr, _, _, _ in cases:
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()


def test_backend_auto():
    dc = FakeDC("packets")
    pd, pt, pu = free_port(), free_port(), free_port()
    try:
        with MSetup(backend=None, dcs={2: dc.port}, listeners=[
                listener("direct", pd),
                listener("tagged", pt, ad_tag=TAG_L),
                listener("usertag", pu, users=(("u0", SECRET, None),
                                               ("u1", SECRET2, TAG_U)))]) \
                as s:
            s.dc_fakes.append(dc)
            for port, secret, where, tag in (
                    (pd, SECRET, "direct", None),
                    (pt, SECRET, "middle", TAG_L),
                    (pu, SECRET2, "middle", TAG_U),
                    # a listener with a tagged user goes middle for all
                    # its users (mtprotod.conf(5), backend)
                    (pu, SECRET, "middle", None)):
                for proto in ("intermediate", "tls"):
                    s.mp.reset()
                    before = len(dc.conns())
                    expect_ok(tclient(port, proto, "reqpq", secret=secret))
                    at_dc = len(dc.conns()) - before
                    conns = list(s.mp.conns().values())
                    what = "%s client on %s (port %d): fake DC got %d, " \
                        "fake ME %r" % (proto, where, port, at_dc, conns)
                    if where == "direct":
                        check(at_dc == 1 and not conns, what)
                    else:
                        check(at_dc == 0 and len(conns) == 1 and
                              conns[0]["ad_tag"] == tag, what)
    finally:
        dc.stop()


def test_quick_ack_reaches_the_client():
    values = {"abridged": 0x91223344, "intermediate": 0xa1b2c3d4,
              "secure": 0x81020304, "tls": 0xf1e2d3c4}
    with MSetup() as s:
        procs = {proto: tclient(s.port, proto, "hold", rounds=4,
                                interval=0.7, quickack=True, timeout=20,
                                wait=False) for proto in PROTOS}
        try:
            for proto, pr in procs.items():
                cid, c = conn_of_client(s.mp.conns, pr.pid, s.port)
                check(flags(c) & F_QUICKACK,
                      "%s: quick-ack bit not forwarded: %r" % (proto, c))
                s.mp.ack(cid, values[proto])
            for proto, pr in procs.items():
                r = tclient_wait(pr, 30)
                expect_ok(r)
                acks = [l.split() for l in r.lines
                        if l.startswith("QUICKACK")]
                v = values[proto]
                # fake_mp sends the value LE32 (B.2.8); abridged clients
                # get it big-endian, the others as it came (A.3.1, A.3.2)
                if proto == "abridged":
                    raw = v.to_bytes(4, "big").hex()
                else:
                    raw = v.to_bytes(4, "little").hex()
                check(len(acks) == 1 and acks[0][1] == "%08x" % v and
                      acks[0][3] == raw,
                      "%s: want QUICKACK %08x raw %s: %s" % (
                          proto, v, raw, r))
        finally:
            for pr in procs.values():
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()


def test_close_ext_and_close_conn():
    with MSetup() as s:
        a = tclient(s.port, "intermediate", "hold", rounds=30,
                    interval=0.5, timeout=30, wait=False)
        b = tclient(s.port, "abridged", "hold", rounds=6, interval=0.5,
                    timeout=30, wait=False)
        try:
            ida, ca = conn_of_client(s.mp.conns, a.pid, s.port)
            idb, cb = conn_of_client(s.mp.conns, b.pid, s.port)
            t0 = time.time()
            s.mp.close_ext(ida)
            r = tclient_wait(a, 10)
            took = time.time() - t0
            check(not r.ok and any(l.startswith("CLOSED") for l in r.lines),
                  "CLOSE_EXT did not close the client: %s" % r)
            check(took < 5, "the client was closed %.1f s after CLOSE_EXT"
                  % took)
            rb = tclient_wait(b, 30)
            expect_ok(rb)      # the other client went on
            # b left: the ME hears CLOSE_CONN for it
            wait_for(lambda: s.mp.conns()[idb]["closed"], 5, 0.1,
                     what="CLOSE_CONN for the client that left")
            c = s.mp.conns()[ida]
            check(c["ext_closed"] and c["after_close"] == 0 and
                  c["packets"] <= 30, "conn after CLOSE_EXT: %r" % c)
            check(s.mp.conns()[idb]["after_close"] == 0,
                  "packets after CLOSE_CONN: %r" % s.mp.conns()[idb])
            wait_for(lambda: s.metrics()["mtprotod_connections"] == 0, 5,
                     what="no connection left")
        finally:
            for pr in (a, b):
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()


def busy_outcomes(r):
    """{conn: (kind, line)} for a tclient echo run cut by a rotation:
    ok, closed (by the proxy), stalled (answers lost with the link),
    gap (a later echo after lost ones), or other."""
    out = {}
    for line in r.err.splitlines():
        m = re.match(r"tclient: conn (\d+) \(\w+\): (.*)", line)
        if not m:
            continue
        msg = m.group(2)
        if msg.startswith("closed by the proxy") or "reset" in msg:
            kind = "closed"
        elif msg.startswith("timeout while running"):
            kind = "stalled"
        elif "differs" in msg:
            kind = "gap"
        else:
            kind = "other"
        out[int(m.group(1))] = (kind, line)
    return out


def test_link_rotation_migrates_idle_clients():
    with MSetup() as s:
        # A request every 3 s: the rotation below comes between the
        # second and third rounds even when the busy clients' flood
        # (and a loaded machine) delays the second answers by a second
        # or two.
        idle = Watched(tclient(s.port, "intermediate", "hold", conns=100,
                               rounds=5, interval=3, timeout=40,
                               wait=False))
        busy = None
        try:
            # Rotate once every idle client has its second answer, well
            # before its third request: none of theirs is in flight (an
            # answer a rotated link takes with it is lost for good).
            wait_for(lambda: idle.count(r"RESPQ ok \d+ 2$") == 100, 20,
                     0.02, what="100 idle clients in their second round")
            busy = tclient(s.port, "secure", "echo", conns=10,
                           bytes=32 * MIB, packet=65536, timeout=15,
                           wait=False)
            wait_for(lambda: len([c for c in s.mp.stats()["conns"].values()
                                  if not c["closed"]]) >= 105, 2, 0.01,
                     what="the busy clients on the links")
            slow_before = s.metrics()[
                "mtprotod_middle_slow_clients_closed_total"]
            before = s.mp.stats()
            on_links = len([c for c in before["conns"].values()
                            if not c["closed"]])
            busy_on = on_links - 100
            check(on_links >= 100, "only %d clients on the links" %
                  on_links)
            closed = s.mp.rotate("all")
            check(closed == before["links"] and closed >= 1,
                  "rotate closed %d of %d links" % (closed,
                                                    before["links"]))
            ri = idle.wait(60)
            rb = tclient_wait(busy, 60)
            expect_ok(ri, 100)
            check(len([l for l in ri.lines if l.startswith("RESPQ ok")])
                  == 500, "idle answers: %s" % ri.out[-300:])
            m = s.metrics()
            moved = m["mtprotod_middle_clients_migrated_total"]
            dropped = m["mtprotod_middle_clients_dropped_total"]
            slow = m["mtprotod_middle_slow_clients_closed_total"] - \
                slow_before
            outcome = busy_outcomes(rb)
            kinds = [k for k, _ in outcome.values()]
            sys.stderr.write(
                "  %d clients (%d busy) on %d rotated links: %d migrated, "
                "%d closed, %d shed as slow; busy: %s, %s\n" % (
                    on_links, busy_on, closed, moved, dropped, slow,
                    rb.lines[-1] if rb.lines else "?",
                    {k: kinds.count(k) for k in set(kinds)}))
            check(moved >= 100 and moved + dropped >= on_links,
                  "migrated %d, dropped %d, %d clients on the rotated "
                  "links" % (moved, dropped, on_links))
            # Busy clients finish, or are closed (caught mid-packet, or
            # shed later for holding up their new link while they did
            # not keep up), or, when all they sent had left, are
            # migrated and wait for the answers the rotated link took
            # with it: never anything else, and the idle ones are never
            # closed.
            check("other" not in kinds, "busy clients: %s" % "\n".join(
                l for k, l in outcome.values() if k == "other"))
            check(kinds.count("closed") == dropped + slow,
                  "%d busy clients closed, %d counted as dropped, %d as "
                  "slow:\n%s" % (kinds.count("closed"), dropped, slow,
                                 rb.err[-2000:]))
            check(s.d.log_has(re.compile(
                r"link to DC 2 .* closed: closed by the middle proxy")),
                "no log line for the closed links")
            after = s.mp.stats()
            check(after["links_total"] > before["links_total"],
                  "links not replaced: %d -> %d" % (before["links_total"],
                                                    after["links_total"]))
        finally:
            idle.kill()
            if busy is not None and busy.poll() is None:
                busy.kill()
                busy.wait()


def test_dcpool_crash_drops_nobody():
    with MSetup() as s:
        p = tclient(s.port, "intermediate", "hold", conns=100, rounds=6,
                    interval=1, timeout=40, wait=False)
        try:
            wait_conns(s.mp, 100, lambda c: c["packets"] >= 1)
            links_before = s.mp.stats()["links_total"]
            old = s.d.dcpool_pid()
            workers = set(s.d.workers_now())
            os.kill(old, signal.SIGKILL)
            new = wait_for(lambda: (s.d.dcpool_pid() not in (None, old)
                                    and s.d.dcpool_pid()), 15, 0.1,
                           what="a new dcpool")
            r = tclient_wait(p, 60)
            expect_ok(r, 100)
            check(len([l for l in r.lines if l.startswith("RESPQ ok")])
                  == 600, "answers: %s" % r.out[-300:])
            check(set(s.d.workers_now()) == workers,
                  "workers changed: %r -> %r" % (workers,
                                                 s.d.workers_now()))
            check(s.mp.stats()["links_total"] == links_before,
                  "links were rebuilt: %d -> %d" % (
                      links_before, s.mp.stats()["links_total"]))
            check(s.d.dcpool_pid() == new, "dcpool restarted again")
            # new clients after, also on new links
            s.mp.rotate("all")
            expect_ok(tclient(s.port, "tls", "reqpq", conns=10), 10)
            check(s.mp.stats()["links_total"] > links_before,
                  "the new dcpool built no link")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_pings():
    # DC 2's middle proxy never answers pings, DC 4's does.
    with MSetup(no_pong=True, mps={4: {}},
                middle={"min_links": 1, "ping_interval": 1,
                        "ping_timeout": 3}) as s:
        pong = s.mps[4]
        expect_ok(tclient(s.port, "intermediate", "reqpq", conns=4), 4)
        expect_ok(tclient(s.port, "intermediate", "reqpq", conns=4, dc=4),
                  4)
        t_idle = time.time()
        lt2 = s.mp.stats()["links_total"]
        lt4 = pong.stats()["links_total"]
        line = s.d.wait_log(re.compile(
            r"link to DC 2 .* closed: no answer to pings"), 10)
        wait_for(lambda: s.mp.stats()["links_total"] > lt2, 10, 0.2,
                 what="a new link to the silent middle proxy")
        # The answering one keeps its links; the ME's pings get a pong.
        pong.ping()
        wait_for(lambda: pong.stats()["pongs"] >= 1, 5, 0.1,
                 what="an RPC_PONG to the ME's ping")
        # idle for longer than ping_timeout
        time.sleep(max(0.0, 5 - (time.time() - t_idle)))
        st4 = pong.stats()
        check(st4["pings"] >= 2 and st4["pings_answered"] >= 2,
              "the daemon did not ping an idle link: %r" % st4)
        check(st4["links_total"] == lt4,
              "a link that answers pings was replaced: %d -> %d (%s)" % (
                  lt4, st4["links_total"], line))
        check(s.mp.stats()["pings"] >= 2, "no pings to DC 2")
        expect_ok(tclient(s.port, "secure", "reqpq", conns=4), 4)
        expect_ok(tclient(s.port, "secure", "reqpq", conns=4, dc=4), 4)


def test_flow_control_slow_reader():
    # One link (one worker, min_links 1) shared by a client that never
    # reads and five that echo. With the default link_queue_max, and with
    # the smallest one, where the stuck client's backlog pauses the link
    # until the client is closed: either way the others get through and
    # the link works on once the stuck client is gone.
    for link_queue_max in (None, 65536):
        middle = {"min_links": 1, "clients_per_link": 300,
                  "client_queue_max": 65536, "client_queue_timeout": 2}
        if link_queue_max:
            middle["link_queue_max"] = link_queue_max
        with MSetup(workers=1, middle=middle) as s:
            worker = list(s.d.workers_now())[0]
            t0 = time.time()
            nr = tclient(s.port, "intermediate", "noread", packet=16384,
                         timeout=20, wait=False)
            try:
                wait_conns(s.mp, 1, lambda c: c["packets"] > 16)
                time.sleep(0.5)
                t1 = time.time()
                r = tclient(s.port, "abridged", "echo", conns=5,
                            bytes=4 * MIB, timeout=10)
                fast = time.time() - t1
                check(r.ok and "5/5 ok" in r.out,
                      "link_queue_max %s: echo clients beside the stuck "
                      "one: %s" % (link_queue_max or "default", r))
                check(s.mp.stats()["links_total"] == 1, "more than one link")
                rn = tclient_wait(nr, 30)
                took = time.time() - t0
                check(rn.ok and any(l.startswith("CLOSED after")
                                    for l in rn.lines),
                      "the client that never reads was not closed: %s" % rn)
                check(took < 10, "closed only after %.1f s" % took)
                s.d.wait_log("client does not read", 5)
                # the link is not left paused
                r = tclient(s.port, "secure", "reqpq", conns=3, timeout=5)
                check(r.ok and "3/3 ok" in r.out,
                      "link_queue_max %s: new clients after the stuck one "
                      "was closed: %s" % (link_queue_max or "default", r))
                check(s.d.workers_now().keys() == {worker},
                      "worker restarted")
                sys.stderr.write(
                    "  link_queue_max %s: 5 echo clients took %.1f s beside "
                    "the stuck one; it was closed after %.1f s\n" % (
                        link_queue_max or "default", fast, took))
            finally:
                if nr.poll() is None:
                    nr.kill()
                    nr.wait()


def test_reading_client_gets_bursts_of_large_answers():
    # A client that reads, whose answers (1 MiB each, two in flight)
    # pass 2 x client_queue_max before it has read them: the answers it
    # asked for before it stopped being read still come, and it is not
    # closed for them. Before the fix the bound was 2 x client_queue_max
    # + one frame: every such client was reset at once (and CI's 32 MiB
    # echo at default settings was reset when the test client was slow).
    with MSetup(workers=1, middle={"client_queue_max": 65536}) as s:
        for proto in ("intermediate", "secure"):
            r = tclient(s.port, proto, "echo", bytes=16 * 1040384,
                        packet=1040384, conns=2, timeout=60)
            expect_ok(r, 2)
        check(not s.d.log_has("answers unread"), "a reading client was "
              "closed for its answers")


def test_flow_control_upload_flood():
    # Bound, per worker (25 clients each, min_links 2 so 2 links): the
    # queue towards the ME is paused at link_queue_max (8 MiB default) per
    # link, 16 MiB; each client may park at most one partial packet
    # (64 KiB here, 1 MiB at most), 25 MiB; plus the process itself
    # (about 10 MiB idle): about 50 MiB, so 100 MiB leaves the allocator
    # room. Unbounded queues would take the gigabytes the clients send.
    with asan_without_quarantine() as asan, MSetup(mode="sink") as s:
        # ASan's allocator adds redzones and shadow memory
        bound_kib = (200 if asan else 100) * 1024
        workers = set(s.d.workers_now())
        p = tclient(s.port, "intermediate", "noread", conns=50,
                    packet=65536, timeout=8, wait=False)
        peak = {}
        try:
            t_end = time.time() + 7
            while time.time() < t_end:
                for w in workers:
                    peak[w] = max(peak.get(w, 0), vm_rss_kib(w))
                time.sleep(0.2)
            r = tclient_wait(p, 30)
            # nothing comes back in sink mode, so nobody is closed
            check(not any(l.startswith("CLOSED") for l in r.lines),
                  "an uploading client was closed: %s" % r)
            check(set(s.d.workers_now()) == workers,
                  "a worker died: %r -> %r" % (workers,
                                               s.d.workers_now()))
            st = s.mp.stats()
            check(st["nconns"] == 50 and st["bytes"] > 50 * MIB,
                  "the ME got %d bytes from %d clients" % (st["bytes"],
                                                           st["nconns"]))
            check(max(peak.values()) < bound_kib,
                  "worker RSS peaked at %r KiB" % peak)
            sys.stderr.write("  uploaded %d MiB; worker peak RSS %s KiB\n"
                             % (st["bytes"] >> 20, sorted(peak.values())))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_telegram_config_over_https_then_cache():
    srvs = []

    def from_https(setup):
        with open(setup.secret_file, "rb") as f:
            secret = f.read()
        port = setup.mp.port
        srv = https.HTTPSServer({
            "/getProxySecret": secret,
            "/getProxyConfig": proxy_config_text({2: port}).encode(),
            "/getProxyConfigV6": proxy_config_text(
                {2: port}, host="::1").encode()})
        srvs.append(srv)
        return ('proxy_secret_url = "%s"; proxy_config_url = "%s"; '
                'proxy_config_v6_url = "%s"; ca_file = "%s";' % (
                    srv.url("/getProxySecret"), srv.url("/getProxyConfig"),
                    srv.url("/getProxyConfigV6"), srv.ca_file))
    try:
        with MSetup(telegram=from_https) as s:
            s.d.wait_log("middle-proxy config now from https: secret 128 "
                         "bytes, 1 IPv4 and 1 IPv6 middle proxies")
            for proto in PROTOS:
                expect_ok(tclient(s.port, proto, "reqpq", conns=3), 3)
            check(s.mp.stats()["nconns"] == 12, "conns at the ME: %r" %
                  s.mp.stats()["nconns"])
            state = os.path.join(s.tmp, "state")
            for name in ("proxy-secret", "proxy-multi.conf",
                         "proxy-multi-v6.conf"):
                check(os.path.exists(os.path.join(state, name)),
                      "no cached %s" % name)
            # offline: the HTTPS server is gone, the cache carries the
            # restart
            srvs.pop().stop()
            s.d.stop()
            os.truncate(s.d.log, 0)
            s.mp.rotate("all")
            s.mp.reset()
            s.d.start()
            s.d.wait_log("middle-proxy config now from cache")
            for proto in PROTOS:
                expect_ok(tclient(s.port, proto, "reqpq", conns=3), 3)
            check(s.mp.stats()["nconns"] == 12, "conns at the ME after "
                  "the restart: %r" % s.mp.stats()["nconns"])
            s.d.wait_log("cannot fetch the proxy secret", 10)
    finally:
        for srv in srvs:
            srv.stop()


def test_fake_middle_proxy_selftest():
    """The fake middle proxy itself speaks B.2 right (mp_selftest plays
    the proxy side with the codecs): the other tests rest on it."""
    import subprocess
    from mtp import peer_bin, write_proxy_secret
    tmp = tempfile.mkdtemp(prefix="mp-selftest-")
    secret = write_proxy_secret(tmp)
    mp = FakeMP(secret, tmp=tmp)
    try:
        p = subprocess.run([peer_bin("mp_selftest"), "--port", str(mp.port),
                            "--control-port", str(mp.ctl_port),
                            "--secret-file", secret],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "mp_selftest failed: %s%s" % (
            p.stdout[-2000:], p.stderr[-2000:]))
    finally:
        mp.stop()


if __name__ == "__main__":
    run_tests([
        test_fake_middle_proxy_selftest,
        test_every_transport_byte_exact,
        test_reading_client_gets_bursts_of_large_answers,
        test_many_clients_share_few_links,
        test_ad_tag_and_addresses,
        test_backend_auto,
        test_quick_ack_reaches_the_client,
        test_close_ext_and_close_conn,
        test_link_rotation_migrates_idle_clients,
        test_dcpool_crash_drops_nobody,
        test_pings,
        test_flow_control_slow_reader,
        test_flow_control_upload_flood,
        test_telegram_config_over_https_then_cache,
    ])
