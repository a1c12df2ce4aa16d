"""Debian's amavisd-new as a real after-queue content filter (FILTER_README's advanced setup):
started by the tests on a free 127.0.0.1 port with a minimal configuration — no virus scanner,
no SpamAssassin (both bypassed), its own Received: line and XFORWARD passed on — forwarding
everything it accepts to Postern's return listener. amavisd refuses a configuration file in a
directory its user can write, so the file lives in a root-owned directory and its work files in
one that belongs to the amavis user."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

AMAVISD = "/usr/sbin/amavisd"

CONFIG = """use strict;
$daemon_user = 'amavis';
$daemon_group = 'amavis';
$mydomain = 'postern.test';
@local_domains_maps = (['.postern.test']);
$myhostname = 'amavis.postern.test';
$MYHOME = '{home}';
$TEMPBASE = '{home}/tmp';
$db_home = '{home}/db';
$pid_file = '{home}/amavisd.pid';
$lock_file = '{home}/amavisd.lock';
$enable_db = 0;
$enable_global_cache = 0;
$nanny_details_level = 0;
$do_syslog = 0;
$LOGFILE = '{home}/amavis.log';
$log_level = 2;
$max_servers = 2;
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = {port};
@inet_acl = qw(127.0.0.1);
$forward_method = 'smtp:[127.0.0.1]:{forward}';
$notify_method = $forward_method;
@bypass_virus_checks_maps = (1);
@bypass_spam_checks_maps = (1);
@av_scanners = ();
@av_scanners_backup = ();
$enable_dkim_verification = 0;
$enable_dkim_signing = 0;
1;
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Amavis:
    def __init__(self, forward_port):
        self.port = _free_port()
        self.confdir = pathlib.Path(tempfile.mkdtemp(prefix="postern-amavis-conf-", dir="/var/tmp"))
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="postern-amavis-", dir="/var/tmp"))
        for d in ("tmp", "db"):
            (self.home / d).mkdir()
        os.chmod(self.confdir, 0o755)
        shutil.chown(self.home, "amavis", "amavis")
        for d in ("tmp", "db"):
            shutil.chown(self.home / d, "amavis", "amavis")
        self.conf = self.confdir / "amavisd.conf"
        self.conf.write_text(CONFIG.format(home=self.home, port=self.port, forward=forward_port))
        os.chmod(self.conf, 0o644)
        self.proc = None

    def start(self, timeout=60):
        self.proc = subprocess.Popen([AMAVISD, "-c", str(self.conf), "foreground"], cwd=self.home,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:     # amavisd is ready when it answers SMTP on its port
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    if s.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("amavisd did not start:\n" + self.log()[-3000:])
            time.sleep(0.1)   # polling for amavisd's port, with a deadline

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log(self):
        p = self.home / "amavis.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self):
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.confdir, ignore_errors=True)
