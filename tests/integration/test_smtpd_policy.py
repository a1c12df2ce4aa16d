"""check_policy_service on a real smtpd: greylisting by a real postgrey and the default action
when the policy server is down. Needs the restriction engine to call
smtpd_check_policy_start(); skipped on a tree without it. test_smtpd_policy_driver.py covers
the protocol, connection reuse and error handling on their own."""

import time

import pytest

from test_smtpd_policy_driver import free_port, postgrey  # noqa: F401 (fixture)


def start(postern, service):
    postern.configure(mydestination="localhost, postern.test", mynetworks="127.0.0.1/32",
                      smtpd_recipient_restrictions="check_policy_service %s, "
                      "permit_mynetworks, reject_unauth_destination" % service,
                      smtpd_policy_service_retry_delay="0s")
    try:
        postern.start("smtpd")
    except RuntimeError as e:
        if "check_policy_service" in str(e):
            pytest.skip("the restriction engine does not know check_policy_service yet")
        raise


def rcpt(postern, rcpt="ptest1@localhost"):
    with postern.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("a@example.org")[0] == 250
        code, text = s.rcpt(rcpt)
        return code, text.decode()


def test_postgrey_greylisting(postern, postgrey):  # noqa: F811
    start(postern, postgrey)
    code, text = rcpt(postern)
    assert code == 450 and "Greylisted" in text, (code, text)
    time.sleep(2.5)
    code, text = rcpt(postern)
    assert code == 250, (code, text)


def test_policy_server_down(postern):
    start(postern, "inet:127.0.0.1:%d" % free_port())
    # The default action is an access(5) action like any answer (Postfix: check_table_result).
    assert rcpt(postern) == (451, "4.3.5 <ptest1@localhost>: Recipient address rejected: "
                             "Server configuration problem")
    postern.wait_log("smtpd", r"problem talking to server inet:127\.0\.0\.1:\d+: Connection refused")
