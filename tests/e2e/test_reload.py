"""SIGHUP: rolling reload that drops nothing."""
import os
import signal
import socket
import threading
import time

from mtp import (SECRET, Daemon, FakeDC, FrontSite, alive, check, connect,
                 free_port, is_open, listener_conf, run_tests, socket_fds,
                 tclient, tclient_wait, telegram_conf, wait_for)

SECRET2 = "ffeeddccbbaa99887766554433221100"
SECRET3 = "00112233445566778899aabbccddeeff"


def new_generation(d, old_pids, n):
    def ready():
        ws = set(d.workers_now())
        return len(ws - set(old_pids)) >= n
    wait_for(ready, 15, what="new worker generation")
    return set(d.workers_now()) - set(old_pids)


def test_reload_keeps_open_connections():
    d = Daemon(workers=2).start()
    try:
        old = set(d.workers_now())
        conns = [connect(d.port) for _ in range(100)]
        time.sleep(0.3)
        d.signal(signal.SIGHUP)
        new = new_generation(d, old, 2)
        check(not (new & old), "worker pids reused")
        d.wait_log("reload complete")
        # old workers drain: still alive while they hold connections
        time.sleep(0.5)
        check(any(alive(p) for p in old), "old workers exited early")
        for c in conns:
            c.sendall(b"still here" * 10)
        time.sleep(0.2)
        for i, c in enumerate(conns):
            check(is_open(c), "connection %d dropped by reload" % i)
        # new connections go to the new generation
        extra = connect(d.port)
        extra.sendall(b"hello")
        check(is_open(extra, 0.2), "new connection not served")
        extra.close()
        for c in conns:
            c.close()
        wait_for(lambda: not any(alive(p) for p in old), 15,
                 what="old workers to exit after their clients left")
        check(len(d.workers_now()) == 2, "wrong number of workers: %r" %
              d.workers_now())
    finally:
        d.kill_all()


def test_broken_config_keeps_serving():
    d = Daemon(workers=2).start()
    try:
        old = set(d.workers_now())
        good = open(d.conf).read()
        d.write_config(good.replace("workers = 2;", "workers = -3;"))
        d.signal(signal.SIGHUP)
        line = d.wait_log("reload failed")
        check("workers" in line and d.conf in line,
              "reload failure does not say why: " + line)
        time.sleep(0.5)
        check(set(d.workers_now()) == old, "workers changed on a bad "
              "reload")
        c = connect(d.port)
        c.sendall(b"x")
        check(is_open(c, 0.2), "not serving after a bad reload")
        c.close()
    finally:
        d.kill_all()


def test_no_refused_connection_during_reloads():
    d = Daemon(workers=2).start()
    stop = threading.Event()
    stats = {"ok": 0, "fail": 0, "errors": []}

    def hammer():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", d.port),
                                             timeout=5)
                s.sendall(b"ping")
                if not is_open(s, 0.01):
                    raise OSError("closed by the daemon")
                s.close()
                stats["ok"] += 1
            except OSError as e:
                stats["fail"] += 1
                stats["errors"].append(repr(e))
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            old = set(d.workers_now())
            d.signal(signal.SIGHUP)
            new_generation(d, old, 2)
            wait_for(lambda: len(d.read_log().split("reload complete"))
                     > i + 1, 15, what="reload %d" % i)
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        d.kill_all()
    check(stats["ok"] > 100, "too few connections tried: %r" % stats["ok"])
    check(stats["fail"] == 0, "%d connections failed during reloads: %s" % (
        stats["fail"], stats["errors"][:5]))


def test_listeners_added_and_removed():
    d = Daemon(workers=2)
    p2 = free_port()
    d.start()
    try:
        body = open(d.conf).read()
        two = d.make_config(workers=2, listeners=[
            ("main", "127.0.0.1", d.port), ("second", "127.0.0.1", p2)])
        d.write_config(two)
        d.signal(signal.SIGHUP)
        d.wait_log("reload complete")
        c = connect(p2)
        c.sendall(b"x")
        check(is_open(c, 0.2), "new listener does not serve")
        c.close()
        # remove the first listener
        d.write_config(d.make_config(workers=2, listeners=[
            ("second", "127.0.0.1", p2)]))
        before = d.read_log().count("reload complete")
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.read_log().count("reload complete") > before,
                 15, what="second reload")
        def refused():
            try:
                connect(d.port, timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        wait_for(refused, 15, what="removed listener to close")
    finally:
        d.kill_all()


def test_workers_shrink_keeps_slot_sockets():
    d = Daemon(workers=2).start()
    try:
        d.write_config(d.make_config(workers=1))
        d.signal(signal.SIGHUP)
        d.wait_log("reload complete")
        wait_for(lambda: len(d.workers_now()) == 1, 15,
                 what="one worker left")
        # every connection is accepted although two slot sockets exist
        # (the kernel spreads them over both; the one worker takes both)
        w = list(d.workers_now())[0]
        base = socket_fds(w)
        conns = [connect(d.port) for _ in range(40)]
        wait_for(lambda: socket_fds(w) - base >= 40, 10,
                 what="all 40 connections accepted by the one worker")
        for c in conns:
            c.close()
    finally:
        d.kill_all()


def in_place_setup(listener):
    dc = FakeDC("packets")
    d = Daemon(workers=2)
    # The sites count connections: no site profiling (which connects
    # to them from the dcpool) in these tests.
    d.write_config(d.make_config(
        workers=2, listeners=[listener],
        extra=telegram_conf({2: dc.port}) +
        'tls = { profile = "static"; };\n'))
    d.start()
    return d, dc


def test_user_change_in_place():
    # Users change through SIGHUP without a new process: the sessions of
    # a removed user close (a log line each), all others go on.
    port = free_port()
    listener = listener_conf("main", port, secrets=(SECRET, SECRET2))
    d, dc = in_place_setup(listener)
    procs = []
    try:
        kids = set(d.kids())
        keep = [tclient(port, p, "hold", conns=10, rounds=12, interval=0.5,
                        timeout=40, wait=False) for p in ("secure", "tls")]
        gone = tclient(port, "secure", "hold", secret=SECRET2, conns=10,
                       rounds=12, interval=0.5, timeout=40, wait=False)
        procs = keep + [gone]
        time.sleep(1.5)
        new = listener.replace(
            '{ name = "u1"; secret = "%s"; }' % SECRET2,
            '{ name = "u2"; secret = "%s"; }' % SECRET3)
        check(new != listener, "test: the user did not change")
        d.write_config(d.make_config(
            workers=2, listeners=[new],
            extra=telegram_conf({2: dc.port}) +
            'tls = { profile = "static"; };\n').replace(
                'level = "debug"', 'level = "info"'))
        d.signal(signal.SIGHUP)
        line = d.wait_log("reload applied in place")
        check("users +1 -1 ~0 (removed: u1)" in line, line)
        time.sleep(0.5)
        check(set(d.kids()) == kids, "processes changed: %r -> %r" % (
            kids, set(d.kids())))
        for p, what in zip(keep, ("secure", "tls")):
            r = tclient_wait(p, 60)
            check(r.ok and "10/10 ok" in r.out, "%s streams of the kept "
                  "user: %s %s" % (what, r.out[-200:], r.err[-500:]))
        r = tclient_wait(gone, 60)
        check("0/10 ok" in r.out, "the removed user's streams: %s" %
              r.out[-200:])
        check(d.read_log().count("closed: user u1 removed by reload") ==
              10, "not one log line per closed session of u1")
        r = tclient(port, "tls", "reqpq", secret=SECRET3, conns=4)
        check(r.ok and "4/4 ok" in r.out, "the new user: %s" % r)
        r = tclient(port, "secure", "reqpq", secret=SECRET2, conns=2,
                    timeout=5)
        check(not r.ok, "the removed user still served: %s" % r)
        check(set(d.kids()) == kids, "processes changed")
        # The new log level is in force: no debug lines once both
        # workers say they applied the tables.
        wait_for(lambda: d.read_log().count("new tables applied in place")
                 == 2, 5, what="both workers to apply the tables")
        after = d.read_log().split("new tables applied in place")[-1]
        check(" debug: " not in after, "debug lines after the log level "
              "went to info")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        d.kill_all()
        dc.stop()


def test_fronting_target_in_place():
    a, b = FrontSite(), FrontSite()
    port = free_port()
    listener = listener_conf("tls", port, protocols=("fake_tls",),
                             fronting="127.0.0.1:%d" % a.port)
    d, dc = in_place_setup(listener)

    def probe():
        c = connect(port)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.settimeout(5)
        got = c.recv(100)
        c.close()
        return got
    try:
        kids = set(d.kids())
        check(probe().startswith(b"HTTP/1.1 200"), "no site at start")
        wait_for(lambda: len(a.received) == 1, 5, what="site A's probe")
        d.write_config(d.make_config(
            workers=2, listeners=[listener.replace(
                "127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port)],
            extra=telegram_conf({2: dc.port}) +
            'tls = { profile = "static"; };\n'))
        d.signal(signal.SIGHUP)
        d.wait_log("reload applied in place")
        time.sleep(0.3)
        for _ in range(6):
            check(probe().startswith(b"HTTP/1.1 200"), "no site")
        wait_for(lambda: len(b.received) == 6, 5, what="site B's probes")
        check(len(a.received) == 1, "site A still fronted: %d" %
              len(a.received))
        check(set(d.kids()) == kids, "processes changed")
    finally:
        d.kill_all()
        dc.stop()
        a.stop()
        b.stop()


def test_same_file_rolls_a_new_generation():
    # SIGHUP with an unchanged file renews the workers (nothing to apply
    # in place), as it always did; a change outside the in-place tables
    # does too.
    d = Daemon(workers=2).start()
    try:
        old = set(d.workers_now())
        d.signal(signal.SIGHUP)
        new_generation(d, old, 2)
        check("reload applied in place" not in d.read_log(),
              "an unchanged file was applied in place")
    finally:
        d.kill_all()


if __name__ == "__main__":
    run_tests([test_reload_keeps_open_connections,
               test_broken_config_keeps_serving,
               test_no_refused_connection_during_reloads,
               test_listeners_added_and_removed,
               test_workers_shrink_keeps_slot_sockets,
               test_user_change_in_place,
               test_fronting_target_in_place,
               test_same_file_rolls_a_new_generation])
