"""After-queue content filtering as FILTER_README's advanced example sets it up: main.cf's
content_filter sends every message postern-smtpd queues (port 25 and the submit socket) through
a master.cf smtp transport (smtp-amavis) to a scripted filter (filter_peers.AfterQueueFilter),
which adds a header and reinjects it into a second listener (127.0.0.1:PORT inet ... smtpd -o
content_filter= -o receive_override_options=...), whose mail is routed normally. Messages are
counted end to end: each reaches the filter once (one transaction for all its recipients),
is delivered once with the filter's header, and never loops back into the filter. The return
listener's overrides (no_header_body_checks, no_unknown_recipient_checks, its own
mynetworks/restrictions) and main.cf's receive_override_options = no_address_mappings (mappings
done after the filter) are checked on the way; an access(5) FILTER wins over content_filter.
Every test runs twice: with the return listener as a master.cf entry and as a socket of the
template unit postern-smtpd@PORT.socket with its settings in main.cf ("127.0.0.1-PORT/name").
XFORWARD (smtp_send_xforward_command, smtpd_authorized_xforward_hosts) passes the original client
through the filter; malformed values stop smtpd with an error naming them."""

import re
import smtplib

import pytest

from postern_harness import tcp_listener

from filter_peers import AfterQueueFilter
from smtp_peers import Sink, peer_factory

HEADER = b"X-Test-Filter: scanned"


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda name: Sink(postern.root / name))


# The return listener's settings, as master.cf's -o options or as main.cf listener settings.
RETURN_OPTIONS = {
    "content_filter": "",
    "receive_override_options": "no_unknown_recipient_checks,no_header_body_checks,no_milters",
    "smtpd_helo_restrictions": "",
    "smtpd_client_restrictions": "",
    "smtpd_sender_restrictions": "",
    "smtpd_recipient_restrictions": "permit_mynetworks,reject",
    "mynetworks": "127.0.0.0/8",
    "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
}


@pytest.fixture(params=["master.cf", "template"])
def filtered(request, postern, sinks):
    """Postern with the amavis-style setup; yields (postern, filter, return port, sink). The return
    listener is a master.cf entry (the socket postern-generator makes), or, as with the template
    unit postern-smtpd@PORT.socket, a socket named 127.0.0.1-PORT with main.cf settings."""
    ret = tcp_listener()
    port = ret.getsockname()[1]
    flt = AfterQueueFilter(port, header=HEADER)
    sink = sinks("direct")
    master = ("smtp      inet  n       -       n       -       -       smtpd\n"
              "smtp-amavis unix -      -       n       -       2       smtp\n"
              "  -o smtp_data_done_timeout=1200\n"
              "  -o smtp_send_xforward_command=yes\n"
              "  -o disable_dns_lookups=yes\n")
    listener = {}
    if request.param == "master.cf":
        master += f"127.0.0.1:{port} inet n  -       n       -       -       smtpd\n"
        master += "".join(f"  -o {k}={v}\n" for k, v in RETURN_OPTIONS.items())
    else:
        listener = {f"127.0.0.1-{port}/{k}": v for k, v in RETURN_OPTIONS.items()}
    (postern.etc_dir / "master.cf").write_text(master)
    (postern.etc_dir / "header_checks").write_text(f"/^{HEADER.split(b':')[0].decode()}:/ REJECT forged filter header\n")
    postern.configure(
        content_filter=f"smtp-amavis:[127.0.0.1]:{flt.port}",
        receive_override_options="no_address_mappings",
        header_checks=f"regexp:{postern.etc_dir}/header_checks",
        virtual_alias_maps="inline:{ team@postern.test=ptest2 }",
        smtpd_sender_restrictions="check_sender_access inline:{ "
                                  f"{{direct@example.org=FILTER smtp:[127.0.0.1]:{sink.port}}} held@example.org=HOLD }}",
        queue_run_delay="300s", **listener)
    postern.listeners["smtpd"].append((f"127.0.0.1-{port}", ret))
    postern.start()
    assert "Ignoring passed socket" not in postern.log("smtpd")
    yield postern, flt, port, sink
    flt.stop()


def message(n, extra=""):
    return f"From: alice@example.org\nSubject: filtered {n}\n{extra}\nbody {n}\n"


def test_every_message_through_the_filter_once(filtered):
    postern, flt, _, _ = filtered
    for i in range(5):
        code, text = postern.send("alice@example.org", ["ptest1@postern.test", "team@postern.test"], message(i))
        assert code == 250, text
    postern.sendmail(["-f", "alice@example.org", "ptest1@postern.test"], input=message("local").encode())

    box1 = postern.wait_mailbox("ptest1", r"Subject: filtered", count=6, timeout=60)
    box2 = postern.wait_mailbox("ptest2", r"Subject: filtered", count=5, timeout=60)
    postern.wait_queue_empty(timeout=60)
    # one filter transaction per message, whatever its recipients; the alias was not expanded
    # before the filter (main.cf's no_address_mappings) but after it (the return listener)
    assert flt.count() == 6
    envelopes = sorted((s, tuple(sorted(r))) for s, r, _ in flt.received)
    assert envelopes == sorted([("alice@example.org", ("ptest1@postern.test", "team@postern.test"))] * 5 +
                               [("alice@example.org", ("ptest1@postern.test",))])
    # delivered once each, with the filter's header once (header_checks, which refuse that
    # header, did not run on the return listener: no_header_body_checks)
    for box, n in ((box1, 6), (box2, 5)):
        assert box.count("X-Test-Filter: scanned") == n, box
        assert len(re.findall(r"^Subject: filtered", box, re.M)) == n, box
    # the reinjected copies were routed normally, never to the filter again
    smtp_log = postern.log("smtp")
    sent = re.findall(rf"(\w+): to=<[^>]*>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{flt.port}, .*status=sent", smtp_log)
    assert len(sent) == 11 and len(set(sent)) == 6, smtp_log
    assert "status=deferred" not in smtp_log and "status=bounced" not in smtp_log, smtp_log


def test_filter_refusal_bounces_and_port_25_keeps_its_checks(filtered):
    postern, flt, _, _ = filtered
    # header_checks still apply where mail enters (only the return listener leaves them out)
    code, text = postern.send("alice@example.org", ["ptest1@postern.test"], message(1, "X-Test-Filter: forged\n"))
    assert code == 550 and "forged filter header" in text, (code, text)
    # unknown local recipients are refused on port 25
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("alice@example.org")[0] == 250
        assert s.rcpt("nosuchuser@postern.test")[0] == 550
    # a message the filter refuses comes back to its sender as a bounce, which is filtered too
    code, text = postern.send("ptest3@postern.test", ["ptest1@postern.test"], message(2, "X-Virus: FILTER-REJECT\n"))
    assert code == 250, text
    box = postern.wait_mailbox("ptest3", r"Rejected by the test filter", timeout=60)
    postern.wait_queue_empty(timeout=60)
    assert "X-Test-Filter" not in postern.mailbox("ptest1")
    assert flt.count() == 1, flt.received   # Postern's bounce is not sent through the filter
    assert "MAILER-DAEMON" in box


def test_return_listener_overrides(filtered):
    postern, flt, port, _ = filtered
    with smtplib.SMTP("127.0.0.1", port, local_hostname="filter.test", timeout=10) as s:
        s.ehlo()
        assert s.mail("alice@example.org")[0] == 250
        # no_unknown_recipient_checks: the filter has already accepted what it passes back
        assert s.rcpt("nosuchuser@postern.test")[0] == 250
        assert s.rcpt("ptest1@postern.test")[0] == 250
        s.rset()
    log = postern.log("smtpd")
    assert "content_filter" not in log and "receive_override_options" not in log, log
    r = postern.posternctl("check")
    assert "content_filter" not in r.stderr and "receive_override_options" not in r.stderr, r.stderr
    assert flt.count() == 0


def test_access_filter_wins_over_content_filter(filtered):
    postern, flt, _, sink = filtered
    code, text = postern.send("direct@example.org", ["ptest1@postern.test"], message("direct"))
    assert code == 250, text
    msgs = sink.wait_count(1, timeout=60)
    assert b"Subject: filtered direct" in msgs[0]
    postern.wait_queue_empty(timeout=60)
    assert flt.count() == 0
    assert "Subject: filtered direct" not in postern.mailbox("ptest1")


def test_held_mail_keeps_its_filter(filtered):
    postern, flt, _, _ = filtered
    code, text = postern.send("held@example.org", ["ptest1@postern.test"], message("held"))
    assert code == 250, text
    qid = re.search(r"queued as (\w+)", text).group(1)
    filt = f"smtp-amavis:[127.0.0.1]:{flt.port}"
    assert postern.queue_rows("SELECT hold, filter FROM messages WHERE queue_id = ?", (qid,)) == [(1, filt)]
    r = postern.posternctl("release", qid)
    assert r.returncode == 0, r.stderr
    box = postern.wait_mailbox("ptest1", r"Subject: filtered held", timeout=60)
    postern.wait_queue_empty(timeout=60)
    assert flt.count() == 1 and box.count("X-Test-Filter: scanned") == 1, box


def test_xforward_names_the_original_client(filtered):
    """smtp_send_xforward_command on the filter's transport and smtpd_authorized_xforward_hosts on
    the return listener: the queued copy shows the client that sent the mail, not the filter."""
    postern, flt, port, _ = filtered
    with postern.smtp(source_address="127.0.0.2") as s:
        s.ehlo("original.test")
        assert s.sendmail("alice@example.org", ["ptest1@postern.test"], message("xforward").encode()) == {}
    box = postern.wait_mailbox("ptest1", r"Subject: filtered xforward", timeout=60)
    postern.wait_queue_empty(timeout=60)
    xf = [c for cmds in flt.sessions for c in cmds if c.startswith("XFORWARD ")]
    assert len(xf) == 1, flt.sessions
    assert "ADDR=127.0.0.2" in xf[0] and "HELO=original.test" in xf[0] and "PROTO=ESMTP" in xf[0] \
        and "SOURCE=REMOTE" in xf[0] and re.search(r"IDENT=\w+", xf[0]), xf[0]
    orig_id = re.search(r"IDENT=(\w+)", xf[0]).group(1)
    # the return listener's Received: names the original client; its log has both
    above = box[:box.index("X-Test-Filter: scanned")]   # the only message; the return listener's Received: on top
    received = re.findall(r"^Received: from (\S+) \(\S+ \[([^\]]+)\]\)", above, re.M)
    assert received == [("original.test", "127.0.0.2")], box
    assert re.search(rf"client=localhost\[127\.0\.0\.1\], orig_queue_id={orig_id}, orig_client=\S+\[127\.0\.0\.2\]",
                     postern.log("smtpd")), postern.log("smtpd")
    # the return listener offers XFORWARD only to its authorised hosts: port 25 does not
    with postern.smtp() as s:
        s.ehlo()
        assert not s.has_extn("xforward")
        assert s.docmd("XFORWARD ADDR=192.0.2.1")[0] == 550
    with smtplib.SMTP("127.0.0.1", port, local_hostname="filter.test", timeout=10) as s:
        s.ehlo()
        assert s.has_extn("xforward")
        assert s.docmd("XFORWARD COLOR=blue")[0] == 501
        assert s.mail("alice@example.org")[0] == 250
        assert s.docmd("XFORWARD ADDR=192.0.2.1")[0] == 503


@pytest.mark.parametrize("setting, error", [
    ({"receive_override_options": "no_milters, no_address_mapping"},
     'receive_override_options: unknown option "no_address_mapping"'),
    ({"content_filter": ":[127.0.0.1]:10024"},
     r"content_filter = :\[127\.0\.0\.1\]:10024: no transport before the"),
])
def test_bad_values_stop_smtpd_naming_them(postern, setting, error):
    postern.configure(**setting)
    with pytest.raises(RuntimeError, match=error):
        postern.start("smtpd")
    r = postern.posternctl("check")   # says so before a restart does
    assert r.returncode == 1 and re.search(error, r.stderr), r.stderr


def test_posternctl_check_reads_each_listeners_filter_settings(postern):
    (postern.etc_dir / "master.cf").write_text(
        "127.0.0.1:10025 inet n - n - - smtpd\n"
        "  -o content_filter=\n"
        "  -o receive_override_options=no_unknown_recipient_checks,no_milter\n")
    r = postern.posternctl("check")
    assert r.returncode == 1
    assert '127.0.0.1-10025/receive_override_options: unknown option "no_milter"' in r.stderr, r.stderr
