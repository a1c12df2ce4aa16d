"""Lookup-table security through the real daemons (issue 10, items 1 and 5).

- An alias_maps regexp:/pcre: rule whose result uses $number is skipped by postern-local with a
  logged warning, so text from a remote recipient address can never become a command, a file
  or a list separator: the exact RCPT attack runs no command.
- pcre: tables are compiled as PCRE (\\d, lookahead, (?i)), never silently as POSIX regexps:
  a header_checks = pcre: rule with \\d{6} rejects the message.
"""

import os
import pathlib
import re
import secrets
import shutil

import pytest

import postern_harness
from smtp_peers import Sink, peer_factory

HOST = "postern.test"
SENDER = f"ptest1@{HOST}"
# Only a build that says it has no libpcre2 (meson -Dpcre2=disabled, or not found) skips the
# pcre: tests; it runs test_pcre_without_libpcre2_is_refused instead.
HAVE_PCRE2 = "#define HAVE_PCRE2 0" not in (postern_harness.BUILD_DIR / "config.h").read_text()
needs_pcre2 = pytest.mark.skipif(not HAVE_PCRE2, reason="built without libpcre2")


@pytest.fixture
def drop_dir():
    """A world-writable directory whose path is all lower case: postern-local looks aliases up
    with the local part lower-cased, so an injected command keeps its path intact."""
    d = pathlib.Path("/var/tmp") / f"postern-sec-{secrets.token_hex(6)}"
    d.mkdir()
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def quoted_local_part(local):
    """local as an RFC 5321 quoted-string (backslash before '"' and '\\')."""
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("kind", ["regexp", pytest.param("pcre", marks=needs_pcre2)])
def test_alias_regexp_substitution_runs_no_command(postern, drop_dir, kind):
    marker = drop_dir / "pwned"
    table = postern.root / "etc" / f"aliases.{kind}"
    table.write_text("# an admin's catch-all for list archives\n"
                     "/^(.+)-archive$/ $1, archive\n")
    postern.configure(alias_maps=f"{kind}:{table}", allow_mail_to_commands="alias, forward",
                      allow_mail_to_files="alias, forward")
    postern.start()

    # a,"|touch <marker>"-archive: after $1 substitution, "a", "|touch <marker>" and "archive".
    local = f'a,"|touch {marker}"-archive'
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER)[0] == 250
        code, text = s.rcpt(f"{quoted_local_part(local)}@{HOST}")
        # smtpd knows the recipient (the pattern matches in local_recipient_maps), as in Postfix.
        assert code == 250, (code, text)
        code, text = s.data(b"From: <ptest1@postern.test>\r\nSubject: archive me\r\n"
                            b"Message-ID: <sec-alias@example.org>\r\n\r\nhello\r\n")
        assert code == 250, (code, text)

    # local skips the rule: the address is an unknown user, and the bounce reaches ptest1.
    postern.wait_mailbox("ptest1", r"Subject: Undelivered Mail Returned to Sender", timeout=30)
    postern.wait_queue_empty()
    assert not marker.exists(), "the injected alias command ran"
    assert not list(drop_dir.iterdir())
    postern.wait_log("local", re.escape(f"{kind}:{table}:2: ") + r".*substitution.*skipping this rule")
    assert "delivered to command" not in postern.log("local")


def test_alias_regexp_without_substitution_still_works(postern, drop_dir):
    # Rules without $number keep working in alias_maps, including commands an admin wrote.
    table = postern.root / "etc" / "aliases.regexp"
    table.write_text(f'/^team-[a-z]+$/ ptest2, "|touch {drop_dir}/ran"\n')
    postern.configure(alias_maps=f"regexp:{table}", allow_mail_to_commands="alias")
    postern.start()
    postern.send(SENDER, [f"team-red@{HOST}"], b"Subject: team\r\nMessage-ID: <team@x>\r\n\r\nhi\r\n")
    postern.wait_mailbox("ptest2", r"Message-ID: <team@x>")
    postern.wait_for(lambda: (drop_dir / "ran").exists(), 10, "the admin's alias command")


def write_checks(postern, name, text):
    path = postern.root / name
    path.write_text(text)
    return f"pcre:{path}"


def send_raw(postern, subject):
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("a@example.org")[0] == 250
        assert s.rcpt("ptest1@localhost")[0] == 250
        code, text = s.data(f"From: <a@example.org>\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    return code, text.decode(errors="replace")


@needs_pcre2
def test_pcre_header_checks_six_digits(postern):
    # Read as a POSIX regexp, \d is a plain "d": the rule loaded and silently never fired.
    postern.configure(header_checks=write_checks(postern, "header_checks",
                                                 "/^Subject:.*\\d{6}/ REJECT six digits\n"))
    postern.start("smtpd")
    assert send_raw(postern, "your code is 123456") == (550, "5.7.1 six digits")
    assert send_raw(postern, "code 12345")[0] == 250
    assert send_raw(postern, "dddddd")[0] == 250   # \d is a digit, not the letter d


@needs_pcre2
def test_pcre_header_checks_perl_syntax(postern):
    postern.configure(header_checks=write_checks(
        postern, "header_checks",
        "/^Subject: (?-i)SHOUT(?=ING)/ REJECT lookahead\n"
        "/^Subject:\\s+(?:buy|sell)\\b/ REJECT trading\n"))
    postern.start("smtpd")
    assert send_raw(postern, "SHOUTING") == (550, "5.7.1 lookahead")
    assert send_raw(postern, "shouting")[0] == 250
    assert send_raw(postern, "SHOUTED")[0] == 250
    assert send_raw(postern, "Sell now") == (550, "5.7.1 trading")
    assert send_raw(postern, "seller")[0] == 250


@needs_pcre2
def test_pcre_bad_pattern_is_a_configuration_error(postern):
    # \k without a group name is an error in PCRE (a POSIX regexp would read a plain "k"): the
    # table is refused with file and line, never read some other way.
    postern.configure(header_checks=write_checks(postern, "header_checks", "/ok/ DUNNO\n/^X-\\k:/ REJECT\n"))
    with pytest.raises(Exception):
        postern.start("smtpd")
    assert re.search(r"header_checks = pcre:\S+: .*/header_checks:2: invalid regular expression: ",
                     postern.log("smtpd"))


@pytest.mark.skipif(HAVE_PCRE2, reason="built with libpcre2")
def test_pcre_without_libpcre2_is_refused(postern):
    # Without libpcre2 a pcre: table is an error at start-up, never read as a regexp: table.
    postern.configure(header_checks=write_checks(postern, "header_checks", "/^Subject:.*\\d{6}/ REJECT\n"))
    with pytest.raises(Exception):
        postern.start("smtpd")
    assert "pcre: tables are not supported: Postern was built without libpcre2" in postern.log("smtpd")


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda name: Sink(postern.root / name))


def test_transport_maps_substitution_cannot_choose_the_next_hop(postern, sinks):
    """transport_maps are opened with TABLE_REGSUB_SAFE: an admin's rule that copies a host name
    from the address into the next hop is skipped when the copied text holds '[', ']' or ':',
    so a sender cannot aim the message at a server of its choice; the default route is used and
    the skipped rule is logged."""
    attacker, relay = sinks("attacker"), sinks("relay")
    table = postern.root / "etc" / "transport.regexp"
    table.write_text("# mail for dyn.example goes to the host named by the local part\n"
                     "/^\"?([^\"]+)\"?@dyn\\.example$/ smtp:$1\n")
    postern.configure(transport_maps=f"regexp:{table}", relay_domains="dyn.example",
                      relayhost=f"[127.0.0.1]:{relay.port}")
    postern.start()
    rcpt = f'"[127.0.0.1]:{attacker.port}"@dyn.example'
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("sender@example.org")[0] == 250
        assert s.rcpt(rcpt)[0] == 250
        assert s.data(b"Subject: next hop\r\n\r\nhello\r\n")[0] == 250
    relay.wait_count(1)
    postern.wait_queue_empty()
    assert attacker.messages() == []
    postern.wait_log("qmgr", r"transport_maps: regexp:.*transport\.regexp:2: .*skipping this rule")
