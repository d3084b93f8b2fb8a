"""What a program under `xdpstack run` sees of its sockets.

Run as `preload_probe.py SCENARIO ARGS...`; it prints one JSON object per
observation, which TestPreloadLibrary checks, and "ready" once it listens.
"""
import errno
import hashlib
import json
import os
import select
import socket
import sys


def say(**kv):
    print(json.dumps(kv), flush=True)


def opts(s):
    return {
        "domain": s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN),
        "type": s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
        "protocol": s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
        "acceptconn": s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
    }


def listener(addr, port):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((addr, port))
    s.listen(16)
    return s


def read_all(c):
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            return data
        data += chunk


def server(addr, port):
    """Accept one connection, read it to its end, answer its sha256."""
    s = listener(addr, int(port))
    say(event="listening", local=list(s.getsockname()[:2]), **opts(s))
    print("ready", flush=True)
    c, peer = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = read_all(c)
    c.sendall(hashlib.sha256(data).hexdigest().encode())
    c.shutdown(socket.SHUT_WR)
    say(event="accepted", peer=list(peer[:2]), local=list(c.getsockname()[:2]),
        remote=list(c.getpeername()[:2]), bytes=len(data), mss=c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), **opts(c))
    read_all(c)


def exec_child(fd):
    """The program an accepted connection was passed to across exec."""
    c = socket.socket(fileno=int(fd))
    say(event="after-exec", local=list(c.getsockname()[:2]), remote=list(c.getpeername()[:2]), **opts(c))
    c.sendall(b"hello from after exec")
    c.close()


def exec_server(addr, port):
    s = listener(addr, int(port))
    print("ready", flush=True)
    c, _ = s.accept()
    os.set_inheritable(c.fileno(), True)
    os.execv(sys.executable, [sys.executable, __file__, "exec-child", str(c.fileno())])


def fork_server(addr, port):
    """Two forked workers share the listener, each answers one peer."""
    s = listener(addr, int(port))
    s.setblocking(False)
    workers = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            select.select([s], [], [], 30)
            while True:
                try:
                    c, _ = s.accept()
                    break
                except BlockingIOError:
                    select.select([s], [], [], 30)
            c.setblocking(True)
            c.sendall(b"worker %d" % os.getpid())
            c.close()
            os._exit(0)
        workers.append(pid)
    print("ready", flush=True)
    for pid in workers:
        os.waitpid(pid, 0)
    say(event="workers-done")


def client(addr, port, closed_port):
    """Non-blocking and blocking connects, as curl and BIRD make them."""
    c = socket.socket(socket.AF_INET)
    c.setblocking(False)
    err = c.connect_ex((addr, int(port)))
    _, writable, _ = select.select([], [c], [], 10)
    so_error = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    again = c.connect_ex((addr, int(port)))
    c.setblocking(True)
    c.sendall(b"ping")
    reply = c.recv(100)
    say(event="connected", first=errno.errorcode.get(err, str(err)), writable=bool(writable),
        so_error=so_error, again=errno.errorcode.get(again, str(again)),
        local=list(c.getsockname()[:2]), remote=list(c.getpeername()[:2]), reply=reply.decode())
    c.close()

    r = socket.socket(socket.AF_INET)
    r.setblocking(False)
    err = r.connect_ex((addr, int(closed_port)))
    select.select([], [r], [], 10)
    so_error = r.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    say(event="refused-nonblocking", first=errno.errorcode.get(err, str(err)),
        so_error=errno.errorcode.get(so_error, str(so_error)))

    b = socket.socket(socket.AF_INET)
    try:
        b.connect((addr, int(closed_port)))
        say(event="refused-blocking", error="none")
    except OSError as e:
        say(event="refused-blocking", error=errno.errorcode.get(e.errno, str(e.errno)))


def connect_only(addr, port):
    """One blocking connect: its outcome."""
    c = socket.socket(socket.AF_INET)
    try:
        c.connect((addr, int(port)))
        say(event="connect", result="connected")
    except OSError as e:
        say(event="connect", result=errno.errorcode.get(e.errno, str(e.errno)))


def udp(addr, port):
    """Unconnected, then connected, then through a dup."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, int(port)))
    print("ready", flush=True)
    data, peer = u.recvfrom(2048)
    u.sendto(b"re:" + data, peer)
    u.connect(peer)
    u.send(b"connected")
    d = socket.socket(fileno=os.dup(u.fileno()))
    data2 = d.recv(2048)
    say(event="udp", first=data.decode(), peer=list(peer[:2]), second=data2.decode(),
        local=list(u.getsockname()[:2]), remote=list(d.getpeername()[:2]),
        type=u.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))


def wait_gone(addr, port, udp_port):
    """Block in recv on a TCP and a UDP socket; the daemon dies meanwhile."""
    s = listener(addr, int(port))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, int(udp_port)))
    print("ready", flush=True)
    c, _ = s.accept()
    try:
        got = c.recv(100)
        tcp = "eof" if not got else "data"
    except OSError as e:
        tcp = errno.errorcode.get(e.errno, str(e.errno))
    try:
        u.recvfrom(100)
        udp_result = "data"
    except OSError as e:
        udp_result = errno.errorcode.get(e.errno, str(e.errno))
    say(event="gone", tcp=tcp, udp=udp_result)


def loopback(port):
    """A socket on loopback stays the kernel's: a kernel client reaches it."""
    s = listener("127.0.0.1", int(port))
    k = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    c, _ = s.accept()
    k.sendall(b"kernel")
    say(event="loopback", got=c.recv(100).decode(), local=list(s.getsockname()[:2]))


def bind_only(addr, port):
    """A listener, then its address, while it listens."""
    s = listener(addr, int(port))
    say(event="bound", local=list(s.getsockname()[:2]))
    select.select([s], [], [], 5)


scenarios = {
    "server": server, "exec-server": exec_server, "exec-child": exec_child,
    "fork-server": fork_server, "client": client, "connect": connect_only, "udp": udp,
    "wait-gone": wait_gone, "loopback": loopback, "bind": bind_only,
}

if __name__ == "__main__":
    scenarios[sys.argv[1]](*sys.argv[2:])
