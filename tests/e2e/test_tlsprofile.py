"""End-to-end: the fake-TLS answer looks like the fronted site (issue 9).

Two real TLS stacks front a fake-TLS listener: nginx (OpenSSL) and
gnutls-serv (GnuTLS). The dcpool learns each site's answer; then the
proxy's answer to a real client (tclient, which checks it as the apps do)
must carry the site's ServerHello version, cipher, extension order, group
and key-share length, records 22, 20, 23 only, an encrypted flight within
15% of the site's and a spread over 10 connections no larger than
max(64, twice the site's). What the site answers is seen the same way,
by asking it directly with the same ClientHello shape (tclient --test
probe prints both).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtp import (MTPROTOD, SECRET, Daemon, FakeDC, check, free_port,  # noqa: E402
                 listener_conf, run_tests, tclient, telegram_conf,
                 wait_for)
from nginx import Nginx  # noqa: E402

DOMAIN = "www.example.com"
WRONG = "fedcba9876543210fedcba9876543210"
FLIGHT_RX = re.compile(
    r"FLIGHT version=(\S+) cipher=(\S+) group=(\S+) kslen=(\d+) ext=(\S*) "
    r"records=(\S+) app=(\d+) apprecs=(\d+)")


class GnutlsServ:
    """gnutls-serv (Debian gnutls-bin) with a self-signed certificate, as
    a site of another TLS stack."""

    def __init__(self, domain=DOMAIN):
        binary = shutil.which("gnutls-serv")
        check(binary, "gnutls-serv not installed (apt-get install "
                      "gnutls-bin): the test command installs it")
        self.dir = tempfile.mkdtemp(prefix="mtp-gnutls-")
        key = os.path.join(self.dir, "key.pem")
        cert = os.path.join(self.dir, "cert.pem")
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-subj", "/CN=" + domain, "-days", "2", "-keyout", key,
             "-out", cert], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, r.stderr)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "gnutls.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--x509certfile", cert, "--x509keyfile", key,
             "--port", str(self.port), "--http", "--quiet"],
            stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        import socket
        deadline = time.time() + 15
        while time.time() < deadline:
            check(self.proc.poll() is None, "gnutls-serv exited")
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        check(False, "gnutls-serv did not listen")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def flights(port, secret, n=10, domain=DOMAIN):
    """The FLIGHT lines of n probes: [(version, cipher, group, kslen, ext,
    records, app, apprecs)]."""
    out = []
    for _ in range(n):
        r = tclient(port, "tls", "probe", secret=secret, domain=domain,
                    timeout=10, flight=True)
        m = FLIGHT_RX.search(r.out)
        check(m, "no FLIGHT line: %s" % r)
        out.append(m.groups())
        if secret == SECRET:
            check("GOT-SERVERHELLO" in r.out,
                  "our answer failed the client's check: %s" % r)
    return out


def compare(site, ours, name):
    s0 = site[0]
    for o in ours:
        for i, what in enumerate(("version", "cipher", "group",
                                  "key-share length", "extension order")):
            check(o[i] == s0[i], "%s: %s %s, the site's %s" % (
                name, what, o[i], s0[i]))
        check(o[5] == "22,20,23", "%s: records %s" % (name, o[5]))
        check(o[7] == "1", "%s: %s app-data records" % (name, o[7]))
    site_app = [int(s[6]) for s in site]
    ours_app = [int(o[6]) for o in ours]
    med = sorted(site_app)[len(site_app) // 2]
    for a in ours_app:
        check(abs(a - med) <= 0.15 * med,
              "%s: flight %d, the site's %d" % (name, a, med))
    site_spread = max(site_app) - min(site_app)
    spread = max(ours_app) - min(ours_app)
    check(spread <= max(64, 2 * site_spread),
          "%s: spread %d, the site's %d" % (name, spread, site_spread))
    return med, site_spread, spread


def run_against(site_port, name):
    dc = FakeDC()
    port = free_port()
    d = Daemon(workers=2, listeners=[listener_conf(
        "main", port, tls_domain=DOMAIN,
        fronting="127.0.0.1:%d" % site_port)],
        extra='backend = "direct";\n' + telegram_conf({2: dc.port}))
    os.chmod(d.tmp, 0o755)  # the dcpool keeps the profile in state_dir
    d.port = port
    try:
        # Before the profile: the built-in shape (nothing fixed-range).
        d.start()
        line = d.wait_log("TLS profile of 127.0.0.1:%d (SNI %s)" % (
            site_port, DOMAIN), 30)
        # The workers have it once the dcpool told them.
        d.wait_log(re.compile(r"listener main answers like 127\.0\.0\.1"
                              r":%d" % site_port), 10)
        site = flights(site_port, WRONG)  # the site itself
        # A wrong secret through the proxy: fronted, the site's bytes.
        fronted = flights(port, WRONG, 3)
        for f in fronted:
            check(f[:5] == site[0][:5], "fronted %r, site %r" % (f, site[0]))
        ours = flights(port, SECRET)
        med, sspread, spread = compare(site, ours, name)
        # The apps' own checks pass with the learned shape.
        r = tclient(port, "tls", "reqpq", domain=DOMAIN, conns=4)
        check(r.ok, "clients: %s" % r)
        # Kept for an offline start.
        cache = [f for f in os.listdir(os.path.join(d.tmp, "state"))
                 if f.startswith("tls-profile-")]
        check(cache, "no profile in state_dir")
        print("  %s: site %s, flight %d (spread %d); ours spread %d" % (
            name, "/".join(site[0][:5]), med, sspread, spread))
        return line
    finally:
        d.kill_all()
        dc.stop()


def test_learns_nginx():
    with Nginx(DOMAIN).start() as ng:
        run_against(ng.port, "nginx")


def test_learns_gnutls():
    g = GnutlsServ()
    try:
        run_against(g.port, "gnutls-serv")
    finally:
        g.stop()


def test_reload_in_place_to_another_site():
    # nginx answers with supported_versions first, gnutls-serv with
    # key_share first: a reload in place from one to the other switches
    # the answer, without a new process.
    import signal
    g = GnutlsServ()
    dc = FakeDC()
    try:
        with Nginx(DOMAIN).start() as ng:
            port = free_port()
            lst = listener_conf("main", port, tls_domain=DOMAIN,
                                fronting="127.0.0.1:%d" % ng.port)
            extra = 'backend = "direct";\n' + telegram_conf({2: dc.port})
            d = Daemon(workers=2, listeners=[lst], extra=extra)
            os.chmod(d.tmp, 0o755)
            d.port = port
            try:
                d.start()
                d.wait_log(re.compile(r"listener main answers like "
                                      r"127\.0\.0\.1:%d" % ng.port), 30)
                kids = set(d.kids())
                site_a = flights(ng.port, WRONG, 1)[0]
                site_b = flights(g.port, WRONG, 1)[0]
                check(site_a[4] != site_b[4], "test: the two sites answer "
                      "alike (%s)" % site_a[4])
                check(flights(port, SECRET, 1)[0][4] == site_a[4],
                      "not nginx's shape before the reload")
                d.write_config(d.make_config(
                    workers=2, listeners=[lst.replace(
                        "127.0.0.1:%d" % ng.port, "127.0.0.1:%d" % g.port)],
                    extra=extra))
                d.signal(signal.SIGHUP)
                d.wait_log("reload applied in place")
                d.wait_log(re.compile(r"listener main answers like "
                                      r"127\.0\.0\.1:%d" % g.port), 30)
                ours = flights(port, SECRET, 3)
                for o in ours:
                    check(o[4] == site_b[4], "after the reload: %r, "
                          "gnutls-serv %r" % (o, site_b))
                check(set(d.kids()) == kids, "processes changed")
            finally:
                d.kill_all()
    finally:
        g.stop()
        dc.stop()


def test_per_sni_sites():
    # tls_domains: "b.example.org" shares the listener's site (nginx),
    # "c.example.org=host:port" has its own (gnutls-serv). Probes for each
    # name reach its site, another name is dropped (unknown_sni), and our
    # clients get the answer shape of the site of the name they ask for.
    g = GnutlsServ()
    dc = FakeDC()
    try:
        with Nginx(DOMAIN).start() as ng:
            port = free_port()
            d = Daemon(workers=2, listeners=[listener_conf(
                "main", port, tls_domain=DOMAIN,
                fronting="127.0.0.1:%d" % ng.port,
                extra='unknown_sni = "drop"; tls_domains = [ '
                      '"b.example.org", "c.example.org=127.0.0.1:%d" ];'
                      % g.port)],
                extra='backend = "direct";\n' + telegram_conf({2: dc.port}))
            os.chmod(d.tmp, 0o755)
            d.port = port
            try:
                d.start()
                for sp in (ng.port, g.port):
                    d.wait_log(re.compile(r"answers .*like 127\.0\.0\.1:%d"
                                          % sp), 30)
                site_n = flights(ng.port, WRONG, 1)[0]
                site_g = flights(g.port, WRONG, 1, domain="c.example.org")[0]
                check(site_n[4] != site_g[4], "test: the sites answer alike")
                # Probes: each name to its site.
                for name, site in ((DOMAIN, site_n), ("b.example.org", site_n),
                                   ("c.example.org", site_g)):
                    f = flights(port, WRONG, 2, domain=name)
                    for x in f:
                        check(x[:5] == site[:5], "probe for %s: %r, its site "
                              "%r" % (name, x, site))
                r = tclient(port, "tls", "probe", secret=WRONG,
                            domain="other.example.org", timeout=5)
                check("CLOSED" in r.out, "another name: %s" % r)
                # Our clients: the shape of the name's site.
                for name, site in ((DOMAIN, site_n), ("b.example.org", site_n),
                                   ("c.example.org", site_g)):
                    for x in flights(port, SECRET, 3, domain=name):
                        check(x[:5] == site[:5], "served as %s: %r, its site "
                              "%r" % (name, x, site))
                    r = tclient(port, "tls", "reqpq", domain=name, conns=2)
                    check(r.ok, "clients as %s: %s" % (name, r))
                # Each name has its links.
                out = subprocess.run(
                    [MTPROTOD, "--links", "-c", d.conf, "--server",
                     "proxy.example.org"], capture_output=True, text=True,
                    timeout=20).stdout
                check("fake_tls as c.example.org" in out and
                      "632e6578616d706c652e6f7267" in out,
                      "no links for c.example.org: %s" % out[-800:])
            finally:
                d.kill_all()
    finally:
        g.stop()
        dc.stop()


def test_every_option_on():
    # The apps' own checks (tclient verifies the answer as they do) with
    # every option of issue 9 on at once: a learned profile, split_hello,
    # hello_delay, dynamic records, handshake_mss, rst_on_failed, a
    # second name and unknown_sni = "reject".
    src = FakeDC()
    try:
        with Nginx(DOMAIN).start() as ng:
            port = free_port()
            d = Daemon(workers=2, listeners=[listener_conf(
                "main", port, tls_domain=DOMAIN,
                fronting="127.0.0.1:%d" % ng.port,
                extra='handshake_mss = 536; rst_on_failed = true; '
                      'unknown_sni = "reject"; '
                      'tls_domains = [ "b.example.org" ];')],
                extra='backend = "direct";\n' +
                telegram_conf({2: src.port}) +
                'tls = { split_hello = true; hello_delay = "site"; '
                'record_sizing = "dynamic"; };\n')
            os.chmod(d.tmp, 0o755)
            d.port = port
            try:
                d.start()
                d.wait_log(re.compile(r"listener main answers like"), 30)
                site = flights(ng.port, WRONG, 1)[0]
                for name in (DOMAIN, "b.example.org"):
                    for x in flights(port, SECRET, 2, domain=name):
                        check(x[:5] == site[:5] and x[5] == "22,20,23",
                              "%s: %r, the site %r" % (name, x, site))
                    r = tclient(port, "tls", "reqpq", domain=name, conns=3)
                    check(r.ok, "clients as %s: %s" % (name, r))
                # Probes: fronted to nginx, another name rejected.
                f = flights(port, WRONG, 1)[0]
                check(f[:5] == site[:5], "fronted %r" % (f,))
                r = tclient(port, "tls", "probe", secret=WRONG,
                            domain="other.example.org", timeout=5)
                check("GOT-DATA 7 15030300020270" in r.out, str(r))
            finally:
                d.kill_all()
    finally:
        src.stop()


def record_sizes(sizing, backend_dc):
    port = free_port()
    d = Daemon(workers=1, listeners=[listener_conf(
        "main", port, tls_domain=DOMAIN)],
        extra='backend = "direct";\n' + telegram_conf({2: backend_dc.port}) +
        'tls = { profile = "static"; record_sizing = "%s"; };\n' % sizing)
    d.port = port
    try:
        d.start()
        r = tclient(port, "tls", "download", bytes=4 << 20, domain=DOMAIN,
                    record_sizes=True, timeout=60)
        check(r.ok, "download: %s" % r)
        m = re.search(r"RECORDS (\S+)", r.out)
        check(m, "no RECORDS line: %s" % r)
        return [int(x) for x in m.group(1).split(",")]
    finally:
        d.kill_all()


def test_record_sizing():
    # dynamic: records that fit a segment first, then 4 KiB ones, then
    # full ones, each a little smaller than its step by its own noise;
    # fixed: as large as the data at hand allows, from the start.
    src = FakeDC("source", source_bytes=4 << 20)
    try:
        dyn = record_sizes("dynamic", src)
        check(len(dyn) == 40, "records: %r" % dyn)
        check(all(1369 - 31 <= x <= 1369 for x in dyn[:8]),
              "first records: %r" % dyn[:8])
        check(len(set(dyn[:8])) > 1, "no noise: %r" % dyn[:8])
        check(all(x <= 4096 for x in dyn[8:16]) and
              any(x > 1369 for x in dyn[8:16]), "next: %r" % dyn[8:16])
        check(max(dyn[16:]) > 16384 - 256 and max(dyn) <= 16384,
              "later: %r" % dyn[16:])
        fixed = record_sizes("fixed", src)
        check(max(fixed[:8]) > 4096, "fixed: %r" % fixed[:8])
    finally:
        src.stop()


TCP_RX = re.compile(r"wait_ms=([\d.]+) segs=(\d+) mss=(\d+)")


def answers(port, n=3, **kw):
    """[(wait_ms, data segments, the client's send MSS)] of n served
    fake-TLS answers, each checked as the apps check it."""
    out = []
    for _ in range(n):
        r = tclient(port, "tls", "probe", secret=SECRET, domain=DOMAIN,
                    timeout=10, flight=True, **kw)
        check("GOT-SERVERHELLO" in r.out, "answer: %s" % r)
        m = TCP_RX.search(r.out)
        check(m, "no tcp_info in the FLIGHT line: %s" % r)
        out.append((float(m.group(1)), int(m.group(2)), int(m.group(3))))
    return out


def test_split_hello_and_handshake_mss():
    # Loopback's MSS takes a whole answer in one segment; split_hello
    # sends the ServerHello alone, then CCS and the data record: two.
    # handshake_mss = 536: the client sends (its ClientHello) in 536-byte
    # segments at most, and so does the proxy (Linux keeps one MSS per
    # connection): an answer of ~3.7 KB in seven or more.
    dc = FakeDC()
    try:
        for split in (False, True):
            plain, small = free_port(), free_port()
            d = Daemon(workers=1, listeners=[
                listener_conf("plain", plain, tls_domain=DOMAIN),
                listener_conf("small", small, tls_domain=DOMAIN,
                              extra="handshake_mss = 536;")],
                extra='backend = "direct";\n' + telegram_conf({2: dc.port}) +
                'tls = { profile = "static"; split_hello = %s; };\n' %
                ("true" if split else "false"))
            d.port = plain
            try:
                d.start()
                a, b = answers(plain), answers(small)
                print("  split_hello %s: (ms, segments, mss) %r; "
                      "handshake_mss 536: %r" % (split, a, b))
                for wait, segs, mss in a:
                    check(segs == (2 if split else 1) and mss > 16000,
                          "split_hello=%s: %d segments, mss %d" % (
                              split, segs, mss))
                for wait, segs, mss in b:
                    check(mss <= 536 - 12 and segs >= 3600 // mss,
                          "handshake_mss: %d segments, mss %d" % (segs, mss))
                # The apps' checks and a whole exchange, every option on.
                for p in (plain, small):
                    r = tclient(p, "tls", "reqpq", domain=DOMAIN, conns=3)
                    check(r.ok, "clients: %s" % r)
            finally:
                d.kill_all()
    finally:
        dc.stop()


class SlowSite:
    """A TCP relay in front of a site that holds the site's first answer
    for delay seconds: a site that takes its time to answer."""

    def __init__(self, site_port, delay):
        import socket
        import threading
        self.site_port, self.delay = site_port, delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.site_port))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self.pipe, args=(c, s, 0),
                             daemon=True).start()
            threading.Thread(target=self.pipe, args=(s, c, self.delay),
                             daemon=True).start()

    @staticmethod
    def pipe(a, b, delay):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                    delay = 0
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(2)
            except OSError:
                pass

    def stop(self):
        self.sock.close()


def test_hello_delay():
    # A site that answers after 150 ms: the profile says so, and with
    # hello_delay = "site" (the default) our answer comes after 0.75 to
    # 1.25 of it; with "0" at once. The margins are wide on purpose (a
    # functional check, not a measurement).
    dc = FakeDC()
    try:
        with Nginx(DOMAIN).start() as ng:
            slow = SlowSite(ng.port, 0.15)
            try:
                for mode in ("site", "0"):
                    port = free_port()
                    d = Daemon(workers=1, listeners=[listener_conf(
                        "main", port, tls_domain=DOMAIN,
                        fronting="127.0.0.1:%d" % slow.port)],
                        extra='backend = "direct";\n' +
                        telegram_conf({2: dc.port}) +
                        'tls = { hello_delay = "%s"; };\n' % mode)
                    os.chmod(d.tmp, 0o755)
                    d.port = port
                    try:
                        d.start()
                        line = d.wait_log(re.compile(
                            r"TLS profile of 127\.0\.0\.1:%d .*answer in "
                            r"(\d+) us" % slow.port), 30)
                        us = int(re.search(r"answer in (\d+) us",
                                           line).group(1))
                        check(140000 <= us <= 1000000,
                              "the site's answer time: %s" % line)
                        d.wait_log(re.compile(
                            r"listener main answers like"), 10)
                        for wait, segs, mss in answers(port):
                            if mode == "site":
                                check(wait >= 100, "answered after %.1f ms "
                                      "(the site: %d us)" % (wait, us))
                            else:
                                check(wait < 100, "answered after %.1f ms "
                                      "with hello_delay 0" % wait)
                        r = tclient(port, "tls", "reqpq", domain=DOMAIN,
                                    conns=3)
                        check(r.ok, "clients: %s" % r)
                        print("  hello_delay %s: the site %d us, ours %s ms"
                              % (mode, us, ",".join(
                                  "%.1f" % a[0] for a in answers(port))))
                    finally:
                        d.kill_all()
            finally:
                slow.stop()
    finally:
        dc.stop()


def test_unreachable_site_keeps_the_builtin_shape():
    dead = free_port()
    dc = FakeDC()
    port = free_port()
    d = Daemon(workers=1, listeners=[listener_conf(
        "main", port, tls_domain=DOMAIN, fronting="127.0.0.1:%d" % dead)],
        extra='backend = "direct";\n' + telegram_conf({2: dc.port}))
    d.port = port
    try:
        d.start()
        line = d.wait_log("TLS profile of 127.0.0.1:%d: cannot connect" %
                          dead, 30)
        check("refused" in line, line)
        # Still served, with the built-in shape: key_share first, x25519,
        # the middle of tls.cert_len_* (3600) plus at most 8 bytes.
        ours = flights(port, SECRET, 5)
        for o in ours:
            check(o[2] == "0x001d" and o[4] == "51,43" and
                  abs(int(o[6]) - 3600) <= 8, "built-in shape: %r" % (o,))
    finally:
        d.kill_all()
        dc.stop()


if __name__ == "__main__":
    run_tests([
        test_learns_nginx,
        test_learns_gnutls,
        test_reload_in_place_to_another_site,
        test_per_sni_sites,
        test_every_option_on,
        test_record_sizing,
        test_split_hello_and_handshake_mss,
        test_hello_delay,
        test_unreachable_site_keeps_the_builtin_shape,
    ])
