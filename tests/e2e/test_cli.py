"""Command line: -t on good and bad files, -V, -h, --gen-secret, --links."""
import os
import re
import subprocess

from mtp import MTPROTOD, Daemon, check, run_tests


def run(*args):
    p = subprocess.run([MTPROTOD] + list(args), capture_output=True,
                       text=True, timeout=20)
    return p.returncode, p.stdout + p.stderr


def test_check_good_config():
    d = Daemon()
    rc, out = run("-t", "-c", d.conf)
    check(rc == 0, "-t on a good file exited %d: %s" % (rc, out))
    check("ok" in out, "no 'ok' in: " + out)


def test_check_bad_configs_name_file_line_option():
    d = Daemon()
    good = open(d.conf).read()
    cases = [
        # (replace, with, expected line text, expected option)
        ('secret = "%s"' % "0123456789abcdef0123456789abcdef",
         'secret = "0123"', "secret"),
        ("shutdown_timeout = 20;", "shutdown_timeout = 20;\nbogus = 1;",
         "bogus"),
        ("workers = 2;", 'workers = "many";', "workers"),
        ('level = "debug"', 'level = "loud"', "level"),
        ("port = %d;" % d.port, "port = 70000;", "port"),
    ]
    for old, new, option in cases:
        check(old in good, "test bug: %r not in config" % old)
        body = good.replace(old, new, 1)
        d.write_config(body)
        # the line the error must name: where the new text starts
        line = body[:body.index(new)].count("\n") + 1 + new.count("\n")
        if new.startswith("shutdown"):
            line = body[:body.index("bogus")].count("\n") + 1
        rc, out = run("-t", "-c", d.conf)
        check(rc == 1, "-t on a bad file (%s) exited %d" % (option, rc))
        check("%s:%d" % (d.conf, line) in out,
              "error does not name %s:%d: %s" % (d.conf, line, out))
        check(option in out, "error does not name %s: %s" % (option, out))
    # syntax error
    d.write_config(good + "\nlisteners = (\n")
    rc, out = run("-t", "-c", d.conf)
    check(rc == 1 and d.conf in out, "syntax error not reported: " + out)
    # missing file
    rc, out = run("-t", "-c", "/nonexistent/mtprotod.conf")
    check(rc == 1 and "/nonexistent/mtprotod.conf" in out,
          "missing file not reported: " + out)


def test_version_and_help():
    rc, out = run("-V")
    check(rc == 0 and re.match(r"mtprotod \d+\.\d+", out), out)
    rc, out = run("-h")
    check(rc == 0 and "usage" in out, out)
    rc, out = run("--no-such-option")
    check(rc != 0, "an unknown option was accepted")


def test_gen_secret():
    rc, out = run("--gen-secret")
    check(rc == 0, out)
    check(re.search(r"\b[0-9a-f]{32}\b", out), "no secret in: " + out)
    rc2, out2 = run("--gen-secret")
    check(out != out2, "two secrets are the same")
    rc, out = run("--gen-secret", "--tls-domain", "www.example.com")
    check(rc == 0 and re.search(
        r"ee[0-9a-f]{32}7777772e6578616d706c652e636f6d", out),
        "no ee secret for www.example.com in: " + out)


def test_links():
    d = Daemon()
    rc, out = run("--links", "-c", d.conf, "--server", "proxy.example.org")
    check(rc == 0, out)
    s = "0123456789abcdef0123456789abcdef"
    for form in (s, "dd" + s, "ee" + s + "7777772e6578616d706c652e636f6d"):
        link = "tg://proxy?server=proxy.example.org&port=%d&secret=%s" % (
            d.port, form)
        check(link in out, "missing link %s in:\n%s" % (link, out))
        check(link.replace("tg://proxy", "https://t.me/proxy") in out,
              "missing t.me form of " + form)
    check("\u2580" in out or "\u2584" in out or "\u2588" in out,
          "no QR code drawn")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    run_tests([test_check_good_config,
               test_check_bad_configs_name_file_line_option,
               test_version_and_help, test_gen_secret, test_links])
