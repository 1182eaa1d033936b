"""/health, /ready and /status on the metrics port (issue 11)."""
import json
import os
import socket
import urllib.error
import urllib.request

from mtp import (SECRET, WRONG_SECRET, Daemon, FakeDC, FrontSite, check,
                 free_port, listener_conf, metrics, run_tests, tclient,
                 telegram_conf, wait_for)
from test_middle import MSetup


def get(port, path):
    """(status, body) of http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_direct_health_ready_status():
    dc = FakeDC()
    mport, port = free_port(), free_port()
    d = Daemon(workers=2, listeners=[listener_conf(
        "main", port, tls_domain="www.example.com")],
        extra=telegram_conf({2: dc.port}) +
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    held = None
    try:
        d.start()
        check(get(mport, "/health") == (200, "ok\n"), "health")
        wait_for(lambda: get(mport, "/ready")[0] == 200, 10,
                 what="/ready 200")
        check(get(mport, "/ready")[1] == "ready\n", "ready body")
        held = socket.create_connection(("127.0.0.1", port))

        def status():
            st = json.loads(get(mport, "/status")[1])
            return st if st["connections"] >= 1 else None
        st = wait_for(status, 10, what="the held connection in /status")
        check(st["version"] and st["generation"] == 0, st)
        check(st["pid"] == d.pid and st["workers"] == 2 and
              st["workers_serving"] == 2, st)
        kids = d.kids()
        got = {c["pid"]: c["role"] for c in st["children"]}
        check(got == {p: ("dcpool" if t == "mtprotod: dcpool" else
                          "worker") for p, t in kids.items()},
              "children %r, the process tree %r" % (got, kids))
        check(sorted(c["slot"] for c in st["children"]
                     if c["role"] == "worker") == [0, 1], st["children"])
        (lst,) = st["listeners"]
        check(lst["name"] == "main" and lst["backend"] == "direct" and
              lst["protocols"] == ["classic", "secure", "fake_tls"] and
              lst["tls_domain"] == "www.example.com" and
              [u["name"] for u in lst["users"]] == ["u0"] and
              lst["users"][0]["enabled"] is True and
              lst["connections"] >= 1, lst)
        # users with their counters: a served client moves them
        r = tclient(port, "secure", "echo", bytes=4096, timeout=20)
        check(r.ok, "echo: %s" % r)

        def user0():
            (u,) = json.loads(get(mport, "/status")[1])["listeners"][0][
                "users"]
            return u if u["connections"] == 0 else None
        u0 = wait_for(user0, 10, what="the echo client's close")
        check(u0["bytes_client_to_telegram"] >= 4096 and
              u0["bytes_telegram_to_client"] >= 4096 and
              u0["quota_used"] >= 8192, u0)
        check(st["telegram_config"] is None, st)
        check(0 <= st["uptime_s"] < 60, st)
        code, body = get(mport, "/nothing")
        check(code == 404 and "/status" in body, (code, body))
    finally:
        if held:
            held.close()
        d.kill_all()
        dc.stop()


def proxy_config(ms, dcs, default=None):
    """telegram = {...} text with a proxy config file listing ms's fake
    middle proxy for dcs."""
    path = os.path.join(ms.tmp, "some-dcs.conf")
    with open(path, "w") as f:
        for dc in dcs:
            f.write("proxy_for %d 127.0.0.1:%d;\n" % (dc, ms.mp.port))
        if default:
            f.write("default %d;\n" % default)
    return 'proxy_secret_file = "%s"; proxy_config_file = "%s";' % (
        ms.secret_file, path)


def test_middle_ready_needs_a_proxy_for_each_dc():
    # Only DCs 2 and 4 have a middle proxy and there is no default: not
    # ready, and it says which DCs lack one; with a default DC (whose
    # proxies serve the others, as Telegram's config says), ready.
    m = MSetup(telegram=lambda ms: proxy_config(ms, (2, 4)))
    try:
        wait_for(lambda: "no middle proxy for DC 1" in
                 get(m.metrics_port, "/ready")[1], 10,
                 what="/ready naming DC 1")
        code, body = get(m.metrics_port, "/ready")
        check(code == 503 and "DC 3" in body and "DC 5" in body and
              "DC 2" not in body and "DC 4" not in body, (code, body))
        st = json.loads(get(m.metrics_port, "/status")[1])
        tc = st["telegram_config"]
        check(tc["source"] == "file" and tc["middle_proxies"]["2"] == 1 and
              tc["middle_proxies"]["1"] == 0 and tc["age_s"] >= 0, tc)
        check(st["listeners"][0]["backend"] == "middle", st)
    finally:
        m.stop()
    m = MSetup(telegram=lambda ms: proxy_config(ms, (2, 4), default=2))
    try:
        wait_for(lambda: get(m.metrics_port, "/ready")[0] == 200, 10,
                 what="/ready 200 with a default DC")
    finally:
        m.stop()


def test_middle_not_ready_without_telegram_config():
    dead = free_port()

    def nothing(ms):
        return ('proxy_secret_url = "http://127.0.0.1:%d/s"; '
                'proxy_config_url = "http://127.0.0.1:%d/c"; '
                'proxy_config_v6_url = "http://127.0.0.1:%d/6";' % (
                    dead, dead, dead))
    m = MSetup(telegram=nothing)
    try:
        code, body = get(m.metrics_port, "/ready")
        check(code == 503 and "no Telegram proxy config yet" in body,
              (code, body))
        check(get(m.metrics_port, "/health")[0] == 200, "health")
        st = json.loads(get(m.metrics_port, "/status")[1])
        check(st["telegram_config"] is None, st)
    finally:
        m.stop()


def test_metrics_pass_promtool_and_failures_have_reasons():
    # promtool (Debian prometheus) accepts the page; each kind of failed
    # handshake moves its own reason, good clients the good counters.
    import shutil
    import subprocess
    import time
    tool = shutil.which("promtool")
    check(tool, "promtool missing (Debian package prometheus): the test "
          "command installs it")
    site = FrontSite()
    dc = FakeDC()
    mport, tls, classic = free_port(), free_port(), free_port()
    d = Daemon(workers=2, listeners=[
        listener_conf("tls", tls, ["fake_tls"],
                      fronting="127.0.0.1:%d" % site.port,
                      extra='unknown_sni = "drop";'),
        listener_conf("classic", classic, ["classic"])],
        extra=telegram_conf({2: dc.port}) + "handshake_timeout = 2;\n"
        'tls = { profile = "static"; };\n'
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    try:
        d.start()
        r = tclient(tls, "tls", "reqpq", conns=2)
        check(r.ok, str(r))
        r = tclient(classic, "abridged", "reqpq")
        check(r.ok, str(r))
        tclient(tls, "tls", "probe", secret=WRONG_SECRET, timeout=3)
        tclient(tls, "tls", "probe", secret=SECRET, ts_offset=-100000,
                timeout=3)
        tclient(tls, "tls", "probe", secret=WRONG_SECRET,
                domain="other.example.org", timeout=3)
        tclient(classic, "secure", "probe", timeout=4)
        tclient(classic, "abridged", "probe", secret=WRONG_SECRET,
                timeout=4)
        want = {"bad_secret": 2, "clock_skew": 1, "unknown_sni": 1,
                "protocol": 1}

        def moved():
            m = metrics(mport)
            got = {k: m.get('mtprotod_handshake_failures_total{reason="%s"}'
                            % k) for k in want}
            return m if all(got[k] == v for k, v in want.items()) else None
        m = wait_for(moved, 15, what="the failure reasons %r" % want)
        check(m["mtprotod_handshakes_ok_total"] == 3, m)
        check(m["mtprotod_handshakes_bad_total"] == 5, m)
        check(m["mtprotod_fronted_total"] == 2, m)
        check(m['mtprotod_handshake_failures_total{reason="replay"}'] == 0,
              m)
        time.sleep(0.2)
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                    timeout=5) as f:
            page = f.read()
        r = subprocess.run([tool, "check", "metrics"], input=page,
                           capture_output=True, timeout=60)
        check(r.returncode == 0 and not r.stdout.strip(),
              "promtool check metrics: %s%s" % (r.stdout.decode(),
                                                r.stderr.decode()))
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


def test_labelled_series_move():
    # Per listener and protocol, bytes per listener, reloads by result,
    # restarts by role, memory per role, build info.
    import signal
    dc = FakeDC()
    mport, a, b = free_port(), free_port(), free_port()
    lst = [listener_conf("a", a), listener_conf("b", b, ["classic"])]
    extra = (telegram_conf({2: dc.port}) + 'tls = { profile = "static"; };\n'
             'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    d = Daemon(workers=2, listeners=lst, extra=extra)
    try:
        d.start()
        for proto, n in (("tls", 2), ("secure", 1), ("abridged", 3)):
            r = tclient(a, proto, "reqpq", conns=n)
            check(r.ok, str(r))
        r = tclient(b, "intermediate", "reqpq")
        check(r.ok, str(r))
        key = 'mtprotod_listener_connections_total{listener="%s",' \
              'protocol="%s"}'
        want = {key % ("a", "fake_tls"): 2, key % ("a", "secure"): 1,
                key % ("a", "classic"): 3, key % ("b", "classic"): 1,
                key % ("b", "fake_tls"): 0}
        m = wait_for(lambda: (lambda m: m if all(
            m.get(k) == v for k, v in want.items()) else None)(
                metrics(mport)), 10, what="per listener %r" % want)
        for lname in ("a", "b"):
            for dirn in ("client_to_telegram", "telegram_to_client"):
                k = 'mtprotod_listener_bytes_total{listener="%s",' \
                    'direction="%s"}' % (lname, dirn)
                check(m.get(k, 0) > 0, "%s: %s" % (k, m.get(k)))
        check(m['mtprotod_build_info{version="0.1.0",openssl="%s"}' %
                [k for k in m if k.startswith("mtprotod_build_info")][0]
                .split('openssl="')[1].rstrip('"}')] == 1, "build info")
        for role in ("supervisor", "worker", "dcpool"):
            k = 'mtprotod_process_resident_memory_bytes{role="%s"}' % role
            check(m.get(k, 0) > 100000, "%s: %s" % (k, m.get(k)))
        # Workers count their own descriptors (every 2 s): listening
        # sockets, channels, event fds, more than 5 each.
        for role in ("worker", "dcpool"):
            k = 'mtprotod_process_open_fds{role="%s"}' % role
            wait_for(lambda: metrics(mport).get(k, 0) > 5, 10,
                     what="%s > 5" % k)
        # And the workers' figure is their count (read from the size of
        # /proc/self/fd on newer kernels, else by listing it).
        k = 'mtprotod_process_open_fds{role="worker"}'

        def fds_match():
            real = sum(len(os.listdir("/proc/%d/fd" % p))
                       for p in d.workers_now())
            return abs(metrics(mport).get(k, 0) - real) <= 2
        wait_for(fds_match, 10, what="%s = the workers' descriptors" % k)
        # A rolling reload, a failed one, a worker that dies.
        d.signal(signal.SIGHUP)
        d.wait_log("reload complete", 20)
        good = open(d.conf).read()
        d.write_config(good + "bogus = 1;\n")
        d.signal(signal.SIGHUP)
        d.wait_log("reload failed", 10)
        d.write_config(good)
        os.kill(list(d.workers_now())[0], signal.SIGKILL)
        d.wait_log("restarting worker", 10)

        def sup():
            m = metrics(mport)
            ok = (m.get('mtprotod_reloads_total{result="rolling"}') == 1 and
                  m.get('mtprotod_reloads_total{result="failed"}') == 1 and
                  m.get('mtprotod_child_restarts_total{role="worker"}') == 1)
            return m if ok else None
        m = wait_for(sup, 15, what="reloads and restarts counted")
        # Totals survive the reload and the dead worker.
        for k, v in want.items():
            check(m.get(k) == v, "%s after: %s" % (k, m.get(k)))
        check(m.get('mtprotod_child_restarts_total{role="dcpool"}') == 0, m)
    finally:
        d.kill_all()
        dc.stop()


def test_middle_link_builds_counted():
    # Links built (and handed to workers), and attempts that failed.
    m = MSetup()
    try:
        r = tclient(m.port, "secure", "reqpq", conns=2)
        check(r.ok, str(r))
        wait_for(lambda: metrics(m.metrics_port).get(
            "mtprotod_middle_links_built_total", 0) >= 1, 10,
            what="a link counted")
        check(metrics(m.metrics_port).get(
            "mtprotod_middle_link_failures_total") == 0, "no failure yet")
        # the workers' links per DC and state, on the page and in /status
        wait_for(lambda: metrics(m.metrics_port).get(
            'mtprotod_middle_links{dc="2",state="up"}', 0) >= 1, 10,
            what="DC 2's links up")
        mm = metrics(m.metrics_port)
        check('mtprotod_middle_links{dc="2",state="pending"}' in mm and
              mm.get('mtprotod_middle_waiting_clients{dc="2"}') == 0, mm)
        st = json.loads(get(m.metrics_port, "/status")[1])
        check(st["middle_links"]["2"]["up"] >= 1, st["middle_links"])
    finally:
        m.stop()
    m = MSetup(telegram=lambda ms: 'proxy_secret_file = "%s"; '
               'proxy_config_file = "%s";' % (ms.secret_file, write_dead(ms)))
    try:
        tclient(m.port, "secure", "reqpq", timeout=3)
        wait_for(lambda: metrics(m.metrics_port).get(
            "mtprotod_middle_link_failures_total", 0) >= 1, 15,
            what="a failed link counted")
    finally:
        m.stop()


def write_dead(ms):
    """A proxy list whose DC 2 proxy does not listen."""
    path = os.path.join(ms.tmp, "dead.conf")
    with open(path, "w") as f:
        f.write("proxy_for 2 127.0.0.1:%d;\ndefault 2;\n" % free_port())
    return path


def test_metrics_allow():
    # metrics.allow: a peer outside every block gets 403 on every page;
    # one inside gets them.
    dc = FakeDC()
    for allow, code in (('[ "10.0.0.0/8", "::1" ]', 403),
                        ('[ "10.0.0.0/8", "127.0.0.0/8" ]', 200)):
        mport = free_port()
        d = Daemon(workers=1, extra=telegram_conf({2: dc.port}) +
                   'metrics = { address = "127.0.0.1"; port = %d; '
                   'allow = %s; };\n' % (mport, allow))
        try:
            d.start()
            for path in ("/metrics", "/health", "/ready", "/status",
                         "/nothing"):
                got = get(mport, path)[0]
                want = 404 if path == "/nothing" and code == 200 else code
                check(got == want, "%s with allow %s: %d, not %d" % (
                    path, allow, got, want))
        finally:
            d.kill_all()
    dc.stop()


if __name__ == "__main__":
    run_tests([test_direct_health_ready_status,
               test_middle_ready_needs_a_proxy_for_each_dc,
               test_middle_not_ready_without_telegram_config,
               test_metrics_pass_promtool_and_failures_have_reasons,
               test_labelled_series_move, test_middle_link_builds_counted,
               test_metrics_allow])
