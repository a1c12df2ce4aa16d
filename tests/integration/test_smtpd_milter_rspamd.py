"""A second real milter: Debian's rspamd, its proxy worker in milter mode scanning by itself
(self_scan), on 127.0.0.1. GTUBE is rejected with rspamd's reply, a clean message gets rspamd's
headers (milter_headers: X-Spamd-Result, X-Rspamd-Server), and with rspamd down
milter_default_action decides. One rspamd serves the module (it takes ~20 s to start)."""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile

import pytest

from milter_peer import wait_for
from test_smtpd_helpers import content_of, free_port, queue_ids

RSPAMD = "/usr/bin/rspamd"

pytestmark = pytest.mark.skipif(not os.path.exists(RSPAMD), reason="rspamd is not installed")

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CONF = """.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    local_addrs = [];
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%d";
    milter = yes;
    timeout = 120s;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
    count = 1;
}
"""

HEADERS = """use = ["x-spamd-result", "x-rspamd-server"];
skip_local = false;
skip_authenticated = false;
"""


@pytest.fixture(scope="module")
def rspamd():
    d = pathlib.Path(tempfile.mkdtemp(prefix="postern-rspamd-", dir="/var/tmp"))
    for sub in ("local.d", "db", "run", "log"):
        (d / sub).mkdir()
    port = free_port()
    (d / "rspamd.conf").write_text(CONF % port)
    (d / "local.d" / "milter_headers.conf").write_text(HEADERS)
    out = open(d / "out.txt", "wb")
    p = subprocess.Popen([RSPAMD, "-f", "-i", "-u", "root", "-g", "root", "-c", str(d / "rspamd.conf"),
                          "--var", "LOCAL_CONFDIR=%s" % d, "--var", "DBDIR=%s" % (d / "db"),
                          "--var", "RUNDIR=%s" % (d / "run"), "--var", "LOGDIR=%s" % (d / "log")],
                         stdout=out, stderr=subprocess.STDOUT)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    assert wait_for(up, timeout=120), "rspamd did not start: " + (d / "out.txt").read_text()[-2000:]
    # the proxy answers only once its worker loaded the rules
    assert wait_for(lambda: "hyperscan" in (d / "log" / "rspamd.log").read_text() or
                    p.poll() is not None, timeout=120)
    yield "inet:127.0.0.1:%d" % port
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
    out.close()
    shutil.rmtree(d, ignore_errors=True)


def start(postern, spec, **conf):
    postern.configure(smtpd_milters=spec, milter_content_timeout="60s", **conf)
    postern.start("smtpd")


def deliver(postern, body, subject="test"):
    msg = ("From: alice@example.org\r\nTo: ptest1@localhost\r\nSubject: %s\r\n"
           "Message-ID: <%s@example.org>\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\n%s\r\n"
           % (subject, subject.replace(" ", "-"), body)).encode()
    with postern.smtp(source_address="127.0.0.2") as s:
        s.ehlo("client.test")
        s.mail("alice@example.org")
        s.rcpt("ptest1@localhost")
        return s.data(msg)


def test_gtube_rejected_with_rspamds_reply(postern, rspamd):
    start(postern, rspamd)
    code, text = deliver(postern, GTUBE, "gtube")
    assert (code, text.decode()) == (554, "5.7.1 Gtube pattern")
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.2\]: 554 ")


def test_clean_message_gets_rspamds_headers(postern, rspamd):
    start(postern, rspamd)
    code, text = deliver(postern, "Hello, this is an ordinary message about the meeting tomorrow.", "clean")
    assert code == 250, text
    [qid] = queue_ids(postern)
    content = content_of(postern, qid)
    assert "X-Spamd-Result:" in content, content
    assert "X-Rspamd-Server:" in content


def test_rspamd_down_default_action(postern):
    start(postern, "inet:127.0.0.1:%d" % free_port(), milter_default_action="accept")
    code, text = deliver(postern, "rspamd is down", "down")
    assert code == 250
    assert len(queue_ids(postern)) == 1
