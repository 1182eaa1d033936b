#!/usr/bin/env python3
"""What a reload costs with live sessions (issue 8): wall and CPU time for
the old workers to hand N idle sessions and M busy ones (echo streams in
full flight) to the new generation. Prints numbers; asserts nothing.

  MTPROTOD=./mtprotod PEERS_DIR=tests/peers \\
      python3 tests/bench/handoff-bench.py [--idle 10000] [--busy 200]
      [--reloads 3] [--workers 2]

Runs in direct mode against tests/peers/fake_dc. CPU comes from
/proc/PID/schedstat (nanoseconds on a CPU) of the old and the new
workers, sampled every 5 ms until the old ones have exited; wall time is
from SIGHUP until the last old worker is gone, and the workers' own
"handoff done ... in X ms" lines say how long the sending took.
"""
import argparse
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from mtp import (Daemon, FakeDC, children_of, free_port,  # noqa: E402
                 listener_conf, tclient, telegram_conf, wait_for)


def cpu_ns(pid):
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def workers(d):
    return {p for p, t in d.kids().items() if t.startswith("mtprotod: w")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--busy", type=int, default=200)
    ap.add_argument("--reloads", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    dc = FakeDC("packets")
    port = free_port()
    d = Daemon(workers=a.workers)
    d.port = port
    body = d.make_config(
        workers=a.workers, listeners=[listener_conf("main", port)],
        extra=telegram_conf({2: dc.port}) + "idle_timeout = 3600;\n")
    d.write_config(body.replace('level = "debug"', 'level = "info"'))
    d.start()
    global FD_BASE
    FD_BASE = fds(d)
    procs = []
    try:
        # Idle clients: one round trip, then silence; 2,500 per process.
        per = 2500
        left = a.idle
        while left > 0:
            n = min(per, left)
            procs.append(tclient(port, "secure", "hold", conns=n,
                                 rounds=2, interval=3000, timeout=3600,
                                 wait=False))
            left -= n
        t0 = time.time()
        wait_for(lambda: sessions(d) >= a.idle, 300, 0.5,
                 what="idle clients")
        print("%d idle sessions up in %.1f s" % (a.idle, time.time() - t0))
        for i in range(a.reloads):
            busy = None
            if a.busy:
                busy = tclient(port, "secure", "echo", conns=a.busy,
                               bytes=256 << 20, packet=16384,
                               timeout=600, wait=False)
                wait_for(lambda: sessions(d) >= a.idle + a.busy, 60, 0.1,
                         what="busy clients")
                time.sleep(1)
            old = workers(d)
            base = {p: cpu_ns(p) for p in old}
            last = dict(base)
            before = len(re.findall("handoff done", d.read_log()))
            t = time.time()
            d.signal(signal.SIGHUP)
            while any(os.path.exists("/proc/%d" % p) for p in old):
                for p in old:
                    v = cpu_ns(p)
                    if v is not None:
                        last[p] = v
                time.sleep(0.005)
                if time.time() - t > 120:
                    break
            wall = time.time() - t
            new = workers(d)
            new_cpu = sum(cpu_ns(p) or 0 for p in new)
            old_cpu = sum(last[p] - base[p] for p in old
                          if base[p] is not None)
            lines = re.findall(
                r"handoff done: (\d+) sessions moved, (\d+) kept in (\d+) ms",
                d.read_log())[before:]
            moved = sum(int(m) for m, _, _ in lines)
            kept = sum(int(k) for _, k, _ in lines)
            send_ms = max([int(ms) for _, _, ms in lines] or [0])
            print("reload %d: %d sessions moved (%d busy), %d kept; "
                  "old workers gone %.0f ms after SIGHUP (sending: %d ms); "
                  "CPU: old workers %.0f ms, new workers %.0f ms since "
                  "their start; %.1f us of CPU per session" % (
                      i + 1, moved, a.busy, kept, wall * 1000, send_ms,
                      old_cpu / 1e6, new_cpu / 1e6,
                      (old_cpu + new_cpu) / 1e3 / max(moved, 1)))
            sys.stdout.flush()
            if busy is not None:
                busy.kill()
                busy.wait()
                wait_for(lambda: sessions(d) <= a.idle, 60, 0.1,
                         what="busy clients to go")
    finally:
        for p in procs:
            p.kill()
        d.kill_all()
        dc.stop()


FD_BASE = 0


def fds(d):
    n = 0
    for p in workers(d):
        try:
            n += len(os.listdir("/proc/%d/fd" % p))
        except OSError:
            pass
    return n


def sessions(d):
    """Relaying sessions: each holds two descriptors (client and DC)
    beyond what the workers hold when idle."""
    return (fds(d) - FD_BASE) // 2


if __name__ == "__main__":
    main()
