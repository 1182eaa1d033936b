"""Shared counters on the metrics page (issue 7 item 11): the replay
cache's early evictions and the per-listener connection gauges are
exported, and an undersized replay cache shows in the first."""
import signal
import sys

from mtp import (Daemon, FakeDC, check, free_port, listener_conf, metrics,
                 run_tests, tclient, telegram_conf, wait_for)


class Setup:
    """A direct-mode daemon on a fake DC, with its metrics port."""

    def __init__(self, extra=""):
        self.dc = FakeDC("packets")
        self.port, self.port2 = free_port(), free_port()
        self.metrics_port = free_port()
        self.d = Daemon(
            workers=2,
            listeners=[listener_conf("main", self.port),
                       listener_conf("second", self.port2,
                                     protocols=("secure",))],
            extra=telegram_conf({2: self.dc.port}) +
            'metrics = { address = "127.0.0.1"; port = %d; };\n'
            % self.metrics_port + extra)
        self.d.start()

    def metrics(self):
        return metrics(self.metrics_port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.d.kill_all()
        finally:
            self.dc.stop()


def test_metrics_export_replay_and_listener_gauges():
    with Setup() as s:
        m = wait_for(lambda: s.metrics(), 10, what="the metrics page")
        for name in ('mtprotod_replay_early_evictions_total',
                     'mtprotod_listener_connections{listener="main"}',
                     'mtprotod_listener_connections{listener="second"}'):
            check(name in m, "%s not on the metrics page: %r" % (name, m))
            check(m[name] == 0, "%s is %r at start" % (name, m[name]))


def test_undersized_replay_cache_shows():
    # 1024 entries are 128 buckets of 8: 1,200 handshakes within the
    # window must push some out early.
    with Setup(extra="replay = { entries = 1024; };\n") as s:
        for _ in range(4):
            r = tclient(s.port, "secure", "reqpq", conns=300, timeout=60)
            check(r.ok, "clients not served: %s" % r)
        m = s.metrics()
        check(m.get("mtprotod_replay_early_evictions_total", 0) > 0,
              "no early evictions counted: %r" % m)
        check(m.get("mtprotod_handshakes_ok_total", 0) >= 1200,
              "handshakes: %r" % m)


def test_reload_renamed_listener_gets_gauges():
    # The dcpool of the new generation shows the listeners of the new
    # config, each with its gauge (an index in the shared table).
    with Setup() as s:
        s.d.write_config(open(s.d.conf).read().replace(
            'name = "second"', 'name = "renamed"'))
        s.d.signal(signal.SIGHUP)
        s.d.wait_log("reload complete", 20)

        def shown():
            m = s.metrics()
            return ('mtprotod_listener_connections{listener="renamed"}'
                    in m and m)
        m = wait_for(shown, 10, what="the renamed listener's gauge")
        check('mtprotod_listener_connections{listener="main"}' in m,
              "main is gone from the metrics page: %r" % m)


def test_scrapes_during_reloads_never_fail():
    # The supervisor keeps the metrics socket: a scrape queued while
    # the old dcpool exits is answered by the new one, and one being
    # answered finishes. Failed before (connection reset by peer).
    import threading
    with Setup() as s:
        wait_for(lambda: s.metrics(), 10, what="the metrics page")
        stop = threading.Event()
        got, errors = [0], []

        def scrape():
            while not stop.is_set():
                try:
                    s.metrics()
                    got[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure counts
                    errors.append(repr(e))
        threads = [threading.Thread(target=scrape) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            conf = open(s.d.conf).read()
            for i in range(8):
                # handshake_timeout: a change only a new generation takes
                s.d.write_config(conf + "handshake_timeout = %d;\n"
                                 % (10 + i % 2))
                n = s.d.read_log().count("reload complete")
                s.d.signal(signal.SIGHUP)
                wait_for(lambda: s.d.read_log().count("reload complete")
                         > n, 20, what="reload %d" % (i + 1))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        sys.stderr.write("  %d scrapes over 8 reloads, %d failed\n"
                         % (got[0], len(errors)))
        check(not errors, "scrapes failed during reloads: %s"
              % errors[:5])
        check(got[0] >= 40, "only %d scrapes" % got[0])


if __name__ == "__main__":
    sys.exit(run_tests([
        test_metrics_export_replay_and_listener_gauges,
        test_undersized_replay_cache_shows,
        test_reload_renamed_listener_gets_gauges,
        test_scrapes_during_reloads_never_fail,
    ]))
