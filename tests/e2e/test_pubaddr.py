"""End-to-end: the public address and IPv6 (issue 13).

The daemon behind a pretend 1:1 NAT: a STUN server (tests/peers/
stun_server.py) and a local HTTPS "what is my IP" responder (https.py)
answer with addresses the test chooses. The links must carry the address
they agree on; middle-proxy links must derive their keys with the address
the (fake) middle proxy sees; IPv6 must work on both sides.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.environ.get(
    "SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "..", "..")), "tests", "peers"))
import https  # noqa: E402
import stun_server  # noqa: E402
from mtp import (Daemon, FakeDC, MTPROTOD, SECRET, check,  # noqa: E402
                 free_port, listener_conf, run_tests, tclient, wait_for)
from test_middle import MSetup, expect_ok  # noqa: E402

PUB = "203.0.113.5"
OTHER = "198.51.100.1"


class StdoutReader:
    """Collects the daemon's stdout (links) as it comes."""

    def __init__(self, proc):
        import threading
        self.buf = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, args=(proc,),
                                  daemon=True)
        self.t.start()

    def _run(self, proc):
        for line in proc.stdout:
            with self.lock:
                self.buf.append(line.decode(errors="replace"))

    def text(self):
        with self.lock:
            return "".join(self.buf)

    def servers(self):
        return set(re.findall(r"tg://proxy\?server=([^&]+)&", self.text()))


def network(stun=(), urls=(), extra=""):
    return "network = { stun_servers = [ %s ]; ip_urls = [ %s ]; %s };\n" % (
        ", ".join('"%s"' % s for s in stun),
        ", ".join('"%s"' % u for u in urls), extra)


def dead_url():
    return "https://localhost:%d/ip" % free_port()


def nat_daemon(stun=(), urls=(), ca=None, extra="", net_extra="",
               address="0.0.0.0"):
    tg = 'telegram = { ca_file = "%s"; http_timeout = 3; };\n' % ca \
        if ca else ""
    port = free_port()
    d = Daemon(workers=1, listeners=[listener_conf(
        "main", port, address=address)],
        extra=network(stun, urls, net_extra) + tg + extra)
    os.chmod(d.tmp, 0o755)  # the dcpool keeps its copy in state_dir
    d.port = port
    d.start()
    return d, StdoutReader(d.proc)


def test_links_carry_the_address_two_sources_agree_on():
    with stun_server.StunServer(PUB) as st, \
            https.HTTPSServer({"/ip": (PUB + "\n").encode()}) as web:
        d, out = nat_daemon([st.address], [web.url("/ip")], web.ca_file)
        try:
            line = d.wait_log("public IPv4 address %s" % PUB, 15)
            check("stun %s" % st.address in line and web.url("/ip") in line,
                  "sources not named: %r" % line)
            wait_for(lambda: PUB in out.servers(), 10,
                     what="links with %s: %s" % (PUB, out.text()))
            # The links printed at start had only a guess.
            check(re.search(r"guessed from the interfaces", out.text()),
                  "no guess at start: %s" % out.text())
            check(st.requests >= 2, "STUN asked %d times" % st.requests)
            # Kept in state_dir; --links uses the copy.
            cache = os.path.join(d.tmp, "state", "public-address")
            wait_for(lambda: os.path.exists(cache), 5, what=cache)
            with open(cache) as f:
                check("ipv4 %s\n" % PUB in f.read(), "cache: %s" % cache)
            import subprocess
            p = subprocess.run([MTPROTOD, "--links", "-c", d.conf],
                               capture_output=True, text=True, timeout=30)
            check(p.returncode == 0 and "server=%s&" % PUB in p.stdout,
                  "--links: %s %s" % (p.stdout[-2000:], p.stderr))
            check("public IPv4 address %s (cache)" % PUB in p.stdout,
                  "--links does not say where: %s" % p.stdout[:2000])
        finally:
            d.kill_all()


def test_disagreeing_sources_wait_for_agreement():
    with stun_server.StunServer(PUB) as st, \
            https.HTTPSServer({"/ip": (OTHER + "\n").encode()}) as web:
        d, out = nat_daemon([st.address], [web.url("/ip")], web.ca_file)
        try:
            line = d.wait_log("sources disagree", 15)
            check(PUB in line and OTHER in line, "log: %r" % line)
            check(not d.log_has("public IPv4 address %s" % PUB) and
                  not d.log_has("public IPv4 address %s" % OTHER),
                  "took an address the sources disagree on")
            check(PUB not in out.servers() and OTHER not in out.servers(),
                  "links with a disputed address: %s" % out.servers())
            # The URL comes round: the next round (a few s) agrees.
            web.set("/ip", (PUB + "\n").encode())
            d.wait_log("public IPv4 address %s" % PUB, 20)
            wait_for(lambda: PUB in out.servers(), 10,
                     what="links with %s" % PUB)
        finally:
            d.kill_all()


def test_one_source_must_answer_twice():
    # Only STUN answers (the URL is dead): its two answers agree.
    with stun_server.StunServer(PUB) as st:
        d, out = nat_daemon([st.address], [dead_url()])
        try:
            line = d.wait_log("public IPv4 address %s" % PUB, 20)
            check("twice" in line, "log: %r" % line)
        finally:
            d.kill_all()


def test_both_sources_down_fall_back_to_the_interfaces():
    with stun_server.StunServer(None) as st:  # silent
        d, out = nat_daemon([st.address], [dead_url()])
        try:
            line = d.wait_log("public address not found", 20)
            check("interface address (guessed)" in line, "log: %r" % line)
            check(re.search(r"no answer", line) and "ip" in line,
                  "the reason is missing: %r" % line)
            check("guessed from the interfaces" in out.text(),
                  "links: %s" % out.text()[:2000])
            check(st.requests >= 2, "STUN asked %d times" % st.requests)
        finally:
            d.kill_all()


def test_address_by_hand_asks_nobody():
    with stun_server.StunServer(PUB) as st:
        d, out = nat_daemon([st.address], [dead_url()],
                            net_extra='public_ipv4 = "%s";' % OTHER)
        try:
            wait_for(lambda: OTHER in out.servers(), 10,
                     what="links with %s: %s" % (OTHER, out.text()))
            check("public IPv4 address %s (config)" % OTHER in out.text(),
                  "links: %s" % out.text()[:1000])
            time.sleep(1.5)
            check(st.requests == 0, "STUN asked %d times" % st.requests)
        finally:
            d.kill_all()


def test_check_shows_the_address_and_nat():
    import subprocess
    with stun_server.StunServer(PUB) as st, \
            https.HTTPSServer({"/ip": (PUB + "\n").encode()}) as web:
        # --check also asks the DCs and the config URL's clock: all
        # local here.
        dc = FakeDC()
        d = Daemon(workers=1, listeners=[listener_conf(
            "main", free_port(), fronting="127.0.0.1:%d" % web.port)],
            extra=network([st.address], [web.url("/ip")]) +
            'telegram = { ca_file = "%s"; proxy_config_url = "%s"; '
            'dc = ( %s ); };\n' % (
                web.ca_file, web.url("/ip"),
                ", ".join('{ id = %d; address = "127.0.0.1:%d"; }' % (
                    i, dc.port) for i in range(1, 6))))
        p = subprocess.run([MTPROTOD, "--check", "-c", d.conf],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "--check: %s %s" % (p.stdout, p.stderr))
        check("public IPv4 address: %s (stun %s, %s)" % (
            PUB, st.address, web.url("/ip")) in p.stdout,
            "--check: %s" % p.stdout)
        check(re.search(r"no interface has it .*: behind NAT", p.stdout),
              "--check says nothing of NAT: %s" % p.stdout)
        check(not os.path.exists(os.path.join(d.tmp, "state",
                                              "public-address")),
              "--check wrote the daemon's cache")
        dc.stop()


def test_listener_server_option_wins():
    port = free_port()
    d = Daemon(workers=1, listeners=[listener_conf(
        "main", port, address="0.0.0.0",
        extra='server = "proxy.example.net";')])
    d.port = port
    d.start()
    out = StdoutReader(d.proc)
    try:
        wait_for(lambda: out.servers(), 10, what="links")
        check(out.servers() == {"proxy.example.net"},
              "links: %s" % out.servers())
    finally:
        d.kill_all()


# ------------------------------------------------------------ middle


def nat_middle(seen_ip, tg_extra="", net=None, stun=None):
    """Middle mode against a fake middle proxy that sees us at seen_ip."""
    def tg(s):
        return 'proxy_secret_file = "%s"; proxy_config_file = "%s"; %s' % (
            s.secret_file, s.proxy_conf, tg_extra)
    return MSetup(workers=1, mp_opts={"seen_ip": seen_ip}, telegram=tg,
                  extra=net or "network = { discover = false; };\n")


def test_middle_links_use_the_discovered_address():
    with stun_server.StunServer(PUB) as st:
        net = network([st.address], [dead_url()])
        with nat_middle(PUB, net=net) as s:
            s.d.wait_log("public IPv4 address %s" % PUB, 20)
            expect_ok(tclient(s.port, "secure", "reqpq", conns=2), 2)
            line = s.d.log_has("middle-proxy links over IPv4 work with")
            check(line and "%s (discovered)" % PUB in line,
                  "log: %r" % line)


def test_middle_wrong_nat_ip_fails_with_a_clear_line():
    # The middle proxy sees 192.0.2.77: neither nat_ip nor the local
    # address is it.
    with nat_middle("192.0.2.77", 'nat_ip = "%s";' % OTHER) as s:
        r = tclient(s.port, "secure", "reqpq", timeout=5)
        check(not r.ok, "a client passed with no link: %s" % r)
        line = s.d.wait_log(re.compile(
            r"link to DC 2 via .* failed: .* after our handshake; the "
            r"keys were derived for %s \(telegram.nat_ip\), 127.0.0.1 "
            r"\(the local address\): if the middle proxy sees us at "
            r"another address, set network.public_ipv4" %
            re.escape(OTHER)), 20)
        check(line, "no clear line")


def test_middle_wrong_nat_ip_retried_with_the_local_address():
    # The middle proxy sees 127.0.0.1 (no NAT after all): nat_ip is wrong,
    # the retry with the local address works and the log says so.
    with nat_middle("127.0.0.1", 'nat_ip = "%s";' % OTHER) as s:
        expect_ok(tclient(s.port, "secure", "reqpq", conns=2), 2)
        s.d.wait_log(re.compile(
            r"trying 127\.0\.0\.1 \(the local address\)"), 20)
        line = s.d.wait_log("middle proxies see us at 127.0.0.1", 20)
        check("not %s (telegram.nat_ip)" % OTHER in line and
              "fix the configured address" in line, "log: %r" % line)
        # Later links go straight to what works.
        n = len(re.findall("trying 127.0.0.1", s.d.read_log()))
        expect_ok(tclient(s.port, "abridged", "reqpq", conns=2), 2)
        check(len(re.findall("trying 127.0.0.1", s.d.read_log())) == n,
              "retried again")


# ------------------------------------------------------------ IPv6


def test_ipv6_direct_through_a_dual_stack_listener():
    with FakeDC() as dc4:
        dc = FakeDC(host="::1")
        try:
            port = free_port()
            # DC 2 only by its IPv6 address: before the fix the built-in
            # IPv4 address of DC 2 stayed and was used.
            d = Daemon(workers=1, listeners=[listener_conf(
                "main", port, address="::")],
                extra='backend = "direct";\ntelegram = { dc = ( '
                      '{ id = 2; address = "[::1]:%d"; }, '
                      '{ id = 4; address = "127.0.0.1:%d"; } ); '
                      'default_dc = 2; };\n' % (dc.port, dc4.port))
            d.port = port
            d.start()
            try:
                for host in ("::1", "127.0.0.1"):
                    for proto in ("abridged", "secure", "tls"):
                        r = tclient(port, proto, "reqpq", host=host, dc=2)
                        check(r.ok, "%s via %s: %s" % (proto, host, r))
                n = len(dc.conns())
                check(n == 6, "the IPv6 DC saw %d connections" % n)
                r = tclient(port, "secure", "reqpq", host="::1", dc=4)
                check(r.ok and len(dc4.conns()) == 1, "DC 4: %s" % r)
            finally:
                d.kill_all()
        finally:
            dc.stop()


def test_ipv6_dc_falls_back_to_ipv4():
    # prefer_ipv6: DC 2's IPv6 address refuses, its IPv4 one serves.
    with FakeDC() as dc4:
        port = free_port()
        dead6 = free_port(__import__("socket").AF_INET6, "::1")
        d = Daemon(workers=1, listeners=[listener_conf("main", port)],
                   extra='backend = "direct";\ntelegram = { dc = ( '
                         '{ id = 2; address = "[::1]:%d"; }, '
                         '{ id = 2; address = "127.0.0.1:%d"; } ); };\n'
                         'network = { discover = false; prefer_ipv6 = '
                         'true; };\n' % (dead6, dc4.port))
        d.port = port
        d.start()
        try:
            r = tclient(port, "secure", "reqpq", dc=2)
            check(r.ok, "client: %s" % r)
            check(len(dc4.conns()) == 1, "IPv4 DC: %r" % dc4.conns())
            d.wait_log(re.compile(r"DC 2 failed over IPv6 .*; trying "
                                  r"127\.0\.0\.1:%d" % dc4.port), 5)
        finally:
            d.kill_all()


def test_ipv6_middle_proxies():
    # Only IPv6 middle proxies (on ::1), a client over IPv6.
    def tg(s):
        return 'proxy_secret_file = "%s"; proxy_config_file = "%s";' % (
            s.secret_file, s.proxy_conf)
    port = free_port()
    lst = listener_conf("main", port, address="::",
                        extra='ad_tag = "%s";' % ("ab" * 16))
    with MSetup(workers=1, mp_host="::1", listeners=[lst],
                telegram=tg) as s:
        for host in ("::1", "127.0.0.1"):
            expect_ok(tclient(port, "secure", "reqpq", host=host,
                              conns=2), 2)
        check(s.d.log_has(re.compile(r"link to DC 2 via \[::1\]:\d+ "
                                     r"handed to a worker")),
              "no IPv6 link in the log")


def test_ipv6_middle_proxy_family_fallback():
    # prefer_ipv6: the IPv6 list names a dead ::1 port; the IPv4 one the
    # fake middle proxy. The link comes up over IPv4 after the failure.
    import socket

    def tg(s):
        dead6 = free_port(socket.AF_INET6, "::1")
        v6 = os.path.join(s.tmp, "proxy-multi-v6.conf")
        with open(v6, "w") as f:
            f.write("proxy_for 2 [::1]:%d;\ndefault 2;\n" % dead6)
        os.chmod(v6, 0o644)
        return ('proxy_secret_file = "%s"; proxy_config_file = "%s"; '
                'proxy_config_v6_file = "%s";' % (
                    s.secret_file, s.proxy_conf, v6))
    with MSetup(workers=1, telegram=tg,
                extra="network = { discover = false; prefer_ipv6 = true; "
                      "};\n") as s:
        expect_ok(tclient(s.port, "secure", "reqpq", conns=2), 2)
        check(s.d.log_has(re.compile(r"link to DC 2 via \[::1\]:\d+ "
                                     r"failed: .*; trying 127\.0\.0\.1")),
              "no fallback line")


if __name__ == "__main__":
    run_tests([
        test_links_carry_the_address_two_sources_agree_on,
        test_disagreeing_sources_wait_for_agreement,
        test_one_source_must_answer_twice,
        test_both_sources_down_fall_back_to_the_interfaces,
        test_address_by_hand_asks_nobody,
        test_check_shows_the_address_and_nat,
        test_listener_server_option_wins,
        test_middle_links_use_the_discovered_address,
        test_middle_wrong_nat_ip_fails_with_a_clear_line,
        test_middle_wrong_nat_ip_retried_with_the_local_address,
        test_ipv6_direct_through_a_dual_stack_listener,
        test_ipv6_dc_falls_back_to_ipv4,
        test_ipv6_middle_proxies,
        test_ipv6_middle_proxy_family_fallback,
    ])
