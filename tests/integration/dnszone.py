"""dnszone — a dnsmasq that serves records a test writes, and a resolv.conf that points at it.

Used three ways:
  * conftest.py starts one `DnsZone` per pytest run (inside the run's private mount namespace)
    and bind-mounts a resolv.conf naming it over /etc/resolv.conf, so every daemon under test
    resolves through it: 127.0.0.1 <-> localhost and ::1 <-> localhost (also 127.0.0.2-4) answer at once, every
    other name is NXDOMAIN, and nothing reaches the machine's real resolver.
  * the `dns_zone` fixture lets a test add records (host/mx/txt/ptr/raw dnsmasq options); they
    are served until the test ends.
  * `python3 dnszone.py run --option=... -- PROGRAM ARGS` runs a program (the common/dns unit
    test) in a fresh mount namespace with such a server (root only; exit 77 otherwise).

Names under slow.test are forwarded to a black hole (127.0.0.9:53), so queries for them time
out: with "options timeout:1 attempts:1" a lookup there fails temporarily after about a second.
"""

import ctypes
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
BLACK_HOLE = "127.0.0.9"
# localhost <-> 127.0.0.1..4 and ::1 (the client addresses the existing tests use); 127.0.0.5 and
# up are free for tests to name (or leave without a name: "unknown").
BASE_OPTIONS = ["--host-record=localhost,::1"] + ["--host-record=localhost,127.0.0.%d" % i for i in range(1, 5)]


def _free_address():
    """A random 127/8 address whose port 53 (UDP and TCP) nobody uses."""
    for _ in range(50):
        addr = "127.53.%d.%d" % (random.randint(0, 255), random.randint(1, 254))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                    socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind((addr, 53))
                t.bind((addr, 53))
            return addr
        except OSError:
            continue
    raise RuntimeError("no free 127.53.x.y:53 for the test DNS server")


class DnsZone:
    """One dnsmasq on ADDRESS:53 with the base records plus whatever was added."""

    def __init__(self, address=None):
        self.address = address or _free_address()
        self.options = []
        self.base = list(BASE_OPTIONS)   # a test may drop base records; reset() restores them
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="postern-dns-")
        self.resolv_conf = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            f.write("nameserver %s\noptions timeout:1 attempts:1\n" % self.address)

    # Records. Each takes effect at the next start()/apply().
    def add(self, *options):
        """Raw dnsmasq options, e.g. "--cname=a.test,b.test"."""
        self.options.extend(options)

    def host(self, name, *addrs):
        """A/AAAA records; dnsmasq also answers the matching PTRs (address -> name)."""
        # one option per address: dnsmasq keeps a single IPv4/IPv6 address per --host-record
        self.add(*("--host-record=%s,%s" % (name, a) for a in addrs))

    def mx(self, domain, host, preference=10):
        self.add("--mx-host=%s,%s,%d" % (domain, host, preference))

    def txt(self, name, *strings):
        """A TXT record of one or more character-strings (no commas inside one)."""
        self.add("--txt-record=%s,%s" % (name, ",".join(strings)))

    def ptr(self, addr, name):
        """A PTR record for an IPv4 or IPv6 address."""
        import ipaddress
        self.add("--ptr-record=%s,%s" % (ipaddress.ip_address(addr).reverse_pointer, name))

    def reset(self):
        self.options = []
        self.base = list(BASE_OPTIONS)

    def _argv(self):
        return [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                "--no-hosts", "--pid-file=",
                "--user=root", "--group=root", "--bind-interfaces",
                "--listen-address=" + self.address, "--port=53", "--log-facility=" +
                os.path.join(self.dir, "dnsmasq.log"),
                "--local=/#/", "--server=/slow.test/" + BLACK_HOLE] + self.base + self.options

    def start(self):
        self.stop()
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_answering(self.proc, self.address, "dnsmasq")

    apply = start   # dnsmasq reads command-line records only at start

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def bind_resolv_conf(self):
        """Bind-mounts our resolv.conf over /etc/resolv.conf: only call it inside a private mount
        namespace (the machine's own file must never change)."""
        subprocess.run(["mount", "--bind", self.resolv_conf, "/etc/resolv.conf"], check=True)

    def close(self):
        self.stop()
        if not os.environ.get("POSTERN_KEEP_ROOT"):
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_answering(proc, address, what, name="localhost"):
    """Waits until the DNS server proc on address:53 answers a query for name (any answer, a
    REFUSED or NXDOMAIN too); RuntimeError when it exits or stays silent for 10 s."""
    query = bytes.fromhex("abcd01000001000000000000") + \
        b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("%s failed: %s" % (what, proc.stderr.read().decode()))
            try:
                s.sendto(query, (address, 53))
                if s.recv(4096)[:2] == query[:2]:
                    return
            except OSError:
                time.sleep(0.05)   # polling until the server answers, with a deadline
    raise RuntimeError("%s did not answer on %s:53" % (what, address))


def unshare_mounts():
    """A private mount namespace for this process (and its children)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:   # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def main(argv):
    if len(argv) < 2 or argv[0] != "run" or "--" not in argv:
        print("usage: dnszone.py run [--dnsmasq-option ...] -- PROGRAM [ARGS]", file=sys.stderr)
        return 2
    sep = argv.index("--")
    if os.geteuid() != 0 or not os.path.exists(DNSMASQ):
        print("skipped: needs root and dnsmasq", file=sys.stderr)
        return 77
    unshare_mounts()
    zone = DnsZone()
    zone.add(*argv[1:sep])
    try:
        zone.start()
        zone.bind_resolv_conf()
        return subprocess.run(argv[sep + 1:]).returncode
    finally:
        zone.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
