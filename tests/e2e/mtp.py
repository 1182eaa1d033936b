"""Shared helpers for mtprotod's end-to-end tests.

Each test starts the real daemon (the binary named by $MTPROTOD) on
127.0.0.1 with a temporary config, and looks at it from the outside: its
processes (/proc), its sockets, its log, and what a client sees.
"""
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

MTPROTOD = os.environ.get("MTPROTOD", os.path.abspath("mtprotod"))
PEERS_DIR = os.environ.get("PEERS_DIR", os.path.abspath("tests/peers"))
SRCDIR = os.environ.get("SRCDIR", os.path.abspath("."))

SECRET = "0123456789abcdef0123456789abcdef"


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout=10.0, step=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TestFailure("timed out waiting for " + what)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None


def proc_ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return None


def children_of(ppid):
    """{pid: title} of the live children of ppid."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if proc_ppid(pid) == ppid:
            t = proc_title(pid)
            if t is not None:
                out[pid] = t
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def socket_fds(pid):
    """Number of socket descriptors a process holds."""
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(
                        "socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        return -1
    return n


class Daemon:
    """A running mtprotod with a temporary directory and config."""

    def __init__(self, config_body=None, workers=2, listeners=None,
                 extra="", tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="mtprotod-e2e-")
        self.port = free_port()
        self.log = os.path.join(self.tmp, "mtprotod.log")
        self.pidfile = os.path.join(self.tmp, "mtprotod.pid")
        self.conf = os.path.join(self.tmp, "mtprotod.conf")
        self.workers = workers
        self.proc = None
        if config_body is None:
            config_body = self.make_config(workers=workers,
                                           listeners=listeners, extra=extra)
        self.write_config(config_body)

    def make_config(self, workers=2, listeners=None, extra="",
                    protocols='"classic", "secure", "fake_tls"'):
        if listeners is None:
            listeners = [("main", "127.0.0.1", self.port)]
        ls = []
        for entry in listeners:
            if isinstance(entry, str):
                ls.append(entry)
                continue
            if isinstance(entry, dict):
                ls.append(listener_conf(**entry))
                continue
            name, addr, port = entry
            ls.append("""  {
    name = "%s"; address = "%s"; port = %d;
    protocols = [ %s ];
    tls_domain = "www.example.com";
    fronting = "127.0.0.1:9";
    users = ( { name = "alice"; secret = "%s"; } );
  }""" % (name, addr, port, protocols, SECRET))
        # Nothing asks public STUN servers or URLs from a test; those
        # that test discovery give their own network group.
        if not re.search(r"^\s*network\s*=", extra, re.M):
            extra += "\nnetwork = { discover = false; };\n"
        return """# written by tests/e2e
user = "nobody";
group = "nogroup";
workers = %s;
pidfile = "%s";
state_dir = "%s";
shutdown_timeout = 20;
log = { target = "%s"; level = "debug"; };
listeners = (
%s
);
%s
""" % (workers if isinstance(workers, int) else '"%s"' % workers,
            self.pidfile, os.path.join(self.tmp, "state"), self.log,
            ",\n".join(ls), extra)

    def write_config(self, body):
        with open(self.conf, "w") as f:
            f.write(body)

    def start(self, args=(), wait=True, env=None):
        """env: variables added to ours (e.g. a moved clock)."""
        self.proc = subprocess.Popen(
            [MTPROTOD, "-f", "-c", self.conf] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, **env) if env else None)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, n=None, timeout=15):
        n = self.workers if n is None else n

        def ready():
            ws = self.workers_now()
            served = len(re.findall(r"worker \d+ serving",
                                    self.read_log()))
            return len(ws) >= n and self.dcpool_pid() and served >= n
        wait_for(lambda: self.proc.poll() is not None or ready(),
                 timeout, what="daemon ready")
        check(self.proc.poll() is None,
              "daemon exited at start: %s" % self.output())

    def output(self):
        if self.proc.poll() is not None:
            return self.proc.stdout.read().decode(errors="replace")
        return ""

    def kids(self):
        return children_of(self.pid)

    def workers_now(self):
        return {pid: t for pid, t in self.kids().items()
                if t.startswith("mtprotod: worker")}

    def worker_slots(self):
        """{slot: [pids]}"""
        out = {}
        for pid, t in self.workers_now().items():
            m = re.match(r"mtprotod: worker (\d+)", t)
            if m:
                out.setdefault(int(m.group(1)), []).append(pid)
        return out

    def dcpool_pid(self):
        for pid, t in self.kids().items():
            if t == "mtprotod: dcpool":
                return pid
        return None

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_has(self, text):
        """The first log line that contains text (or matches a regex
        given as a compiled pattern), else None."""
        for line in self.read_log().splitlines():
            if (text.search(line) if hasattr(text, "search")
                    else text in line):
                return line
        return None

    def wait_log(self, text, timeout=10):
        return wait_for(lambda: self.log_has(text), timeout,
                        what="log line %r" % (text,))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("daemon did not stop on SIGTERM")

    def kill_all(self):
        if self.proc and self.proc.poll() is None:
            pids = list(self.kids())
            self.proc.kill()
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()


def connect(port, host="127.0.0.1", timeout=5):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def is_open(s, wait=0.05):
    """True if the peer has not closed s (no EOF, no reset)."""
    import select
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return True
    try:
        data = s.recv(1, socket.MSG_PEEK)
        return len(data) > 0
    except OSError:
        return False


# ---------------------------------------------------------------- peers
# Helpers for the tests that talk to the daemon through the test peers
# (tests/peers/fake_dc and tclient) and look at what crossed it.

PROTOS = ("abridged", "intermediate", "secure", "tls")
WRONG_SECRET = "fedcba9876543210fedcba9876543210"


def listener_conf(name, port, protocols=("classic", "secure", "fake_tls"),
                  secrets=(SECRET,), tls_domain="www.example.com",
                  fronting="127.0.0.1:9", address="127.0.0.1", extra=""):
    """One listener block for Daemon(listeners=[...]) (a dict with these
    keys works as well)."""
    users = ", ".join('{ name = "u%d"; secret = "%s"; }' % (i, sec)
                      for i, sec in enumerate(secrets))
    fr = 'fronting = "%s";' % fronting if fronting else ""
    return """  {
    name = "%s"; address = "%s"; port = %d;
    protocols = [ %s ];
    tls_domain = "%s";
    %s
    users = ( %s );
    %s
  }""" % (name, address, port, ", ".join('"%s"' % p for p in protocols),
          tls_domain, fr, users, extra)


def telegram_conf(dcs, default_dc=2):
    """telegram = {...} pointing DC ids at local ports: {id: port}."""
    return "telegram = {\n  dc = ( %s );\n  default_dc = %d;\n};\n" % (
        ", ".join('{ id = %d; address = "127.0.0.1:%d"; }' % (i, p)
                  for i, p in sorted(dcs.items())), default_dc)


def peer_bin(name):
    path = os.path.join(PEERS_DIR, name)
    check(os.access(path, os.X_OK), "test peer %s not built" % path)
    return path


class FakeDC:
    """tests/peers/fake_dc in one of its modes; .port once started."""

    def __init__(self, mode="packets", source_bytes=None, tmp=None,
                 host=None):
        self.mode = mode
        self.tmp = tmp or tempfile.mkdtemp(prefix="fake-dc-")
        self.errfile = os.path.join(self.tmp, "fake_dc-%s-%d.log" % (
            mode, id(self)))
        args = [peer_bin("fake_dc"), "--port", "0", "--mode", mode]
        if source_bytes is not None:
            args += ["--source-bytes", str(source_bytes)]
        if host:
            args += ["--host", host]
        self.err = open(self.errfile, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.err,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"READY (\d+)", line)
        check(m, "fake_dc did not start: %r %s" % (line, self.log()))
        self.port = int(m.group(1))

    def log(self):
        try:
            with open(self.errfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def conns(self):
        """[(tag, dc)] of the connections that sent a valid header."""
        return [(m.group(1), int(m.group(2))) for m in re.finditer(
            r"conn \d+ tag ([0-9a-f]{8}) dc (-?\d+)", self.log())]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def write_proxy_secret(directory, nbytes=128):
    """A random middle-proxy secret file (spec B.2.1) in directory, readable
    by the dcpool (it runs as an unprivileged user). Returns its path."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "proxy-secret.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(nbytes))
    os.chmod(path, 0o644)
    return path


def write_proxy_config(directory, dcs, default_dc=2,
                       name="proxy-multi.conf", host="127.0.0.1"):
    """A proxy-multi.conf (spec B.2.1): dcs = {dc: port or [ports]}, one
    proxy_for line per port of host (an IPv6 host goes in brackets), and
    default default_dc. Returns its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(proxy_config_text(dcs, default_dc, host))
    os.chmod(path, 0o644)
    return path


def proxy_config_text(dcs, default_dc=2, host="127.0.0.1"):
    """The text of write_proxy_config()."""
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    lines = ["# written by tests/e2e"]
    for dc, ports in sorted(dcs.items()):
        for port in (ports if isinstance(ports, (list, tuple)) else
                     [ports]):
            lines.append("proxy_for %d %s:%d;" % (dc, host, port))
    lines.append("default %d;" % default_dc)
    return "\n".join(lines) + "\n"


class FakeMP:
    """tests/peers/fake_mp, a stand-in for Telegram's middle proxies:
    .port (RPC links), .ctl_port (control), commands via .cmd() and the
    helpers below. mode "echo" or "sink"."""

    def __init__(self, secret_file, mode="echo", no_pong=False,
                 verbose=False, tmp=None, host=None, seen_ip=None,
                 crc32c=False):
        self.mode = mode
        self.tmp = tmp or tempfile.mkdtemp(prefix="fake-mp-")
        self.errfile = os.path.join(self.tmp, "fake_mp-%s-%d.log" % (
            mode, id(self)))
        args = [peer_bin("fake_mp"), "--port", "0", "--control-port", "0",
                "--secret-file", secret_file, "--mode", mode]
        if no_pong:
            args.append("--no-pong")
        if verbose:
            args.append("--verbose")
        if host:
            args += ["--host", host]
        if seen_ip:
            args += ["--seen-ip", seen_ip]
        if crc32c:
            args.append("--crc32c")  # take CRC32C when asked
        self.err = open(self.errfile, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.err,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"READY (\d+) (\d+)", line)
        check(m, "fake_mp did not start: %r %s" % (line, self.log()))
        self.port = int(m.group(1))
        self.ctl_port = int(m.group(2))

    def log(self):
        try:
            with open(self.errfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cmd(self, line, timeout=10):
        """One control command; its JSON answer as a dict."""
        import json
        with socket.create_connection(("127.0.0.1", self.ctl_port),
                                      timeout=timeout) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(1 << 20)
                if not d:
                    break
                buf += d
        check(buf.endswith(b"\n"), "fake_mp: no answer to %r" % line)
        return json.loads(buf.decode())

    def ok(self, line):
        r = self.cmd(line)
        check(r.get("ok") is True or "closed" in r,
              "fake_mp %r: %r" % (line, r))
        return r

    def stats(self):
        return self.cmd("stats")

    def conns(self):
        """{conn_id hex: {...}} of every conn seen since the last reset."""
        return self.stats()["conns"]

    def rotate(self, which="all"):
        return self.ok("rotate %s" % which)["closed"]

    def ack(self, conn_id, confirm):
        return self.ok("ack %s %08x" % (conn_id, confirm))

    def close_ext(self, conn_id):
        return self.ok("close_ext %s" % conn_id)

    def ping(self):
        return self.ok("ping")

    def hold(self, on):
        return self.ok("hold %d" % (1 if on else 0))

    def reset(self):
        return self.ok("reset")

    def wait_links(self, n, timeout=10):
        """Wait until at least n links are ready; the stats then."""
        def ready():
            st = self.stats()
            up = [l for l in st["open_links"] if l["state"] == "ready"]
            return st if len(up) >= n else None
        return wait_for(ready, timeout, what="%d ready fake_mp links" % n)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def metrics(port, host="127.0.0.1", timeout=5):
    """The daemon's Prometheus text at http://host:port/metrics as
    {name: value} (unlabelled samples)."""
    import urllib.request
    with urllib.request.urlopen("http://%s:%d/metrics" % (host, port),
                                timeout=timeout) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


class TClientResult:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def ok(self):
        return self.rc == 0

    @property
    def lines(self):
        return [l for l in self.out.splitlines() if l.strip()]

    def __str__(self):
        return "tclient %s -> rc %s\n%s%s" % (
            " ".join(self.args), self.rc, self.out,
            self.err[-3000:])


def tclient(port, proto, test="reqpq", secret=SECRET, timeout=30,
            wait=None, **opts):
    """Run tclient (opts: dc, conns, bytes, packet, record, replay,
    ts_offset, hello_len, domain, host, interval, rounds, hold; a value
    of True is a flag without argument, e.g. quickack=True) and return a
    TClientResult.
    With wait=False returns the Popen (stdout/stderr pipes)."""
    args = ["--port", str(port), "--secret", secret, "--proto", proto,
            "--timeout", str(timeout)]
    if test and "replay" not in opts:
        args += ["--test", test]
    for k, v in opts.items():
        if v is True:
            args.append("--" + k.replace("_", "-"))
        elif v is not None and v is not False:
            args += ["--" + k.replace("_", "-"), str(v)]
    cmd = [peer_bin("tclient")] + args
    if wait is False:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=timeout + 60)
    return TClientResult(args, p.returncode, p.stdout, p.stderr)


def tclient_wait(popen, timeout=120):
    out, err = popen.communicate(timeout=timeout)
    return TClientResult(popen.args[1:], popen.returncode,
                         out.decode(errors="replace"),
                         err.decode(errors="replace"))


def log_pids(daemon, pattern):
    """{pid: count} of the daemon's log lines matching the regex."""
    out = {}
    rx = re.compile(pattern)
    for line in daemon.read_log().splitlines():
        m = re.search(r"\[(\d+)\] \w+: ", line)
        if m and rx.search(line):
            pid = int(m.group(1))
            out[pid] = out.get(pid, 0) + 1
    return out


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def read_until_close(s, timeout):
    """(bytes received, seconds until EOF/reset or None if still open)."""
    import select
    t0 = time.time()
    got = b""
    while True:
        left = timeout - (time.time() - t0)
        if left <= 0:
            return got, None
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        try:
            data = s.recv(65536)
        except OSError:
            return got, time.time() - t0
        if not data:
            return got, time.time() - t0
        got += data


class FrontSite:
    """A stand-in for the fronted web site: accepts, sends a marker,
    records what each connection sent (.received: list of bytes)."""

    MARKER = b"HTTP/1.1 200 OK\r\nX-Front: site\r\n\r\nfront-site-marker\n"

    def __init__(self):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _serve(self, c):
        data = b""
        try:
            c.settimeout(1.0)
            c.sendall(self.MARKER)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.received.append(data)

    def _run(self):
        import threading
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.received)

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass


def asan_build():
    """True when the daemon under test is built with AddressSanitizer."""
    try:
        with open(MTPROTOD, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


@contextlib.contextmanager
def asan_without_quarantine():
    """ASan keeps freed memory in quarantine, which looks like growth to a
    memory test; daemons started inside run without it. Yields whether
    this is an ASan build (its allocator and shadow still cost more)."""
    saved = os.environ.get("ASAN_OPTIONS")
    asan = asan_build()
    if asan:
        os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + \
            "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    try:
        yield asan
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved


def run_tests(tests):
    """Run test functions; print one line each and a summary line.
    Exit status 1 if any failed."""
    passed = failed = 0
    for t in tests:
        t0 = time.time()
        try:
            t()
            passed += 1
            print("PASS %s (%.1fs)" % (t.__name__, time.time() - t0),
                  flush=True)
        except Exception as e:  # noqa: any failure fails the test
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
