"""Users (issue 10): per-SNI derived secrets, and many users on one
listener (matching, the in-place tables)."""
import hashlib
import os
import signal
import subprocess

from mtp import (MTPROTOD, SECRET, Daemon, FakeDC, FrontSite, check,
                 listener_conf, free_port, metrics, run_tests, tclient,
                 telegram_conf, wait_for)

DOMAIN = "www.example.com"
OTHER = "b.example.org"
SALT = "e2e-salt"
SECRET2 = "00112233445566778899aabbccddeeff"


def derived(secret, name, salt=SALT):
    """The per-SNI key as the Erlang mtproto_proxy's README gives it."""
    return hashlib.sha256((salt + secret.lower() + name).encode()) \
        .hexdigest()[:32]


def per_sni_daemon(dc, site, port):
    return Daemon(workers=2, listeners=[listener_conf(
        "main", port, ["classic", "secure", "fake_tls"],
        secrets=(SECRET, SECRET2), tls_domain=DOMAIN,
        fronting="127.0.0.1:%d" % site.port,
        extra='per_sni_secrets = true; per_sni_salt = "%s"; '
              'tls_domains = [ "%s" ];' % (SALT, OTHER))],
        # "static": the dcpool's profiling of the site would count as a
        # fronted connection
        extra='backend = "direct";\ntls = { profile = "static"; };\n' +
        telegram_conf({2: dc.port}))


def test_per_sni_secrets():
    dc, site = FakeDC(), FrontSite()
    port = free_port()
    d = per_sni_daemon(dc, site, port)
    d.port = port
    try:
        d.start()
        # Each user's derived key for each name is served.
        for sec in (SECRET, SECRET2):
            for name in (DOMAIN, OTHER):
                r = tclient(port, "tls", "reqpq", secret=derived(sec, name),
                            domain=name, timeout=10)
                check(r.ok, "derived key of %s for %s: %s" % (sec, name, r))
        check(site.count() == 0, "a good client was fronted")
        # The plain secret over fake TLS is a bad client: fronted.
        r = tclient(port, "tls", "reqpq", secret=SECRET, domain=DOMAIN,
                    timeout=5)
        check(not r.ok, "plain secret served over fake TLS: %s" % r)
        wait_for(lambda: site.count() >= 1, 10, what="plain secret fronted")
        # The key of one name does not open another.
        n = site.count()
        r = tclient(port, "tls", "reqpq", secret=derived(SECRET, DOMAIN),
                    domain=OTHER, timeout=5)
        check(not r.ok, "a name's key served for another: %s" % r)
        wait_for(lambda: site.count() > n, 10, what="wrong name fronted")
        # Nor does the key derived with another salt.
        n = site.count()
        r = tclient(port, "tls", "reqpq",
                    secret=derived(SECRET, DOMAIN, "other-salt"),
                    domain=DOMAIN, timeout=5)
        check(not r.ok, "another salt's key served: %s" % r)
        wait_for(lambda: site.count() > n, 10, what="other salt fronted")
        # Classic and secure clients have no name: the plain secret, as
        # in the Erlang proxy.
        for proto in ("abridged", "secure"):
            r = tclient(port, proto, "reqpq", secret=SECRET2, timeout=10)
            check(r.ok, "%s with the plain secret: %s" % (proto, r))
            r = tclient(port, proto, "reqpq",
                        secret=derived(SECRET2, DOMAIN), timeout=5)
            check(not r.ok, "%s with a derived key: %s" % (proto, r))
    finally:
        d.kill_all()
        dc.stop()
        site.stop()


def test_per_sni_links_and_config():
    dc, site = FakeDC(), FrontSite()
    port = free_port()
    d = per_sni_daemon(dc, site, port)
    try:
        p = subprocess.run([MTPROTOD, "--links", "-c", d.conf, "--server",
                            "proxy.example.org"], capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 0, p.stderr)
        out = p.stdout
        for sec in (SECRET, SECRET2):
            for name in (DOMAIN, OTHER):
                form = "ee" + derived(sec, name) + name.encode().hex()
                check("secret=" + form in out,
                      "no link with %s: %s" % (form, out[-1500:]))
            check("secret=ee" + sec not in out, "a plain fake-TLS link")
            check("secret=dd" + sec in out, "no secure link")
        # Validation: file:line: option: what.
        with open(d.conf) as f:
            text = f.read()
        bad = text.replace('"classic", "secure", "fake_tls"',
                           '"classic", "secure"').replace(
            'tls_domains = [ "%s" ];' % OTHER, "")
        with open(d.conf, "w") as f:
            f.write(bad)
        p = subprocess.run([MTPROTOD, "-t", "-c", d.conf],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode != 0 and
              "per_sni_secrets: needs fake_tls" in p.stderr and
              "mtprotod.conf:" in p.stderr, "no error: %s" % p.stderr)
    finally:
        dc.stop()
        site.stop()


def user_secret(i):
    return "0123456789abcdef01234567%08x" % i


def test_ten_thousand_users():
    n = 10000
    dc = FakeDC()
    port = free_port()
    d = Daemon(workers=2, listeners=[listener_conf(
        "main", port, ["classic", "secure", "fake_tls"],
        secrets=[user_secret(i) for i in range(n)], tls_domain=DOMAIN)],
        extra='backend = "direct";\n' + telegram_conf({2: dc.port}))
    d.port = port
    try:
        d.start()
        for i in (0, n // 2, n - 1):
            for proto in ("abridged", "secure", "tls"):
                r = tclient(port, proto, "reqpq", secret=user_secret(i),
                            domain=DOMAIN, conns=2, timeout=20)
                check(r.ok, "user %d over %s: %s" % (i, proto, r))
        r = tclient(port, "tls", "reqpq", secret=user_secret(n),
                    domain=DOMAIN, timeout=5)
        check(not r.ok, "a user not in the file served: %s" % r)
        # Reload in place (the tables memfd) with a user more.
        with open(d.conf) as f:
            text = f.read()
        extra = '{ name = "u%d"; secret = "%s"; }' % (n, user_secret(n))
        text = text.replace('secret = "%s"; }' % user_secret(n - 1),
                            'secret = "%s"; }, %s' % (user_secret(n - 1),
                                                      extra))
        with open(d.conf, "w") as f:
            f.write(text)
        d.signal(signal.SIGHUP)
        d.wait_log("reload applied in place", 30)
        wait_for(lambda: d.read_log().count("new tables applied in place")
                 >= 2, 30, what="tables in both workers")
        for i in (n, n - 1, 0):
            for proto in ("abridged", "tls"):
                r = tclient(port, proto, "reqpq", secret=user_secret(i),
                            domain=DOMAIN, conns=2, timeout=20)
                check(r.ok, "after reload, user %d over %s: %s"
                      % (i, proto, r))
    finally:
        d.kill_all()
        dc.stop()


def test_hints_shared_by_workers():
    """A client's user, once found, is the first tried on its next
    connection whichever worker takes it: the users are scanned once per
    address, not once per worker (mtprotod_handshake_user_scans_total)."""
    dc = FakeDC()
    port, mport = free_port(), free_port()
    d = Daemon(workers=2, listeners=[listener_conf(
        "main", port, ["classic", "secure", "fake_tls"],
        secrets=[user_secret(i) for i in range(40)], tls_domain=DOMAIN)],
        extra='backend = "direct";\n' + telegram_conf({2: dc.port}) +
        'metrics = { address = "127.0.0.1"; port = %d; };\n' % mport)
    d.port = port

    def scans():
        return metrics(mport).get("mtprotod_handshake_user_scans_total")

    try:
        d.start()
        check(scans() == 0, "scans before any client: %s" % scans())
        # Twelve connections, one at a time: the kernel spreads them
        # over both workers (SO_REUSEPORT); all but the first are hinted.
        for _ in range(12):
            r = tclient(port, "abridged", "reqpq", secret=user_secret(17),
                        timeout=10)
            check(r.ok, "user 17: %s" % r)
        check(scans() == 1, "user 17, 12 connections: %s scans" % scans())
        # Another user from the same address: the hint is wrong once
        # (a scan), then right, over fake TLS as well.
        for _ in range(6):
            r = tclient(port, "tls", "reqpq", secret=user_secret(23),
                        domain=DOMAIN, timeout=10)
            check(r.ok, "user 23: %s" % r)
        check(scans() == 2, "then user 23, 6 connections: %s scans"
              % scans())
    finally:
        d.kill_all()
        dc.stop()


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    run_tests([test_per_sni_secrets, test_per_sni_links_and_config,
               test_ten_thousand_users, test_hints_shared_by_workers])
