"""Logs (issue 11): every process logs where the supervisor does, also
after it daemonized.

A daemon started without -f, with log.target = "stderr", detaches and
logs to syslog. The test points log.syslog_socket at a datagram socket
of its own, so the daemon's syslog lines come here and nothing reaches
the machine's logger.
"""
import os
import re
import signal
import socket
import subprocess
import time

from mtp import (MTPROTOD, Daemon, FakeDC, check, run_tests, tclient,
                 telegram_conf, wait_for)


class FakeSyslog:
    """A datagram socket that collects what syslog(3) sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.1)
        self.lines = []

    def read(self):
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode(
                    errors="replace"))
            except socket.timeout:
                return self.lines

    def has(self, rx):
        return [l for l in self.read() if re.search(rx, l)]

    def close(self):
        self.sock.close()


def start_detached(d, devlog):
    """mtprotod -c CONF (no -f), its syslog at devlog; the supervisor's
    pid, once it has detached."""
    d.write_config(open(d.conf).read().replace(
        "log = { ", 'log = { syslog_socket = "%s"; ' % devlog, 1))
    r = subprocess.run([MTPROTOD, "-c", d.conf], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, "could not start it detached: %s%s" % (
        r.stdout, r.stderr))
    return int(wait_for(lambda: os.path.exists(d.pidfile) and
                        open(d.pidfile).read().strip(), 10,
                        what="the pidfile"))


def test_detached_children_log_to_syslog():
    dc = FakeDC()
    d = Daemon(workers=2, extra=telegram_conf({2: dc.port}))
    d.write_config(open(d.conf).read().replace(
        'log = { target = "%s"; level = "debug"; };' % d.log,
        'log = { target = "stderr"; level = "info"; };'))
    devlog = os.path.join(d.tmp, "devlog")
    log = FakeSyslog(devlog)
    pid = None
    try:
        pid = start_detached(d, devlog)
        # The supervisor, each worker and the dcpool, each with its pid.
        for rx in (r"mtprotod\[%d\]: " % pid,
                   r"mtprotod\[\d+\]: .*worker 0 serving",
                   r"mtprotod\[\d+\]: .*worker 1 serving",
                   r"mtprotod\[\d+\]: .*dcpool serving"):
            wait_for(lambda: log.has(rx), 10,
                     what="syslog line %r in %r" % (rx, log.lines[-8:]))
        for line in log.has(r"worker \d serving|dcpool serving"):
            check("mtprotod[%d]" % pid not in line,
                  "a child's line with the supervisor's pid: %s" % line)
        # LOG_DAEMON (3 << 3): <PRI> is 24 + severity.
        for line in log.read():
            m = re.match(r"<(\d+)>", line)
            check(m and int(m.group(1)) >> 3 == 3, "facility: %s" % line)
        # And it serves, detached.
        r = tclient(d.port, "secure", "reqpq")
        check(r.ok, str(r))
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        log.close()
        dc.stop()


def test_json_lines_in_a_file():
    # log.format = "json": one object per line, from every process, with
    # time, level, ident, pid and the message (quotes escaped).
    import json
    dc = FakeDC()
    d = Daemon(workers=2, extra=telegram_conf({2: dc.port}))
    d.write_config(open(d.conf).read().replace(
        'level = "debug"; };', 'level = "debug"; format = "json"; };'))
    try:
        d.start()
        r = tclient(d.port, "tls", "reqpq", domain="www.example.com")
        check(r.ok, str(r))
        wait_for(lambda: d.log_has('ClientHello on main for'), 10,
                 what="the fingerprint line")
        pids, hello = set(), None
        for line in d.read_log().splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                check(False, "not JSON: %r" % line)
            check(set(o) == {"time", "level", "ident", "pid", "msg"} and
                  re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"
                           r"[+-]\d\d:\d\d$", o["time"]) and
                  o["ident"] == "mtprotod", o)
            pids.add(o["pid"])
            if "ClientHello on main" in o["msg"]:
                hello = o
        check(len(pids) >= 4, "lines from %d processes" % len(pids))
        check(hello and 'for "www.example.com": JA3 ' in hello["msg"] and
              hello["level"] == "debug", hello)
    finally:
        d.kill_all()
        dc.stop()


def test_syslog_facility_and_json():
    import json
    dc = FakeDC()
    d = Daemon(workers=1, extra=telegram_conf({2: dc.port}))
    d.write_config(open(d.conf).read().replace(
        'log = { target = "%s"; level = "debug"; };' % d.log,
        'log = { target = "syslog"; level = "info"; format = "json"; '
        'facility = "local3"; };'))
    devlog = os.path.join(d.tmp, "devlog")
    log = FakeSyslog(devlog)
    pid = None
    try:
        pid = start_detached(d, devlog)
        wait_for(lambda: log.has(r"worker 0 serving"), 10,
                 what="the worker's line in %r" % log.lines[-5:])
        for line in log.read():
            m = re.match(r"<(\d+)>.*?mtprotod\[\d+\]: (.*)$", line)
            check(m and int(m.group(1)) >> 3 == 19, "facility: %s" % line)
            o = json.loads(m.group(2))
            check(set(o) == {"level", "msg"}, o)
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists("/proc/%d" % pid), 20,
                     what="the daemon gone")
        log.close()
        dc.stop()


if __name__ == "__main__":
    run_tests([test_detached_children_log_to_syslog,
               test_json_lines_in_a_file, test_syslog_facility_and_json])
