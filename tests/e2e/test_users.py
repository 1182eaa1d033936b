"""Users and their limits (issue 10): max_connections, enabled,
expires, max_unique_ips, quota (with its periods on a clock the test
moves, and kept across restarts and reloads), rate; limits.per_ip and
per_subnet, with a worker killed while it holds connections. A refused
user is a bad client: held where there is no fake TLS, fronted where
there is."""
import os
import re
import signal
import time

from mtp import (Daemon, FakeDC, FrontSite, check, free_port, metrics,
                 run_tests, tclient, tclient_wait, telegram_conf, wait_for)

KIB = 1024


def secret(i):
    return "%032x" % (0xabc000 + i)


def user(name, i, extra=""):
    return '{ name = "%s"; secret = "%s"; %s }' % (name, secret(i), extra)


def listener(name, port, users, protocols=("secure", "fake_tls"),
             fronting=None, extra=""):
    return """  {
    name = "%s"; address = "127.0.0.1"; port = %d;
    protocols = [ %s ];
    tls_domain = "www.example.com";
    %s
    users = ( %s );
    %s
  }""" % (name, port, ", ".join('"%s"' % p for p in protocols),
          'fronting = "%s";' % fronting if fronting else "",
          ",\n      ".join(users), extra)


def served(port, i, proto="secure", timeout=4, **kw):
    return tclient(port, proto, "reqpq", secret=secret(i), timeout=timeout,
                   **kw).ok


def hold(port, i, rounds=80, source=None, conns=1):
    return tclient(port, "secure", "hold", secret=secret(i), conns=conns,
                   rounds=rounds, interval=0.25, timeout=rounds * 0.25 + 30,
                   source=source, wait=False)


def wait_clients(d, user, n, since=0):
    """n handshakes of user passed (debug log lines) after offset."""
    pat = re.compile(r"client of main/%s for DC" % user)
    wait_for(lambda: len(pat.findall(d.read_log()[since:])) >= n, 10,
             what="%d sessions of %s" % (n, user))


USERS = [
    user("alice", 1),
    user("conn1", 2, "max_connections = 1;"),
    user("off", 3, "enabled = false;"),
    user("old", 4, 'expires = "2020-01-01T00:00:00Z";'),
    user("ips1", 5, "max_unique_ips = 1; unique_ips_window = 600;"),
    user("q", 6, 'quota = "256K";'),
    user("live", 7),
]


def test_user_limits_refuse_close_and_persist():
    site = FrontSite()
    dc = FakeDC("packets")
    port, mport = free_port(), free_port()
    conf_extra = (telegram_conf({2: dc.port}) + "handshake_timeout = 1;\n"
                  'tls = { profile = "static"; };\n'
                  'metrics = { address = "127.0.0.1"; port = %d; };\n'
                  % mport)

    def body(users):
        return d.make_config(
            workers=2, listeners=[listener(
                "main", port, users, fronting="127.0.0.1:%d" % site.port)],
            extra=conf_extra)
    d = Daemon(workers=2)
    d.write_config(body(USERS))
    os.chmod(d.tmp, 0o755)
    holders = []
    try:
        d.start()
        check(served(port, 1), "alice is served")

        # max_connections = 1: a second connection is held, then served
        # once the first is gone. On fake TLS the refused one is fronted.
        h = hold(port, 2)
        holders.append(h)
        wait_clients(d, "conn1", 1)
        check(not served(port, 2), "a second conn1 connection was served")
        d.wait_log("user conn1 of main refused: max_connections", 5)
        before = site.count()
        r = tclient(port, "tls", "probe", secret=secret(2), timeout=5)
        wait_for(lambda: site.count() > before, 5,
                 what="conn1's fake-TLS client fronted: %s" % r)
        h.kill()
        tclient_wait(h)
        wait_for(lambda: served(port, 2), 15,
                 what="conn1 served after its first connection closed")

        # disabled and expired users: refused
        check(not served(port, 3), "a disabled user was served")
        d.wait_log("user off of main refused: disabled", 5)
        check(not served(port, 4), "an expired user was served")
        d.wait_log("user old of main refused: expired", 5)

        # max_unique_ips = 1: a second address is refused, the first
        # stays welcome
        check(served(port, 5, source="127.0.0.2"), "ips1 from .2")
        check(not served(port, 5, source="127.0.0.3"),
              "ips1 served from a second address")
        d.wait_log("user ips1 of main refused: max_unique_ips", 5)
        check(served(port, 5, source="127.0.0.2"), "ips1 from .2 again")

        # quota of 256 KiB, both ways: 64 KiB echoed (128 KiB) fit; the
        # next 256 KiB echo is cut, then the user is refused
        r = tclient(port, "secure", "echo", secret=secret(6), bytes=64 * KIB,
                    packet=4096, timeout=20)
        check(r.ok, "q within its quota: %s" % r)
        r = tclient(port, "secure", "echo", secret=secret(6),
                    bytes=256 * KIB, packet=4096, timeout=20)
        check(not r.ok, "q went past its quota: %s" % r)
        d.wait_log("closed: user q of main used up its quota", 5)
        check(not served(port, 6), "q served after its quota")
        d.wait_log("user q of main refused: quota", 5)

        # disabling a user in place closes its sessions, and only those
        mark = len(d.read_log())
        a = hold(port, 1, rounds=40)
        holders.append(a)
        lv = hold(port, 7)
        holders.append(lv)
        wait_clients(d, "live", 1, since=mark)
        wait_clients(d, "alice", 1, since=mark)
        d.write_config(body(USERS[:-1] + [user("live", 7,
                                                "enabled = false;")]))
        d.signal(signal.SIGHUP)
        d.wait_log("reload applied in place", 10)
        d.wait_log("closed: user live of main was disabled", 5)
        r = tclient_wait(lv)
        check("CLOSED conn 0" in r.out, "live's session not closed: %s" % r)
        r = tclient_wait(a)
        check(r.ok, "alice's session did not survive: %s" % r)

        m = metrics(mport)
        for key in ('mtprotod_limit_refusals_total{limit="'
                    'user_max_connections"}',
                    'mtprotod_limit_refusals_total{limit="disabled"}',
                    'mtprotod_limit_refusals_total{limit="expired"}',
                    'mtprotod_limit_refusals_total{limit='
                    '"user_max_unique_ips"}',
                    'mtprotod_limit_refusals_total{limit="quota"}',
                    'mtprotod_user_closes_total{reason="quota"}',
                    'mtprotod_user_closes_total{reason="disabled"}'):
            check(m.get(key, 0) >= 1, "%s: %r" % (key, m.get(key)))
        check(m.get('mtprotod_handshake_failures_total{reason='
                    '"over_limit"}', 0) >= 5, "over_limit: %r" % m)
        # per-user series
        q = 'listener="main",user="q"'
        check(m.get('mtprotod_user_bytes_total{%s,direction='
                    '"client_to_telegram"}' % q, 0) >= 128 * KIB,
              "q's bytes: %r" % m)
        check(m.get('mtprotod_user_quota_used_bytes{%s}' % q, 0)
              >= 256 * KIB, "q's quota used: %r" % m)
        check('mtprotod_user_connections{listener="main",user="alice"}'
              in m, "alice's connections gauge: %r" % m)

        # the used quota survives a rolling reload (a new generation of
        # workers) ...
        d.write_config(body(USERS[:-1] + [user("live", 7,
                                                "enabled = false;")])
                       .replace("handshake_timeout = 1;",
                                "handshake_timeout = 2;"))
        d.signal(signal.SIGHUP)
        d.wait_log("reload complete", 20)
        check(not served(port, 6, timeout=6), "q served after a reload")
        # ... and a restart: written at stop, read at start
        check(d.stop() == 0, "daemon did not stop cleanly")
        state = open(os.path.join(d.tmp, "state", "quota.state")).read()
        check(re.search(r"^main q 0 (\d+) ", state, re.M),
              "q not in the quota state: %r" % state)
        used = int(re.search(r"^main q 0 (\d+) ", state, re.M).group(1))
        check(used >= 256 * KIB, "q's quota used: %d" % used)
        d.start()
        check(not served(port, 6, timeout=6), "q served after a restart")
        check(served(port, 1), "alice after the restart")
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
        d.kill_all()
        dc.stop()
        site.stop()


def test_per_ip_per_subnet_and_a_dead_worker():
    # limits.per_ip = 2, per_subnet = 3 (/24); a listener's own per_ip
    # of 1 counts on it alone.
    dc = FakeDC("packets")
    port, port2, mport = free_port(), free_port(), free_port()
    d = Daemon(workers=2, listeners=[
        listener("main", port, [user("alice", 1)], protocols=("secure",)),
        listener("strict", port2, [user("bob", 2)], protocols=("secure",),
                 extra="limits = { per_ip = 1; };")],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 1;\n"
        "limits = { per_ip = 2; per_subnet = 3; subnet_v4 = 24; };\n"
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    holders = []
    try:
        d.start()
        h = hold(port, 1, source="127.0.0.2", conns=2)
        holders.append(h)
        wait_clients(d, "alice", 2)
        check(not served(port, 1, source="127.0.0.2"),
              "a third connection from 127.0.0.2 was served")
        d.wait_log("127.0.0.2", 1)
        d.wait_log(re.compile(r"127\.0\.0\.2:\d+: refused on main: "
                              r"limits\.per_ip"), 5)
        check(served(port, 1, source="127.0.0.3"), "one from .3 (3 in /24)")
        h3 = hold(port, 1, source="127.0.0.3")
        holders.append(h3)
        wait_clients(d, "alice", 4)
        check(not served(port, 1, source="127.0.0.4"),
              "a fourth connection in 127.0.0.0/24 was served")
        d.wait_log("refused on main: limits.per_subnet", 5)
        check(served(port, 1, source="127.0.1.1"), "another /24")
        # the listener's own per_ip
        b = hold(port2, 2, source="127.0.5.9")
        holders.append(b)
        wait_for(lambda: re.search(r"client of strict/bob", d.read_log()),
                 10, what="bob's session")
        check(not served(port2, 2, source="127.0.5.9"),
              "strict's per_ip of 1 let a second in")
        for x in (h, h3, b):
            x.kill()
            tclient_wait(x)
        wait_for(lambda: served(port, 1, source="127.0.0.2"), 10,
                 what=".2 served once its holders are gone")

        # Two held from .2; kill the worker that holds some of them: the
        # supervisor takes its counts back, so exactly as many new ones
        # as died are admitted from .2, and no more.
        mark = len(d.read_log())
        hh = hold(port, 1, source="127.0.0.2", conns=2, rounds=60)
        holders.append(hh)
        wait_clients(d, "alice", 2, since=mark)
        owner = {}
        for line in d.read_log()[mark:].splitlines():
            m = re.search(r"\[(\d+)\] \w+: 127\.0\.0\.2:\d+: secure "
                          r"client of main/alice", line)
            if m:
                owner[int(m.group(1))] = owner.get(int(m.group(1)), 0) + 1
        victim, died = max(owner.items(), key=lambda kv: kv[1])
        os.kill(victim, signal.SIGKILL)
        d.wait_log(re.compile(r"policy: \d+ counts of a dead worker "
                              r"taken back"), 10)
        d.wait_ready()
        mark2 = len(d.read_log())
        again = hold(port, 1, source="127.0.0.2", conns=died, rounds=20)
        holders.append(again)
        wait_clients(d, "alice", died, since=mark2)
        check(not served(port, 1, source="127.0.0.2"),
              "per_ip let one more in after a worker died (%d died)" % died)
        check(again.poll() is None, "the re-admitted holders ended")
        m = metrics(mport)
        check(m.get('mtprotod_limit_refusals_total{limit="per_ip"}', 0) >= 3,
              "per_ip refusals: %r" % m)
        check(m.get('mtprotod_limit_refusals_total{limit="per_subnet"}', 0)
              >= 1, "per_subnet refusals: %r" % m)
    finally:
        for x in holders:
            if x.poll() is None:
                x.kill()
        d.kill_all()
        dc.stop()


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_quota_periods_on_a_moved_clock():
    # The daemon runs under libfaketime; the test moves its clock a day
    # on. A daily quota and a monthly one resetting tomorrow start anew.
    check(os.path.exists(FAKETIME), "libfaketime (package faketime) "
          "is not installed")
    dc = FakeDC("packets")
    port = free_port()
    tomorrow = time.gmtime(time.time() + 86400).tm_mday
    d = Daemon(workers=2, listeners=[listener(
        "main", port, [user("day", 1, 'quota = "64K"; quota_period = '
                            '"daily";'),
                       user("mon", 2, 'quota = "64K"; quota_period = '
                            '"monthly:%d";' % tomorrow),
                       user("never", 3, 'quota = "64K";')],
        protocols=("secure",))],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 1;\n")
    # The children run as nobody: they must read the clock file too.
    os.chmod(d.tmp, 0o755)
    clock = os.path.join(d.tmp, "clock")
    with open(clock, "w") as f:
        f.write("+0\n")
    os.chmod(clock, 0o644)
    env = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": clock,
           "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           # a sanitizer build: its runtime is not the first library
           # when libfaketime is preloaded, which is fine here
           "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                            ":verify_asan_link_order=0").lstrip(":")}
    try:
        d.start(env=env)
        for i, name in ((1, "day"), (2, "mon"), (3, "never")):
            r = tclient(port, "secure", "echo", secret=secret(i),
                        bytes=64 * KIB, packet=4096, timeout=20)
            check(not r.ok, "%s went past its quota: %s" % (name, r))
            check(not served(port, i), "%s served after its quota" % name)
        # a day later (and past 00:00 UTC): day and mon are new
        with open(clock, "w") as f:
            f.write("+86400\n")
        wait_for(lambda: served(port, 1), 10, what="day's quota reset")
        check(served(port, 2), "mon's quota did not reset on day %d"
              % tomorrow)
        check(not served(port, 3), "a quota with no period reset")
    finally:
        d.kill_all()
        dc.stop()


def test_rate_each_way():
    # rate = 256K: 1 MiB up (to a sink) and 1 MiB down (from a source)
    # each take about 4 s; within 10%.
    rate = 256 * KIB
    n = 1024 * KIB
    dc, sink, source = FakeDC("packets"), FakeDC("sink"), \
        FakeDC("source", n)
    port, mport = free_port(), free_port()
    d = Daemon(workers=2, listeners=[listener(
        "main", port, [user("slow", 1, 'rate = "256K";'), user("fast", 2)],
        protocols=("secure",))],
        extra=telegram_conf({2: dc.port, 3: sink.port, 4: source.port}) +
        'metrics = { address = "127.0.0.1"; port = %d; '
        'max_user_series = 1; };\n' % mport)
    try:
        d.start()
        expected = n / rate
        for test, dcid in (("upload", 3), ("download", 4)):
            t0 = time.monotonic()
            r = tclient(port, "secure", test, secret=secret(1), dc=dcid,
                        bytes=n, timeout=60)
            took = time.monotonic() - t0
            check(r.ok, "%s: %s" % (test, r))
            check(abs(took - expected) <= 0.1 * expected,
                  "%s of %d bytes at %d B/s took %.2f s, not %.2f +- 10%%"
                  % (test, n, rate, took, expected))
        # an unlimited user is not slowed
        t0 = time.monotonic()
        r = tclient(port, "secure", "upload", secret=secret(2), dc=3,
                    bytes=n, timeout=60)
        check(r.ok and time.monotonic() - t0 < expected / 2,
              "the unlimited user was slow: %s" % r)
        m = metrics(mport)
        check(m.get("mtprotod_throttled_total", 0) > 0,
              "throttling not counted: %r" % m)
        # max_user_series = 1: slow has its series, fast is "other"
        key = 'mtprotod_user_bytes_total{listener="main",user="%s",' \
            'direction="client_to_telegram"}'
        check(m.get(key % "slow", 0) >= 0.9 * n, "slow's series: %r" % m)
        check(key % "fast" not in m and m.get(key % "other", 0) >= 0.9 * n,
              "fast not summed as other: %r" % m)
    finally:
        d.kill_all()
        for x in (dc, sink, source):
            x.stop()


def test_user_named_other_is_summed_once():
    # metrics.max_user_series = 1 and a user named "other": its series
    # must not stand twice next to the rest's sum (Prometheus refuses a
    # page with a series written twice).
    import urllib.request
    dc = FakeDC("packets")
    port, mport = free_port(), free_port()
    d = Daemon(workers=1, listeners=[listener(
        "main", port, [user("first", 1), user("other", 2), user("third", 3)],
        protocols=("secure",))],
        extra=telegram_conf({2: dc.port}) +
        'metrics = { address = "127.0.0.1"; port = %d; '
        'max_user_series = 2; };\n' % mport)
    try:
        d.start()
        for i in (1, 2, 3):
            check(served(port, i), "user %d not served" % i)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                    timeout=5) as r:
            lines = [ln.rpartition(" ")[0] for ln in
                     r.read().decode().splitlines()
                     if ln.startswith("mtprotod_user_")]
        dup = sorted({ln for ln in lines if lines.count(ln) > 1})
        check(not dup, "series written twice: %r" % dup)
        check('mtprotod_user_connections{listener="main",user="first"}'
              in lines and
              'mtprotod_user_connections{listener="main",user="third"}'
              in lines and
              'mtprotod_user_connections{listener="main",user="other"}'
              in lines, "series: %r" % lines)
    finally:
        d.kill_all()
        dc.stop()


if __name__ == "__main__":
    run_tests([test_user_limits_refuse_close_and_persist,
               test_per_ip_per_subnet_and_a_dead_worker,
               test_quota_periods_on_a_moved_clock,
               test_rate_each_way,
               test_user_named_other_is_summed_once])
