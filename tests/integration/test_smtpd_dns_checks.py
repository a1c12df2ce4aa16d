"""DNS restriction checks (smtpd-dnsbl.c) and client name lookups (smtpd-peername.c) against a
real dnsmasq (the dns_zone fixture). Until the restriction engine calls the checks, they run
through build/daemons/smtpd/smtpd-check-driver; client names are checked on a real smtpd."""

import os
import subprocess
import time

import postern_harness

DRIVER = postern_harness.binary("daemons/smtpd/smtpd-check-driver")


def run_checks(tmp_path, *checks, client="127.0.0.2", name="localhost", reverse="localhost",
               helo="client.test", sender="a@example.org", conf=""):
    cf = tmp_path / "main.cf"
    cf.write_text("myhostname = postern.test\n" + conf)
    p = subprocess.run([DRIVER, str(cf), client, name, reverse, helo, sender] + list(checks),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [line.split(": ", 1)[1] for line in p.stdout.splitlines()]


def listed(zone, ip, a="127.0.0.2", txt=None):
    rev = ".".join(reversed(ip.split(".")))
    zone.host("%s.rbl.test" % rev, a)
    if txt:
        zone.txt("%s.rbl.test" % rev, txt)


def test_rbl_client_listed_with_txt(dns_zone, tmp_path):
    listed(dns_zone, "127.0.0.7", txt="Listed at http://rbl.test/?127.0.0.7")
    dns_zone.apply()
    assert run_checks(tmp_path, "reject_rbl_client|rbl.test", "reject_rbl_client|rbl.test",
                      client="127.0.0.7") == [
        "554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using rbl.test; "
        "Listed at http://rbl.test/?127.0.0.7"] * 2
    # not listed: go on
    assert run_checks(tmp_path, "reject_rbl_client|rbl.test", client="127.0.0.8") == ["DUNNO"]


def test_rbl_without_txt_and_filter(dns_zone, tmp_path):
    listed(dns_zone, "127.0.0.7", a="127.0.0.4")
    dns_zone.apply()
    assert run_checks(tmp_path, "reject_rbl_client|rbl.test", client="127.0.0.7") == [
        "554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using rbl.test"]
    assert run_checks(tmp_path, "reject_rbl_client|rbl.test=127.0.0.2",
                      "reject_rbl_client|rbl.test=127.0.0.4",
                      "reject_rbl_client|rbl.test=127.0.0.[3..5]",
                      "reject_rbl_client|rbl.test=127.0.0.[1;2]",
                      client="127.0.0.7") == [
        "DUNNO",
        "554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using rbl.test",
        "554 5.7.1 Service unavailable; Client host [127.0.0.7] blocked using rbl.test",
        "DUNNO"]


def test_rbl_ipv6_nibbles(dns_zone, tmp_path):
    nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
    dns_zone.host(nibbles + ".rbl.test", "127.0.0.2")
    dns_zone.apply()
    assert run_checks(tmp_path, "reject_rbl_client|rbl.test", client="2001:db8::1") == [
        "554 5.7.1 Service unavailable; Client host [2001:db8::1] blocked using rbl.test"]


def test_rbl_reply_maps_code_and_expansions(dns_zone, tmp_path):
    listed(dns_zone, "127.0.0.7", txt="spam source")
    dns_zone.apply()
    (tmp_path / "rbl_reply").write_text(
        "rbl.test $rbl_code 4.7.1 $client_address ($client_name) in $rbl_domain: $rbl_txt"
        "${rbl_reason? [reason]}${nothing:[empty]}\n")
    res = run_checks(tmp_path, "reject_rbl_client|rbl.test", "reject_rbl_client|other.test",
                     client="127.0.0.7", name="unknown",
                     conf="maps_rbl_reject_code = 450\nrbl_reply_maps = texthash:%s/rbl_reply\n" % tmp_path)
    assert res == ["450 4.7.1 127.0.0.7 (unknown) in rbl.test: spam source [reason][empty]", "DUNNO"]


def test_rhsbl_checks(dns_zone, tmp_path):
    for d in ("bad.example", "badhelo.example", "badrcpt.example", "badclient.example"):
        dns_zone.host(d + ".rhsbl.test", "127.0.0.2")
    dns_zone.apply()
    res = run_checks(tmp_path, "reject_rhsbl_sender|rhsbl.test|x@bad.example",
                     "reject_rhsbl_sender|rhsbl.test|x@good.example",
                     "reject_rhsbl_sender|rhsbl.test|",           # null sender: nothing to check
                     "reject_rhsbl_helo|rhsbl.test|badhelo.example",
                     "reject_rhsbl_recipient|rhsbl.test|y@badrcpt.example",
                     "reject_rhsbl_client|rhsbl.test",
                     "reject_rhsbl_reverse_client|rhsbl.test",
                     name="unknown:forged", reverse="badclient.example")
    assert res == [
        "554 5.7.1 Service unavailable; Sender address [x@bad.example] blocked using rhsbl.test",
        "DUNNO", "DUNNO",
        "554 5.7.1 Service unavailable; Helo command [badhelo.example] blocked using rhsbl.test",
        "554 5.7.1 Service unavailable; Recipient address [y@badrcpt.example] blocked using rhsbl.test",
        "DUNNO",   # the client name did not verify: reject_rhsbl_client has nothing to check
        "554 5.7.1 Service unavailable; Unverified Client host [badclient.example] blocked using rhsbl.test"]


def test_dnswl_and_tempfail(dns_zone, tmp_path):
    dns_zone.host("7.0.0.127.dnswl.test", "127.0.10.0")
    dns_zone.apply()
    start = time.monotonic()
    assert run_checks(tmp_path, "permit_dnswl_client|dnswl.test", "permit_dnswl_client|dnswl.test",
                      "reject_rbl_client|slow.test", client="127.0.0.7") == ["OK", "OK", "DUNNO"]
    assert time.monotonic() - start < 5   # the slow list costs one resolver timeout (1 s)
    assert run_checks(tmp_path, "permit_dnswl_client|dnswl.test", client="127.0.0.8") == ["DUNNO"]


def test_unknown_sender_and_recipient_domain(dns_zone, tmp_path):
    dns_zone.mx("mx.example", "mail.mx.example")
    dns_zone.host("a-only.example", "127.0.0.20")
    dns_zone.host("aaaa-only.example", "2001:db8::20")
    dns_zone.mx("nullmx.example", ".", 0)
    dns_zone.host("mail.mx.example", "127.0.0.21")
    dns_zone.apply()
    res = run_checks(tmp_path,
                     "reject_unknown_sender_domain||a@mx.example",
                     "reject_unknown_sender_domain||a@a-only.example",
                     "reject_unknown_sender_domain||a@aaaa-only.example",
                     "reject_unknown_sender_domain||a@nowhere.example",
                     "reject_unknown_sender_domain||a@mail.mx.example",   # A record, no MX
                     "reject_unknown_sender_domain||",                   # null sender
                     "reject_unknown_sender_domain||a@[127.0.0.1]",
                     "reject_unknown_sender_domain||a@nullmx.example",
                     "reject_unknown_recipient_domain||b@nowhere.example",
                     "reject_unknown_recipient_domain||b@nullmx.example",
                     "reject_unknown_sender_domain||a@x.slow.test",
                     "reject_unknown_recipient_domain||b@x.slow.test")
    assert res == [
        "DUNNO", "DUNNO", "DUNNO",
        "450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found",
        "DUNNO", "DUNNO", "DUNNO",
        "550 5.7.27 <a@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)",
        "450 4.1.2 <b@nowhere.example>: Recipient address rejected: Domain not found",
        "556 5.1.10 <b@nullmx.example>: Recipient address rejected: Domain nullmx.example does not accept mail (nullMX)",
        "DEFER_IF_PERMIT 450 4.1.8 <a@x.slow.test>: Sender address rejected: Domain not found",
        "DEFER_IF_PERMIT 450 4.1.2 <b@x.slow.test>: Recipient address rejected: Domain not found"]
    res = run_checks(tmp_path, "reject_unknown_sender_domain||a@nowhere.example",
                     "reject_unknown_sender_domain||a@x.slow.test",
                     conf="unknown_address_reject_code = 550\nunknown_address_tempfail_action = defer\n")
    assert res == ["550 5.1.8 <a@nowhere.example>: Sender address rejected: Domain not found",
                   "450 4.1.8 <a@x.slow.test>: Sender address rejected: Domain not found"]


def test_unknown_helo_hostname(dns_zone, tmp_path):
    dns_zone.host("helo.example", "127.0.0.30")
    dns_zone.mx("mxonly.example", "mail.mxonly.example")
    dns_zone.apply()
    assert run_checks(tmp_path, "reject_unknown_helo_hostname||helo.example",
                      "reject_unknown_helo_hostname||mxonly.example",
                      "reject_unknown_helo_hostname||[127.0.0.1]",
                      "reject_unknown_helo_hostname||nohost.example",
                      "reject_unknown_helo_hostname||x.slow.test") == [
        "DUNNO", "DUNNO", "DUNNO",
        "450 4.7.1 <nohost.example>: Helo command rejected: Host not found",
        "DEFER_IF_PERMIT 450 4.7.1 <x.slow.test>: Helo command rejected: Host not found"]


def test_unknown_client_hostname(tmp_path):
    ok = run_checks(tmp_path, "reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname",
                    name="mail.example", reverse="mail.example")
    assert ok == ["DUNNO", "DUNNO"]
    forged = run_checks(tmp_path, "reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname",
                        client="127.0.0.9", name="unknown:forged", reverse="mail.example",
                        conf="unknown_client_reject_code = 550\n")
    assert forged == ["550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.9]", "DUNNO"]
    none = run_checks(tmp_path, "reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname",
                      client="127.0.0.9", name="unknown", reverse="unknown")
    assert none == ["450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.9]",
                    "450 4.7.25 Client host rejected: cannot find your reverse hostname, [127.0.0.9]"]
    temp = run_checks(tmp_path, "reject_unknown_reverse_client_hostname", client="127.0.0.9",
                      name="unknown:temp", reverse="unknown:temp")
    assert temp == ["DEFER_IF_PERMIT 450 4.7.25 Client host rejected: cannot find your reverse hostname, [127.0.0.9]"]


def test_unknown_check_name_is_an_error(tmp_path):
    assert run_checks(tmp_path, "reject_bogus_thing|x") == ["error Invalid argument"]


# ---- client names on a real smtpd ----

def greet(postern, source):
    c = postern.smtp(source_address=source)
    c.quit()


def test_client_name_forward_confirmed(postern, dns_zone):
    dns_zone.host("mail.client.test", "127.0.0.6")            # A and PTR
    dns_zone.ptr("127.0.0.7", "forged.client.test")            # PTR without a matching A
    dns_zone.host("forged.client.test", "127.0.0.77")
    dns_zone.ptr("127.0.0.8", "nonexistent.client.test")       # PTR to a name without A
    dns_zone.apply()
    postern.configure(mynetworks="127.0.0.0/8")
    postern.start("smtpd")
    greet(postern, "127.0.0.6")
    postern.wait_log("smtpd", r"connect from mail\.client\.test\[127\.0\.0\.6\]")
    greet(postern, "127.0.0.7")
    postern.wait_log("smtpd", r"hostname forged\.client\.test does not resolve to address 127\.0\.0\.7")
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.7\]")
    greet(postern, "127.0.0.8")
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.8\]")
    greet(postern, "127.0.0.5")                                # no PTR at all
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.5\]")
    greet(postern, "127.0.0.1")
    postern.wait_log("smtpd", r"connect from localhost\[127\.0\.0\.1\]")


def test_client_name_stored_in_queue(postern, dns_zone):
    dns_zone.host("mail.client.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(mynetworks="127.0.0.0/8", mydestination="localhost")
    postern.start("smtpd")
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: t\r\n\r\nx\r\n", source_address="127.0.0.6")
    rows = postern.queue_rows("SELECT client_name FROM messages")
    assert rows == [("mail.client.test",)]


def test_peername_lookup_off(postern, dns_zone):
    dns_zone.host("mail.client.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(smtpd_peername_lookup="no")
    postern.start("smtpd")
    greet(postern, "127.0.0.6")
    postern.wait_log("smtpd", r"connect from localhost\[127\.0\.0\.6\]")


def test_greeting_waits_for_slow_dns_bounded(postern, dns_zone):
    """A PTR lookup that times out (resolver timeout 1 s) delays the greeting, then the client is
    unknown."""
    dns_zone.add("--server=/7.0.0.127.in-addr.arpa/127.0.0.9")
    dns_zone.apply()
    postern.start("smtpd")
    start = time.monotonic()
    greet(postern, "127.0.0.7")
    took = time.monotonic() - start
    assert 0.5 < took < 5, took
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.7\]")


def test_localhost_is_not_looked_up(postern, dns_zone):
    """127.0.0.1 is localhost without DNS (the hosts file says so), whatever DNS says — a host
    without working DNS must not wait a resolver timeout per local client (the benchmarks ran
    at 10 msg/s that way). Here DNS would name it otherwise."""
    dns_zone.base = [o for o in dns_zone.base if not o.endswith(",127.0.0.1")]
    dns_zone.add("--server=/1.0.0.127.in-addr.arpa/127.0.0.9")   # reverse lookups time out
    dns_zone.apply()
    postern.start("smtpd")
    start = time.monotonic()
    greet(postern, "127.0.0.1")
    took = time.monotonic() - start
    assert took < 0.5, took
    postern.wait_log("smtpd", r"connect from localhost\[127\.0\.0\.1\]")
