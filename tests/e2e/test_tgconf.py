#!/usr/bin/env python3
"""Telegram's middle-proxy config in the dcpool (spec B.2.1): fetched over
HTTPS from a local server with a private CA (tests/e2e/https.py), checked,
kept in state_dir, refreshed; start-up never waits for it.

Only what the dcpool does is checked here (its log lines and the cache
files), not the middle-proxy links of the workers.
"""
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import https  # noqa: E402
from mtp import Daemon, check, run_tests, wait_for  # noqa: E402

SECRET = bytes((i * 37 + 11) % 256 for i in range(128))
CONFIG = (b"# force_probability 1 10\n"
          b"default 2;\n"
          b"proxy_for 1 149.154.175.50:8888;\n"
          b"proxy_for -1 149.154.175.50:8888;\n"
          b"proxy_for 2 149.154.162.39:80;\n"
          b"proxy_for 2 149.154.162.33:80;\n")
CONFIG_V6 = (b"proxy_for 1 [2001:b28:f23d:f001::d]:8888;\n"
             b"proxy_for 2 [2001:67c:4e8:f002::d]:80;\n")
FILES = {"/getProxySecret": SECRET, "/getProxyConfig": CONFIG,
         "/getProxyConfigV6": CONFIG_V6}
CACHE = {"proxy-secret": SECRET, "proxy-multi.conf": CONFIG,
         "proxy-multi-v6.conf": CONFIG_V6}


def telegram(urls, ca_file="", refresh=3600, http_timeout=5, extra=""):
    """Config text: backend middle, the three URLs, no metrics port."""
    su, cu, c6u = urls
    return """backend = "middle";
metrics = { port = 0; };
telegram = {
  proxy_secret_url = "%s";
  proxy_config_url = "%s";
  proxy_config_v6_url = "%s";
  ca_file = "%s";
  refresh = %d;
  http_timeout = %d;
  %s
};
""" % (su, cu, c6u, ca_file, refresh, http_timeout, extra)


def server_urls(srv):
    return (srv.url("/getProxySecret"), srv.url("/getProxyConfig"),
            srv.url("/getProxyConfigV6"))


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def daemon(body):
    d = Daemon(workers=1, extra=body)
    # the dcpool runs as nobody: it must reach state_dir and the files
    os.chmod(d.tmp, 0o755)
    return d


def state_dir(d):
    return os.path.join(d.tmp, "state")


def read_cache(d, name):
    try:
        with open(os.path.join(state_dir(d), name), "rb") as f:
            return f.read()
    except OSError:
        return None


def fill_cache(d):
    sd = state_dir(d)
    os.makedirs(sd, exist_ok=True)
    for name, body in CACHE.items():
        with open(os.path.join(sd, name), "wb") as f:
            f.write(body)


def lines(d, text):
    return [l for l in d.read_log().splitlines() if text in l]


def test_fetch_over_https():
    with https.HTTPSServer(FILES) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file))
        try:
            d.start()
            su, cu, c6u = server_urls(srv)
            d.wait_log("fetched the proxy secret from %s: 128 bytes" % su)
            d.wait_log("fetched the middle-proxy list from %s: 4 middle "
                       "proxies for 3 DCs" % cu)
            d.wait_log("fetched the IPv6 middle-proxy list from %s: 2 "
                       "middle proxies for 2 DCs" % c6u)
            d.wait_log("middle-proxy config now from https: secret 128 "
                       "bytes, 4 IPv4 and 2 IPv6 middle proxies")
            for name, body in CACHE.items():
                check(read_cache(d, name) == body,
                      "cache file %s: %r" % (name, read_cache(d, name)))
            left = [n for n in os.listdir(state_dir(d)) if n.startswith(".")]
            check(not left, "temporary files left: %s" % left)
            check(srv.count("/getProxySecret") >= 1, "no request seen")
        finally:
            d.stop()


def test_wrong_ca_fails():
    other = https.make_ca(name="some other CA")
    with https.HTTPSServer(FILES) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=other.ca_file,
                            refresh=2))
        try:
            d.start()
            su = server_urls(srv)[0]
            line = d.wait_log(re.compile(
                r"cannot fetch the proxy secret from %s: TLS certificate "
                r"verification failed: .*; none yet; retrying in 2 s"
                % re.escape(su)))
            check("unable to get local issuer certificate" in line, line)
            # retried with back-off, never written
            wait_for(lambda: len(lines(d, "cannot fetch the proxy secret"))
                     >= 2, 10, what="a retry")
            for name in CACHE:
                check(read_cache(d, name) is None,
                      "cache %s written despite the failure" % name)
            check(srv.count() == 0 and srv.tls_failures >= 2,
                  "requests %d, TLS failures %d" % (srv.count(),
                                                    srv.tls_failures))
            check(d.log_has("middle-proxy config now from") is None,
                  "a config was taken")
        finally:
            d.stop()


def test_wrong_host_name_fails():
    # trusted CA, but the certificate names another host
    ca = https.make_ca(dns=("core.telegram.test",), ips=())
    with https.HTTPSServer(FILES, ca=ca) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file))
        try:
            d.start()
            line = d.wait_log("cannot fetch the proxy secret from %s" %
                              server_urls(srv)[0])
            check("hostname mismatch" in line, line)
            check(read_cache(d, "proxy-secret") is None, "cache written")
        finally:
            d.stop()


def test_offline_start_uses_cache():
    port = closed_port()
    urls = tuple("https://localhost:%d/%s" % (port, p)
                 for p in ("s", "c", "c6"))
    d = daemon(telegram(urls))
    fill_cache(d)
    try:
        t0 = time.time()
        d.start()
        check(time.time() - t0 < 10, "start took %.1f s" % (time.time() - t0))
        d.wait_log("loaded the cached middle-proxy config from %s: secret "
                   "128 bytes, 4 IPv4 and 2 IPv6 middle proxies" %
                   state_dir(d))
        d.wait_log("middle-proxy config now from cache")
        line = d.wait_log("cannot fetch the proxy secret from %s" % urls[0])
        check("keeping the last good copy; retrying in 10 s" in line, line)
        for name, body in CACHE.items():
            check(read_cache(d, name) == body, "cache %s changed" % name)
        socket.create_connection(("127.0.0.1", d.port), 5).close()
    finally:
        d.stop()


def test_cache_then_same_fetch_reports_once():
    with https.HTTPSServer(FILES) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file))
        fill_cache(d)
        try:
            d.start()
            d.wait_log("middle-proxy config now from cache")
            for url in server_urls(srv):
                d.wait_log(re.compile(r"the .* at %s is unchanged" %
                                      re.escape(url)))
            check(d.log_has("middle-proxy config now from https") is None,
                  "the same config reported twice")
            check(srv.count() == 3, "requests: %s" % srv.requests)
        finally:
            d.stop()


def test_no_server_no_cache_still_serves():
    port = closed_port()
    urls = tuple("https://localhost:%d/%s" % (port, p)
                 for p in ("s", "c", "c6"))
    d = daemon(telegram(urls, refresh=2))
    try:
        d.start()
        # listeners up although Telegram is unreachable
        socket.create_connection(("127.0.0.1", d.port), 5).close()
        d.wait_log("no usable cached middle-proxy config")
        first = d.wait_log("cannot fetch the proxy secret from %s" % urls[0])
        check("127.0.0.1 port %d" % port in first and
              "none yet; retrying in 2 s" in first, first)
        wait_for(lambda: len(lines(d, "cannot fetch the proxy secret"))
                 >= 3, 15, what="retries")
        check(d.log_has("cannot fetch the IPv6 middle-proxy list from %s"
                        % urls[2]), "no line for the v6 URL")
        check(d.proc.poll() is None and d.dcpool_pid(), "daemon died")
    finally:
        d.stop()


def test_bad_answers_keep_the_good_copy():
    with https.HTTPSServer(FILES) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file,
                            refresh=2))
        su, cu, c6u = server_urls(srv)
        try:
            d.start()
            d.wait_log("middle-proxy config now from https")
            check(read_cache(d, "proxy-multi.conf") == CONFIG, "no cache")
            srv.set("/getProxyConfig", b"# busy\ndefault 2;\n")
            srv.set("/getProxySecret", b"short")
            srv.set("/getProxyConfigV6", (404, b"gone\n"))
            line = d.wait_log("refusing the middle-proxy list from %s:" % cu)
            check("keeping the last good copy" in line, line)
            line = d.wait_log("refusing the proxy secret from %s: 5 bytes, "
                              "not 32 to 256" % su)
            line = d.wait_log("cannot fetch the IPv6 middle-proxy list from "
                              "%s: HTTP status 404" % c6u)
            check("optional" in line, line)
            srv.set("/getProxyConfig", (500, b"oops"))
            d.wait_log("cannot fetch the middle-proxy list from %s: HTTP "
                       "status 500" % cu)
            for name, body in CACHE.items():
                check(read_cache(d, name) == body,
                      "cache %s replaced by a bad copy" % name)
            check(len(lines(d, "middle-proxy config now from")) == 1,
                  "state reported again")
            # good again: same bytes, so "unchanged" and no new report
            for path, body in FILES.items():
                srv.set(path, body)
            d.wait_log("the middle-proxy list at %s is unchanged" % cu)
            # a real change is taken and reported
            srv.set("/getProxyConfig", CONFIG + b"proxy_for 4 "
                    b"91.108.4.136:8888;\n")
            d.wait_log("fetched the middle-proxy list from %s: 5 middle "
                       "proxies for 4 DCs" % cu)
            d.wait_log("middle-proxy config now from https: secret 128 "
                       "bytes, 5 IPv4")
            wait_for(lambda: read_cache(d, "proxy-multi.conf") != CONFIG, 5,
                     what="cache update")
            check(b"91.108.4.136:8888" in read_cache(d, "proxy-multi.conf"),
                  "cache not updated")
        finally:
            d.stop()


def test_clock_skew_warning():
    with https.HTTPSServer(FILES) as srv:
        srv.date_offset = 120
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file))
        try:
            d.start()
            line = d.wait_log("clock skew: localhost:%d says" % srv.port)
            check(re.search(r"our clock is 1[12]\d s behind", line), line)
            d.wait_log("middle-proxy config now from https")
        finally:
            d.stop()
    with https.HTTPSServer(FILES) as srv:
        d = daemon(telegram(server_urls(srv), ca_file=srv.ca_file))
        try:
            d.start()
            d.wait_log("middle-proxy config now from https")
            check(d.log_has("clock skew") is None, "warned for a good clock")
        finally:
            d.stop()


def test_plain_http_and_timeout():
    with https.HTTPSServer(FILES, tls=False) as srv:
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)        # accepts nothing, answers nothing
        v6 = "http://localhost:%d/getProxyConfigV6" % \
            silent.getsockname()[1]
        urls = (srv.url("/getProxySecret"), srv.url("/getProxyConfig"), v6)
        d = daemon(telegram(urls, http_timeout=1))
        try:
            d.start()
            d.wait_log("fetched the proxy secret from %s" % urls[0])
            d.wait_log("middle-proxy config now from http: secret 128 "
                       "bytes, 4 IPv4 and 0 IPv6")
            d.wait_log("cannot fetch the IPv6 middle-proxy list from %s: "
                       "timed out after 1 s" % v6)
            check(read_cache(d, "proxy-multi.conf") == CONFIG, "no cache")
            check(read_cache(d, "proxy-multi-v6.conf") is None, "v6 cached")
        finally:
            d.stop()
            silent.close()


def test_files_instead_of_urls():
    with https.HTTPSServer(FILES) as srv:
        d = daemon("")
        paths = [os.path.join(d.tmp, n) for n in ("secret.bin", "v4.conf",
                                                  "v6.conf")]
        for p, body in zip(paths, (SECRET, CONFIG, CONFIG_V6)):
            with open(p, "wb") as f:
                f.write(body)
        d.write_config(d.make_config(workers=1, extra=telegram(
            server_urls(srv), ca_file=srv.ca_file, refresh=2, extra="""
  proxy_secret_file = "%s";
  proxy_config_file = "%s";
  proxy_config_v6_file = "%s";""" % tuple(paths))))
        try:
            d.start()
            d.wait_log("read the proxy secret from %s: 128 bytes" % paths[0])
            d.wait_log("read the middle-proxy list from %s: 4 middle "
                       "proxies" % paths[1])
            d.wait_log("read the IPv6 middle-proxy list from %s" % paths[2])
            d.wait_log("middle-proxy config now from file: secret 128 "
                       "bytes, 4 IPv4 and 2 IPv6")
            # a bad file is refused, the old list stays
            with open(paths[1], "wb") as f:
                f.write(b"default 2;\n")
            line = d.wait_log("refusing the middle-proxy list in %s" %
                              paths[1])
            check("keeping the last good copy" in line, line)
            # and a new good one is taken at the next refresh
            with open(paths[1], "wb") as f:
                f.write(CONFIG + b"proxy_for 5 91.108.56.183:8888;\n")
            d.wait_log("read the middle-proxy list from %s: 5 middle "
                       "proxies" % paths[1])
            d.wait_log("middle-proxy config now from file: secret 128 "
                       "bytes, 5 IPv4")
            check(srv.count() == 0 and srv.tls_failures == 0,
                  "the URLs were used: %s" % srv.requests)
            for name in CACHE:
                check(read_cache(d, name) is None, "file copied to cache")
        finally:
            d.stop()


if __name__ == "__main__":
    run_tests([
        test_fetch_over_https,
        test_wrong_ca_fails,
        test_wrong_host_name_fails,
        test_offline_start_uses_cache,
        test_cache_then_same_fetch_reports_once,
        test_no_server_no_cache_still_serves,
        test_bad_answers_keep_the_good_copy,
        test_clock_skew_warning,
        test_plain_http_and_timeout,
        test_files_instead_of_urls,
    ])
