"""postern-smtpd's restriction engine: every restriction class and element, access(5) actions,
smtpd_delay_reject, reject footers, the pipelining rules and the asynchronous path (real DNS
lists against the run's dnsmasq, where nothing is listed unless a test adds it and names under
slow.test time out, and scripted policy servers). Clients connect from
127.0.0.2 (outside mynetworks = 127.0.0.1/32) unless a test says otherwise."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from postern_harness import wait_stopped
from test_smtpd_helpers import OUTSIDE, Raw, ScriptedPolicy, raw, queue_ids, session, start_relay, wait_until


def table(postern, name, text):
    path = postern.root / name
    path.write_text(text)
    return f"texthash:{path}"


def log(postern):
    return postern.log("smtpd")


# ---- the classes --------------------------------------------------------------------------

CLASS_REJECTS = [
    ("smtpd_client_restrictions", "554 5.7.1 <localhost[127.0.0.2]>: Client host rejected: Access denied"),
    ("smtpd_helo_restrictions", "554 5.7.1 <client.test>: Helo command rejected: Access denied"),
    ("smtpd_sender_restrictions", "554 5.7.1 <s@example.org>: Sender address rejected: Access denied"),
    ("smtpd_recipient_restrictions", "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"),
]


@pytest.mark.parametrize("param,reply", CLASS_REJECTS, ids=[p for p, _ in CLASS_REJECTS])
def test_class_reject_delayed_to_rcpt(postern, param, reply):
    start_relay(postern, **{param: "reject"})
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == reply
    assert re.search(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.2\]: " + re.escape(reply) +
                     r"; from=<s@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>",
                     log(postern))


def test_class_defer(postern):
    start_relay(postern, smtpd_sender_restrictions="defer")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <s@example.org>: Sender address rejected: Access denied"


def test_no_delay_reject_client_refused_at_connect(postern):
    start_relay(postern, smtpd_delay_reject="no", smtpd_client_restrictions="reject")
    with raw(postern, source=OUTSIDE) as c:
        assert c.greeting == (554, ["5.7.1 <localhost[127.0.0.2]>: Client host rejected: Access denied"])
        assert c.cmd("EHLO client.test") == "503 5.7.0 Error: access denied for localhost[127.0.0.2]"
        assert c.cmd("MAIL FROM:<s@example.org>").startswith("503 5.7.0 ")
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
    assert "NOQUEUE: reject: CONNECT from localhost[127.0.0.2]: 554 5.7.1" in log(postern)


def test_no_delay_reject_helo_and_sender_at_their_commands(postern):
    start_relay(postern, smtpd_delay_reject="no", smtpd_helo_restrictions="reject_non_fqdn_helo_hostname",
          smtpd_sender_restrictions="check_sender_access inline:{ {bad@example.org=REJECT go away} }")
    with raw(postern, source=OUTSIDE) as c:
        assert c.cmd("EHLO nodots") == "504 5.5.2 <nodots>: Helo command rejected: need fully-qualified hostname"
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<bad@example.org>") == \
            "554 5.7.1 <bad@example.org>: Sender address rejected: go away"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("MAIL FROM:<good@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_permit_ends_only_its_class(postern):
    start_relay(postern, smtpd_client_restrictions="permit", smtpd_sender_restrictions="reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <s@example.org>: Sender address")


def test_relay_restrictions_before_recipient_restrictions(postern):
    start_relay(postern, smtpd_recipient_restrictions="permit")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "554 5.7.1 <u@remote.test>: Relay access denied"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_permit_auth_destination(postern):
    start_relay(postern, smtpd_relay_restrictions="permit_auth_destination, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@remote.test>").startswith("554 5.7.1 <u@remote.test>: Recipient address rejected")


def test_first_decision_wins_in_a_class(postern):
    start_relay(postern, smtpd_recipient_restrictions="permit_mynetworks, reject, permit")
    with session(postern, source="127.0.0.1") as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <ptest1@localhost>: Recipient")


def test_defer_if_permit(postern):
    start_relay(postern, smtpd_sender_restrictions="defer_if_permit")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <s@example.org>: Sender address rejected: Access denied"
        # A later refusal still wins over the deferral.
        assert c.cmd("RCPT TO:<u@remote.test>") == "554 5.7.1 <u@remote.test>: Relay access denied"


def test_defer_if_reject(postern):
    start_relay(postern, smtpd_recipient_restrictions="defer_if_reject, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"


def test_defer_if_reject_without_reject_permits(postern):
    start_relay(postern, smtpd_recipient_restrictions="defer_if_reject, permit")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_warn_if_reject(postern):
    start_relay(postern, smtpd_recipient_restrictions="warn_if_reject, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert re.search(r"NOQUEUE: reject_warning: RCPT from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 "
                     r"<ptest1@localhost>: Recipient address rejected: Access denied;", log(postern))


def test_restriction_classes(postern):
    postern.configure(smtpd_restriction_classes="strict, lenient", strict="reject", lenient="permit")
    start_relay(postern, smtpd_recipient_restrictions="check_recipient_access inline:{ptest1@localhost=strict, "
          "ptest2@localhost=lenient}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <ptest1@localhost>: Recipient")
        assert c.cmd("RCPT TO:<ptest2@localhost>") == "250 2.1.5 Ok"


def test_restriction_class_as_list_element(postern):
    postern.configure(smtpd_restriction_classes="only_local", only_local="permit_mynetworks, reject")
    start_relay(postern, smtpd_sender_restrictions="only_local")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <s@example.org>: Sender")
    with session(postern, source="127.0.0.1") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


# ---- the elements -------------------------------------------------------------------------

def test_helo_elements(postern):
    start_relay(postern, smtpd_helo_restrictions="reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname")
    for helo, reply in [("bad_name!", "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name"),
                        ("nodots", "504 5.5.2 <nodots>: Helo command rejected: need fully-qualified hostname"),
                        ("[127.0.0.2]", "250 2.1.5 Ok"), ("mx.client.test", "250 2.1.5 Ok")]:
        with session(postern, helo=helo) as c:
            assert c.cmd("RCPT TO:<ptest1@localhost>") == reply


def test_non_fqdn_sender_and_recipient(postern):
    start_relay(postern, smtpd_recipient_restrictions="reject_non_fqdn_sender, reject_non_fqdn_recipient")
    with session(postern, sender="s@nodots") as c:
        assert c.cmd("RCPT TO:<ptest1@postern.test>") == \
            "504 5.5.2 <s@nodots>: Sender address rejected: need fully-qualified address"
    with session(postern, sender="") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "504 5.5.2 <ptest1@localhost>: Recipient address rejected: need fully-qualified address"
        assert c.cmd("RCPT TO:<ptest1@postern.test>") == "250 2.1.5 Ok"


def test_reject_unlisted_sender(postern):
    start_relay(postern, smtpd_sender_restrictions="reject_unlisted_sender",
          local_recipient_maps="inline:{ptest1=x}")
    with session(postern, sender="nobody@localhost") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "550 5.1.0 <nobody@localhost>: Sender address rejected: User unknown in local recipient table"
    with session(postern, sender="ptest1@localhost") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_smtpd_reject_unlisted_sender_parameter(postern):
    start_relay(postern, smtpd_reject_unlisted_sender="yes", local_recipient_maps="inline:{ptest1=x}")
    with session(postern, sender="nobody@localhost") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("550 5.1.0 <nobody@localhost>: Sender")


def test_reject_unlisted_recipient_element(postern):
    start_relay(postern, smtpd_reject_unlisted_recipient="no", local_recipient_maps="inline:{ptest1=x}",
          smtpd_recipient_restrictions="reject_unlisted_recipient")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<nobody@localhost>") == \
            "550 5.1.1 <nobody@localhost>: Recipient address rejected: User unknown in local recipient table"


def test_sender_login_mismatch_unauthenticated(postern):
    maps = table(postern, "logins", "owner@example.org alice\n@owned.test bob\n")
    start_relay(postern, smtpd_sender_login_maps=maps,
          smtpd_sender_restrictions="reject_unauthenticated_sender_login_mismatch")
    for sender, ok in [("owner@example.org", False), ("x@owned.test", False), ("free@example.org", True)]:
        with session(postern, sender=sender) as c:
            r = c.cmd("RCPT TO:<ptest1@localhost>")
            if ok:
                assert r == "250 2.1.5 Ok"
            else:
                assert r == f"553 5.7.1 <{sender}>: Sender address rejected: not logged in"


def test_known_sender_login_mismatch_ignores_unknown_senders(postern):
    maps = table(postern, "logins", "owner@example.org alice\n")
    start_relay(postern, smtpd_sender_login_maps=maps, smtpd_sender_restrictions="reject_known_sender_login_mismatch")
    with session(postern, sender="other@example.org") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_permit_sasl_authenticated_is_false_without_auth(postern):
    start_relay(postern, smtpd_recipient_restrictions="permit_sasl_authenticated, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 ")


# ---- access tables ------------------------------------------------------------------------

def test_client_access_lookup_order(postern):
    t = table(postern, "clients", "127.0.0.2 REJECT by address\n127.0.0 REJECT by subnet\n")
    start_relay(postern, smtpd_client_restrictions=f"check_client_access {t}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <localhost[127.0.0.2]>: Client host rejected: by address"
    with session(postern, source="127.0.0.3") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <localhost[127.0.0.3]>: Client host rejected: by subnet"


def test_client_access_by_name_first(postern):
    t = table(postern, "clients", "localhost 550 by name\n127.0.0.2 REJECT by address\n")
    start_relay(postern, smtpd_client_restrictions=f"check_client_access {t}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "550 5.7.1 <localhost[127.0.0.2]>: Client host rejected: by name"


SENDER_KEYS = [
    ("user@mail.example.org", "user@mail.example.org REJECT full\nmail.example.org REJECT domain\n", "full"),
    ("user@mail.example.org", "mail.example.org REJECT domain\nexample.org REJECT parent\n", "domain"),
    ("user@mail.example.org", "example.org REJECT parent\nuser@ REJECT localpart\n", "parent"),
    ("user@mail.example.org", "user@ REJECT localpart\n", "localpart"),
    ("", "<> REJECT null sender\n", "null sender"),
    ("user@mail.example.org", "user@mail.example.org DUNNO\nexample.org REJECT parent\n", None),
]


@pytest.mark.parametrize("sender,text,expect", SENDER_KEYS)
def test_sender_access_lookup_order(postern, sender, text, expect):
    t = table(postern, "senders", text)
    start_relay(postern, smtpd_sender_restrictions=f"check_sender_access {t}")
    with session(postern, sender=sender) as c:
        r = c.cmd("RCPT TO:<ptest1@localhost>")
        if expect:
            assert r == f"554 5.7.1 <{sender}>: Sender address rejected: {expect}"
        else:
            assert r == "250 2.1.5 Ok"


def test_parent_domain_matches_subdomains_off(postern):
    t = table(postern, "senders", "example.org REJECT parent\n.example.net REJECT dot\n")
    start_relay(postern, smtpd_sender_restrictions=f"check_sender_access {t}",
          parent_domain_matches_subdomains="relay_domains")
    with session(postern, sender="u@mail.example.org") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    with session(postern, sender="u@mail.example.net") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").endswith("Sender address rejected: dot")


def test_helo_access(postern):
    t = table(postern, "helos", "evil.test REJECT you again\n")
    start_relay(postern, smtpd_helo_restrictions=f"check_helo_access {t}")
    with session(postern, helo="mx.evil.test") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <mx.evil.test>: Helo command rejected: you again"


RCPT_ACTIONS = [
    ("OK", "250 2.1.5 Ok"),
    ("1234", "250 2.1.5 Ok"),
    ("REJECT", "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"),
    ("REJECT not here", "554 5.7.1 <ptest1@localhost>: Recipient address rejected: not here"),
    ("REJECT 5.1.6 moved", "554 5.1.6 <ptest1@localhost>: Recipient address rejected: moved"),
    ("DEFER try later", "450 4.7.1 <ptest1@localhost>: Recipient address rejected: try later"),
    ("450 busy", "450 4.7.1 <ptest1@localhost>: Recipient address rejected: busy"),
    ("551 5.1.6 gone", "551 5.1.6 <ptest1@localhost>: Recipient address rejected: gone"),
    ("451 5.7.1 mixed", "451 4.7.1 <ptest1@localhost>: Recipient address rejected: mixed"),
    ("DEFER_IF_PERMIT wait", "450 4.7.1 <ptest1@localhost>: Recipient address rejected: wait"),
    ("DEFER_IF_REJECT wait", "250 2.1.5 Ok"),
    ("DUNNO", "250 2.1.5 Ok"),
    ("reject", "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"),
    ("permit_mynetworks, reject", "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"),
    ("no_such_thing", "451 4.3.5 Server configuration error"),
]


@pytest.mark.parametrize("action,reply", RCPT_ACTIONS, ids=[a for a, _ in RCPT_ACTIONS])
def test_recipient_access_actions(postern, action, reply):
    t = table(postern, "rcpts", f"ptest1@localhost {action}\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access {t}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == reply


def test_access_codes_are_configurable(postern):
    t = table(postern, "rcpts", "ptest1@localhost REJECT\nptest2@localhost DEFER\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access {t}",
          access_map_reject_code="550", access_map_defer_code="451")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("550 5.7.1 ")
        assert c.cmd("RCPT TO:<ptest2@localhost>").startswith("451 4.7.1 ")


def test_defer_if_reject_action_then_reject(postern):
    t = table(postern, "rcpts", "ptest1@localhost DEFER_IF_REJECT not sure\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access {t}, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <ptest1@localhost>: Recipient address rejected: not sure"


MESSAGE_ACTIONS = [
    ("HOLD", r"NOQUEUE: hold: RCPT from localhost\[127\.0\.0\.2\]: <ptest1@localhost>: Recipient address "
             r"triggers HOLD action; from=<s@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>"),
    ("HOLD look at it", r"NOQUEUE: hold: RCPT from \S+: <ptest1@localhost>: Recipient address look at it;"),
    ("WARN odd", r"NOQUEUE: warn: RCPT from \S+: <ptest1@localhost>: Recipient address odd;"),
    ("INFO noted", r"NOQUEUE: info: RCPT from \S+: <ptest1@localhost>: Recipient address noted;"),
    ("DISCARD", r"NOQUEUE: discard: RCPT from \S+: <ptest1@localhost>: Recipient address triggers DISCARD"),
    ("FILTER smtp:[127.0.0.1]:10025", r"NOQUEUE: filter: RCPT from \S+: <ptest1@localhost>: Recipient address "
                                      r"triggers FILTER smtp:\[127\.0\.0\.1\]:10025;"),
    ("REDIRECT x@example.org", r"NOQUEUE: redirect: RCPT from \S+: <ptest1@localhost>: Recipient address "
                               r"triggers REDIRECT x@example\.org;"),
    ("BCC audit@example.org", r"NOQUEUE: bcc: RCPT from \S+: <ptest1@localhost>: Recipient address triggers BCC"),
]


@pytest.mark.parametrize("action,pattern", MESSAGE_ACTIONS, ids=[a for a, _ in MESSAGE_ACTIONS])
def test_message_actions_logged_and_accepted(postern, action, pattern):
    t = table(postern, "rcpts", f"ptest1@localhost {action}\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access {t}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    postern.wait_log("smtpd", pattern)


def test_prepend_action_goes_on(postern):
    t = table(postern, "rcpts", "ptest1@localhost PREPEND X-Tag: yes\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access {t}, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 ")


def test_table_lookup_failure_is_temporary(postern):
    path = postern.root / "rcpts"
    path.write_text("ptest1@localhost REJECT\n")
    start_relay(postern, smtpd_recipient_restrictions=f"check_recipient_access texthash:{path}")
    os.chmod(path, 0)
    path.rename(postern.root / "gone")
    time.sleep(1.1)   # tables are re-checked at most once a second: nothing to wait for
    with session(postern) as c:
        r = c.cmd("RCPT TO:<ptest2@localhost>")
        assert r.startswith("451 4.3.0 <ptest2@localhost>: Temporary lookup failure") or r.startswith("250"), r


# ---- DATA and end of data -----------------------------------------------------------------

def test_data_restrictions(postern):
    start_relay(postern, smtpd_data_restrictions="reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("DATA") == "554 5.7.1 <DATA>: Data command rejected: Access denied"
    assert re.search(r"\w+: reject: DATA from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 <DATA>: Data command "
                     r"rejected: Access denied; from=<s@example\.org> to=<ptest1@localhost>", log(postern))


def test_end_of_data_restrictions(postern):
    t = table(postern, "senders", "s@example.org REJECT no content from you\n")
    start_relay(postern, smtpd_end_of_data_restrictions=f"check_sender_access {t}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354")
        assert c.cmd("Subject: x\r\n\r\nbody\r\n.") == \
            "554 5.7.1 <s@example.org>: Sender address rejected: no content from you"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
    assert queue_ids(postern) == []
    assert re.search(r": reject: END-OF-MESSAGE from localhost\[127\.0\.0\.2\]: 554 5\.7\.1", log(postern))


def test_end_of_data_permit_queues(postern):
    start_relay(postern, smtpd_end_of_data_restrictions="permit")
    with session(postern) as c:
        c.cmd("RCPT TO:<ptest1@localhost>")
        c.cmd("DATA")
        assert c.cmd("Subject: x\r\n\r\nbody\r\n.").startswith("250 2.0.0 Ok")
    assert len(queue_ids(postern)) == 1


# ---- asynchronous elements -----------------------------------------------------------------

def test_async_elements_resume_the_list(postern, tmp_path):
    policy = ScriptedPolicy(tmp_path, [])   # answers DUNNO
    start_relay(postern, smtpd_recipient_restrictions="reject_rbl_client zen.example, "
          f"check_policy_service {policy.service}, reject_rhsbl_sender dbl.example, "
          "reject_unknown_recipient_domain, check_recipient_access inline:{ptest2@localhost=OK}, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <ptest1@localhost>: Recipient")
        assert c.cmd("RCPT TO:<ptest2@localhost>") == "250 2.1.5 Ok"
    assert [r["recipient"] for r in policy.requests] == ["ptest1@localhost", "ptest2@localhost"]
    policy.close()


def test_async_elements_keep_pipelined_order(postern):
    start_relay(postern, smtpd_recipient_restrictions="reject_rbl_client zen.example, "
          "check_recipient_access inline:{ptest2@localhost=REJECT}")
    with session(postern, source="127.0.0.1", sender=None) as c:
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\nRCPT TO:<ptest2@localhost>\r\n"
               "RCPT TO:<ptest3@localhost>\r\nRSET\r\n")
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "250 2.1.5 Ok"
        assert c.text().startswith("554 5.7.1 <ptest2@localhost>")
        assert c.text() == "250 2.1.5 Ok"
        assert c.text() == "250 2.0.0 Ok"


def test_async_client_check_at_connect(postern):
    start_relay(postern, smtpd_delay_reject="no",
          smtpd_client_restrictions="reject_rbl_client zen.example, check_client_access inline:{127.0.0.2=REJECT}")
    with raw(postern, source=OUTSIDE) as c:
        assert c.greeting[0] == 554
    with raw(postern, source="127.0.0.3") as c:
        assert c.greeting[0] == 220
        assert c.cmd("EHLO x.test").startswith("250")


def test_client_gone_during_async_check(postern):
    start_relay(postern, smtpd_recipient_restrictions="reject_rbl_client zen.example")
    for _ in range(20):
        c = session(postern)
        c.send("RCPT TO:<ptest1@localhost>\r\n")
        c.close()
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert postern.running("smtpd")


# ---- footers -------------------------------------------------------------------------------

def test_reject_footer_new_line(postern):
    start_relay(postern, smtpd_reject_footer="For help, write to postmaster ($client_address via $server_name).")
    with session(postern) as c:
        c.send("RCPT TO:<u@remote.test>\r\n")
        assert c.reply() == (554, ["5.7.1 <u@remote.test>: Relay access denied",
                                   "5.7.1 For help, write to postmaster (127.0.0.2 via postern.test)."])
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"   # not on success
    assert "Relay access denied; from=<s@example.org>" in log(postern)   # logged without footer


def test_reject_footer_newlines_and_continuation(postern):
    start_relay(postern, smtpd_reject_footer=r"\nline one\nline two")
    with session(postern) as c:
        c.send("RCPT TO:<u@remote.test>\r\n")
        assert c.reply() == (554, ["5.7.1 <u@remote.test>: Relay access denied", "5.7.1 line one",
                                   "5.7.1 line two"])
    postern.stop()
    postern.configure(smtpd_reject_footer=r"\c (see $client_name)")
    postern.start("smtpd")
    with session(postern) as c:
        c.send("RCPT TO:<u@remote.test>\r\n")
        assert c.reply() == (554, ["5.7.1 <u@remote.test>: Relay access denied (see localhost)"])


def test_reject_footer_maps(postern):
    t = postern.root / "footers"
    t.write_text("/Relay access denied/ see https://help.example/relay\n")
    start_relay(postern, smtpd_reject_footer="generic footer", smtpd_reject_footer_maps=f"regexp:{t}",
          smtpd_recipient_restrictions="reject")
    with session(postern) as c:
        c.send("RCPT TO:<u@remote.test>\r\n")
        assert c.reply()[1][1] == "5.7.1 see https://help.example/relay"
        c.send("RCPT TO:<ptest1@localhost>\r\n")
        assert c.reply()[1][1] == "5.7.1 generic footer"


# ---- pipelining ----------------------------------------------------------------------------

def test_forbid_unauth_pipelining_after_ehlo(postern):
    start_relay(postern)
    with raw(postern, source="127.0.0.1") as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\n")
        assert c.reply()[0] == 250
        assert c.text() == "554 5.5.0 Error: SMTP protocol synchronization"
        assert c.is_closed()
    postern.wait_log("smtpd", r"improper command pipelining after EHLO from localhost\[127\.0\.0\.1\]: "
                     r"MAIL FROM:<a@example\.org>")


def test_esmtp_pipelining_of_mail_and_rcpt_is_allowed(postern):
    start_relay(postern)
    with session(postern, source="127.0.0.1", sender=None) as c:
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\nRCPT TO:<ptest2@localhost>\r\nDATA\r\n")
        assert [c.text() for _ in range(4)] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok",
                                                "354 End data with <CR><LF>.<CR><LF>"]
        assert c.cmd("Subject: t\r\n\r\nx\r\n.").startswith("250 2.0.0 Ok")


def test_forbid_pipelining_without_ehlo(postern):
    start_relay(postern)
    with raw(postern, source="127.0.0.1") as c:
        assert c.cmd("HELO client.test").startswith("250")
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\n")
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "554 5.5.0 Error: SMTP protocol synchronization"


def test_forbid_pipelining_content_before_354(postern):
    start_relay(postern)
    with session(postern, source="127.0.0.1") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        c.send("DATA\r\nSubject: early\r\n\r\nx\r\n.\r\n")
        assert c.text().startswith("354")
        assert c.text() == "554 5.5.0 Error: SMTP protocol synchronization"
        assert c.is_closed()
    assert queue_ids(postern) == []


def test_forbid_pipelining_before_greeting(postern):
    start_relay(postern)
    pid = postern.daemons["smtpd"].proc.pid
    os.kill(pid, signal.SIGSTOP)
    wait_stopped(pid)   # no greeting may go out before the EHLO is sent
    try:
        s = socket.create_connection(("127.0.0.1", postern.smtp_port))
        s.sendall(b"EHLO early.test\r\n")
    finally:
        os.kill(pid, signal.SIGCONT)
    c = Raw(sock=s)
    assert c.greeting[0] == 220
    assert c.text() == "554 5.5.0 Error: SMTP protocol synchronization"
    c.close()
    postern.wait_log("smtpd", r"improper command pipelining after CONNECT from localhost\[127\.0\.0\.1\]: EHLO early")


def test_reject_unauth_pipelining(postern):
    start_relay(postern, smtpd_forbid_unauth_pipelining="no", smtpd_data_restrictions="reject_unauth_pipelining")
    with raw(postern, source="127.0.0.1") as c:
        c.send("HELO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\nDATA\r\n")
        assert [c.text() for _ in range(3)][2] == "250 2.1.5 Ok"
        assert c.text() == "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    with session(postern, source="127.0.0.1") as c:
        c.cmd("RCPT TO:<ptest1@localhost>")
        assert c.cmd("DATA").startswith("354")


# ---- configuration errors --------------------------------------------------------------------

BAD = [
    (dict(smtpd_client_restrictions="check_client_access"),
     r'smtpd_client_restrictions: restriction "check_client_access" needs an argument'),
    (dict(smtpd_helo_restrictions="permit_everyone"), r'smtpd_helo_restrictions: unknown restriction "permit_everyone"'),
    (dict(smtpd_data_restrictions="check_sender_access nosuchtype:/x"),
     r'smtpd_data_restrictions: check_sender_access: cannot open table "nosuchtype:/x"'),
    (dict(smtpd_restriction_classes="reject"), r'smtpd_restriction_classes: "reject" is the name of a restriction'),
]


@pytest.mark.parametrize("params,pattern", BAD, ids=[p for _, p in BAD])
def test_configuration_errors_name_parameter_and_word(postern, params, pattern):
    start_relay(postern)
    postern.configure(**params)
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"Applying the new configuration failed, keeping the old one")
    assert re.search(pattern, log(postern)), log(postern)
    assert postern.running("smtpd")


# ---- open relay from outside mynetworks, with a real client ------------------------------------

def swaks(postern, to):
    if not shutil.which("swaks"):
        pytest.skip("swaks is not installed")
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(postern.smtp_port),
                           "--local-interface", OUTSIDE, "--from", "spammer@example.org", "--to", to,
                           "--helo", "client.test", "--timeout", "10"],
                          capture_output=True, text=True, timeout=30)


RELAY_FORMS = [
    ("user@remote.test", "554 5.7.1 <user@remote.test>: Relay access denied"),
    ("user@remote.test@localhost", "501 5.1.3 "),
    ("user%remote.test@localhost", "550 5.1.1 <user%remote.test@localhost>: Recipient address rejected"),
    ("remote.test!user@localhost", "550 5.1.1 <remote.test!user@localhost>: Recipient address rejected"),
    ("@localhost:user@remote.test", "554 5.7.1 <user@remote.test>: Relay access denied"),
    ('"user@remote.test"@localhost', '550 5.1.1 <"user@remote.test"@localhost>: Recipient address rejected'),
    # a literal of this host's address is local (inet_interfaces = all); of another, relaying
    ("user@[127.0.0.1]", "550 5.1.1 <user@[127.0.0.1]>: Recipient address rejected"),
    ("user@[192.0.2.99]", "554 5.7.1 <user@[192.0.2.99]>: Relay access denied"),
    ("user@[IPv6:2001:db8::99]", "554 5.7.1 <user@[IPv6:2001:db8::99]>: Relay access denied"),
]


@pytest.mark.parametrize("to,reply", RELAY_FORMS, ids=[t for t, _ in RELAY_FORMS])
def test_open_relay_forms_with_swaks(postern, to, reply):
    start_relay(postern, smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination")
    r = swaks(postern, to)
    assert r.returncode != 0
    assert "<~  " + reply in r.stdout or "<** " + reply in r.stdout, r.stdout
    assert queue_ids(postern) == []


def test_soft_bounce_turns_refusals_into_deferrals(postern):
    start_relay(postern, soft_bounce="yes")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "454 4.7.1 <u@remote.test>: Relay access denied"


def test_helo_restrictions_skipped_without_helo(postern):
    start_relay(postern, smtpd_helo_restrictions="reject")
    with session(postern, helo=None) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <client.test>: Helo command")


def test_slow_check_holds_pipelined_commands(postern, tmp_path):
    policy = ScriptedPolicy(tmp_path, [], delay=0.3)   # DUNNO after 300 ms
    start_relay(postern, smtpd_recipient_restrictions=f"check_policy_service {policy.service}, "
          "check_recipient_access inline:{ptest2@localhost=REJECT}")
    with session(postern, source="127.0.0.1") as c:
        t0 = time.monotonic()
        c.send("RCPT TO:<ptest1@localhost>\r\nRCPT TO:<ptest2@localhost>\r\nRSET\r\n")
        assert c.text() == "250 2.1.5 Ok"
        assert c.text().startswith("554 5.7.1 <ptest2@localhost>")
        assert c.text() == "250 2.0.0 Ok"
        assert time.monotonic() - t0 >= 0.55   # two checks, one after the other
    assert len(policy.requests) == 2
    policy.close()


def test_client_gone_while_check_waits_cancels_it(postern):
    # Names under slow.test time out (about 1 s): each session leaves while its lookup runs.
    start_relay(postern, smtpd_recipient_restrictions="reject_rbl_client slow.test, permit_mynetworks, "
          "reject_unauth_destination")
    for _ in range(5):
        c = session(postern)
        c.send("RCPT TO:<ptest1@localhost>\r\n")
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()   # RST: the session ends while its check is pending
    # the sessions are over; their lookups end about a second later, which must not hurt smtpd
    postern.wait_log("smtpd", r"lost connection after \w+ from localhost\[127\.0\.0\.2\]", count=5)
    time.sleep(1.5)   # absence of harm: let the cancelled lookups time out (nothing logs that)
    assert postern.running("smtpd")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    postern.wait_log("smtpd", r"lost connection after RCPT from localhost\[127\.0\.0\.2\]")


def test_submit_listener_has_no_restrictions(postern):
    start_relay(postern, smtpd_client_restrictions="reject", smtpd_recipient_restrictions="reject",
          smtpd_data_restrictions="reject", smtpd_end_of_data_restrictions="reject")
    with Raw(path=postern.submit_path) as c:
        assert c.greeting[0] == 220
        assert c.cmd("EHLO localhost").startswith("250")
        assert c.cmd("MAIL FROM:<ptest1@localhost>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354")
        assert c.cmd("Subject: x\r\n\r\nbody\r\n.").startswith("250 2.0.0 Ok")
    assert len(queue_ids(postern)) == 1


def test_no_delay_reject_defer_if_permit_answers_at_rcpt(postern):
    start_relay(postern, smtpd_delay_reject="no", smtpd_client_restrictions="defer_if_permit")
    with session(postern) as c:   # greeting, EHLO and MAIL pass
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <localhost[127.0.0.2]>: Client host rejected: Access denied"


def test_reverse_client_hostname_access(postern):
    start_relay(postern, smtpd_client_restrictions="check_reverse_client_hostname_access inline:{ {localhost=REJECT by name}, "
          "127.0.0.2=OK}")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <localhost[127.0.0.2]>: Client host rejected: by name"


def test_dnswl_permit_answer_and_unknown_checks_are_resumable(postern, dns_zone):
    dns_zone.host("client.test", "127.0.0.40")   # the HELO name exists
    dns_zone.mx("example.org", "mail.example.org")
    dns_zone.host("mail.example.org", "127.0.0.41")
    dns_zone.apply()
    start_relay(postern, smtpd_client_restrictions="permit_dnswl_client list.dnswl.example, reject_unknown_client_hostname, "
          "reject_unknown_reverse_client_hostname, reject_rhsbl_client dbl.example, "
          "reject_rhsbl_reverse_client dbl.example, reject_rhsbl_helo dbl.example, reject_unknown_helo_hostname",
          smtpd_sender_restrictions="reject_unknown_sender_domain, warn_if_reject, reject_rbl_client zen.example, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 <s@example.org>: Sender address rejected")


@pytest.mark.parametrize("text,expect", [
    ("user+tag@example.org REJECT full\nuser@example.org REJECT base\n", "full"),
    ("user@example.org REJECT base\nexample.org REJECT domain\n", "base"),
    ("user+tag@ REJECT local\nuser@ REJECT local base\n", "local"),
    ("user@ REJECT local base\n", "local base"),
])
def test_recipient_delimiter_lookup_order(postern, text, expect):
    t = table(postern, "senders", text)
    start_relay(postern, recipient_delimiter="+", smtpd_sender_restrictions=f"check_sender_access {t}")
    with session(postern, sender="user+tag@example.org") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            f"554 5.7.1 <user+tag@example.org>: Sender address rejected: {expect}"
