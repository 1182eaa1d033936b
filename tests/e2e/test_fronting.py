"""Domain fronting against a real web server (nginx): whatever is not a
valid fake-TLS client of ours reaches nginx untouched, and a prober sees
nginx's site through mtprotod's port (spec A.4.8)."""
import os
import re
import socket
import subprocess
import tempfile
import time

from mtp import (SECRET, WRONG_SECRET, Daemon, FakeDC, check, connect,
                 free_port, listener_conf, read_until_close, run_tests,
                 tclient, telegram_conf, wait_for)
from nginx import PAGE_MARKER, Nginx

DOMAIN = "www.example.com"


class Setup:
    """nginx, a fake DC, and a daemon with a fake-TLS-only listener
    (.port) and a mixed one (.mixed) fronting to nginx, plus one whose
    fronting points at itself (.loop)."""

    def __init__(self):
        self.nginx = Nginx(DOMAIN).start()
        self.dc = FakeDC("packets")
        self.port, self.mixed, self.loop = (free_port(), free_port(),
                                            free_port())
        front = "127.0.0.1:%d" % self.nginx.port
        self.d = Daemon(workers=2, listeners=[
            listener_conf("tlsonly", self.port, ["fake_tls"],
                          tls_domain=DOMAIN, fronting=front),
            listener_conf("mixed", self.mixed,
                          ["classic", "secure", "fake_tls"],
                          tls_domain=DOMAIN, fronting=front),
            listener_conf("loop", self.loop, ["fake_tls"],
                          tls_domain=DOMAIN,
                          fronting="127.0.0.1:%d" % self.loop),
        ], extra=telegram_conf({2: self.dc.port}) +
            "handshake_timeout = 5;\n")
        self.d.port = self.port
        self.d.start()

    def __enter__(self):
        return self

    def __exit__(self, etype, *exc):
        import sys
        if etype is not None:
            lines = [l for l in self.d.read_log().splitlines()
                     if "libevent" not in l]
            sys.stderr.write("--- daemon log\n%s\n--- nginx error log\n%s\n"
                             % ("\n".join(lines[-30:]),
                                self.nginx.error_log()[-3000:]))
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()
            self.nginx.stop()


def curl(port, path="/"):
    r = subprocess.run(
        ["curl", "-sk", "--max-time", "10", "--resolve",
         "%s:%d:127.0.0.1" % (DOMAIN, port),
         "https://%s:%d%s" % (DOMAIN, port, path)],
        capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout


def handshakes_in(nginx):
    return len(re.findall(r"SSL handshak", nginx.error_log()))


def test_https_through_mtprotod_is_nginx():
    with Setup() as s:
        # control: nginx itself
        rc, page = curl(s.nginx.port)
        check(rc == 0 and PAGE_MARKER in page, "nginx direct: %r" % page)
        for port in (s.port, s.mixed):
            rc, page = curl(port, "/through-mtprotod-%d" % port)
            check(rc == 0, "curl through mtprotod exited %d" % rc)
            # nginx's 404 page for the path: still nginx answering
            check("nginx" in page, "not nginx's answer: %r" % page)
            rc, page = curl(port)
            check(rc == 0 and PAGE_MARKER in page,
                  "page through mtprotod port %d: %r" % (port, page))
            wait_for(lambda: "/through-mtprotod-%d" % port in
                     s.nginx.access_log(), 5,
                     what="the request in nginx's access log")
        # and the same port still serves Telegram clients
        for port in (s.port, s.mixed):
            r = tclient(port, "tls", "reqpq")
            check(r.ok, str(r))
        r = tclient(s.mixed, "secure", "reqpq")
        check(r.ok, str(r))


def test_wrong_secret_hello_reaches_nginx():
    with Setup() as s:
        for port in (s.port, s.mixed):
            n0 = handshakes_in(s.nginx)
            r = tclient(port, "tls", "probe", secret=WRONG_SECRET,
                        timeout=3)
            check(len(r.lines) == 1 and r.lines[0].startswith("GOT-DATA "),
                  "wrong-secret hello: %s" % r)
            n, data = r.lines[0].split()[1:3]
            # a TLS handshake record from nginx: 16 03 03, and it is not
            # our ServerHello (tclient would say GOT-SERVERHELLO)
            check(data.startswith("160303"), "not a TLS answer: %s" % r)
            check(int(n) > 200, "short answer: %s" % r)
            wait_for(lambda: handshakes_in(s.nginx) > n0, 5,
                     what="the handshake in nginx's error log")
        # control: the right secret gets mtprotod's own ServerHello
        r = tclient(s.port, "tls", "probe", timeout=3)
        check(r.lines == ["GOT-SERVERHELLO"], "right secret: %s" % r)
        # a hello from far in the past is fronted as well
        r = tclient(s.port, "tls", "probe", ts_offset=-7200, timeout=3)
        check(r.lines and r.lines[0].startswith("GOT-DATA 1") and
              r.lines[0].split()[2].startswith("160303"),
              "stale hello: %s" % r)


def test_replayed_hello_reaches_nginx():
    tmp = tempfile.mkdtemp(prefix="mtp-front-")
    rec = os.path.join(tmp, "hello.bin")
    with Setup() as s:
        r = tclient(s.port, "tls", "reqpq", record=rec)
        check(r.ok, str(r))
        r = tclient(s.port, "tls", None, replay=rec, conns=6, timeout=3)
        check(len(r.lines) == 6, "replay output: %s" % r)
        for line in r.lines:
            check(line.startswith("GOT-DATA ") and
                  line.split()[2].startswith("160303"),
                  "replayed hello not fronted to nginx: %s" % r)


def test_plain_http_on_tls_port_reaches_nginx():
    with Setup() as s:
        for port in (s.port,):
            c = connect(port)
            c.sendall(b"GET / HTTP/1.1\r\nHost: " + DOMAIN.encode() +
                      b"\r\nConnection: close\r\n\r\n")
            got, closed = read_until_close(c, 10)
            c.close()
            text = got.decode(errors="replace")
            check(text.startswith("HTTP/1.1 400"), "answer: %r" % text)
            check("plain HTTP request was sent to HTTPS port" in text,
                  "not nginx's answer: %r" % text)


def test_fronting_loop_is_refused():
    with Setup() as s:
        t0 = time.time()
        c = connect(s.loop)
        c.sendall(b"GET / HTTP/1.1\r\nHost: " + DOMAIN.encode() +
                  b"\r\n\r\n")
        got, closed = read_until_close(c, 8)
        c.close()
        check(got == b"", "loop listener answered %r" % got)
        check(closed is not None and closed < 3,
              "loop listener did not close the client (%r)" % closed)
        line = s.d.wait_log(re.compile(r"loop|itself"), 5)
        check("loop" in s.d.read_log(), "log line: " + line)
        # one client made one connection, not a storm
        time.sleep(0.5)
        accepted = len(re.findall(r"fronting loop", s.d.read_log()))
        check(accepted <= 2, "%d loop log lines for one client" % accepted)
        # the daemon still works
        r = tclient(s.port, "tls", "reqpq")
        check(r.ok, str(r))


def test_proxy_v2_header_reaches_the_site():
    # fronting_proxy_protocol = "v2": the site reads who asked (the
    # prober's address and port, the listener's) before the bytes.
    import struct
    from mtp import FrontSite
    site = FrontSite()
    dc = FakeDC("packets")
    port = free_port()
    d = Daemon(workers=1, listeners=[listener_conf(
        "pp", port, ["fake_tls"], tls_domain=DOMAIN,
        fronting="127.0.0.1:%d" % site.port,
        extra='fronting_proxy_protocol = "v2";')],
        extra=telegram_conf({2: dc.port}) + 'tls = { profile = "static"; };\n')
    d.port = port
    try:
        d.start()
        c = connect(port)
        me = c.getsockname()
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.settimeout(5)
        check(c.recv(100).startswith(b"HTTP/1.1 200"), "no site")
        c.close()
        wait_for(lambda: site.received, 5, what="the site's bytes")
        got = site.received[0]
        sig = b"\r\n\r\n\x00\r\nQUIT\n"
        check(got.startswith(sig), "no PROXY v2 signature: %r" % got[:32])
        ver, fam, ln = struct.unpack(">BBH", got[12:16])
        check(ver == 0x21 and fam == 0x11 and ln == 12,
              "PROXY v2 header %r" % got[:16])
        src = socket.inet_ntoa(got[16:20])
        dst = socket.inet_ntoa(got[20:24])
        sport, dport = struct.unpack(">HH", got[24:28])
        check((src, sport) == me, "source %s:%d, the client %r" % (
            src, sport, me))
        check((dst, dport) == ("127.0.0.1", port), "destination %s:%d" % (
            dst, dport))
        check(got[28:].startswith(b"GET / HTTP/1.1"),
              "the client's bytes do not follow: %r" % got[28:60])
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


def test_unknown_sni_front_drop_reject():
    # A probe whose SNI is not the listener's domain: fronted (default),
    # dropped, or rejected with nginx's unrecognized_name alert. One with
    # the listener's domain is fronted in every mode.
    from mtp import FrontSite
    site = FrontSite()
    dc = FakeDC("packets")
    ports = {m: free_port() for m in ("front", "drop", "reject")}
    d = Daemon(workers=1, listeners=[listener_conf(
        m, p, ["fake_tls"], tls_domain=DOMAIN,
        fronting="127.0.0.1:%d" % site.port,
        extra='unknown_sni = "%s";' % m) for m, p in ports.items()],
        extra=telegram_conf({2: dc.port}) + 'tls = { profile = "static"; };\n')
    try:
        d.start()
        for mode, port in ports.items():
            for sni, fronted in (("other.example.org", mode == "front"),
                                 (DOMAIN.upper(), True)):
                before = len(site.received)
                r = tclient(port, "tls", "probe", secret=WRONG_SECRET,
                            domain=sni, timeout=3)
                if fronted:
                    wait_for(lambda: len(site.received) > before, 5,
                             what="%s/%s fronted" % (mode, sni))
                    check("GOT-DATA" in r.out and "485454502f312e3120323030"
                          in r.out, "%s/%s: %s" % (mode, sni, r))
                    continue
                time.sleep(0.3)
                check(len(site.received) == before,
                      "%s/%s reached the site" % (mode, sni))
                if mode == "reject":
                    check("GOT-DATA 7 15030300020270" in r.out,
                          "reject: %s" % r)
                else:
                    check("CLOSED" in r.out, "drop: %s" % r)
        # Our clients pass whatever the mode.
        for port in ports.values():
            r = tclient(port, "tls", "reqpq", domain=DOMAIN)
            check(r.ok, str(r))
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


def test_rst_on_failed():
    # rst_on_failed: a failed handshake that is not fronted ends with a
    # RST: a held bad client at the handshake timeout, a dropped unknown
    # SNI. Without it, a FIN. A fronted one is the site's to end.
    from mtp import FrontSite
    site = FrontSite()
    dc = FakeDC("packets")
    rst, fin, drop = free_port(), free_port(), free_port()
    d = Daemon(workers=1, listeners=[
        listener_conf("rst", rst, ["classic", "secure"],
                      extra="rst_on_failed = true;"),
        listener_conf("fin", fin, ["classic", "secure"]),
        listener_conf("drop", drop, ["fake_tls"], tls_domain=DOMAIN,
                      fronting="127.0.0.1:%d" % site.port,
                      extra='unknown_sni = "drop"; rst_on_failed = true;')],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 2;\n" +
        'tls = { profile = "static"; };\n')

    def held(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(os.urandom(64))
            return s.recv(100)
        except ConnectionResetError:
            return "reset"
        finally:
            s.close()
    try:
        d.start()
        check(held(rst) == "reset", "rst_on_failed: not a reset")
        check(held(fin) == b"", "without rst_on_failed: not a FIN")
        r = tclient(drop, "tls", "probe", secret=WRONG_SECRET,
                    domain="other.example.org", timeout=5)
        check("RESET" in r.out, "unknown SNI dropped: %s" % r)
        # A wrong secret with the right name is fronted, as before.
        r = tclient(drop, "tls", "probe", secret=WRONG_SECRET,
                    domain=DOMAIN, timeout=5)
        check("GOT-DATA" in r.out, "fronted: %s" % r)
        r = tclient(rst, "secure", "reqpq")
        check(r.ok, str(r))
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


def _grease(v):
    return (v & 0x0f0f) == 0x0a0a and (v >> 8) == (v & 0xff)


def fingerprints_of(hello):
    """JA3 and JA4 of a ClientHello record, computed here from the
    published definitions, independently of the daemon's C code."""
    import hashlib
    import struct
    p = 5 + 4
    legacy = struct.unpack_from(">H", hello, p)[0]
    p += 2 + 32
    p += 1 + hello[p]
    n = struct.unpack_from(">H", hello, p)[0]
    suites = [struct.unpack_from(">H", hello, p + 2 + i)[0]
              for i in range(0, n, 2)]
    p += 2 + n
    p += 1 + hello[p]
    end = p + 2 + struct.unpack_from(">H", hello, p)[0]
    p += 2
    exts, groups, formats, sigs, alpn, versions = [], [], [], [], None, []
    while p + 4 <= end:
        t, ln = struct.unpack_from(">HH", hello, p)
        body = hello[p + 4:p + 4 + ln]
        p += 4 + ln
        exts.append(t)
        if t == 0x000a:
            groups = [struct.unpack_from(">H", body, 2 + i)[0]
                      for i in range(0, struct.unpack_from(">H", body)[0], 2)]
        elif t == 0x000b:
            formats = list(body[1:1 + body[0]])
        elif t == 0x000d:
            sigs = [struct.unpack_from(">H", body, 2 + i)[0]
                    for i in range(0, struct.unpack_from(">H", body)[0], 2)]
        elif t == 0x0010 and ln > 3:
            alpn = body[3:3 + body[2]].decode("latin-1")
        elif t == 0x002b:
            versions = [struct.unpack_from(">H", body, 1 + i)[0]
                        for i in range(0, body[0], 2)]
    suites = [x for x in suites if not _grease(x)]
    exts = [x for x in exts if not _grease(x)]
    ja3 = hashlib.md5(",".join([
        str(legacy), "-".join(map(str, suites)), "-".join(map(str, exts)),
        "-".join(str(g) for g in groups if not _grease(g)),
        "-".join(map(str, formats))]).encode()).hexdigest()
    vs = [v for v in versions if not _grease(v)]
    ver = max(vs) if vs else legacy
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11",
           0x0301: "10", 0x0300: "s3"}.get(ver, "00")
    a = "t%s%s%02d%02d%s" % (ver, "d" if 0 in exts else "i",
                             min(len(suites), 99), min(len(exts), 99),
                             alpn[0] + alpn[-1] if alpn else "00")

    def h12(text):
        return hashlib.sha256(text.encode()).hexdigest()[:12]
    b = h12(",".join("%04x" % x for x in sorted(suites)))
    c = ",".join("%04x" % x for x in sorted(exts)
                 if x not in (0x0000, 0x0010))
    if sigs:
        c += "_" + ",".join("%04x" % x for x in sigs)
    return ja3, "%s_%s_%s" % (a, b, h12(c))


def test_fingerprints_logged_and_counted():
    # Every fake-TLS ClientHello is fingerprinted: a debug line with its
    # JA3 and JA4, and mtprotod_tls_client_hellos_total by what became of
    # it. What the site got of a fronted one is fingerprinted here in
    # Python from the published definitions: the same JA3 and JA4.
    from mtp import FrontSite, metrics
    site = FrontSite()
    dc = FakeDC("packets")
    port, mport = free_port(), free_port()
    d = Daemon(workers=2, listeners=[listener_conf(
        "main", port, ["fake_tls"], tls_domain=DOMAIN,
        fronting="127.0.0.1:%d" % site.port,
        extra='unknown_sni = "drop";')],
        extra=telegram_conf({2: dc.port}) +
        'tls = { profile = "static"; };\n'
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    try:
        d.start()
        r = tclient(port, "tls", "reqpq", domain=DOMAIN, conns=3)
        check(r.ok, str(r))
        for _ in range(2):
            tclient(port, "tls", "probe", secret=WRONG_SECRET,
                    domain=DOMAIN, timeout=3)
        tclient(port, "tls", "probe", secret=WRONG_SECRET,
                domain="other.example.org", timeout=3)
        wait_for(lambda: len([x for x in site.received if x]) >= 2, 5,
                 what="two fronted hellos")
        ja3, ja4 = fingerprints_of(site.received[0])
        check(ja4.startswith("t13d") and len(ja3) == 32, (ja3, ja4))
        key = 'mtprotod_tls_client_hellos_total{ja4="%s",ja3="%s",' \
              'result="%%s"}' % (ja4, ja3)
        want = {"served": 3, "fronted": 2, "refused": 1}

        def counted():
            m = metrics(mport)
            return all(m.get(key % k) == v for k, v in want.items()) and m
        m = wait_for(counted, 10, what="the fingerprint counts")
        check(m.get('mtprotod_tls_client_hellos_total{ja4="other",'
                    'ja3="other",result="served"}') == 0, "other")
        line = d.wait_log("JA3 %s, JA4 %s" % (ja3, ja4), 5)
        check("ClientHello on main" in line, line)
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


if __name__ == "__main__":
    run_tests([
        test_unknown_sni_front_drop_reject,
        test_rst_on_failed,
        test_fingerprints_logged_and_counted,
        test_proxy_v2_header_reaches_the_site,
        test_https_through_mtprotod_is_nginx,
        test_wrong_secret_hello_reaches_nginx,
        test_replayed_hello_reaches_nginx,
        test_plain_http_on_tls_port_reaches_nginx,
        test_fronting_loop_is_refused,
    ])
