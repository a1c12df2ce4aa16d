"""ldap: lookup tables against a real OpenLDAP server (tests/integration/ldap_peer.py: slapd in a
temporary directory), set up as README "Tables in a database" shows, through SMTP and delivery:

- virtual_mailbox_domains, virtual_mailbox_maps (result_format builds the Maildir path) and
  virtual_alias_maps (a multi-valued nisMailAlias, and a groupOfNames expanded through
  special_result_attribute/leaf_result_attribute) answer RCPT exactly as texthash: files holding
  the same data, and mail is delivered into the Maildirs;
- a change in the directory takes effect without a reload;
- a key holding * ( ) \\ finds only the entry that literally has it, never widens the search;
- slapd stopped: 451 4.3.0 at RCPT (not 550) and deferral with 4.3.0 at delivery; paused: 451
  after the table's timeout; back: lookups work again (a restart between two lookups costs no
  failure at all); server_host fails over from a dead server to the next;
- a .cf with bind_pw that everyone may read is refused by name (daemons and posternctl check);
  a wrong bind_pw is temporary;
- what result_, special_/leaf_ and terminal_result_attribute return, and expansion_limit (seen
  with posternctl route);
- STARTTLS with the server's CA works, with another CA fails (451) rather than going on in the
  clear."""

import os
import pwd
import re

import pytest

import mailtest
from ldap_peer import ROOTDN, ROOTPW, SUFFIX, Slapd, free_port
from test_addr_class import UNKNOWN, wait_reply
from test_local import deliver, message, queue_message, results
from test_smtpd_helpers import OUTSIDE, session

VDOM = "vdomain.test"
SENDER = "sender@remote.example"

LDIF = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: postern test
dc: postern

dn: ou=domains,{SUFFIX}
objectClass: organizationalUnit
ou: domains

dn: ou={VDOM},ou=domains,{SUFFIX}
objectClass: organizationalUnit
objectClass: domainRelatedObject
ou: {VDOM}
associatedDomain: {VDOM}

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
mail: alice@{VDOM}

dn: uid=bob,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
mail: bob@{VDOM}

dn: uid=star,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: star
cn: Star
sn: S
mail: st*r@{VDOM}

dn: ou=aliases,{SUFFIX}
objectClass: organizationalUnit
ou: aliases

dn: cn=team@{VDOM},ou=aliases,{SUFFIX}
objectClass: nisMailAlias
cn: team@{VDOM}
rfc822MailMember: alice@{VDOM}
rfc822MailMember: bob@{VDOM}

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,{SUFFIX}
objectClass: groupOfNames
objectClass: extensibleObject
cn: staff
mail: staff@{VDOM}
member: uid=alice,ou=people,{SUFFIX}
member: uid=star,ou=people,{SUFFIX}

dn: cn=moved,ou=groups,{SUFFIX}
objectClass: groupOfNames
objectClass: extensibleObject
cn: moved
mail: moved@{VDOM}
member: uid=alice,ou=people,{SUFFIX}
mailRoutingAddress: moved@far.example
"""


@pytest.fixture
def slapd():
    s = Slapd(LDIF)
    s.start()
    yield s
    s.close(keep=bool(os.environ.get("POSTERN_KEEP_ROOT")))


@pytest.fixture
def tls_slapd():
    """slapd with a certificate for localhost signed by a test CA; yields (slapd, ca, other_ca)."""
    s = Slapd(LDIF, tls=True)
    s.start()
    yield s, s.ca_cert, s.other_ca_cert
    s.close(keep=bool(os.environ.get("POSTERN_KEEP_ROOT")))


def write_cf(postern, name, text, mode=0o600):
    path = postern.etc_dir / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def ldap_tables(postern, s, timeout=3):
    """The four .cf files of README "Tables in a database": server_host lists a dead server first
    (failover) and the domains table talks over ldapi://."""
    hosts = f"ldap://127.0.0.1:{free_port()} {s.url}"
    common = f"server_host = {hosts}\nversion = 3\ntimeout = {timeout}\nbind = no\n"
    domains = write_cf(postern, "ldap-domains.cf",
                       f"server_host = {s.ldapi_url}\nbind = no\ntimeout = {timeout}\n"
                       f"search_base = ou=domains,{SUFFIX}\n"
                       "query_filter = (associatedDomain=%s)\nresult_attribute = associatedDomain\n")
    mailboxes = write_cf(postern, "ldap-mailboxes.cf", common +
                         f"search_base = ou=people,{SUFFIX}\n"
                         "query_filter = (&(objectClass=inetOrgPerson)(mail=%s))\n"
                         "result_attribute = mail\nresult_format = %d/%u/\n")
    aliases = write_cf(postern, "ldap-aliases.cf",
                       f"server_host = {hosts}\ntimeout = {timeout}\n"
                       f"bind = yes\nbind_dn = {ROOTDN}\nbind_pw = {ROOTPW}\n"
                       f"search_base = ou=aliases,{SUFFIX}\nscope = one\ndomain = {VDOM}\n"
                       "query_filter = (&(objectClass=nisMailAlias)(cn=%s))\n"
                       "result_attribute = rfc822MailMember\n")
    groups = write_cf(postern, "ldap-groups.cf", common +
                      f"search_base = ou=groups,{SUFFIX}\ndomain = {VDOM}\n"
                      "query_filter = (&(objectClass=groupOfNames)(mail=%s))\n"
                      "result_attribute =\nspecial_result_attribute = member\nleaf_result_attribute = mail\n")
    return dict(virtual_mailbox_domains=f"ldap:{domains}", virtual_mailbox_maps=f"ldap:{mailboxes}",
                virtual_alias_maps=f"ldap:{aliases}, ldap:{groups}")


def configure(postern, s, **extra):
    base = postern.root / "vmail"
    base.mkdir(exist_ok=True)
    os.chmod(base, 0o1777)
    pw = pwd.getpwnam("ptest1")
    postern.vbase = base
    postern.configure(mynetworks="127.0.0.1/32", virtual_mailbox_base=str(base),
                      virtual_uid_maps=f"static:{pw.pw_uid}", virtual_gid_maps=f"static:{pw.pw_gid}",
                      **(ldap_tables(postern, s) | extra))
    return postern


def rcpt(postern, addr):
    with session(postern, source=OUTSIDE) as c:
        return c.cmd(f"RCPT TO:<{addr}>")


def maildir(postern, user):
    new = postern.vbase / VDOM / user / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


RCPTS = [
    (f"alice@{VDOM}", "250 2.1.5 Ok"),
    (f"ALICE@{VDOM.upper()}", "250 2.1.5 Ok"),
    (f"team@{VDOM}", "250 2.1.5 Ok"),
    (f"staff@{VDOM}", "250 2.1.5 Ok"),
    (f"st*r@{VDOM}", "250 2.1.5 Ok"),
    (f"nobody@{VDOM}", UNKNOWN.format(code=550, addr=f"nobody@{VDOM}", table="virtual mailbox")),
    # filter metacharacters in the key: escaped, so they match nothing (never every entry)
    (f"*@{VDOM}", UNKNOWN.format(code=550, addr=f"*@{VDOM}", table="virtual mailbox")),
    (f"a*@{VDOM}", UNKNOWN.format(code=550, addr=f"a*@{VDOM}", table="virtual mailbox")),
    (f'"*)(mail=*"@{VDOM}', UNKNOWN.format(code=550, addr=f'"*)(mail=*"@{VDOM}', table="virtual mailbox")),
    (f'"x)(|(mail=*"@{VDOM}', UNKNOWN.format(code=550, addr=f'"x)(|(mail=*"@{VDOM}', table="virtual mailbox")),
    (f'"st\\\\2ar"@{VDOM}', UNKNOWN.format(code=550, addr=f'"st\\\\2ar"@{VDOM}', table="virtual mailbox")),
    # not a domain in the directory: not ours (defer_unauth_destination, the default)
    ("alice@other.test", "454 4.7.1 <alice@other.test>: Relay access denied"),
]


def test_virtual_domains_mailboxes_and_aliases_in_ldap(postern, slapd):
    """Each RCPT answered from the directory as texthash: would; then one message to alice, team
    (alice and bob) and staff (a group: alice and st*r) lands once in each Maildir path that
    result_format made."""
    p = configure(postern, slapd)
    p.start()
    got = [(a, rcpt(p, a)) for a, _ in RCPTS]
    assert got == RCPTS
    qid = mailtest.send(p, SENDER, [f"alice@{VDOM}", f"team@{VDOM}", f"staff@{VDOM}"],
                        mailtest.msg("ldap-1@test", sender=SENDER, to=f"team@{VDOM}", subject="via ldap"))
    p.wait_log("qmgr", rf"{qid}: removed", timeout=30)
    assert len(maildir(p, "bob")) == 1
    assert len(maildir(p, "st*r")) == 1
    # three ways to alice: three copies, as Postfix with enable_original_recipient = yes (each
    # has its own original recipient, so they are not duplicates)
    assert len(maildir(p, "alice")) == 3
    assert "Subject: via ldap" in maildir(p, "bob")[0].read_text()


def test_same_answers_as_texthash(postern, slapd):
    """The same recipients against texthash: files holding what the directory holds: every RCPT
    answer is the same."""
    p = configure(postern, slapd)
    p.start("smtpd")
    ldap_answers = [rcpt(p, a) for a, _ in RCPTS]
    p.stop()
    etc = p.etc_dir
    (etc / "vdomains").write_text(f"{VDOM} x\n")
    (etc / "vmailbox").write_text("".join(f"{u}@{VDOM} {VDOM}/{u}/\n" for u in ("alice", "bob", "st*r")))
    (etc / "valias").write_text(f"team@{VDOM} alice@{VDOM}, bob@{VDOM}\nstaff@{VDOM} alice@{VDOM}, st*r@{VDOM}\n"
                                f"moved@{VDOM} moved@far.example\n")
    p.configure(virtual_mailbox_domains=f"texthash:{etc}/vdomains", virtual_mailbox_maps=f"texthash:{etc}/vmailbox",
                virtual_alias_maps=f"texthash:{etc}/valias")
    p.start("smtpd")
    assert [rcpt(p, a) for a, _ in RCPTS] == ldap_answers


def test_restarted_server_costs_no_failure(postern, slapd):
    """slapd restarted between two lookups: the kept connection is dead, the lookup tries once
    more on a new one and answers at once (no 451 in between)."""
    p = configure(postern, slapd)
    p.start("smtpd")
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    slapd.stop()
    slapd.start()
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    assert rcpt(p, f"nobody@{VDOM}") == UNKNOWN.format(code=550, addr=f"nobody@{VDOM}", table="virtual mailbox")


def test_directory_changes_apply_without_reload(postern, slapd):
    """A user added, an alias member added, a mailbox's mail attribute removed: the next RCPT
    sees each at once (no cache, no reload)."""
    p = configure(postern, slapd)
    p.start("smtpd")
    carol = f"carol@{VDOM}"
    assert rcpt(p, carol) == UNKNOWN.format(code=550, addr=carol, table="virtual mailbox")
    slapd.add(f"dn: uid=carol,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: carol\ncn: C\nsn: C\n"
              f"mail: {carol}\n")
    assert rcpt(p, carol) == "250 2.1.5 Ok"
    slapd.modify(f"dn: uid=bob,ou=people,{SUFFIX}\nchangetype: modify\ndelete: mail\n")
    assert rcpt(p, f"bob@{VDOM}") == UNKNOWN.format(code=550, addr=f"bob@{VDOM}", table="virtual mailbox")
    slapd.add(f"dn: cn=new@{VDOM},ou=aliases,{SUFFIX}\nobjectClass: nisMailAlias\ncn: new@{VDOM}\n"
              f"rfc822MailMember: {carol}\n")
    assert rcpt(p, f"new@{VDOM}") == "250 2.1.5 Ok"


def test_server_down_is_temporary_and_lookups_resume(postern, slapd):
    """slapd stopped: 451 4.3.0 for a known and an unknown address alike (never 550), other
    classes go on, the reason is logged; slapd back on the same port: the answers come back
    without restarting smtpd."""
    p = configure(postern, slapd)
    p.start("smtpd")
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    slapd.stop()
    for a in (f"alice@{VDOM}", f"nobody@{VDOM}"):
        assert rcpt(p, a) == f"451 4.3.0 <{a}>: Temporary lookup failure"
    assert rcpt(p, "ptest1@postern.test") == "250 2.1.5 Ok"
    p.wait_log("smtpd", r"ldap:.*ldap-(domains|mailboxes)\.cf: .*Can't contact LDAP server")
    slapd.start()
    assert wait_reply(p, f"alice@{VDOM}", "250 2.1.5 Ok") == "250 2.1.5 Ok"
    assert rcpt(p, f"nobody@{VDOM}") == UNKNOWN.format(code=550, addr=f"nobody@{VDOM}", table="virtual mailbox")


def test_server_that_does_not_answer_is_temporary(postern, slapd):
    """slapd stopped with SIGSTOP (connections are accepted, nothing answers): after the table's
    timeout the RCPT gets 451 4.3.0; resumed, lookups work again."""
    p = configure(postern, slapd)
    p.start("smtpd")
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    slapd.pause()
    try:
        assert rcpt(p, f"bob@{VDOM}") == f"451 4.3.0 <bob@{VDOM}>: Temporary lookup failure"
    finally:
        slapd.resume()
    assert wait_reply(p, f"bob@{VDOM}", "250 2.1.5 Ok") == "250 2.1.5 Ok"


def test_delivery_defers_while_the_server_is_down(postern, slapd):
    """virtual(8)'s virtual_mailbox_maps lookup at delivery: deferred with 4.3.0 while slapd is
    down, delivered once it is back."""
    p = configure(postern, slapd)
    p.start("local")
    rcpts = [f"alice@{VDOM}"]

    def vdeliver(subject):
        qid, rids = queue_message(p, SENDER, rcpts, message(subject))
        return results(deliver(p, qid, list(zip(rcpts, rids)), sender=SENDER, socket="virtual"))
    slapd.stop()
    res = vdeliver("while down")
    assert [r[:2] for r in res] == [("deferred", "4.3.0")], res
    slapd.start()
    res = vdeliver("back")
    assert [r[:2] for r in res] == [("delivered", "2.0.0")], res
    assert len(maildir(p, "alice")) == 1


def test_world_readable_bind_pw_is_refused(postern, slapd):
    """A .cf holding bind_pw that everyone may read: the table is refused, naming the file, and
    its lookups answer 451 (never a guess); chmod o-r and a reload make it work."""
    p = configure(postern, slapd)
    cf = p.etc_dir / "ldap-aliases.cf"
    os.chmod(cf, 0o644)
    check = p.posternctl("check")
    assert check.returncode != 0 and f"{cf} holds bind_pw and is readable by everyone" in check.stderr, check
    p.start("smtpd")
    p.wait_log("smtpd", rf"{re.escape(str(cf))} holds bind_pw and is readable by everyone")
    assert rcpt(p, f"team@{VDOM}") == f"451 4.3.0 <team@{VDOM}>: Temporary lookup failure"
    os.chmod(cf, 0o640)
    p.reload("smtpd")
    assert wait_reply(p, f"team@{VDOM}", "250 2.1.5 Ok") == "250 2.1.5 Ok"


def route_lookups(postern, addr):
    """posternctl route's table lines for addr: {spec: value}."""
    r = postern.posternctl("route", addr)
    return r.returncode, r.stdout + r.stderr


def test_result_attributes(postern, slapd):
    """What each kind of attribute returns, seen through posternctl route: every value of a
    multi-valued attribute, a group's members' leaf attribute (not the group's own),
    terminal_result_attribute alone when the entry has it (no member recursion), and an
    expansion_limit that is exceeded is an error, not a shortened list."""
    p = configure(postern, slapd)
    groups = p.etc_dir / "ldap-groups.cf"
    groups.write_text(groups.read_text() + "terminal_result_attribute = mailRoutingAddress\n")
    rc, out = route_lookups(p, f"team@{VDOM}")
    assert rc == 0 and f'key "team@{VDOM}" -> "alice@{VDOM},bob@{VDOM}"' in out, out
    rc, out = route_lookups(p, f"staff@{VDOM}")
    assert rc == 0 and f'key "staff@{VDOM}" -> "alice@{VDOM},st*r@{VDOM}"' in out, out
    rc, out = route_lookups(p, f"moved@{VDOM}")
    assert rc == 0 and f'key "moved@{VDOM}" -> "moved@far.example"' in out, out
    groups.write_text(groups.read_text() + "expansion_limit = 1\n")
    rc, out = route_lookups(p, f"staff@{VDOM}")
    assert rc != 0 and f"staff@{VDOM}" in out and "alice@" not in out, out


def test_wrong_bind_password_is_temporary(postern, slapd):
    """A bind the server refuses: 451 4.3.0 (the directory is not asked, so nobody is unknown)."""
    p = configure(postern, slapd)
    cf = p.etc_dir / "ldap-aliases.cf"
    cf.write_text(cf.read_text().replace(f"bind_pw = {ROOTPW}", "bind_pw = wrong"))
    p.start("smtpd")
    assert rcpt(p, f"team@{VDOM}") == f"451 4.3.0 <team@{VDOM}>: Temporary lookup failure"
    p.wait_log("smtpd", r"ldap-aliases\.cf: lookup failed: bind failed .*Invalid credentials")


def test_start_tls(postern, tls_slapd):
    """start_tls = yes with the server's CA: lookups work; with tls_require_cert and a CA that did
    not sign the server's certificate: 451 4.3.0, never a lookup in the clear."""
    s, ca, other_ca = tls_slapd
    p = configure(postern, s)
    cf = p.etc_dir / "ldap-mailboxes.cf"
    text = re.sub(r"server_host = .*", f"server_host = {s.url}", cf.read_text())   # the certificate names 127.0.0.1
    cf.write_text(text + f"start_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {ca}\n")
    p.start("smtpd")
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    cf.write_text(text + f"start_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {other_ca}\n")
    p.reload("smtpd")
    assert wait_reply(p, f"alice@{VDOM}", f"451 4.3.0 <alice@{VDOM}>: Temporary lookup failure")
    p.wait_log("smtpd", r"ldap-mailboxes\.cf: lookup failed: STARTTLS failed")
