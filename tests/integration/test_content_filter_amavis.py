"""The after-queue content filter with the real thing: Debian's amavisd-new (amavis_peer.py) as
FILTER_README's advanced example — content_filter = smtp-amavis:[127.0.0.1]:PORT, a master.cf
smtp-amavis transport with XFORWARD, and a return listener (127.0.0.1:PORT inet ... smtpd -o
content_filter= -o receive_override_options=...). Every message goes through amavis once (its
Received: line, its "Passed CLEAN" log line), is delivered once, never loops, and keeps its
original client through XFORWARD; with amavis down mail waits in the queue and goes through
once amavis is back."""

import os
import re

import pytest

from amavis_peer import AMAVISD, Amavis
from postern_harness import tcp_listener

pytestmark = pytest.mark.skipif(not os.path.exists(AMAVISD), reason="amavisd-new is not installed")

RETURN_OPTIONS = {
    "content_filter": "",
    "receive_override_options": "no_unknown_recipient_checks,no_header_body_checks,no_milters,no_address_mappings",
    "smtpd_helo_restrictions": "",
    "smtpd_client_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_recipient_restrictions": "permit_mynetworks,reject",
    "mynetworks": "127.0.0.0/8",
    "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
}


@pytest.fixture
def amavis_setup(postern):
    ret = tcp_listener()
    port = ret.getsockname()[1]
    amavis = Amavis(port)
    master = ("smtp      inet  n       -       n       -       -       smtpd\n"
              "smtp-amavis unix -      -       n       -       2       smtp\n"
              "  -o smtp_data_done_timeout=1200\n"
              "  -o smtp_send_xforward_command=yes\n"
              "  -o disable_dns_lookups=yes\n"
              "  -o max_use=20\n"
              f"127.0.0.1:{port} inet n  -       n       -       -       smtpd\n"
              + "".join(f"  -o {k}={v}\n" for k, v in RETURN_OPTIONS.items()))
    (postern.etc_dir / "master.cf").write_text(master)
    postern.configure(content_filter=f"smtp-amavis:[127.0.0.1]:{amavis.port}",
                      virtual_alias_maps="inline:{ team@postern.test=ptest2 }",
                      minimal_backoff_time="1s", maximal_backoff_time="2s", queue_run_delay="1s")
    postern.listeners["smtpd"].append((f"127.0.0.1-{port}", ret))
    yield postern, amavis
    amavis.close()


def message(n):
    return (f"From: alice@example.org\nDate: Mon, 7 Dec 2026 12:00:00 +0000\nMessage-ID: <amavis-{n}@example.org>\n"
            f"Subject: amavis {n}\n\nbody {n}\n")


def test_every_message_through_amavis_once(amavis_setup):
    postern, amavis = amavis_setup
    amavis.start()
    postern.start()
    n = 8
    for i in range(n):
        code, text = postern.send("alice@example.org", ["ptest1@postern.test", "team@postern.test"], message(i))
        assert code == 250, text
    box1 = postern.wait_mailbox("ptest1", r"Subject: amavis", count=n, timeout=90)
    box2 = postern.wait_mailbox("ptest2", r"Subject: amavis", count=n, timeout=90)
    postern.wait_queue_empty(timeout=60)
    for box in (box1, box2):
        assert len(re.findall(r"^Subject: amavis \d", box, re.M)) == n, box
        # amavis's own Received: line, once per copy: filtered once, never looped
        assert box.count("(amavis, port %d)" % amavis.port) == n, box
    # amavis logs each message once, naming Postern's queue id (XFORWARD IDENT)
    passed = re.findall(r"Passed CLEAN \{RelayedInbound\}, \[127\.0\.0\.1\] <alice@example\.org> -> "
                        r"<ptest1@postern\.test>,<ptest2@postern\.test>, Queue-ID: (\w+)", amavis.log())
    assert len(passed) == n and len(set(passed)) == n, amavis.log()[-3000:]
    for qid in passed:
        postern.wait_log("smtpd", rf"{qid}: client=localhost\[127\.0\.0\.1\]")
    # XFORWARD: the return listener recorded the original client, not amavis
    postern.wait_log("smtpd", r"orig_client=localhost\[127\.0\.0\.1\]")
    assert "status=bounced" not in postern.log("smtp") + postern.log("qmgr")


def test_amavis_down_then_back_nothing_lost(amavis_setup):
    postern, amavis = amavis_setup
    postern.start()
    for i in range(3):
        code, text = postern.send("alice@example.org", ["ptest1@postern.test"], message(i))
        assert code == 250, text
    postern.wait_log("smtp", r"status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                             r"Connection refused" % amavis.port, timeout=30)
    amavis.start()
    postern.posternctl("flush", check=True)
    box = postern.wait_mailbox("ptest1", r"Subject: amavis", count=3, timeout=90)
    postern.wait_queue_empty(timeout=60)
    assert box.count("(amavis, port %d)" % amavis.port) == 3, box
