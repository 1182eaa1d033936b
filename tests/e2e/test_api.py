"""The management API (issue 10): telemt's paths, envelopes and field
names; a user made through it connects with its link while nobody else is
disconnected; patch, disable (its sessions close), enable, rotate, reset
the quota, delete; If-Match conflicts; bad bodies refused with nothing
applied; the token, the allow list and read_only."""
import http.client
import json
import os
import re
import signal

from mtp import (Daemon, FakeDC, check, free_port, run_tests, tclient,
                 tclient_wait, telegram_conf, wait_for)

TOKEN = "s3cret-token"
BOB = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
ALICE = "a11ce000a11ce000a11ce000a11ce000"


class Api:
    def __init__(self, port, token=TOKEN):
        self.port, self.token = port, token

    def call(self, method, path, body=None, headers=None, token=True,
             raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        h = dict(headers or {})
        if token and self.token:
            h["Authorization"] = self.token
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        try:
            j = json.loads(text)
        except ValueError:
            j = {"raw": text}
        return r.status, j

    def ok(self, method, path, body=None, want=200, **kw):
        st, j = self.call(method, path, body, **kw)
        check(st == want and j.get("ok") is True,
              "%s %s: %d %r" % (method, path, st, j))
        return j

    def err(self, method, path, body=None, want=400, code=None, **kw):
        st, j = self.call(method, path, body, **kw)
        check(st == want and j.get("ok") is False,
              "%s %s: wanted %d, got %d %r" % (method, path, want, st, j))
        if code:
            check(j["error"]["code"] == code,
                  "%s %s: code %r" % (method, path, j))
        return j


def served(port, secret, timeout=4):
    return tclient(port, "secure", "reqpq", secret=secret,
                   timeout=timeout).ok


def hold(port, secret, rounds=120):
    return tclient(port, "secure", "hold", secret=secret, conns=1,
                   rounds=rounds, interval=0.25, timeout=rounds * 0.25 + 30,
                   wait=False)


def setup(api_extra=""):
    dc = FakeDC("packets")
    port, port2, aport = free_port(), free_port(), free_port()
    d = Daemon(workers=2)
    users = os.path.join(d.tmp, "users.conf")
    with open(users, "w") as f:
        f.write('{ name = "bob"; secret = "%s"; }\n' % BOB)
    body = d.make_config(workers=2, listeners=["""  {
    name = "main"; address = "127.0.0.1"; port = %d;
    protocols = [ "secure" ];
    users = (
@include "users.conf"
    );
  }""" % port, """  {
    name = "other"; address = "127.0.0.1"; port = %d;
    protocols = [ "secure" ];
    users = ( { name = "alice"; secret = "%s"; } );
  }""" % (port2, ALICE)], extra=telegram_conf({2: dc.port}) +
        "handshake_timeout = 1;\n"
        'api = { port = %d; token = "%s"; users_file = "%s"; %s };\n'
        % (aport, TOKEN, users, api_extra))
    d.write_config(body)
    os.chmod(d.tmp, 0o755)
    return d, dc, port, port2, Api(aport), users


def test_users_through_the_api():
    d, dc, port, port2, api, users = setup()
    holders = []
    try:
        d.start()
        d.wait_log("api: listening on 127.0.0.1", 5)
        # the token, and the envelopes
        api.err("GET", "/v1/health", want=401, code="unauthorized",
                token=False)
        api.err("GET", "/v1/health", want=401, code="unauthorized",
                headers={"Authorization": TOKEN + "x"}, token=False)
        j = api.ok("GET", "/v1/health")
        check(j["data"]["status"] == "ok" and j["data"]["read_only"] is False,
              "health: %r" % j)
        check(re.fullmatch(r"[0-9a-f]{64}", j["revision"]),
              "revision: %r" % j)
        api.err("GET", "/v1/nothing", want=404, code="not_found")
        api.err("PUT", "/v1/users/bob", want=405, code="method_not_allowed")
        j = api.ok("GET", "/v1/users")
        names = [u["username"] for u in j["data"]]
        check(names == ["alice", "bob"], "users: %r" % names)
        api.ok("GET", "/v1/stats/summary")
        api.ok("GET", "/v1/health/ready")

        # two clients hold streams while users change
        hb, ha = hold(port, BOB), hold(port2, ALICE)
        holders += [hb, ha]
        wait_for(lambda: len(re.findall(r"client of (main/bob|other/alice)",
                                        d.read_log())) >= 2, 10,
                 what="bob's and alice's sessions")

        # create: a link that works, nobody else disconnected
        j = api.ok("POST", "/v1/users", {"username": "carol",
                                         "max_tcp_conns": 2}, want=201)
        secret = j["data"]["secret"]
        check(re.fullmatch(r"[0-9a-f]{32}", secret), "secret: %r" % j)
        user = j["data"]["user"]
        check(user["username"] == "carol" and user["max_tcp_conns"] == 2
              and user["enabled"] is True, "user: %r" % user)
        check(any(("secret=dd" + secret) in link
                  for link in user["links"]["secure"]),
              "links: %r" % user["links"])
        d.wait_log("reload applied in place", 10)
        check(served(port, secret), "carol not served with her link")
        text = open(users).read()
        check('name = "carol"' in text and 'name = "bob"' in text,
              "users file: %r" % text)
        check(os.stat(users).st_uid == 0 and
              os.stat(users).st_mode & 0o077 == 0,
              "users file not root's 0600")
        check(os.path.exists(users + ".bak"), "no backup kept")
        api.err("POST", "/v1/users", {"username": "carol"}, want=409,
                code="user_exists")

        # patch (merge patch), with and without the right revision
        rev = api.ok("GET", "/v1/users/carol")["revision"]
        api.err("PATCH", "/v1/users/carol", {"data_quota_bytes": 1},
                want=409, code="revision_conflict",
                headers={"If-Match": '"%s"' % ("0" * 64)})
        j = api.ok("PATCH", "/v1/users/carol",
                   {"data_quota_bytes": 10 ** 9, "max_tcp_conns": None,
                    "rate_limit_up_bps": 8 * 10 ** 6},
                   headers={"If-Match": '"%s"' % rev})
        u = j["data"]
        check(u["data_quota_bytes"] == 10 ** 9 and u["max_tcp_conns"] is None
              and u["rate_limit_down_bps"] == 8 * 10 ** 6,
              "patched: %r" % u)
        check(j["revision"] != rev, "revision did not change")

        # disable: her open session closes; enable: served again
        seen = len(re.findall(r"client of main/carol", d.read_log()))
        hc = hold(port, secret)
        holders.append(hc)
        wait_for(lambda: len(re.findall(r"client of main/carol",
                                        d.read_log())) > seen,
                 10, what="carol's session")
        j = api.ok("POST", "/v1/users/carol/disable")
        check(j["data"]["enabled"] is False, "disable: %r" % j)
        d.wait_log("closed: user carol of main was disabled", 5)
        r = tclient_wait(hc)
        check("CLOSED conn 0" in r.out, "carol's session stayed: %s" % r)
        check(not served(port, secret), "a disabled user was served")
        api.ok("POST", "/v1/users/carol/enable")
        wait_for(lambda: served(port, secret), 10, what="carol enabled")

        # quota used, then reset
        r = tclient(port, "secure", "echo", secret=secret, bytes=64 * 1024,
                    packet=4096, timeout=20)
        check(r.ok, "echo: %s" % r)
        used = api.ok("GET", "/v1/users/carol")["data"]["quota_used_bytes"]
        check(used >= 128 * 1024, "quota used: %r" % used)
        j = api.ok("POST", "/v1/users/carol/reset-quota")
        check(j["data"]["used_bytes"] == 0, "reset: %r" % j)
        check(api.ok("GET", "/v1/users/carol")["data"]["quota_used_bytes"]
              == 0, "quota not reset")

        # rotate: the old secret stops working, the new one works
        j = api.ok("POST", "/v1/users/carol/rotate-secret")
        new = j["data"]["secret"]
        check(new != secret and re.fullmatch(r"[0-9a-f]{32}", new),
              "rotated: %r" % j)
        wait_for(lambda: served(port, new), 10, what="the new secret")
        check(not served(port, secret), "the old secret still works")

        # bad input: refused, nothing applied (the revision stays)
        rev = api.ok("GET", "/v1/users")["revision"]
        before = open(users).read()
        api.err("POST", "/v1/users", raw=b"{not json", code="bad_request")
        j = api.err("PATCH", "/v1/users/carol", {"colour": "red"},
                    code="bad_request")
        check("colour" in j["error"]["message"], "unknown field: %r" % j)
        j = api.err("PATCH", "/v1/users/carol", {"max_tcp_conns": "2"},
                    code="bad_request")
        check("max_tcp_conns" in j["error"]["message"], "wrong type: %r" % j)
        api.err("PATCH", "/v1/users/carol",
                raw=b'{"x":"' + b"a" * (70 * 1024) + b'"}', want=413,
                code="payload_too_large")
        # valid JSON, but the config refuses it: -t's message
        j = api.err("PATCH", "/v1/users/carol", {"secret": BOB},
                    code="bad_request")
        check(re.search(r"users\.conf:\d+: .*same secret as", j["error"]
                        ["message"]), "validation message: %r" % j)
        api.err("PATCH", "/v1/users/alice", {"enabled": False}, want=409,
                code="user_not_editable")
        api.err("PATCH", "/v1/users/nobody", {"enabled": False}, want=404,
                code="not_found")
        check(open(users).read() == before, "a refused change was written")
        check(api.ok("GET", "/v1/users")["revision"] == rev,
              "revision moved on refused changes")

        # delete
        j = api.ok("DELETE", "/v1/users/carol")
        check(j["data"]["username"] == "carol", "delete: %r" % j)
        api.err("GET", "/v1/users/carol", want=404, code="not_found")
        wait_for(lambda: not served(port, new), 10, what="carol gone")

        # nobody else was disconnected through all of it
        for h, who in ((hb, "bob"), (ha, "alice")):
            check(h.poll() is None, "%s's stream ended early" % who)
        api.ok("POST", "/v1/system/reload", want=202)
        d.wait_log("reload complete", 20)
        for h, who in ((hb, "bob"), (ha, "alice")):
            r = tclient_wait(h)
            check(r.ok and "CLOSED" not in r.out,
                  "%s was disconnected: %s" % (who, r))
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
        d.kill_all()
        dc.stop()


def test_read_only_and_allow_list():
    d, dc, port, port2, api, users = setup("read_only = true;")
    try:
        d.start()
        d.wait_log("api: listening on 127.0.0.1", 5)
        check(api.ok("GET", "/v1/health")["data"]["read_only"] is True,
              "read_only not reported")
        api.err("POST", "/v1/users", {"username": "x"}, want=403,
                code="read_only")
        api.ok("GET", "/v1/users")
        # only 10.0.0.0/8 may ask: a reload moves the API to it
        d.write_config(open(d.conf).read().replace(
            "read_only = true;", 'allow = [ "10.0.0.0/8" ];'))
        d.signal(signal.SIGHUP)
        d.wait_log("reload complete", 20)

        def refused():
            try:
                st, j = api.call("GET", "/v1/health")
            except ConnectionRefusedError:
                return False  # the old dcpool let go, the new one binds
            return st == 403 and j["error"]["code"] == "forbidden"
        wait_for(refused, 10, what="403 from outside api.allow")
    finally:
        d.kill_all()
        dc.stop()


if __name__ == "__main__":
    run_tests([test_users_through_the_api, test_read_only_and_allow_list])
