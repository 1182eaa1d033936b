"""Binary upgrade (-s upgrade, SIGUSR2; issue 8): the running supervisor
runs the installed binary, which inherits the listening sockets and the
shared zones, starts its own dcpool and workers and takes every live
session over from the old workers; then the old supervisor exits and the
pidfile names the new one. A new binary that fails to start leaves the
old daemon serving."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import mtp
from test_handoff import Loop, expect_all_ok
from test_handoff import hold_clients as hold
from mtp import (SECRET, Daemon, FakeDC, alive, check, children_of,
                 free_port, listener_conf, run_tests, tclient, tclient_wait,
                 telegram_conf, wait_for)

MIB = 1 << 20


class Installed(Daemon):
    """A daemon run from its own copy of the binary (the "installed"
    file that an upgrade replaces), followed across upgrades through its
    pidfile."""

    def __init__(self, tmp_bin, **kw):
        super().__init__(**kw)
        self.binary = tmp_bin

    def start(self, args=(), wait=True):
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-c", self.conf] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def pidfile_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    @property
    def pid(self):
        if self.proc.poll() is None:
            return self.proc.pid
        return self.pidfile_pid()

    def kill_all(self):
        pids = set()
        for sup in (self.proc.pid, self.pidfile_pid()):
            if sup and alive(sup):
                pids.add(sup)
                pids |= set(children_of(sup))
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.wait()


def install(src, dst):
    """As make install does: a new file renamed over the old one."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dst)


class Setup:
    def __init__(self, workers=2):
        self.dc = FakeDC("packets")
        self.port = free_port()
        self.d = Installed("/nonexistent", workers=workers,
                           listeners=[listener_conf("main", 0)])
        self.bin = os.path.join(self.d.tmp, "sbin", "mtprotod")
        os.makedirs(os.path.dirname(self.bin))
        install(mtp.MTPROTOD, self.bin)
        self.d.binary = self.bin
        self.d.port = self.port
        self.conf = self.d.make_config(
            workers=workers, listeners=[listener_conf("main", self.port)],
            extra=telegram_conf({2: self.dc.port})).replace(
                "shutdown_timeout = 20;", "shutdown_timeout = 5;")
        self.d.write_config(self.conf)
        self.d.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()


def upgrade_cmd(s):
    p = subprocess.run([s.bin, "-c", s.d.conf, "-s", "upgrade"],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode == 0, "-s upgrade: %s" % p.stderr)


def test_upgrade_keeps_every_session():
    with Setup() as s:
        d = s.d
        old_sup = d.proc.pid
        old_workers = set(d.workers_now())
        procs = [(p, n, hold(s.port, p, n, rounds=30))
                 for p, n in (("intermediate", 40), ("secure", 40),
                              ("tls", 40))]
        # Bulk streams, again and again, so that some are mid-flight.
        bulk = [Loop(port=s.port, proto=p, test="echo", conns=2,
                     bytes=24 * MIB, packet=65536, timeout=60)
                for p in ("secure", "tls")]
        for t in bulk:
            t.start()
        try:
            time.sleep(2)
            install(mtp.MTPROTOD, s.bin)  # the "rebuilt" binary
            upgrade_cmd(s)
            d.wait_log("upgrade complete", 20)
            wait_for(lambda: d.proc.poll() is not None, 15,
                     what="the old supervisor to exit")
            check(d.proc.returncode == 0, "old supervisor exited with %d"
                  % d.proc.returncode)
            new_sup = d.pidfile_pid()
            check(new_sup not in (0, old_sup) and alive(new_sup),
                  "pidfile after the upgrade: %d (old %d)" % (new_sup,
                                                            old_sup))
            wait_for(lambda: not any(alive(p) for p in old_workers), 3,
                     what="the old workers to exit")
            new_workers = {p for p, t in children_of(new_sup).items()
                           if t.startswith("mtprotod: worker")}
            check(len(new_workers) == 2, "new workers: %r" %
                  children_of(new_sup))
            for t in bulk:
                t.stop.set()
            for p, n, proc in procs:
                r = tclient_wait(proc, 90)
                expect_all_ok(r, n, "%s streams across the upgrade" % p)
                rounds = len([l for l in r.lines
                              if l.startswith("RESPQ ok")])
                check(rounds == n * 30, "%s: %d round trips of %d" % (
                    p, rounds, n * 30))
            for t in bulk:
                res = t.finish()
                check(len(res) >= 1, "bulk runs: %d" % len(res))
                for r in res:
                    expect_all_ok(r, 2, "%s echo across the upgrade"
                                  % t.kw["proto"])
            # New connections go to the new daemon.
            r = tclient(s.port, "tls", "reqpq", conns=20)
            expect_all_ok(r, 20, "new clients after the upgrade")
            log = d.read_log()
            moved = sum(int(x) for x in re.findall(
                r"handoff done: (\d+) sessions moved, 0 kept", log))
            sys.stderr.write("  %d sessions moved to the new binary\n"
                             % moved)
            check(moved >= 120, "only %d sessions moved" % moved)
            # A reload of the new daemon still works.
            d.signal(signal.SIGHUP)
            d.wait_log(re.compile(r"\[%d\] notice: reload complete" %
                                  new_sup), 15)
        finally:
            for _, _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
            for t in bulk:
                t.stop.set()


def test_upgrade_moves_middle_links():
    """Middle mode across an upgrade: the links move with their clients
    to the new binary's workers."""
    from test_middle import MSetup
    with MSetup(workers=2, start=False) as s:
        body = open(s.d.conf).read().replace("shutdown_timeout = 20;",
                                             "shutdown_timeout = 5;")
        binary = os.path.join(s.d.tmp, "sbin", "mtprotod")
        os.makedirs(os.path.dirname(binary))
        install(mtp.MTPROTOD, binary)
        d = Installed(binary, config_body=body, workers=2, tmp=s.d.tmp)
        d.port = s.port
        s.d = d
        d.start()
        old_sup = d.proc.pid
        procs = [(p, n, hold(s.port, p, n, rounds=24))
                 for p, n in (("intermediate", 30), ("secure", 30),
                              ("tls", 30))]
        bulk = Loop(port=s.port, proto="secure", test="echo", conns=2,
                    bytes=8 * MIB, packet=65536, timeout=60)
        bulk.start()
        try:
            time.sleep(2)
            before = s.metrics()["mtprotod_connections_accepted_total"]
            install(mtp.MTPROTOD, binary)
            p = subprocess.run([binary, "-c", d.conf, "-s", "upgrade"],
                               capture_output=True, text=True, timeout=10)
            check(p.returncode == 0, "-s upgrade: %s" % p.stderr)
            d.wait_log("upgrade complete", 20)
            wait_for(lambda: d.proc.poll() is not None, 15,
                     what="the old supervisor to exit")
            check(d.pidfile_pid() not in (0, old_sup), "pidfile")
            # The new binary's dcpool serves the same page, from the
            # same counters (the zone moved with the upgrade).
            after = s.metrics()["mtprotod_connections_accepted_total"]
            check(after >= before >= 90, "accepted: %r before the "
                  "upgrade, %r after" % (before, after))
            bulk.stop.set()
            for p, n, proc in procs:
                r = tclient_wait(proc, 90)
                expect_all_ok(r, n, "middle %s streams across the upgrade"
                              % p)
            for r in bulk.finish():
                expect_all_ok(r, 2, "middle echo across the upgrade")
            log = d.read_log()
            lost = sum(int(x) for x in re.findall(
                r"middle-proxy links moved with \d+ clients \((\d+) lost\)",
                log))
            moved = sum(int(x) for x in re.findall(
                r"middle-proxy links moved with (\d+) clients", log))
            check(moved >= 90 and lost == 0,
                  "%d clients moved with their links, %d lost" % (moved,
                                                                 lost))
            check("moved from link" not in s.mp.log(),
                  "clients reached the middle proxy over other links")
        finally:
            bulk.stop.set()
            for _, _, proc in procs:
                if proc.poll() is None:
                    proc.kill()


def test_failed_upgrade_keeps_serving():
    with Setup() as s:
        d = s.d
        sup = d.proc.pid
        workers = set(d.workers_now())
        procs = [hold(s.port, "tls", 30, rounds=24),
                 hold(s.port, "secure", 30, rounds=24)]
        try:
            time.sleep(1)
            # 1. The installed binary fails its config check: the
            # file now has an error (the running daemon keeps its own).
            d.write_config(s.conf.replace("workers = 2;",
                                          "workers = -1;"))
            os.kill(sup, signal.SIGUSR2)
            line = d.wait_log("upgrade failed", 15)
            check("exited with status 1" in line, line)
            d.write_config(s.conf)
            # 2. An installed "binary" that cannot even start.
            with open(s.bin + ".new", "w") as f:
                f.write("#!/bin/sh\necho broken >&2\nexit 3\n")
            os.chmod(s.bin + ".new", 0o755)
            os.rename(s.bin + ".new", s.bin)
            os.kill(sup, signal.SIGUSR2)
            wait_for(lambda: len(re.findall("upgrade failed",
                                            d.read_log())) >= 2, 15,
                     what="the second upgrade to fail")
            check("exited with status 3" in d.read_log(),
                  "the log does not say how the new binary ended")
            time.sleep(0.5)
            check(d.proc.poll() is None, "the daemon stopped")
            check(d.pidfile_pid() == sup, "the pidfile changed")
            check(set(d.workers_now()) == workers,
                  "the workers changed: %r" % d.workers_now())
            for p, n in zip(procs, (30, 30)):
                r = tclient_wait(p, 60)
                expect_all_ok(r, n, "streams across failed upgrades")
            r = tclient(s.port, "tls", "reqpq", conns=10)
            expect_all_ok(r, 10, "new clients after the failed upgrades")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()


if __name__ == "__main__":
    run_tests([test_upgrade_keeps_every_session,
               test_upgrade_moves_middle_links,
               test_failed_upgrade_keeps_serving])
