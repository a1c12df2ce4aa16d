"""postern_harness — runs Postern's real daemons the way systemd does, for integration tests.

The harness owns the listening sockets and passes them to each daemon with LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID (socket activation), and waits for READY=1 on a NOTIFY_SOCKET of
its own. A daemon killed with SIGKILL and restarted gets the very same sockets back, so clients
wait in the backlog meanwhile, as under systemd. Everything (config, queue, spool, sockets, logs)
lives in a fresh root directory under /var/tmp (world-traversable, so the delivery children that
run as the test users can reach the spool). See README.md in this directory for the API.
"""

import fcntl
import contextlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

SOURCE_DIR = pathlib.Path(os.environ.get("POSTERN_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("POSTERN_BUILD_DIR", SOURCE_DIR / "build")).resolve()
TEST_USERS = ("ptest1", "ptest2", "ptest3")
TEST_HOME_BASE = pathlib.Path("/var/tmp/postern-test-home")
HOSTNAME = "postern.test"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

BINARIES = {
    "smtpd": "daemons/smtpd/postern-smtpd",
    "qmgr": "daemons/qmgr/postern-qmgr",
    "local": "daemons/local/postern-local",
    "anvil": "daemons/anvil/postern-anvil",
    "smtp": "daemons/smtp/postern-smtp",
    "verify": "daemons/verify/postern-verify",
    "metrics": "daemons/metrics/postern-metrics",
}


def binary(rel):
    """Absolute path of a built program, e.g. binary('tools/posternctl/posternctl')."""
    return str(BUILD_DIR / rel)


def isolate_test_homes(disk_dir=None):
    """Gives this process (and the daemons it starts) a private view of the test users' homes:
    a new mount namespace with a tmpfs over TEST_HOME_BASE, so two test runs on one machine never
    see, or wipe, each other's mailboxes. With disk_dir, that directory is bind-mounted there
    instead (benchmarks: fsync on a tmpfs costs nothing). Call it while the process is still
    single-threaded."""
    import ctypes
    CLONE_NEWNS = 0x00020000
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    TEST_HOME_BASE.mkdir(parents=True, exist_ok=True)
    if disk_dir:
        subprocess.run(["mount", "--bind", str(disk_dir), str(TEST_HOME_BASE)], check=True)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=512m", "postern-test-homes",
                    str(TEST_HOME_BASE)], check=True)


def isolate_network():
    """Gives this process (and everything it starts) a network namespace of its own with only a
    loopback interface: the tests' traffic (all on 127.0.0.0/8 and ::1) can reach nothing else,
    and ports bound by a test never clash with the machine's services or another test run.
    Call it while the process is still single-threaded."""
    import ctypes
    CLONE_NEWNET = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def ensure_test_users(users=TEST_USERS):
    """Creates the test users (default TEST_USERS; benchmarks ask for more, named alike) and
    their home directories (idempotent); returns their passwd entries."""
    TEST_HOME_BASE.mkdir(parents=True, exist_ok=True)
    os.chmod(TEST_HOME_BASE, 0o755)
    with accounts_lock():
        return _ensure_test_users_locked(users)


@contextlib.contextmanager
def accounts_lock():
    """Held while a test creates users or groups: the suite's files run as parallel pytest
    processes, and two useradd/groupadd at once fail on the passwd/group lock."""
    with open("/run/lock/postern-test-accounts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure_test_users_locked(users):
    entries = {}
    for user in users:
        try:
            entries[user] = pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(TEST_HOME_BASE / user),
                            "--shell", "/usr/sbin/nologin", "--comment", f"Postern Test {user}",
                            user], check=True)
            entries[user] = pwd.getpwnam(user)
        home = pathlib.Path(entries[user].pw_dir)
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, entries[user].pw_uid, entries[user].pw_gid)
    return entries


def tcp_listener():
    """A listening TCP socket on 127.0.0.1 and a free port, to pass to a daemon (listeners of
    master.cf entries: postern.listeners["smtpd"].append(("127.0.0.1-PORT", sock)))."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


class DaemonProcess:
    def __init__(self, name, proc, log_path):
        self.name, self.proc, self.log_path = name, proc, log_path


class Postern:
    """One Postern instance in its own root. Not started until start()."""

    def __init__(self, root=None):
        self.root = pathlib.Path(root or tempfile.mkdtemp(prefix="postern-it-", dir="/var/tmp"))
        os.chmod(self.root, 0o755)
        self.etc_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.spool_dir = self.root / "mail"
        self.socket_dir = self.root / "run"
        self.log_dir = self.root / "log"
        for d, mode in ((self.etc_dir, 0o755), (self.queue_dir, 0o750), (self.spool_dir, 0o1777),
                        (self.socket_dir, 0o755), (self.log_dir, 0o755)):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        self.config_path = self.etc_dir / "main.cf"
        self.aliases_path = self.etc_dir / "aliases"
        self.aliases_path.write_text("")
        self.submit_path = self.socket_dir / "submit"
        self.settings = {
            "myhostname": HOSTNAME,
            "mydestination": "$myhostname, localhost",
            "mynetworks": "127.0.0.0/8",
            "queue_directory": str(self.queue_dir),
            "mail_spool_directory": str(self.spool_dir),
            "postern_socket_directory": str(self.socket_dir),
            "alias_maps": f"texthash:{self.aliases_path}",
            "alias_database": f"texthash:{self.aliases_path}",
        }
        self.daemons = {}
        self.listeners = {}
        self._write_config()
        self._open_listeners()

    # --- configuration ---------------------------------------------------------------------
    def configure(self, **params):
        """Sets main.cf parameters (listener overrides: configure(**{'submit/x': 'y'}))."""
        self.settings.update({k: str(v) for k, v in params.items()})
        self._write_config()

    def set_aliases(self, text):
        self.aliases_path.write_text(text)

    def _write_config(self):
        lines = ["# written by tests/integration/postern_harness.py"]
        lines += [f"{k} = {v}" for k, v in self.settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        os.chmod(self.config_path, 0o644)

    # --- sockets -----------------------------------------------------------------------------
    def _tcp_listener(self):
        return tcp_listener()

    def _unix_listener(self, path, mode=0o666):
        pathlib.Path(path).unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        os.chmod(path, mode)
        s.listen(4096)
        return s

    def _open_listeners(self):
        self.listeners = {
            "smtpd": [("smtp", self._tcp_listener()), ("submission", self._tcp_listener()),
                      ("submit", self._unix_listener(self.submit_path, 0o666)),
                      ("submissions", self._tcp_listener())],
            "qmgr": [("qmgr", self._unix_listener(self.socket_dir / "qmgr", 0o666))],
            "local": [("local", self._unix_listener(self.socket_dir / "local", 0o600)),
                      ("virtual", self._unix_listener(self.socket_dir / "virtual", 0o600)),
                      ("pipe", self._unix_listener(self.socket_dir / "pipe", 0o600))],
            "smtp": [("smtp-client", self._unix_listener(self.socket_dir / "smtp", 0o600)),
                     ("lmtp-client", self._unix_listener(self.socket_dir / "lmtp", 0o600))],
        }
        self.smtp_port = self.listeners["smtpd"][0][1].getsockname()[1]
        self.submission_port = self.listeners["smtpd"][1][1].getsockname()[1]
        self.submissions_port = self.listeners["smtpd"][3][1].getsockname()[1]   # implicit TLS

    # --- processes ---------------------------------------------------------------------------
    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
        # Commands fork in the test's own namespaces, never as units of a systemd that happens to
        # run the tests (INVOCATION_ID would be inherited from such a service).
        env.update({"POSTERN_CONFIG": str(self.config_path), "POSTERN_LOG_STDERR": "1",
                    "POSTERN_TRANSIENT_COMMANDS": "0",
                    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                    "UBSAN_OPTIONS": "print_stacktrace=1"})
        env.update(extra or {})
        return env

    def start(self, *names, timeout=15):
        """Starts the named daemons (default: smtpd, qmgr, local, smtp; "anvil", "verify" and
        "metrics" on request) and waits for READY=1."""
        for name in names or ("smtpd", "qmgr", "local", "smtp"):
            self._spawn(name, timeout)

    def _spawn(self, name, timeout):
        if name in self.daemons and self.daemons[name].proc.poll() is None:
            raise RuntimeError(f"{name} is already running")
        exe = binary(BINARIES[name])
        if not os.access(exe, os.X_OK):
            raise RuntimeError(f"{exe} is not built")
        if name == "anvil" and name not in self.listeners:
            # Only tests that start anvil get its socket: without one, smtpd warns once and
            # serves without client limits (no connection waits for an absent anvil).
            self.listeners["anvil"] = [("anvil", self._unix_listener(self.socket_dir / "anvil", 0o600))]
        if name == "verify" and name not in self.listeners:
            # Likewise verify: without its socket reject_unverified_* answers the tempfail action.
            self.listeners["verify"] = [("verify", self._unix_listener(self.socket_dir / "verify", 0o600))]
        if name == "metrics" and name not in self.listeners:
            # The endpoint's TCP socket (postern-metrics.socket's 127.0.0.1:9154), on a free port.
            self.listeners["metrics"] = [("metrics", self._tcp_listener())]
            self.metrics_port = self.listeners["metrics"][0][1].getsockname()[1]
        fds = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 200) for _, s in self.listeners[name]]
        names = ":".join(n for n, _ in self.listeners[name])
        notify_path = self.socket_dir / f"notify-{name}"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))

        def place_fds():
            for i, fd in enumerate(fds):
                os.dup2(fd, 3 + i, inheritable=True)

        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")
        env = self.env({"LISTEN_FDS": str(len(fds)), "LISTEN_FDNAMES": names,
                        "NOTIFY_SOCKET": str(notify_path)})
        # LISTEN_PID must be the daemon's own pid: a shell sets it and execs in place.
        proc = subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"',
                                 exe], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, close_fds=False, preexec_fn=place_fds)
        log.close()
        for fd in fds:
            os.close(fd)
        self.daemons[name] = DaemonProcess(name, proc, log_path)
        try:
            notify.settimeout(0.2)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    msg = notify.recv(4096).decode(errors="replace")
                except socket.timeout:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode} before READY=1:\n"
                                           + self.log(name))
                    continue
                if "READY=1" in msg.split("\n"):
                    return
            raise RuntimeError(f"{name} did not send READY=1 within {timeout}s:\n" + self.log(name))
        finally:
            notify.close()

    def pid(self, name):
        return self.daemons[name].proc.pid

    def running(self, name):
        return name in self.daemons and self.daemons[name].proc.poll() is None

    def kill(self, name, sig=signal.SIGKILL):
        d = self.daemons[name]
        d.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            d.proc.wait(timeout=10)

    def restart(self, name, timeout=15):
        if self.running(name):
            self.kill(name, signal.SIGTERM)
        self._spawn(name, timeout)

    def reload(self, name):
        self.daemons[name].proc.send_signal(signal.SIGHUP)

    def stop(self):
        """SIGTERM every daemon; returns {name: exit code}."""
        codes = {}
        for name, d in self.daemons.items():
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGTERM)
        for name, d in self.daemons.items():
            try:
                codes[name] = d.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                codes[name] = d.proc.wait()
        return codes

    def close(self):
        self.stop()
        for lst in self.listeners.values():
            for _, s in lst:
                s.close()

    def sanitizer_reports(self):
        """Sanitizer findings in any daemon log (an ASan build of a daemon must produce none)."""
        found = []
        for name in self.daemons:
            text = self.log(name)
            if any(m in text for m in SANITIZER_MARKERS):
                found.append(f"--- {name} ---\n{text[-6000:]}")
        return found

    # --- observation -------------------------------------------------------------------------
    def log(self, name):
        p = self.log_dir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_log(self, name, pattern, timeout=10, count=1):
        """Waits until regex pattern occurs count times in the daemon's log; returns the last match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(rx.finditer(self.log(name)))
            if len(matches) >= count:
                return matches[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"/{pattern}/ x{count} not in {name} log after {timeout}s:\n"
                                     + self.log(name)[-4000:])
            time.sleep(0.05)   # the poll interval of a wait with a deadline

    def scrape(self, accept=None, path="/metrics"):
        """GET path from postern-metrics (started with start("metrics")); returns (status, headers
        dict with lower-case names, body text)."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Accept": accept} if accept else {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
        finally:
            conn.close()

    def metric_values(self, accept=None):
        """The scraped samples as {'name{labels}': value} (name alone without labels)."""
        status, _, body = self.scrape(accept)
        if status != 200:
            raise AssertionError(f"scrape answered {status}: {body}")
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def wait_for(self, predicate, timeout=10, what="condition"):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)   # the poll interval of a wait with a deadline

    def queue_rows(self, sql, params=()):
        db = self.queue_dir / "queue.db"
        if not db.exists():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def queue_count(self):
        """Messages in the queue. A database that does not exist yet holds none; any other error
        is raised, so that wait_queue_empty() can never pass because the count failed."""
        if not (self.queue_dir / "queue.db").exists():
            return 0
        for attempt in range(50):
            try:
                return self.queue_rows("SELECT COUNT(*) FROM messages")[0][0]
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return 0
                last = e
                time.sleep(0.1)   # the database is busy: retry shortly
        raise last

    def wait_queue_empty(self, timeout=20):
        self.wait_for(lambda: self.queue_count() == 0, timeout, "an empty queue")

    def mailbox(self, user):
        p = self.spool_dir / user
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_mailbox(self, user, pattern, timeout=10, count=1):
        self.wait_for(lambda: len(re.findall(pattern, self.mailbox(user))) >= count, timeout,
                      f"{count}x /{pattern}/ in {user}'s mailbox")
        return self.mailbox(user)

    # --- clients -----------------------------------------------------------------------------
    def smtp(self, source_address=None, timeout=10):
        """An smtplib.SMTP connected to the smtp listener (optionally from 127.0.0.2 etc.)."""
        s = smtplib.SMTP(timeout=timeout, local_hostname="client.test",
                         source_address=(source_address, 0) if source_address else None)
        s.connect("127.0.0.1", self.smtp_port)
        return s

    def send(self, sender, rcpts, msg, source_address=None, mail_options=(), extension=None):
        """Sends one message over SMTP; returns the (code, text) of the reply to DATA (mailtest.send
        returns the queue id instead). rcpts: addresses or (address, [RCPT options]) pairs;
        extension: an EHLO keyword the server must offer."""
        with self.smtp(source_address) as s:
            s.ehlo()
            if extension:
                assert s.has_extn(extension), extension
            code, text = s.mail(sender, list(mail_options))
            assert code == 250, (code, text)
            for r in rcpts:
                addr, opts = (r, ()) if isinstance(r, str) else r
                code, text = s.rcpt(addr, list(opts))
                assert code == 250, (addr, code, text)
            code, text = s.data(msg)
            return code, text.decode(errors="replace")

    def _as_user(self, user):
        if user is None:
            return None
        pw = pwd.getpwnam(user)

        def drop():
            os.initgroups(user, pw.pw_gid)
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
        return drop

    def sendmail(self, args, input=b"", user=None, check=True, timeout=30):
        """Runs the built postern-sendmail (as user, if given) with this instance's config."""
        r = subprocess.run([binary("tools/sendmail/postern-sendmail")] + list(args), input=input,
                           env=self.env(), capture_output=True, preexec_fn=self._as_user(user),
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"sendmail {args} exited {r.returncode}: {r.stderr.decode()}")
        return r

    def posternctl(self, *args, user=None, check=False, timeout=30):
        return subprocess.run([binary("tools/posternctl/posternctl")] + list(args), env=self.env(),
                              capture_output=True, text=True, preexec_fn=self._as_user(user),
                              timeout=timeout, check=check)


# --- the attribute protocol (common/ipc), from the test side ------------------------------------
def status_kib(pid, field):
    """A /proc/<pid>/status field in KiB (VmRSS, VmHWM, ...), 0 when missing."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_stopped(pid, timeout=5):
    """Returns once /proc shows pid stopped: kill(SIGSTOP) returns before the signal has acted."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} not stopped after {timeout}s")
        time.sleep(0.01)   # the poll interval of a wait with a deadline


def measure_live_memory(postern):
    """Makes the daemons postern starts from now on run an ASan build without its quarantine, so
    RSS shows live memory only (no effect on a normal build)."""
    orig = postern.env

    def env(extra=None):
        e = orig(extra)
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0:malloc_context_size=2"
        return e
    postern.env = env


def settled_peak_kib(pid):
    """The process's peak RSS (VmHWM) once it stopped moving for a second: what it reaches after
    reading the data in flight."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        time.sleep(0.1)   # sampling: the value must stay still for a second
        now = status_kib(pid, "VmHWM")
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


def xtext_encode(s):
    """RFC 3461 xtext of a str (as UTF-8)."""
    return "".join("+%02X" % b if b < 33 or b > 126 or b in (0x2B, 0x3D) else chr(b)
                   for b in str(s).encode())


def xtext_decode(s):
    return re.sub(rb"\+([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  s.encode()).decode(errors="replace")


def format_record(rec):
    """Wire form of a record given as a dict or a list of (name, value) pairs."""
    items = rec.items() if isinstance(rec, dict) else rec
    return "".join(f"{k}={xtext_encode(v)}\n" for k, v in items) + "\n"


def read_record(f):
    """Reads one record from a binary file object; a dict (first value wins), or None at EOF."""
    rec = {}
    while True:
        line = f.readline()
        if not line:
            return None
        line = line.rstrip(b"\n").decode(errors="replace")
        if line == "":
            return rec
        name, _, value = line.partition("=")
        rec.setdefault(name, xtext_decode(value))


def ipc_call(path, rec, timeout=30):
    """One request/reply on a Postern IPC socket; returns the reply as a dict ({} on EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(format_record(rec).encode())
        return read_record(s.makefile("rb")) or {}


def qmgr_past_startup_scan(postern):
    """Returns once postern-qmgr's startup scan has run, so mail injected after this waits for a
    wake-up. The scan is a timer due at time 0, pending from the loop's first iteration; a request
    is read by a connection's own event source, added on accept, so it becomes pending later and
    sd-event dispatches older pending sources first: an answer means the scan is behind us. The
    request is one qmgr does not know (no side effect)."""
    reply = ipc_call(postern.socket_dir / "qmgr", {"request": "startup-scan-done?"})
    assert reply.get("status") == "error", reply


class FakeAgent:
    """Plays a delivery agent on one of the harness's agent listeners ("local", "smtp", or one
    named by its fd name such as "virtual", which postern-local also takes): each
    request is recorded and answered with answer(request) -> a reply dict, or None to hang up
    without answering. Requests wait for `hold` (a threading.Event) first when hold_when(request)
    says so. Like postern-smtp, it multiplexes: a request tagged "id=" is answered in its own
    thread, while later ones are read, and the reply carries the same id (DESIGN.md §3)."""

    def __init__(self, postern, listener, answer, hold=None, hold_when=None):
        self.sock = (postern.listeners[listener][0][1] if listener in postern.listeners else
                     next(s for lst in postern.listeners.values() for n, s in lst if n == listener))
        self.answer = answer
        self.hold = hold
        self.hold_when = hold_when or (lambda req: True)
        self.requests = []
        self.connections = 0    # accepted so far
        self.lock = threading.Lock()
        self.stopped = False
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _handle(self, conn, req, send_lock):
        """Answers one request; False when the connection was hung up."""
        if self.hold is not None and self.hold_when(req):
            self.hold.wait()
        reply = self.answer(req)
        if reply is None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if "id" in req:
            reply = {**reply, "id": req["id"]}
        try:
            with send_lock:
                conn.sendall(format_record(reply).encode())
        except OSError:
            return False
        return True

    def _serve(self, conn):
        send_lock = threading.Lock()
        with conn:
            f = conn.makefile("rb")
            workers = []
            while (req := read_record(f)) is not None:
                with self.lock:
                    self.requests.append(req)
                if "id" in req:
                    t = threading.Thread(target=self._handle, args=(conn, req, send_lock), daemon=True)
                    t.start()
                    workers.append(t)
                elif not self._handle(conn, req, send_lock):
                    return
            for t in workers:
                t.join()

    def stop(self):
        self.stopped = True
        self.thread.join(timeout=2)


def clean_test_homes():
    """Removes Maildirs and dotfiles the previous test left in the test users' homes."""
    for user in TEST_USERS:
        home = TEST_HOME_BASE / user
        if home.is_dir():
            for entry in home.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
