"""DNS-based restrictions on a real smtpd (DNSBL/RHSBL/DNSWL, unknown domains, client names),
driven by smtplib against records served by the dns_zone fixture. These need the restriction
engine to call smtpd_check_dns_start(); on a tree without it they are skipped (smtpd refuses
the unknown restriction names). test_smtpd_dns_checks.py covers the checks themselves."""

import pytest

RBL_REPLY = ("554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using rbl.test; "
             "Listed at http://rbl.test/?127.0.0.7")


def start(postern, **conf):
    postern.configure(mydestination="localhost, postern.test", **conf)
    try:
        postern.start("smtpd")
    except RuntimeError as e:
        if "reject_" in str(e) or "permit_dnswl" in str(e) or "restriction" in str(e):
            pytest.skip("the restriction engine does not know the DNS checks yet")
        raise


def rcpt_reply(postern, source, sender="a@example.org", rcpt="ptest1@localhost", helo=None):
    with postern.smtp(source_address=source) as s:
        s.ehlo(helo or "client.test")
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(rcpt)
        return code, text.decode()


@pytest.fixture
def listed(dns_zone):
    dns_zone.host("7.0.0.127.rbl.test", "127.0.0.2")
    dns_zone.txt("7.0.0.127.rbl.test", "Listed at http://rbl.test/?127.0.0.7")
    dns_zone.host("mail.client.test", "127.0.0.6")
    dns_zone.mx("example.org", "mail.example.org")
    dns_zone.host("mail.example.org", "127.0.0.40")
    dns_zone.mx("nullmx.example", ".", 0)
    dns_zone.apply()
    return dns_zone


def test_reject_rbl_client(postern, listed):
    start(postern, smtpd_client_restrictions="reject_rbl_client rbl.test")
    code, text = rcpt_reply(postern, "127.0.0.7")
    assert (code, "%d %s" % (code, text)) == (554, RBL_REPLY)
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.7\]: 554 5\.7\.1 Service "
                     r"unavailable; Client host \[127\.0\.0\.7\] blocked using rbl\.test")
    code, _ = rcpt_reply(postern, "127.0.0.6")
    assert code == 250


def test_permit_dnswl_before_rbl(postern, listed):
    listed.host("7.0.0.127.dnswl.test", "127.0.10.0")
    listed.apply()
    start(postern, smtpd_client_restrictions="permit_dnswl_client dnswl.test, reject_rbl_client rbl.test")
    code, _ = rcpt_reply(postern, "127.0.0.7")
    assert code == 250


def test_reject_unknown_sender_domain(postern, listed):
    start(postern, smtpd_sender_restrictions="reject_unknown_sender_domain")
    code, text = rcpt_reply(postern, "127.0.0.6", sender="a@nowhere.example")
    assert (code, text) == (450, "4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found")
    code, text = rcpt_reply(postern, "127.0.0.6", sender="a@nullmx.example")
    assert code == 550 and "does not accept mail (nullMX)" in text
    code, _ = rcpt_reply(postern, "127.0.0.6", sender="a@example.org")
    assert code == 250


def test_reject_unknown_client_hostname(postern, listed):
    start(postern, smtpd_client_restrictions="reject_unknown_client_hostname")
    code, text = rcpt_reply(postern, "127.0.0.7")
    assert (code, text) == (450, "4.7.25 Client host rejected: cannot find your hostname, [127.0.0.7]")
    code, _ = rcpt_reply(postern, "127.0.0.6")
    assert code == 250


def test_reject_rhsbl_helo(postern, listed):
    listed.host("bad.example.rhsbl.test", "127.0.0.2")
    listed.apply()
    start(postern, smtpd_helo_restrictions="reject_rhsbl_helo rhsbl.test")
    code, text = rcpt_reply(postern, "127.0.0.6", helo="bad.example")
    assert code == 554 and "Helo command [bad.example] blocked using rhsbl.test" in text


# The DNS checks deliver complete replies; the engine sends them as they are (it used to
# decorate them a second time: "<x>: Helo command rejected: <x>: Helo command rejected: ...").

def test_reject_unknown_helo_hostname_wording(postern, listed):
    start(postern, smtpd_helo_restrictions="reject_unknown_helo_hostname")
    code, text = rcpt_reply(postern, "127.0.0.6", helo="nohost.example")
    assert (code, text) == (450, "4.7.1 <nohost.example>: Helo command rejected: Host not found")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from mail\.client\.test\[127\.0\.0\.6\]: 450 4\.7\.1 "
                     r"<nohost\.example>: Helo command rejected: Host not found;")
    code, _ = rcpt_reply(postern, "127.0.0.6", helo="mail.client.test")
    assert code == 250


def test_unknown_sender_domain_tempfail_defers_if_permit(postern, listed):
    # x.slow.test times out (dnszone.py): unknown_address_tempfail_action = defer_if_permit
    # keeps the 450 until the end, so a later refusal wins and a permit defers.
    start(postern, smtpd_sender_restrictions="reject_unknown_sender_domain",
          smtpd_recipient_restrictions="check_recipient_access inline:{ptest2@localhost=REJECT}, "
          "permit_mynetworks, reject_unauth_destination")
    code, text = rcpt_reply(postern, "127.0.0.6", sender="a@x.slow.test")
    assert (code, text) == (450, "4.1.8 <a@x.slow.test>: Sender address rejected: Domain not found")
    code, text = rcpt_reply(postern, "127.0.0.6", sender="a@x.slow.test", rcpt="ptest2@localhost")
    assert (code, text) == (554, "5.7.1 <ptest2@localhost>: Recipient address rejected: Access denied")


def test_unknown_sender_domain_tempfail_defer(postern, listed):
    start(postern, smtpd_sender_restrictions="reject_unknown_sender_domain, permit",
          unknown_address_tempfail_action="defer")
    code, text = rcpt_reply(postern, "127.0.0.6", sender="a@x.slow.test")
    assert (code, text) == (450, "4.1.8 <a@x.slow.test>: Sender address rejected: Domain not found")


def test_unknown_client_hostname_tempfail_defers_if_permit(postern, listed):
    listed.add("--server=/7.0.0.127.in-addr.arpa/127.0.0.9")   # the PTR lookup times out
    listed.apply()
    start(postern, smtpd_client_restrictions="reject_unknown_client_hostname")
    code, text = rcpt_reply(postern, "127.0.0.7")
    assert (code, text) == (450, "4.7.25 Client host rejected: cannot find your hostname, [127.0.0.7]")
