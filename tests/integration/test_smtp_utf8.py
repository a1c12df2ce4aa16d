"""postern-smtp and SMTPUTF8 (RFC 6531 3.2): a message that needs SMTPUTF8 goes to a server that
offers it with MAIL FROM ... SMTPUTF8; to a server that does not, recipients whose address is
UTF-8 bounce with 5.6.7 (all of them when the sender or a header is UTF-8) while ASCII
recipients are delivered without the parameter. The receivers are aiosmtpd servers with and
without SMTPUTF8."""

import re

import mailtest


def send_utf8(postern, sender, rcpts, subject="plain"):
    body = mailtest.msg("utf8@test", sender=sender, to="someone@remote.example", subject=subject)
    with postern.smtp() as s:
        s.ehlo()
        s.sendmail(sender, rcpts, body, mail_options=["SMTPUTF8"])
    postern.wait_log("smtpd", r"queued as|: from=<", timeout=10)


def qid_of(postern, rcpt):
    m = postern.wait_log("smtp", rf"([0-9A-Z]+): to=<{re.escape(rcpt)}>", timeout=20)
    return m.group(1)


def test_utf8_recipient_bounces_only_itself_without_server_support(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(utf8=False)
    postern.configure(relayhost=f"[127.0.0.1]:{port}")
    postern.start()
    send_utf8(postern, "ptest1@postern.test", ["jörg@remote.example", "bob@remote.example"])
    postern.wait_log("smtp", rf"to=<jörg@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, .*"
                             rf"dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required, but was not offered by "
                             rf"host 127\.0\.0\.1\[127\.0\.0\.1\]:{port}\)", timeout=20)
    postern.wait_log("smtp", r"to=<bob@remote\.example>, .*status=sent")
    assert len(h.envelopes) == 1
    env = h.envelopes[0]
    assert env.rcpt_tos == ["bob@remote.example"]
    assert "SMTPUTF8" not in env.mail_options
    postern.wait_mailbox("ptest1", r"Undelivered Mail Returned to Sender", timeout=20)


def test_utf8_header_needs_smtputf8_for_everyone(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(utf8=False)
    postern.configure(relayhost=f"[127.0.0.1]:{port}")
    postern.start()
    send_utf8(postern, "ptest1@postern.test", ["bob@remote.example"], subject="Grüße")
    postern.wait_log("smtp", r"to=<bob@remote\.example>, .*dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required",
                     timeout=20)
    assert h.envelopes == []


def test_server_with_smtputf8_gets_the_parameter(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(utf8=True)
    postern.configure(relayhost=f"[127.0.0.1]:{port}")
    postern.start()
    send_utf8(postern, "ptest1@postern.test", ["jörg@remote.example", "bob@remote.example"], subject="Grüße")
    postern.wait_log("smtp", r"to=<jörg@remote\.example>, .*status=sent", timeout=20)
    postern.wait_log("smtp", r"to=<bob@remote\.example>, .*status=sent", timeout=20)
    assert len(h.envelopes) == 1
    env = h.envelopes[0]
    assert sorted(env.rcpt_tos) == ["bob@remote.example", "jörg@remote.example"]
    assert "SMTPUTF8" in env.mail_options
    assert "Grüße".encode() in env.original_content
