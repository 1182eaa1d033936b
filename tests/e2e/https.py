"""A local HTTPS server for the end-to-end tests (stdlib and the openssl
command only).

make_ca() makes a private CA and a server certificate for "localhost"
(and 127.0.0.1) with the openssl command; HTTPSServer serves a dict of
paths on 127.0.0.1 over HTTPS with it (or plain HTTP), so the daemon can
fetch https://localhost:PORT/... trusting only that CA (telegram.ca_file).
Nothing is added to /etc/hosts: "localhost" already resolves to 127.0.0.1.
"""
import http.server
import os
import ssl
import subprocess
import tempfile
import threading
import time


def _openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                       p.stderr))


class CA:
    """A private CA (ca.pem) and, signed by it, a server key and
    certificate for the given names (server.key, server.pem)."""

    def __init__(self, tmp=None, name="mtprotod test CA",
                 dns=("localhost",), ips=("127.0.0.1",)):
        self.dir = tmp or tempfile.mkdtemp(prefix="https-ca-")
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir
        self.ca_file = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=" + name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        _openssl("req", "-newkey", "rsa:2048", "-nodes",
                 "-keyout", "server.key", "-out", "server.csr",
                 "-subj", "/CN=%s" % dns[0], cwd=d)
        san = ",".join(["DNS:" + n for n in dns] + ["IP:" + i for i in ips])
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=%s\n"
                    "basicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out",
                 "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
        for f in ("ca.pem", "server.pem"):
            os.chmod(os.path.join(d, f), 0o644)
        os.chmod(d, 0o755)


def make_ca(tmp=None, **kw):
    return CA(tmp, **kw)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def date_time_string(self, timestamp=None):
        t = time.time() + self.server.owner.date_offset
        return super().date_time_string(t)

    def do_GET(self):
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(self.path)
            entry = owner.files.get(self.path.split("?")[0])
        if entry is None:
            status, body = 404, b"not found\n"
        elif isinstance(entry, tuple):
            status, body = entry
        else:
            status, body = 200, entry
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # The handshake runs in the request's own thread, so a stalled
        # client never blocks the others.
        if self.owner.ctx is not None:
            request.settimeout(10)
            try:
                request = self.owner.ctx.wrap_socket(request,
                                                     server_side=True)
            except (ssl.SSLError, OSError):
                # e.g. a client that refused our certificate
                with self.owner.lock:
                    self.owner.tls_failures += 1
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass


class HTTPSServer:
    """Serves files = {path: bytes or (status, bytes)} on 127.0.0.1.

    .port, .url(path) ("https://localhost:PORT/path"), .ca_file (the CA
    the daemon must trust), .requests (paths asked for), .date_offset
    (seconds added to the Date header), .stop().
    """

    def __init__(self, files=None, tls=True, ca=None, port=0):
        self.files = dict(files or {})
        self.requests = []
        self.tls_failures = 0
        self.date_offset = 0
        self.lock = threading.Lock()
        self.tls = tls
        self.ctx = None
        self.ca = None
        if tls:
            self.ca = ca or CA()
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(self.ca.cert, self.ca.key)
        self.httpd = _Server(("127.0.0.1", port), _Handler,
                             bind_and_activate=True)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    @property
    def ca_file(self):
        return self.ca.ca_file if self.ca else ""

    def url(self, path):
        return "%s://localhost:%d%s" % ("https" if self.tls else "http",
                                        self.port, path)

    def set(self, path, body):
        with self.lock:
            self.files[path] = body

    def count(self, path=None):
        with self.lock:
            return len([p for p in self.requests
                        if path is None or p.split("?")[0] == path])

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # Manual use: python3 https.py DIR serves DIR's files until ^C.
    import sys
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    files = {}
    for name in os.listdir(root):
        with open(os.path.join(root, name), "rb") as f:
            files["/" + name] = f.read()
    s = HTTPSServer(files)
    print("serving %s at %s (CA %s)" % (root, s.url("/"), s.ca_file),
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        s.stop()
