"""Session handoff on reload (issue 8): every reload that needs a new
generation of workers moves the live sessions of the old workers to the
new ones (descriptors over SCM_RIGHTS, cipher and record state, queued
bytes), so long-lived streams survive any number of reloads and no old
worker outlives its handoff."""
import re
import signal
import sys
import threading
import time

from mtp import (SECRET, Daemon, FakeDC, alive, check, free_port,
                 listener_conf, run_tests, tclient, tclient_wait,
                 telegram_conf, wait_for)

MIB = 1 << 20
SECRET2 = "ffeeddccbbaa99887766554433221100"


def reload(d):
    """SIGHUP; returns once the new generation serves."""
    n = len(re.findall("reload complete", d.read_log()))
    d.signal(signal.SIGHUP)
    wait_for(lambda: len(re.findall("reload complete", d.read_log())) > n,
             15, what="reload %d to complete" % (n + 1))


class Direct:
    """A daemon in direct mode to a fake DC, shutdown_timeout = 5."""

    def __init__(self, workers=2, listeners=None, hs_timeout=10):
        self.dc = FakeDC("packets")
        self.port = free_port()
        self.port2 = free_port()
        self.listeners = listeners or [
            listener_conf("main", self.port, secrets=(SECRET, SECRET2))]
        self.d = Daemon(workers=workers)
        self.d.port = self.port
        self.write(workers, hs_timeout)
        self.d.start()

    def write(self, workers, hs_timeout, listeners=None):
        body = self.d.make_config(
            workers=workers, listeners=listeners or self.listeners,
            extra=telegram_conf({2: self.dc.port}) +
            "handshake_timeout = %d;\n" % hs_timeout)
        body = body.replace("shutdown_timeout = 20;", "shutdown_timeout = 5;")
        self.d.write_config(body)

    def reload(self):
        reload(self.d)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()


def hold_clients(port, proto, n, rounds, interval=0.5, secret=SECRET):
    return tclient(port, proto, "hold", secret=secret, conns=n,
                   rounds=rounds, interval=interval, timeout=rounds *
                   interval + 40, wait=False)


def expect_all_ok(r, n, what):
    check(r.ok and ("%d/%d ok" % (n, n)) in r.out,
          "%s: %s\n%s" % (what, r.out[-300:], r.err[-1500:]))


class Loop(threading.Thread):
    """Runs tclient again and again until stopped; keeps every result."""

    def __init__(self, **kw):
        super().__init__(daemon=True)
        self.kw = kw
        self.results = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.results.append(tclient(**self.kw))

    def finish(self):
        self.stop.set()
        self.join(120)
        return self.results


def test_reloads_move_live_streams():
    with Direct(workers=2) as s:
        d = s.d
        # 200 long-lived clients doing verified round trips, in every
        # transport, over the 20 reloads below (40 s).
        groups = [("intermediate", 70), ("secure", 70), ("tls", 60)]
        procs = [(p, n, hold_clients(s.port, p, n, rounds=80))
                 for p, n in groups]
        # Bulk streams caught mid-flight (queued bytes, cipher and
        # record state), and a steady load of new handshakes.
        bulk = [Loop(port=s.port, proto=p, test="echo", conns=2,
                     bytes=24 * MIB, packet=65536, timeout=60)
                for p in ("secure", "tls", "abridged")]
        shakes = Loop(port=s.port, proto="tls", test="reqpq", conns=8,
                      timeout=30)
        threads = bulk + [shakes]
        for t in threads:
            t.start()
        seen = set()
        try:
            time.sleep(1)
            for i in range(20):
                seen |= set(d.workers_now())
                # Each reload changes what only a new generation can
                # take; every fourth changes the number of workers.
                s.write(3 if i % 8 in (3, 4, 5, 6) else 2, 10 + i % 2)
                s.reload()
                time.sleep(1.5)
            last = set(d.workers_now())
            time.sleep(3)
            now = set(d.workers_now())
            old = seen - now
            check(not any(alive(p) for p in old),
                  "old workers still running 3 s after the last reload: "
                  "%s" % sorted(p for p in old if alive(p)))
            check(len(now) in (2, 3) and now <= last | now,
                  "workers after the reloads: %r" % d.workers_now())
            for t in threads:
                t.stop.set()
            for p, n, proc in procs:
                r = tclient_wait(proc, 120)
                expect_all_ok(r, n, "%d %s streams across 20 reloads"
                              % (n, p))
                rounds = len([l for l in r.lines
                              if l.startswith("RESPQ ok")])
                check(rounds == n * 80, "%s: %d round trips of %d" % (
                    p, rounds, n * 80))
            for t in threads:
                res = t.finish()
                check(len(res) >= 1, "no run of %r" % t.kw)
                for r in res:
                    expect_all_ok(r, t.kw["conns"], "%s %s during reloads"
                                  % (t.kw["proto"], t.kw["test"]))
            log = d.read_log()
            n_moved = sum(int(x) for x in re.findall(
                r"handoff done: (\d+) sessions moved", log))
            kept = sum(int(x) for x in re.findall(
                r"handoff done: \d+ sessions moved, (\d+) kept", log))
            sys.stderr.write(
                "  %d sessions moved over 20 reloads, %d kept; %d bulk "
                "runs, %d handshake runs\n" % (
                    n_moved, kept, sum(len(t.results) for t in bulk),
                    len(shakes.results)))
            check(n_moved >= 20 * 200, "only %d sessions moved" % n_moved)
            check(kept == 0, "%d sessions kept by old workers" % kept)
            check(not re.search(r"shutdown_timeout: closing [1-9]", log),
                  "an old worker closed sessions at shutdown_timeout")
        finally:
            for t in threads:
                t.stop.set()
            for _, _, proc in procs:
                if proc.poll() is None:
                    proc.kill()


def test_reloads_move_middle_sessions():
    """Middle mode: the links move with their clients (same TCP
    connection to the middle proxy, same conn_ids)."""
    from test_middle import MSetup
    with MSetup(workers=2, start=False) as s:
        d = s.d
        base = open(d.conf).read().replace("shutdown_timeout = 20;",
                                           "shutdown_timeout = 5;")

        def write(i):
            d.write_config(base + "handshake_timeout = %d;\n" % (10 + i % 2))
        write(0)
        d.start()
        groups = [("intermediate", 70), ("secure", 70), ("tls", 60)]
        procs = [(p, n, hold_clients(s.port, p, n, rounds=80))
                 for p, n in groups]
        bulk = [Loop(port=s.port, proto=p, test="echo", conns=2,
                     bytes=8 * MIB, packet=65536, timeout=60)
                for p in ("secure", "tls")]
        shakes = Loop(port=s.port, proto="secure", test="reqpq", conns=8,
                      timeout=30)
        bulk.append(shakes)
        for t in bulk:
            t.start()
        seen = set()
        try:
            time.sleep(1.5)
            for i in range(20):
                seen |= set(d.workers_now())
                write(i + 1)
                reload(d)
                time.sleep(1.5)
            time.sleep(3)
            now = set(d.workers_now())
            old = seen - now
            check(not any(alive(p) for p in old),
                  "old workers still running 3 s after the last reload")
            for t in bulk:
                t.stop.set()
            for p, n, proc in procs:
                r = tclient_wait(proc, 120)
                expect_all_ok(r, n, "%d %s middle-mode streams across 20 "
                              "reloads" % (n, p))
                rounds = len([l for l in r.lines
                              if l.startswith("RESPQ ok")])
                check(rounds == n * 80, "%s: %d round trips of %d" % (
                    p, rounds, n * 80))
            for t in bulk:
                for r in t.finish():
                    expect_all_ok(r, t.kw["conns"], "%s %s during reloads"
                                  % (t.kw["proto"], t.kw["test"]))
            log = d.read_log()
            moves = re.findall(r"handoff: (\d+) middle-proxy links moved "
                               r"with (\d+) clients \((\d+) lost\)", log)
            links = sum(int(a) for a, _, _ in moves)
            clients = sum(int(b) for _, b, _ in moves)
            lost = sum(int(c) for _, _, c in moves)
            sys.stderr.write("  middle: %d links moved with %d clients, %d "
                             "lost, over 20 reloads\n" % (links, clients,
                                                           lost))
            check(lost == 0, "%d clients lost in the handoff" % lost)
            check(clients >= 20 * 200, "only %d clients moved" % clients)
            check("moved from link" not in s.mp.log(),
                  "clients reached the middle proxy over other links "
                  "(migrated, not moved with their link)")
        finally:
            for t in bulk:
                t.stop.set()
            for _, _, proc in procs:
                if proc.poll() is None:
                    proc.kill()


def test_removed_user_closed_others_move():
    with Direct(workers=2) as s:
        d = s.d
        alice = hold_clients(s.port, "secure", 10, rounds=16)
        bob = hold_clients(s.port, "secure", 10, rounds=16, secret=SECRET2)
        try:
            time.sleep(1.5)
            old = set(d.workers_now())
            s.listeners = [listener_conf("main", s.port, secrets=(SECRET,))]
            s.write(2, 11)
            s.reload()
            wait_for(lambda: not any(alive(p) for p in old), 8,
                     what="old workers to hand over and exit")
            ra = tclient_wait(alice, 60)
            rb = tclient_wait(bob, 60)
            expect_all_ok(ra, 10, "the kept user's streams")
            check("0/10 ok" in rb.out, "the removed user's streams: %s"
                  % rb.out[-200:])
            check(len(re.findall(r"closed: user u1 removed by reload",
                                 d.read_log())) == 10,
                  "no log line per closed session of the removed user")
        finally:
            for p in (alice, bob):
                if p.poll() is None:
                    p.kill()


def test_removed_listener_sessions_stay_until_shutdown_timeout():
    port_b = free_port()
    with Direct(workers=1) as s:
        d = s.d
        s.listeners = [listener_conf("main", s.port),
                       listener_conf("b", port_b)]
        s.write(1, 10)
        s.reload()
        a = hold_clients(s.port, "secure", 5, rounds=24)
        b = hold_clients(port_b, "secure", 5, rounds=24)
        try:
            time.sleep(1.5)
            old = set(d.workers_now())
            s.listeners = [listener_conf("main", s.port)]
            s.write(1, 11)
            s.reload()
            d.wait_log("not adopted (its listener is not in the new "
                       "configuration)")
            time.sleep(1)
            check(any(alive(p) for p in old),
                  "the old worker left with sessions it could not move")
            ra = tclient_wait(a, 60)
            expect_all_ok(ra, 5, "the moved listener's streams")
            rb = tclient_wait(b, 60)
            check("0/5 ok" in rb.out, "the removed listener's streams: "
                  "%s" % rb.out[-200:])
            check(d.log_has(re.compile(
                r"shutdown_timeout: closing 5 remaining sessions \(.*5 the "
                r"new generation could not take")),
                "the old worker did not say what it closed")
            wait_for(lambda: not any(alive(p) for p in old), 10,
                     what="the old worker to exit")
        finally:
            for p in (a, b):
                if p.poll() is None:
                    p.kill()


if __name__ == "__main__":
    run_tests([test_reloads_move_live_streams,
               test_reloads_move_middle_sessions,
               test_removed_user_closed_others_move,
               test_removed_listener_sessions_stay_until_shutdown_timeout])
