"""stun_server: a STUN server for the tests (RFC 8489 binding only), in
Python so that it shares no code with the daemon's STUN client.

It answers every binding request with the mapped address the test
chooses (not the real source address: on loopback that would be
127.0.0.1, and the tests play a host behind NAT), as XOR-MAPPED-ADDRESS,
and as MAPPED-ADDRESS too with old_style. Usable as a module
(StunServer) or alone:

    python3 stun_server.py PORT MAPPED_IP   (prints "READY <port>")
"""
import os
import socket
import struct
import sys
import threading

COOKIE = 0x2112A442


def _pad(b):
    return b + b"\0" * ((4 - len(b) % 4) % 4)


def binding_answer(req, mapped_ip, mapped_port, old_style=False):
    """The success answer to a binding request (bytes), or None when req
    is not one."""
    if len(req) < 20:
        return None
    mtype, mlen, cookie = struct.unpack(">HHI", req[:8])
    txid = req[8:20]
    if mtype != 0x0001 or cookie != COOKIE or mlen != len(req) - 20:
        return None
    fam = socket.AF_INET6 if ":" in mapped_ip else socket.AF_INET
    raw = socket.inet_pton(fam, mapped_ip)
    xport = mapped_port ^ (COOKIE >> 16)
    key = struct.pack(">I", COOKIE) + txid
    xaddr = bytes(a ^ b for a, b in zip(raw, key))
    famcode = 1 if fam == socket.AF_INET else 2
    attrs = b""
    # A SOFTWARE attribute first, as real servers send: the client
    # must skip what it does not know.
    sw = b"mtprotod test STUN"
    attrs += struct.pack(">HH", 0x8022, len(sw)) + _pad(sw)
    if old_style:
        v = struct.pack(">BBH", 0, famcode, mapped_port) + raw
        attrs += struct.pack(">HH", 0x0001, len(v)) + v
    else:
        v = struct.pack(">BBH", 0, famcode, xport) + xaddr
        attrs += struct.pack(">HH", 0x0020, len(v)) + v
    return struct.pack(">HHI", 0x0101, len(attrs), COOKIE) + txid + attrs


class StunServer:
    """Answers on host:port (UDP) with .mapped (settable at any time;
    None = stay silent). .requests counts what came."""

    def __init__(self, mapped, host="127.0.0.1", port=0, old_style=False):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.mapped = mapped
        self.old_style = old_style
        self.requests = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @property
    def address(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (
            self.host, self.port)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            self.requests += 1
            mapped = self.mapped
            if mapped is None:
                continue
            ans = binding_answer(data, mapped, peer[1], self.old_style)
            if ans is not None:
                try:
                    self.sock.sendto(ans, peer)
                except OSError:
                    pass

    def stop(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    srv = StunServer(sys.argv[2], port=int(sys.argv[1]))
    print("READY %d" % srv.port, flush=True)
    try:
        while True:
            os.pause() if hasattr(os, "pause") else None
    except KeyboardInterrupt:
        pass
