"""PROXY protocol on a listener (issue 10), behind a real HAProxy (Debian
haproxy, on 127.0.0.1) with send-proxy (v1) and send-proxy-v2: clients
get through; the address in the header is the one mtprotod logs and
fronts with; a connection without a header, or from an untrusted
address, is closed."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from mtp import (WRONG_SECRET, Daemon, FakeDC, FrontSite, check, free_port,
                 listener_conf, metrics, run_tests, tclient, telegram_conf,
                 wait_for)


class HAProxy:
    """haproxy in the foreground: one TCP frontend per entry of
    servers ({name: (backend port, "send-proxy" | "send-proxy-v2")})."""

    def __init__(self, servers):
        binary = shutil.which("haproxy")
        check(binary, "haproxy not installed (apt-get install haproxy): "
                      "the test command installs it")
        self.dir = tempfile.mkdtemp(prefix="mtp-haproxy-")
        self.ports = {}
        conf = ["global", "  maxconn 1000", "defaults", "  mode tcp",
                "  timeout connect 5s", "  timeout client 60s",
                "  timeout server 60s"]
        for name, (backend, how) in servers.items():
            self.ports[name] = free_port()
            conf += ["listen %s" % name,
                     "  bind 127.0.0.1:%d" % self.ports[name],
                     "  server s1 127.0.0.1:%d %s" % (backend, how)]
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.log = open(os.path.join(self.dir, "haproxy.log"), "w")
        self.proc = subprocess.Popen([binary, "-db", "-f", path],
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for port in self.ports.values():
            def up():
                check(self.proc.poll() is None, "haproxy exited: %s" %
                      open(os.path.join(self.dir, "haproxy.log")).read())
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    return True
                except OSError:
                    return False
            wait_for(up, 10, what="haproxy listening")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


def garbage_from(port, source):
    """64 random bytes from a source address of our choice; the reply
    (b"" on a close, None when held)."""
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(os.urandom(64))
    s.settimeout(1.5)
    try:
        return s.recv(100), s.getsockname()[1]
    except socket.timeout:
        return None, s.getsockname()[1]
    except ConnectionResetError:
        return b"", s.getsockname()[1]
    finally:
        s.close()


def test_behind_haproxy():
    site = FrontSite()
    dc = FakeDC()
    port, strict, mport = free_port(), free_port(), free_port()
    d = Daemon(workers=2, listeners=[
        listener_conf("pp", port, fronting="127.0.0.1:%d" % site.port,
                      extra='proxy_protocol = "any";'),
        listener_conf("strict", strict, extra='proxy_protocol = "v1"; '
                      'proxy_protocol_trusted = [ "10.0.0.0/8" ];')],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 3;\n"
        'tls = { profile = "static"; };\n'
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    ha = None
    try:
        d.start()
        ha = HAProxy({"v1": (port, "send-proxy"),
                      "v2": (port, "send-proxy-v2")})
        # Clients of every kind, through either version.
        for name in ("v1", "v2"):
            for proto in ("tls", "secure", "abridged"):
                r = tclient(ha.ports[name], proto, "reqpq", conns=2)
                check(r.ok, "%s through %s: %s" % (proto, name, r))
        # The client's own address (127.0.0.2) is the one logged.
        got, sport = garbage_from(ha.ports["v2"], "127.0.0.2")
        check(got is None, "a bad client is held, not answered: %r" % got)
        d.wait_log("PROXY v2 header on pp: the client is 127.0.0.2:%d" %
                   sport, 5)
        d.wait_log("127.0.0.2:%d: bad client on pp" % sport, 5)
        got, sport = garbage_from(ha.ports["v1"], "127.0.0.3")
        d.wait_log("PROXY v1 header on pp: the client is 127.0.0.3:%d" %
                   sport, 5)
        # A fronted probe: the site gets the client's bytes, no header.
        before = len(site.received)
        r = tclient(ha.ports["v2"], "tls", "probe", secret=WRONG_SECRET,
                    timeout=5)
        check("GOT-DATA" in r.out, str(r))
        wait_for(lambda: len(site.received) > before, 5, what="fronted")
        check(site.received[-1][:1] == b"\x16",
              "the site got %r" % site.received[-1][:20])
        # Straight to the listener, without a header: closed at once.
        t0 = time.time()
        got, _ = garbage_from(port, "127.0.0.1")
        check(got == b"" and time.time() - t0 < 1.4,
              "no header: %r after %.1f s" % (got, time.time() - t0))
        d.wait_log("no valid PROXY header on pp: closed", 5)
        # From an address outside proxy_protocol_trusted: closed.
        got, _ = garbage_from(strict, "127.0.0.1")
        check(got == b"", "untrusted: %r" % got)
        d.wait_log("not in proxy_protocol_trusted of strict: closed", 5)
        m = metrics(mport)
        check(m.get('mtprotod_handshake_failures_total{reason='
                    '"proxy_header"}') == 2, "metrics: %r" % {
                        k: v for k, v in m.items() if "failures" in k})
    finally:
        if ha:
            ha.stop()
        d.kill_all()
        dc.stop()
        site.stop()


def test_access_lists():
    # access.deny (global, from a file) and a listener's access.allow:
    # a refused client is a bad client (held; fronted on fake TLS, its
    # hello reaching the site even with the right secret); the others
    # are served. Behind HAProxy the header's address is the one judged.
    site = FrontSite()
    dc = FakeDC()
    tmp = tempfile.mkdtemp(prefix="mtp-acl-")
    deny = os.path.join(tmp, "deny.txt")
    with open(deny, "w") as f:
        f.write("# refused\n127.0.0.2\n10.0.0.0/8\n")
    mixed, tlsonly, only3, mport = (free_port(), free_port(), free_port(),
                                    free_port())
    d = Daemon(workers=2, listeners=[
        listener_conf("mixed", mixed, extra='proxy_protocol = "any";'),
        listener_conf("tls", tlsonly, ["fake_tls"],
                      fronting="127.0.0.1:%d" % site.port),
        listener_conf("only3", only3,
                      extra='access = { allow = [ "127.0.0.3" ]; };')],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 3;\n"
        'tls = { profile = "static"; };\n'
        'access = { deny_file = "%s"; };\n'
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % (deny, mport))
    ha = None
    try:
        d.start()
        ha = HAProxy({"v2": (mixed, "send-proxy-v2")})
        r = tclient(ha.ports["v2"], "secure", "reqpq")
        check(r.ok, "allowed through haproxy: %s" % r)
        got, sport = garbage_from(ha.ports["v2"], "127.0.0.2")
        check(got is None, "refused: held, not answered: %r" % got)
        d.wait_log("127.0.0.2:%d: bad client on mixed: refused by access" %
                   sport, 5)
        # On a fake-TLS port a refused client is fronted from its first
        # byte (it is a prober to us); others are served.
        before = len(site.received)
        r = tclient(tlsonly, "tls", "reqpq")
        check(r.ok, "from 127.0.0.1: %s" % r)
        r = subprocess.run(
            ["python3", "-c", "import socket,sys;"
             "s=socket.socket();s.bind(('127.0.0.2',0));"
             "s.connect(('127.0.0.1',%d));"
             "s.sendall(b'\\x16\\x03\\x01\\x00\\x05hello');"
             "s.settimeout(3);print(s.recv(100))" % tlsonly],
            capture_output=True, text=True, timeout=20)
        check("front-site-marker" in r.stdout, "refused TLS: %s %s" % (
            r.stdout, r.stderr))
        wait_for(lambda: len(site.received) > before, 5, what="fronted")
        # The listener's own allow list: only 127.0.0.3.
        got, _ = garbage_from(only3, "127.0.0.1")
        check(got is None, "not allowed: held: %r" % got)
        d.wait_log(re.compile(r"127\.0\.0\.1:\d+: bad client on only3: "
                              r"refused by access"), 5)
        m = metrics(mport)
        check(m.get('mtprotod_handshake_failures_total{reason="denied"}')
              >= 3, "metrics: %r" % m.get(
                  'mtprotod_handshake_failures_total{reason="denied"}'))
    finally:
        if ha:
            ha.stop()
        d.kill_all()
        dc.stop()
        site.stop()


if __name__ == "__main__":
    run_tests([test_behind_haproxy, test_access_lists])
