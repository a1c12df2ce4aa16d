"""Database servers and lookup servers for the database table tests (test_tables_sql.py), each
started in a temporary directory on a private socket, as an unprivileged user, and stopped at
teardown (never as services of the machine):

    pg = Postgres()                 # initdb + pg_ctl as user postgres, unix socket only,
    pg.sql("INSERT ...")            # scram-sha-256 passwords; database "mail", user postern
    pg.socket_dir, pg.stop(), pg.start(), pg.pause(), pg.resume()   # SIGSTOP/SIGCONT
    Postgres(tls=(ca, cert, key))   # also on 127.0.0.1:pg.port with TLS (ssl = on)
    my = Mariadb()                  # mariadb-install-db + mariadbd as user mysql, socket only
    my.sql("INSERT ..."); my.socket; my.stop(); my.start()
    Mariadb(tls=(ca, cert, key))    # also on 127.0.0.1:my.port with TLS; user postern_tls REQUIRE SSL
    m = ScriptedMap(protocol)       # "socketmap" or "tcp": answers from the dict m.entries
                                    # ("TEMP" as a value: a temporary error), on 127.0.0.1:m.port

A server binary that is missing fails the test (tests/run-all installs postgresql and
mariadb-server): a database test that skips would hide that nothing was tested.
"""

import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

PASSWORD = "s3cret-pw"


def _require(path, package):
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{path or package} is missing: install {package} (tests/run-all does)")
    return path


def _tempdir(prefix, owner):
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(d, 0o755)
    pw = pwd.getpwnam(owner)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def _wait(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Postgres:
    def __init__(self, tls=None):
        """tls: (ca, cert, key) files: listen on 127.0.0.1:self.port too, with TLS (ssl = on)."""
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = _require(bins[-1] if bins else None, "postgresql")
        self.bin = pathlib.Path(initdb).parent
        self.psql = _require(shutil.which("psql") or str(self.bin / "psql"), "postgresql-client")
        self.dir = _tempdir("postern-pg-", "postgres")
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.socket_dir.mkdir()
        shutil.chown(self.socket_dir, "postgres", "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        self.options = f"-k {self.socket_dir} -c listen_addresses= -c fsync=off"
        if tls:
            files = []
            for f in tls:
                dest = self.dir / pathlib.Path(f).name
                shutil.copy(f, dest)
                shutil.chown(dest, "postgres", "postgres")
                os.chmod(dest, 0o600)
                files.append(dest)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self.options = (f"-k {self.socket_dir} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off "
                            f"-c ssl=on -c ssl_ca_file={files[0]} -c ssl_cert_file={files[1]} -c ssl_key_file={files[2]}")
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
                           f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"])
        self.start()
        self.sql("CREATE ROLE postern LOGIN PASSWORD '%s'" % PASSWORD, db="postgres")
        self.sql("CREATE DATABASE mail OWNER postern", db="postgres")

    def _as_postgres(self, argv, **kw):
        return subprocess.run(["runuser", "-u", "postgres", "--"] + argv, check=True, capture_output=True,
                              text=True, cwd=self.dir, **kw)

    def start(self):
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                           "-t", "60", "-o", self.options, "start"])

    def stop(self, mode="immediate"):
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def _pids(self):
        """The postmaster and its children (backends, background workers)."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [master]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = open(stat).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(stat.split("/")[2]))
        return pids

    def pause(self):
        """SIGSTOP to the whole server: connections stay open, nothing answers (a hung server)."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self):
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def sql(self, text, db="mail", user="postgres"):
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run([self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-U", user,
                            "-p", str(getattr(self, "port", 5432)),
                            "-d", db, "-At", "-c", text], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"psql: {r.stderr}")
        return r.stdout

    def close(self):
        if self.running():
            try:
                self.resume()
            except (OSError, ValueError):
                pass
            try:
                self.stop()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Mariadb:
    def __init__(self, tls=None):
        """tls: (ca, cert, key) files: listen on 127.0.0.1:self.port too, with TLS, and add the user
        postern_tls (same password) who may log in only with TLS (REQUIRE SSL)."""
        self.mariadbd = _require(shutil.which("mariadbd") or "/usr/sbin/mariadbd", "mariadb-server")
        install = _require(shutil.which("mariadb-install-db"), "mariadb-server")
        self.client = _require(shutil.which("mariadb"), "mariadb-client")
        self.dir = _tempdir("postern-my-", "mysql")
        self.data = self.dir / "data"
        self.socket = self.dir / "mysql.sock"
        self.proc = None
        self.net = ["--skip-networking"]
        if tls:
            files = []
            for f in tls:
                shutil.copy(f, self.dir / pathlib.Path(f).name)
                shutil.chown(self.dir / pathlib.Path(f).name, "mysql", "mysql")
                files.append(self.dir / pathlib.Path(f).name)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            self.net = ["--bind-address=127.0.0.1", f"--port={self.port}", f"--ssl-ca={files[0]}",
                        f"--ssl-cert={files[1]}", f"--ssl-key={files[2]}"]
        subprocess.run([install, "--no-defaults", "--user=mysql", f"--datadir={self.data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, cwd=self.dir)
        self.start()
        self.sql("CREATE DATABASE mail; CREATE USER 'postern'@'localhost' IDENTIFIED BY '%s'; "
                 "GRANT SELECT ON mail.* TO 'postern'@'localhost'" % PASSWORD, db=None)
        if tls:
            self.sql("CREATE USER 'postern_tls'@'%%' IDENTIFIED BY '%s' REQUIRE SSL; "
                     "GRANT SELECT ON mail.* TO 'postern_tls'@'%%'" % PASSWORD, db=None)

    def start(self):
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [self.mariadbd, "--no-defaults", "--user=mysql", f"--datadir={self.data}", f"--socket={self.socket}",
             *self.net, f"--pid-file={self.dir / 'mysqld.pid'}", f"--log-error={self.dir / 'error.log'}",
             "--innodb-buffer-pool-size=16M", "--skip-log-bin"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("mariadbd exited: " + (self.dir / "error.log").read_text()[-2000:])
            return self.socket.exists() and subprocess.run(
                [self.client, "--no-defaults", "-S", str(self.socket), "-u", "root", "-e", "SELECT 1"],
                capture_output=True).returncode == 0
        _wait(ready, "mariadbd")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def sql(self, text, db="mail"):
        r = subprocess.run([self.client, "--no-defaults", "-S", str(self.socket), "-u", "root", "-N", "-B"]
                           + ([db] if db else []) + ["-e", text], capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"mariadb: {r.stderr}")
        return r.stdout

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _netstring(data):
    return b"%d:%s," % (len(data), data)


class ScriptedMap:
    """A socketmap (netstring) or tcp_table lookup server on 127.0.0.1 answering from entries."""

    def __init__(self, protocol, entries=None):
        self.protocol, self.entries = protocol, dict(entries or {})
        self.requests = []
        self.hold = {}   # key -> threading.Event: its answer waits until the event is set (30 s at most)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.start()

    def start(self):
        if self.listener is None:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        self.conns = []
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        """Closes the listener and every connection: the server is gone."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes the thread in accept()
        except OSError:
            pass
        self.listener.close()
        self.listener = None
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener):
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _answer(self, key):
        self.requests.append(key)
        if key in self.hold:
            self.hold[key].wait(30)
        v = self.entries.get(key)
        if self.protocol == "tcp":
            if v is None:
                return b"500 not found\n"
            if v == "TEMP":
                return b"400 try again\n"
            return b"200 " + "".join(ch if 0x20 < ord(ch) < 0x7f and ch != "%" else "%%%02X" % ord(ch)
                                     for ch in v).encode() + b"\n"
        if v is None:
            return _netstring(b"NOTFOUND ")
        if v == "TEMP":
            return _netstring(b"TEMP try again")
        return _netstring(b"OK " + v.encode())

    def _serve(self, c):
        buf = b""
        try:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                buf += data
                while True:
                    if self.protocol == "tcp":
                        if b"\n" not in buf:
                            break
                        line, buf = buf.split(b"\n", 1)
                        assert line.startswith(b"get ")
                        raw = line[4:].decode()
                        out, i = bytearray(), 0
                        while i < len(raw):
                            if raw[i] == "%":
                                out.append(int(raw[i + 1:i + 3], 16))
                                i += 3
                            else:
                                out += raw[i].encode()
                                i += 1
                        key = out.decode()
                    else:
                        if b":" not in buf:
                            break
                        n, rest = buf.split(b":", 1)
                        if len(rest) < int(n) + 1:
                            break
                        req, buf = rest[:int(n)], rest[int(n) + 1:]
                        name, key = req.decode().split(" ", 1)
                        assert name == "virtual", name
                    c.sendall(self._answer(key))
        except OSError:
            return
        finally:
            c.close()
