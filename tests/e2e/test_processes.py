"""The process tree: supervisor, workers, dcpool; restarts; stop."""
import os
import re
import signal
import time

from mtp import (Daemon, alive, check, connect, is_open, run_tests,
                 socket_fds, wait_for)


def test_process_tree_and_titles():
    d = Daemon(workers=2).start()
    try:
        kids = d.kids()
        titles = sorted(kids.values())
        check(titles == ["mtprotod: dcpool", "mtprotod: worker 0",
                         "mtprotod: worker 1"],
              "children are %r" % titles)
        from mtp import proc_title
        check(proc_title(d.pid) == "mtprotod: supervisor",
              "supervisor title is %r" % proc_title(d.pid))
        check(open(d.pidfile).read().strip() == str(d.pid),
              "pidfile does not hold the supervisor's pid")
        # children run as nobody when started as root
        if os.geteuid() == 0:
            for pid in kids:
                st = os.stat("/proc/%d" % pid)
                check(st.st_uid != 0, "child %d runs as root" % pid)
    finally:
        d.kill_all()


def test_connections_spread_over_workers():
    d = Daemon(workers=2).start()
    try:
        ws = d.workers_now()
        base = {pid: socket_fds(pid) for pid in ws}
        conns = [connect(d.port) for _ in range(60)]
        # every connection is accepted by some worker
        def held():
            return sum(socket_fds(p) - base[p] for p in ws) >= 60
        wait_for(held, 10, what="60 connections accepted")
        per = {p: socket_fds(p) - base[p] for p in ws}
        check(all(n >= 5 for n in per.values()),
              "connections not spread over both workers: %r" % per)
        for c in conns:
            c.close()
    finally:
        d.kill_all()


def test_killed_children_come_back_in_their_slot():
    d = Daemon(workers=2).start()
    try:
        slots = d.worker_slots()
        victim = slots[1][0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: d.worker_slots().get(1, [victim]) != [victim]
                 and len(d.worker_slots().get(1, [])) == 1, 10,
                 what="worker 1 restarted")
        check(d.worker_slots()[0] == slots[0], "worker 0 was disturbed")
        d.wait_log("worker 1 (pid %d) killed by signal 9" % victim)
        # the new worker serves
        c = connect(d.port)
        c.sendall(b"x" * 100)
        check(is_open(c, 0.2), "connection closed after a restart")
        c.close()
        dc = d.dcpool_pid()
        os.kill(dc, signal.SIGKILL)
        wait_for(lambda: d.dcpool_pid() not in (None, dc), 10,
                 what="dcpool restarted")
        d.wait_log("dcpool 0 (pid %d) killed by signal 9" % dc)
        check(d.stop() == 0, "daemon did not stop cleanly")
    finally:
        d.kill_all()


def test_restart_intensity_stops_the_daemon():
    d = Daemon(workers=2, extra="max_restarts = 2;\nrestart_period = 60;")
    d.start()
    try:
        for _ in range(3):
            ws = d.worker_slots()
            pid = ws.get(0, [None])[0]
            if pid is None:
                time.sleep(0.2)
                continue
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: d.proc.poll() is not None or
                     d.worker_slots().get(0, [pid])[0] != pid, 10,
                     what="restart")
        rc = d.proc.wait(20)
        check(rc != 0, "daemon exited 0 after too many restarts")
        d.wait_log("restart intensity exceeded")
        check(not d.kids(), "children left behind")
    finally:
        d.kill_all()


def test_sigterm_stops_everything_and_removes_pidfile():
    d = Daemon(workers=2).start()
    kids = list(d.kids())
    c = connect(d.port)
    wait_for(lambda: sum(socket_fds(p) for p in d.workers_now()) > 0, 5)
    d.signal(signal.SIGTERM)
    # graceful: the worker holding a connection drains, it does not drop
    time.sleep(1.0)
    check(d.proc.poll() is None, "stopped without draining")
    check(is_open(c), "open connection dropped by a graceful stop")
    c.close()
    rc = d.proc.wait(15)
    check(rc == 0, "exit status %r" % rc)
    for pid in kids:
        check(not alive(pid), "child %d still alive" % pid)
    check(not os.path.exists(d.pidfile), "pidfile left behind")
    c.close()


def test_sigquit_stops_now():
    d = Daemon(workers=2).start()
    kids = list(d.kids())
    conns = [connect(d.port) for _ in range(5)]
    t0 = time.time()
    d.signal(signal.SIGQUIT)
    d.proc.wait(10)
    check(time.time() - t0 < 5, "SIGQUIT took too long")
    for pid in kids:
        check(not alive(pid), "child %d still alive" % pid)
    for c in conns:
        c.close()


def test_daemonize_and_signal_commands():
    """Without -f mtprotod detaches; -s reload and -s stop reach it
    through the pidfile."""
    import subprocess
    from mtp import MTPROTOD, proc_title
    d = Daemon(workers=1)
    p = subprocess.run([MTPROTOD, "-c", d.conf], capture_output=True,
                       timeout=20)
    check(p.returncode == 0, "start exited %d: %s" % (p.returncode,
                                                      p.stderr))
    pid = wait_for(lambda: os.path.exists(d.pidfile) and
                   int(open(d.pidfile).read().strip() or 0), 10,
                   what="pidfile")
    try:
        check(proc_title(pid) == "mtprotod: supervisor",
              "pidfile names %d, a %r" % (pid, proc_title(pid)))
        check(os.getsid(pid) == pid, "daemon is not a session leader")
        before = d.read_log().count("reload complete")
        r = subprocess.run([MTPROTOD, "-c", d.conf, "-s", "reload"],
                           capture_output=True, timeout=20)
        check(r.returncode == 0, "-s reload failed: %s" % r.stderr)
        wait_for(lambda: d.read_log().count("reload complete") > before,
                 15, what="reload via -s")
        r = subprocess.run([MTPROTOD, "-c", d.conf, "-s", "stop"],
                           capture_output=True, timeout=20)
        check(r.returncode == 0, "-s stop failed: %s" % r.stderr)
        wait_for(lambda: not alive(pid), 20, what="daemon to stop")
        check(not os.path.exists(d.pidfile), "pidfile left behind")
        r = subprocess.run([MTPROTOD, "-c", d.conf, "-s", "stop"],
                           capture_output=True, timeout=20)
        check(r.returncode != 0, "-s stop without a daemon succeeded")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigusr1_reopens_the_log_for_every_process():
    """logrotate style: rename the file, SIGUSR1; the supervisor and the
    unprivileged workers then write to the new file."""
    d = Daemon(workers=2).start()
    try:
        os.rename(d.log, d.log + ".1")
        d.signal(signal.SIGUSR1)
        d.wait_log("log file reopened")
        # a bad client makes a worker log a debug line
        workers = set(d.workers_now())
        for _ in range(6):
            c = connect(d.port)
            c.sendall(os.urandom(64).replace(b"\x16", b"\x17"))
            time.sleep(0.05)
            c.close()
        line = d.wait_log("bad client", timeout=10)
        pid = int(line.split("[")[1].split("]")[0])
        check(pid in workers, "the line came from pid %d, not a worker "
              "%r: %s" % (pid, workers, line))
        old = open(d.log + ".1").read()
        check("bad client" not in old, "a worker still writes to the "
              "rotated file")
    finally:
        d.kill_all()


def test_ctrl_c_in_foreground_drains():
    """Ctrl-C on `mtprotod -f` sends SIGINT to the whole process group:
    the supervisor stops gracefully, and its children must not die of
    the signal themselves (workers drain, the dcpool waits its turn)."""
    import subprocess
    from mtp import MTPROTOD
    d = Daemon(workers=2)
    # Its own process group, as a shell gives a foreground job.
    d.proc = subprocess.Popen(
        [MTPROTOD, "-f", "-c", d.conf], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        d.wait_ready()
        kids = list(d.kids())
        dcpool = d.dcpool_pid()
        c = connect(d.port)
        wait_for(lambda: sum(socket_fds(p) for p in d.workers_now()) > 0,
                 5, what="connection accepted")
        os.killpg(d.pid, signal.SIGINT)
        time.sleep(1.0)
        check(d.proc.poll() is None, "stopped without draining")
        check(is_open(c), "open connection dropped by Ctrl-C")
        check(alive(dcpool), "the dcpool died of SIGINT")
        d.wait_log("Interrupt: stopping gracefully")
        check(not d.log_has(re.compile(r"killed by signal 2 ")),
              "a child was killed by SIGINT")
        c.close()
        rc = d.proc.wait(15)
        check(rc == 0, "exit status %r" % rc)
        for pid in kids:
            check(not alive(pid), "child %d still alive" % pid)
        check(not os.path.exists(d.pidfile), "pidfile left behind")
    finally:
        d.kill_all()


def test_default_user_and_state_dir():
    # Without user / group in the file, the children run as mtprotod
    # (make install's system user) or, where it does not exist, as
    # nobody with a warning. The state directory is theirs, mode 0700.
    import pwd
    check(os.geteuid() == 0, "this test needs root (the test command "
          "runs as root)")
    d = Daemon(workers=1)
    d.write_config(open(d.conf).read().replace(
        'user = "nobody";\ngroup = "nogroup";\n', ""))
    d.start()
    try:
        try:
            want = pwd.getpwnam("mtprotod").pw_uid
        except KeyError:
            want = pwd.getpwnam("nobody").pw_uid
            d.wait_log('user "mtprotod" not found (make install creates '
                       'it): the children run as nobody')
        for pid in d.kids():
            check(os.stat("/proc/%d" % pid).st_uid == want,
                  "child %d runs as uid %d, not %d" % (
                      pid, os.stat("/proc/%d" % pid).st_uid, want))
        st = os.stat(os.path.join(d.tmp, "state"))
        check(st.st_uid == want and (st.st_mode & 0o777) == 0o700,
              "state_dir: uid %d mode %o" % (st.st_uid, st.st_mode & 0o777))
    finally:
        d.kill_all()


def test_state_dir_writable_by_others_is_refused():
    # Whoever can write there can plant a Telegram config or a secret.
    d = Daemon(workers=1)
    state = os.path.join(d.tmp, "state")
    os.mkdir(state)
    os.chmod(state, 0o777)
    d.start(wait=False)
    rc = d.proc.wait(20)
    out = d.output() + d.read_log()
    check(rc != 0 and "state_dir %s is writable by others (mode 0777)"
          % state in out, "rc %d: %s" % (rc, out[-600:]))


if __name__ == "__main__":
    run_tests([
               test_sigusr1_reopens_the_log_for_every_process,
               test_daemonize_and_signal_commands,test_process_tree_and_titles,
               test_connections_spread_over_workers,
               test_killed_children_come_back_in_their_slot,
               test_restart_intensity_stops_the_daemon,
               test_sigterm_stops_everything_and_removes_pidfile,
               test_sigquit_stops_now,
               test_ctrl_c_in_foreground_drains,
               test_default_user_and_state_dir,
               test_state_dir_writable_by_others_is_refused])
