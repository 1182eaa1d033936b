"""A private nginx for the fronting tests: its own prefix, config,
self-signed certificate and logs in a temporary directory, listening on
127.0.0.1 with TLS and a recognisable page. Needs the nginx binary
(Debian: apt-get install nginx-light) and openssl."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

from mtp import TestFailure, check, free_port

PAGE_MARKER = "mtprotod-e2e-fronted-page-7f3a"

CONF = """daemon off;
master_process on;
worker_processes 1;
%(user)s
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log info;
events { worker_connections 1024; }
http {
    access_log %(prefix)s/access.log;
    client_body_temp_path %(prefix)s/tmp/body;
    proxy_temp_path %(prefix)s/tmp/proxy;
    fastcgi_temp_path %(prefix)s/tmp/fastcgi;
    uwsgi_temp_path %(prefix)s/tmp/uwsgi;
    scgi_temp_path %(prefix)s/tmp/scgi;
    default_type text/html;
    server {
        listen 127.0.0.1:%(port)d ssl;
        server_name %(domain)s;
        ssl_certificate %(prefix)s/cert.pem;
        ssl_certificate_key %(prefix)s/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root %(prefix)s/html;
        location / { index index.html; }
    }
}
"""


def nginx_binary():
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.access(p, os.X_OK):
            return p
    raise TestFailure("nginx not installed (apt-get install nginx-light)")


class Nginx:
    def __init__(self, domain="www.example.com"):
        self.domain = domain
        self.prefix = tempfile.mkdtemp(prefix="mtp-nginx-")
        # nginx's workers run as nobody when started as root
        os.chmod(self.prefix, 0o755)
        self.port = free_port()
        self.proc = None
        os.makedirs(os.path.join(self.prefix, "html"))
        os.makedirs(os.path.join(self.prefix, "tmp"))
        with open(os.path.join(self.prefix, "html", "index.html"), "w") as f:
            f.write("<html><body><h1>%s</h1>%s</body></html>\n" %
                    (domain, PAGE_MARKER))
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-subj", "/CN=" + domain, "-days", "2",
             "-keyout", os.path.join(self.prefix, "key.pem"),
             "-out", os.path.join(self.prefix, "cert.pem")],
            capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "openssl req failed: " + r.stderr)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(CONF % {
                "prefix": self.prefix, "port": self.port, "domain": domain,
                "user": "user nobody nogroup;" if os.geteuid() == 0 else ""})

    def start(self, timeout=10):
        self.proc = subprocess.Popen(
            [nginx_binary(), "-c", self.conf, "-p", self.prefix + "/",
             "-e", os.path.join(self.prefix, "error.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("nginx exited: %s\n%s" % (
                    self.proc.stdout.read().decode(errors="replace"),
                    self.error_log()))
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TestFailure("nginx did not listen: " + self.error_log())

    def _read(self, name):
        try:
            with open(os.path.join(self.prefix, name),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def error_log(self):
        return self._read("error.log")

    def access_log(self):
        return self._read("access.log")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
