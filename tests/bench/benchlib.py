"""tests/bench/benchlib.py — what the benchmarks share: a Postern from the build tree (through the
integration harness) and a private, side-by-side Debian Postfix.

PrivatePostfix runs `postfix -c DIR` with its own main.cf/master.cf, queue, data and mail
directories under /var/tmp and smtpd on a free loopback port; the host's /etc/postfix is read
only for its master.cf service list and never changed."""

import asyncio
import contextlib
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE_DIR / "tests" / "integration"))


from smtp_peers import free_port  # noqa: E402  (one port picker for tests and benches)
import smtp_peers  # noqa: E402


def wait_port(port, timeout=10, host="127.0.0.1"):
    smtp_peers.wait_port(host, port, timeout)


def rss_kib(pid):
    """Resident set size of one process in KiB (VmRSS)."""
    return status_kib(pid, "VmRSS")


def status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM, ...), 0 when missing."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_sec(pid):
    """CPU time (user + system) a process has used so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(what, fn, timeout, interval=0.1):
    """Polls fn until it is true; exits the bench after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(interval)


def smtp_source(port, messages, sessions, size, label, rcpt="bench@remote.example"):
    """Injects messages with Postfix's smtp-source (-c -l size) from bench@example.org; returns
    its wall time in seconds."""
    cmd = ["smtp-source", "-c", "-l", str(size), "-m", str(messages), "-s", str(sessions),
           "-f", "bench@example.org", "-t", rcpt, f"127.0.0.1:{port}"]
    start = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"{label}: smtp-source failed: {r.stderr.strip()[-500:]}")
    return time.monotonic() - start


def pss_kib(pid):
    """Proportional set size in KiB: shared pages divided among the processes sharing them, so
    the PSS of many processes can be summed."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sink:
    """Postfix's smtp-sink counting what it receives (-c: running counters on its stdout, one
    line per event; the last "mesg=N" is the number of messages received). It keeps nothing:
    dumping every message to a file (-d) costs the sink an fsync each, which capped it near
    1,100 msg/s on this machine, below what Postern relays."""

    def __init__(self, port=None):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-sink-", dir="/var/tmp"))
        self.out = self.dir / "counters"
        self.port = port or free_port()
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1000"],
                                         stdout=f, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def count(self):
        with open(self.out, "rb") as f:
            f.seek(max(0, self.out.stat().st_size - 256))
            found = re.findall(rb"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


def harness(build_dir):
    """The integration harness (tests/integration/postern_harness.py) for build_dir; it reads
    the build directory when first imported."""
    os.environ.setdefault("POSTERN_BUILD_DIR", str(pathlib.Path(build_dir).resolve()))
    import postern_harness
    return postern_harness


@contextlib.contextmanager
def postern(build_dir, **conf):
    """A started Postern (smtpd, qmgr, local) from build_dir; yields the harness object."""
    h = harness(build_dir)
    h.ensure_test_users()
    p = h.Postern()
    p.configure(**({"mydestination": "localhost, $myhostname", "mynetworks": "127.0.0.0/8"} | conf))
    try:
        yield p
    finally:
        p.close()
        if not os.environ.get("POSTERN_KEEP_ROOT"):
            shutil.rmtree(p.root, ignore_errors=True)


def postfix_master_cf(port, smtpd_options=()):
    """Debian's master.cf with smtpd on 127.0.0.1:port (plus -o options) and every service out
    of chroot."""
    out = []
    for line in pathlib.Path("/etc/postfix/master.cf").read_text().splitlines():
        f = line.split()
        if line[:1] not in ("", "#", " ", "\t") and len(f) >= 8:
            is_smtpd = f[0] == "smtp" and f[1] == "inet"
            if is_smtpd:
                f[0] = f"127.0.0.1:{port}"
            f[4] = "n"
            line = " ".join(f[:8]) + ("  " + " ".join(f[8:]) if len(f) > 8 else "")
            if is_smtpd:
                line += "".join(f"\n  -o {o}" for o in smtpd_options)
        out.append(line)
    return "\n".join(out) + "\n"


class PrivatePostfix:
    """Debian's Postfix with a private configuration; use as a context manager."""

    def __init__(self, extra_main_cf="", smtpd_options=(), extra_master_cf=""):
        """extra_master_cf: lines appended to master.cf (e.g. a tlsproxy service, which Debian's
        master.cf leaves commented out)."""
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-postfix-", dir="/var/tmp"))
        os.chmod(self.root, 0o755)
        self.etc, self.queue = self.root / "etc", self.root / "queue"
        self.data, self.mail = self.root / "data", self.root / "mail"
        self.port = free_port()
        self.extra_main_cf = extra_main_cf
        self.smtpd_options = smtpd_options
        self.extra_master_cf = extra_master_cf
        self.env = dict(os.environ, MAIL_CONFIG=str(self.etc))
        self.pf = ["postfix", "-c", str(self.etc)]

    def __enter__(self):
        for d in (self.etc, self.queue, self.data, self.mail):
            d.mkdir()
        shutil.chown(self.data, "postfix")
        os.chmod(self.mail, 0o1777)
        (self.etc / "main.cf").write_text(f"""# private Postfix for tests/bench; nothing here touches /etc/postfix
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix-bench.test
mydestination = localhost, $myhostname
mynetworks = 127.0.0.0/8
mail_spool_directory = {self.mail}
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
maillog_file = {self.root}/maillog
{self.extra_main_cf}
""")
        (self.etc / "master.cf").write_text(postfix_master_cf(self.port, self.smtpd_options) + self.extra_master_cf)
        r = subprocess.run(self.pf + ["start"], capture_output=True, text=True, env=self.env)
        if r.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"postfix -c {self.etc} start failed: "
                               f"{(r.stdout + r.stderr).strip()[-1500:]}")
        wait_port(self.port)
        return self

    def queue_empty(self):
        q = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True,
                           text=True, env=self.env)
        return q.returncode == 0 and q.stdout.strip() == ""

    def master_pid(self):
        try:
            return int((self.data / "master.lock").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def process_pids(self, name):
        """PIDs of this instance's processes called name (e.g. "smtpd"): children of master."""
        master = self.master_pid()
        pids = []
        for d in pathlib.Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            if comm == name and ppid == master:
                pids.append(int(d.name))
        return pids

    def __exit__(self, *exc):
        subprocess.run(self.pf + ["stop"], capture_output=True, env=self.env)
        time.sleep(1)
        if not os.environ.get("POSTERN_KEEP_ROOT"):
            shutil.rmtree(self.root, ignore_errors=True)
        return False


def bench_users(build_dir, n):
    """n real users ptest1..ptestN (created when missing, homes under the harness's
    /var/tmp/postern-test-home) whose homes, for this process and what it starts, are fresh
    directories on disk: a private mount namespace binds a new directory under /var/tmp over the
    home base, so the Maildirs start empty and no other test run sees them. Call it while the
    process is still single-threaded; returns (user names, the directory to remove at the end)."""
    h = harness(build_dir)
    users = [f"ptest{i}" for i in range(1, n + 1)]
    disk = pathlib.Path(tempfile.mkdtemp(prefix="postern-bench-homes-", dir="/var/tmp"))
    os.chmod(disk, 0o755)
    h.isolate_test_homes(disk)
    h.ensure_test_users(users)   # home directories in the fresh directory
    return users, disk


def maildir_home(user):
    """user's $HOME/Maildir/ (both MTAs get home_mailbox = Maildir/)."""
    return pathlib.Path(pwd.getpwnam(user).pw_dir) / "Maildir"


def maildirs_count(maildirs):
    """Messages delivered (files in new/) in these Maildir directories."""
    n = 0
    for d in maildirs:
        try:
            n += sum(1 for _ in os.scandir(pathlib.Path(d) / "new"))
        except FileNotFoundError:
            pass
    return n


def maildir_count(users):
    """Messages delivered (files in new/) in the users' Maildirs."""
    return maildirs_count(maildir_home(u) for u in users)


def maildir_clear(users):
    for u in users:
        shutil.rmtree(maildir_home(u), ignore_errors=True)


async def _smtp_send_one(port, rcpt, data):
    """One SMTP session carrying one message (as smtp-source does without -d)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply(expect):
        while True:
            line = await reader.readline()
            if not line or line[:3] != expect:
                raise RuntimeError(f"to <{rcpt}>: expected {expect.decode()}, got {line!r}")
            if line[3:4] != b"-":
                return

    try:
        await reply(b"220")
        for cmd, expect in ((b"EHLO bench.test", b"250"), (b"MAIL FROM:<bench@example.org>", b"250"),
                            (f"RCPT TO:<{rcpt}>".encode(), b"250"), (b"DATA", b"354")):
            writer.write(cmd + b"\r\n")
            await reply(expect)
        writer.write(data)
        await reply(b"250")
        writer.write(b"QUIT\r\n")
        await reply(b"221")
    finally:
        writer.close()


def smtp_send_spread(port, n, sessions, size, users, domain="localhost"):
    """n messages of about size bytes, message i to users[i % len(users)] (one recipient each,
    so every user's mail is spread over the whole run), one message per SMTP session and
    `sessions` sessions at a time, from one process: smtp-source sends to one fixed recipient,
    and one smtp-source per user or chunk cost more CPU than the MTAs' own work on this 2-core
    machine. Recipients are user@domain. Returns (start, wall time)."""
    line = b"x" * 78 + b"\r\n"
    body = line * max(1, size // len(line))

    async def run():
        todo = iter(range(n))

        async def session_loop():
            for i in todo:
                rcpt = f"{users[i % len(users)]}@{domain}"
                head = (f"From: <bench@example.org>\r\nTo: <{rcpt}>\r\nSubject: bench {i}\r\n"
                        f"Message-Id: <bench-{i}@bench.test>\r\n\r\n").encode()
                await _smtp_send_one(port, rcpt, head + body + b".\r\n")

        await asyncio.gather(*(session_loop() for _ in range(sessions)))

    t0 = time.monotonic()
    asyncio.run(run())
    return t0, time.monotonic() - t0


def elapsed_until(done, t0, timeout, what):
    """Seconds from t0 until done() is true (polled every 0.1 s); what() says how far it got
    when timeout runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"after {timeout}s {what()}")
