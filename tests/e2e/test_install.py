"""make install (issue 11): what lands where, with the configured paths;
the config is kept; the systemd unit verifies; the SysV script starts,
reloads (live connections kept), reports and stops a daemon; the man
pages lint clean.

tests/run-all.sh runs it after installing a build under a prefix of its
own: INSTALL_PREFIX (the --prefix), INSTALL_UNITDIR (the unit
directory) and INSTALL_BUILD (the build tree, to install again).
"""
import os
import shutil
import stat
import subprocess
import tempfile
import time

from mtp import (SECRET, FakeDC, check, free_port, listener_conf, run_tests,
                 tclient, tclient_wait, telegram_conf, wait_for)

PREFIX = os.environ.get("INSTALL_PREFIX", "")
UNITDIR = os.environ.get("INSTALL_UNITDIR", "")
BUILD = os.environ.get("INSTALL_BUILD", "")


def need_install():
    check(PREFIX and UNITDIR and BUILD and os.path.isdir(PREFIX),
          "INSTALL_PREFIX, INSTALL_UNITDIR and INSTALL_BUILD must name an "
          "installed tree (tests/run-all.sh sets them)")


def path(*p):
    return os.path.join(PREFIX, *p)


def test_files_and_paths():
    need_install()
    files = {
        "sbin/mtprotod": 0o755,
        "etc/mtprotod/mtprotod.conf": None,
        "etc/init.d/mtprotod": 0o755,
        "etc/logrotate.d/mtprotod": None,
        "share/man/man8/mtprotod.8": None,
        "share/man/man5/mtprotod.conf.5": None,
    }
    for f, mode in files.items():
        st = os.stat(path(f))
        if mode is not None:
            check(stat.S_IMODE(st.st_mode) & 0o111,
                  "%s is not executable" % f)
    units = [os.path.join(UNITDIR, u) for u in
             ("mtprotod.service", "mtprotod-upgrade.service")]
    for f in units + [path("etc/init.d/mtprotod"),
                      path("etc/logrotate.d/mtprotod")]:
        text = open(f).read()
        check("@sbindir@" not in text and "@sysconfdir@" not in text,
              "%s: placeholders left" % f)
        check(path("sbin/mtprotod") in text, "%s does not run %s" % (
            f, path("sbin/mtprotod")))
        if PREFIX != "/usr/local":
            check("/usr/local" not in text, "%s names /usr/local" % f)


def test_install_keeps_a_changed_config():
    need_install()
    conf = path("etc/mtprotod/mtprotod.conf")
    with open(conf, "a") as f:
        f.write("# changed by the operator\n")
    r = subprocess.run(["make", "-C", BUILD, "install"], capture_output=True,
                       text=True, timeout=600)
    check(r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:])
    check("changed by the operator" in open(conf).read(),
          "make install overwrote the config")
    check("keeping" in r.stdout, "no word about the kept config")


def test_systemd_unit_verifies():
    need_install()
    tool = shutil.which("systemd-analyze")
    check(tool, "systemd-analyze missing (Debian package systemd): the "
          "test command installs it")
    for u in ("mtprotod.service", "mtprotod-upgrade.service"):
        # Documentation=man:... is looked up: with our MANPATH.
        r = subprocess.run([tool, "verify", os.path.join(UNITDIR, u)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ,
                                    MANPATH=path("share/man") + ":"))
        # Lines about other units (the host's, in a chroot) do not count.
        ours = [l for l in (r.stdout + r.stderr).splitlines()
                if "mtprotod" in l]
        check(r.returncode == 0 and not ours,
              "systemd-analyze verify %s: rc %d\n%s" % (
                  u, r.returncode, r.stdout + r.stderr))


def test_man_pages_lint_clean():
    need_install()
    tool = shutil.which("mandoc")
    check(tool, "mandoc missing (Debian package mandoc): the test command "
          "installs it")
    for m in ("share/man/man8/mtprotod.8", "share/man/man5/mtprotod.conf.5"):
        r = subprocess.run([tool, "-T", "lint", "-W", "warning", path(m)],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and not r.stdout.strip(),
              "mandoc -T lint %s:\n%s%s" % (m, r.stdout, r.stderr))


def test_sysv_script():
    need_install()
    script = path("etc/init.d/mtprotod")
    dc = FakeDC()
    tmp = tempfile.mkdtemp(prefix="mtp-sysv-")
    port = free_port()
    conf = os.path.join(tmp, "mtprotod.conf")
    pidfile = os.path.join(tmp, "mtprotod.pid")
    with open(conf, "w") as f:
        f.write("""user = "nobody";
group = "nogroup";
workers = 2;
pidfile = "%s";
state_dir = "%s/state";
log = { target = "%s/mtprotod.log"; level = "info"; };
network = { discover = false; };
metrics = { port = 0; };
listeners = (
%s
);
%s""" % (pidfile, tmp, tmp, listener_conf("main", port),
            telegram_conf({2: dc.port})))
    env = dict(os.environ, CONF=conf)

    def run(action):
        r = subprocess.run([script, action], capture_output=True, text=True,
                           timeout=120, env=env)
        return r.returncode, r.stdout + r.stderr

    try:
        rc, out = run("status")
        check(rc == 3 and "not running" in out, "before: %d %s" % (rc, out))
        rc, out = run("start")
        check(rc == 0, "start: %d %s" % (rc, out))
        pid = int(open(pidfile).read())
        rc, out = run("status")
        check(rc == 0 and "running (pid %d)" % pid in out,
              "status: %d %s" % (rc, out))
        rc, out = run("start")
        check(rc == 0 and "already running" in out,
              "start again: %d %s" % (rc, out))
        # A reload with clients in the middle of their exchanges.
        held = tclient(port, "secure", "hold", secret=SECRET, conns=5,
                       rounds=12, interval=0.5, timeout=60, wait=False)
        time.sleep(2)
        rc, out = run("reload")
        check(rc == 0, "reload: %d %s" % (rc, out))
        wait_for(lambda: "reload" in open(os.path.join(
            tmp, "mtprotod.log")).read(), 10, what="the reload logged")
        r = tclient_wait(held)
        check(r.ok and "5/5 ok" in r.out,
              "clients across the reload: %s %s" % (r.out, r.err[-800:]))
        check(int(open(pidfile).read()) == pid, "the supervisor changed")
        rc, out = run("stop")
        check(rc == 0, "stop: %d %s" % (rc, out))
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 30,
                 what="the supervisor gone")
        rc, out = run("status")
        check(rc == 3, "after stop: %d %s" % (rc, out))
        # A config with an error: start refuses, naming it.
        with open(conf, "a") as f:
            f.write("bogus = 1;\n")
        rc, out = run("start")
        check(rc != 0 and "bogus" in out, "bad config: %d %s" % (rc, out))
    finally:
        subprocess.run([script, "stop"], capture_output=True, env=env,
                       timeout=120)
        dc.stop()


if __name__ == "__main__":
    run_tests([test_files_and_paths, test_install_keeps_a_changed_config,
               test_systemd_unit_verifies, test_man_pages_lint_clean,
               test_sysv_script])
