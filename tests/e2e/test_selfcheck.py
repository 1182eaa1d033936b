"""mtprotod --check (issue 11): one line per check, OK / WARN / FAIL, exit
status 1 on a FAIL; against local fakes, with some of them stopped.
"""
import os
import re
import subprocess
import tempfile

from https import HTTPSServer
from mtp import (MTPROTOD, Daemon, FakeDC, FakeMP, check, free_port,
                 listener_conf, run_tests, write_proxy_config,
                 write_proxy_secret)
from nginx import Nginx


def run_check(conf):
    p = subprocess.run([MTPROTOD, "--check", "-c", conf],
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def has(out, level, rx):
    check(re.search(r"^%s\s+%s" % (level, rx), out, re.M),
          "no %s line matching %r in:\n%s" % (level, rx, out))


def test_check_reports_and_fails():
    tmp = tempfile.mkdtemp(prefix="mtp-check-")
    secret = write_proxy_secret(tmp)
    mp = FakeMP(secret, tmp=tmp)
    dead = free_port()
    proxies = write_proxy_config(tmp, {2: mp.port, 3: dead})
    web = HTTPSServer({"/getProxyConfig": b"proxy_for 2 127.0.0.1:1;\n"})
    dc_up, dc_down = FakeDC(), FakeDC()
    dc_down.stop()
    with Nginx("localhost").start() as ng:
        try:
            port = free_port()
            dcs = {1: dc_up.port, 2: dc_up.port, 3: dc_up.port,
                   4: dc_down.port, 5: dc_up.port}
            d = Daemon(workers=1, listeners=[
                listener_conf("main", port, tls_domain="localhost",
                              fronting="127.0.0.1:%d" % ng.port,
                              extra='tls_domains = [ "nowhere.invalid='
                                    '127.0.0.1:%d" ];' % free_port())],
                extra='backend = "middle";\n'
                'telegram = { dc = ( %s ); proxy_secret_file = "%s"; '
                'proxy_config_file = "%s"; proxy_config_url = "%s"; '
                'ca_file = "%s"; };\n' % (
                    ", ".join('{ id = %d; address = "127.0.0.1:%d"; }' % x
                              for x in sorted(dcs.items())),
                    secret, proxies, web.url("/getProxyConfig"),
                    web.ca_file))
            rc, out = run_check(d.conf)
            check(rc == 1, "exit %d with FAILs:\n%s" % (rc, out))
            has(out, "OK", r"config")
            has(out, "OK", r"clock: [+-]\d+ s from https://localhost")
            for dc in (1, 2, 3, 5):
                has(out, "OK", r"DC %d at 127\.0\.0\.1:%d: reachable" % (
                    dc, dc_up.port))
            has(out, "FAIL", r"DC 4 at 127\.0\.0\.1:%d: Connection "
                             r"refused" % dc_down.port)
            has(out, "OK", r"middle proxy for DC 2 at 127\.0\.0\.1:%d: "
                           r"nonce exchanged" % mp.port)
            has(out, "FAIL", r"middle proxy for DC 3 at 127\.0\.0\.1:%d: "
                             r"Connection refused" % dead)
            has(out, "OK", r"listener main: localhost resolves to this "
                           r"host")
            has(out, "WARN", r"listener main: nowhere\.invalid does not "
                             r"resolve")
            # nginx on OpenSSL 3 sends its flight in several records.
            has(out, "WARN", r"listener main fronts 127\.0\.0\.1 .*TLS "
                             r"1\.3, but the flight comes in \d+ records")
            has(out, "FAIL", r"listener main fronts 127\.0\.0\.1 .*"
                             r"Connection refused")
            check(re.search(r"^\d+ failed, \d+ warnings$", out, re.M), out)
            # Everything up (the second name gone, DC 4 back): exit 0.
            dc_up2 = FakeDC()
            try:
                body = open(d.conf).read()
                body = body.replace('address = "127.0.0.1:%d"' %
                                    dc_down.port,
                                    'address = "127.0.0.1:%d"' % dc_up2.port)
                body = re.sub(r'tls_domains = \[[^]]*\];', "", body)
                with open(d.conf, "w") as f:
                    f.write(body)
                write_proxy_config(tmp, {2: mp.port})
                rc, out = run_check(d.conf)
                check(rc == 0 and "FAIL" not in out,
                      "exit %d:\n%s" % (rc, out))
                has(out, "OK", r"DC 4 at 127\.0\.0\.1:%d" % dc_up2.port)
            finally:
                dc_up2.stop()
        finally:
            mp.stop()
            web.stop()
            dc_up.stop()


if __name__ == "__main__":
    run_tests([test_check_reports_and_fails])
