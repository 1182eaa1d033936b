"""SIGHUP: rolling reload that drops nothing."""
import os
import signal
import socket
import threading
import time

from mtp import (Daemon, alive, check, connect, free_port, is_open,
                 run_tests, socket_fds, wait_for)


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


if __name__ == "__main__":
    run_tests([test_reload_keeps_open_connections,
               test_broken_config_keeps_serving,
               test_no_refused_connection_during_reloads,
               test_listeners_added_and_removed,
               test_workers_shrink_keeps_slot_sockets])
