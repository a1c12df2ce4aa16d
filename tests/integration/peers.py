"""Real peers for the integration tests, started in temporary directories on their own sockets
and stopped at teardown (never as services of the machine).

Dovecot: `/usr/sbin/dovecot -F -c <dir>/dovecot.conf` with a passwd-file passdb, no IMAP/POP
listeners (protocols empty), base_dir/state_dir/log in the temp dir and the auth client socket at
`<dir>/auth-client` (`Dovecot.auth_path`); the userdb is static (any user the passdb knows, as
nobody) or, with passwd_userdb=True, the same passwd-file. `extra_config` adds more (e.g. an LMTP
service):

    def test_x(dovecot):                 # fixture in conftest.py: started, users alice/bob
        dovecot.auth_path                # for smtpd_sasl_path
        dovecot.users                    # {"alice": "secret", ...}
        dovecot.stop(); dovecot.start()  # e.g. to test reconnection
        dovecot.log()                    # Dovecot's own log
"""

import grp
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

DOVECOT = "/usr/sbin/dovecot"

DOVECOT_CONF = """\
# written by tests/integration/peers.py
protocols =
instance_name = {name}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
default_internal_user = {internal_user}
default_login_user = {login_user}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
{userdb}
service auth {{
  unix_listener auth-client {{
    path = {dir}/auth-client
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
{extra}
"""


STATIC_USERDB = """\
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/home
}}"""

# The users of the passwd-file are the userdb's too (their lines then carry nobody's uid and
# gid and a home directory, as a passwd-file userdb needs).
PASSWD_USERDB = """\
userdb {{
  driver = passwd-file
  args = username_format=%n {dir}/passwd
}}"""


class Dovecot:
    """A private Dovecot instance (auth service only unless extra_config adds more)."""

    def __init__(self, users=None, mechanisms="plain login", extra_config="", passwd_userdb=False):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-dovecot-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)   # Dovecot's unprivileged processes must reach their files
        self.users = dict(users or {"alice": "secret", "bob": "hunter2"})
        self.auth_path = self.dir / "auth-client"
        self.config_path = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.proc = None
        passwd = self.dir / "passwd"
        ids = f":{pwd.getpwnam('nobody').pw_uid}:{grp.getgrnam('nogroup').gr_gid}::{self.dir}/home::" \
            if passwd_userdb else ""
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}{ids}\n" for u, p in self.users.items()))
        os.chmod(passwd, 0o644)
        userdb = (PASSWD_USERDB if passwd_userdb else STATIC_USERDB).format(dir=self.dir)
        self.config_path.write_text(DOVECOT_CONF.format(
            name=self.dir.name, dir=self.dir, mechanisms=mechanisms, extra=extra_config, userdb=userdb,
            internal_user="dovecot", login_user="dovenull"))

    def start(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("dovecot is already running")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "dovecot.stderr", "ab"),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.auth_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: " + self.log() +
                                   (self.dir / "dovecot.stderr").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("dovecot did not create its auth socket: " + self.log())
            time.sleep(0.05)   # polling for the auth socket, with a deadline

    def stop(self):
        """SIGTERM to the master and then to its whole process group: Dovecot's master leaves
        its auth process running while clients are connected, and a test that stops Dovecot
        means all of it (as `systemctl stop dovecot` does with its cgroup)."""
        if self.proc:
            pgid = self.proc.pid   # its own session (start_new_session)
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.2)   # give each signal time to act before the next, stronger one
        self.proc = None
        try:
            self.auth_path.unlink()
        except FileNotFoundError:
            pass

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def close(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
