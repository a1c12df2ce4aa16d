"""posternctl check --postfix DIR and posternctl import DIR (tools/posternctl/posternctl-postfix.c,
posternctl-import.c): what Postern does with a Postfix configuration directory, item by item, and
the copy that comments out what it cannot use. No daemon runs: these are the commands alone."""
import json
import os

MAIN_CF = """\
# a Postfix main.cf
queue_directory = /var/spool/postfix
readme_directory = no
myhostname = mx.example.org
compatibility_level = 2
smtp_tls_security_level = fingerprint
plaintext_reject_code = 450
virtual_alias_maps = proxy:mongodb:/etc/postfix/mongodb-aliases.cf
mua_sender_restrictions = reject_unknown_sender_domain
relayhost =
    [smtp.example.net]:587
"""

MASTER_CF = """\
smtp      inet  n       -       y       -       1       postscreen
smtpd     pass  -       -       y       -       -       smtpd
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o cleanup_service_name=pre-cleanup
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o content_filter=
qmgr      unix  n       -       n       300     1       qmgr
relay     unix  -       -       y       -       -       smtp
  -o smtp_helo_timeout=5 -o syslog_name=postfix/relay
amavis    unix  -       -       n       -       2       smtp
local     unix  -       n       n       -       4       local
  -o mailbox_size_limit=0
policy    unix  -       n       n       -       0       spawn
  user=nobody argv=/usr/bin/policyd
"""


def postfix_dir(postern, main=MAIN_CF, master=MASTER_CF):
    d = postern.root / "postfix"
    d.mkdir(exist_ok=True)
    (d / "main.cf").write_text(main)
    if master is not None:
        (d / "master.cf").write_text(master)
    return d


def items(postern, d):
    r = postern.posternctl("check", "--postfix", str(d), "--json")
    assert r.returncode in (0, 1), r.stderr
    rep = json.loads(r.stdout)
    return r.returncode, {(it["file"], it["name"]): (it["line"], it["verdict"], it["detail"]) for it in rep["items"]}, rep


def test_each_parameter_and_entry_gets_a_verdict(postern):
    rc, got, rep = items(postern, postfix_dir(postern))
    assert rc == 1   # something is not supported
    main = {name: v for (f, name), v in got.items() if f == "main.cf"}
    assert main["myhostname"] == (4, "same", "")
    assert main["relayhost"][1] == "same"
    assert main["queue_directory"][1] == "left-out"
    assert main["readme_directory"][1:] == ("info", "no meaning here: Postern's documentation is its README.md "
                                                    "and docs/, not a directory it reads")
    assert main["compatibility_level"][1] == "info"
    assert main["smtp_tls_security_level"][1:] == (
        "unsupported", 'invalid value "fingerprint": must be one of: , none, may, encrypt, verify, secure, dane, dane-only')
    assert main["plaintext_reject_code"][1:] == ("unknown", "Postern has no parameter of this name")
    line, verdict, detail = main["virtual_alias_maps"]
    assert (line, verdict) == (8, "unsupported")
    assert 'unsupported lookup table type "mongodb"' in detail
    # used by a master.cf -o option of a parameter Postern has: the admin's own name
    assert main["mua_sender_restrictions"][1] == "info"

    master = {name: v for (f, name), v in got.items() if f == "master.cf"}
    assert master["smtp/inet postscreen"][1] == "mapped"   # postern-smtpd screens on port 25 itself
    assert master["smtpd/pass smtpd"][1] == "mapped"
    assert master["submission/inet smtpd"][:2] == (3, "mapped")
    assert "postern-submission.socket (fd name submission)" in master["submission/inet smtpd"][2]
    assert master["submission/inet -o smtpd_tls_security_level=encrypt"][1:] == (
        "mapped", "main.cf's submission/smtpd_tls_security_level")
    assert master["submission/inet -o syslog_name=postfix/submission"][1] == "info"
    assert master["submission/inet -o cleanup_service_name=pre-cleanup"][1] == "unknown"
    assert master["127.0.0.1:10025/inet smtpd"][1:] == (   # postern-generator's socket (tools/generator)
        "mapped", "postern-generator's postern-smtpd-127.0.0.1-10025.socket (fd name 127.0.0.1-10025); its -o "
        "options become listener settings")
    assert master["qmgr/unix qmgr"][1:] == ("mapped", "built in: postern-qmgr")
    # smtp/lmtp entries are postern-smtp's transports, judged by its own loader
    assert master["relay/unix smtp"][1] == "same"
    assert master["relay/unix -o smtp_helo_timeout=5"][1:] == ("same", "applied by postern-smtp to this transport")
    assert master["relay/unix -o syslog_name=postfix/relay"][1:] == (   # accepted and ignored everywhere
        "info", "postern-smtp logs every transport's deliveries as postern/smtp")
    assert master["amavis/unix smtp"][1] == "same"
    assert master["local/unix local"][1:] == ("same", "Postern's own local transport")
    assert master["local/unix -o mailbox_size_limit=0"][1:] == (
        "unsupported", "Postern's local transport takes no master.cf overrides; set it in main.cf")
    assert master["local/unix maxproc 4"][1:] == ("unsupported", "set local_process_limit in main.cf")
    assert master["policy/unix spawn"][1] == "unsupported"
    # the summary counts every item
    assert sum(rep["summary"].values()) == len(rep["items"])


def test_text_output_is_grouped_with_a_summary(postern):
    d = postfix_dir(postern)
    r = postern.posternctl("check", "--postfix", str(d))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "main.cf: same meaning"
    assert "  main.cf:4: myhostname" in lines
    assert "main.cf: not supported" in lines
    assert "  main.cf:7: plaintext_reject_code: Postern has no parameter of this name" in lines
    assert "master.cf: mapped" in lines
    assert lines[-1].startswith("summary: ")
    assert " not supported, " in lines[-1]


def test_clean_configuration_exits_0(postern):
    d = postfix_dir(postern, main="myhostname = mx.example.org\nreadme_directory = no\n",
                    master="smtp inet n - y - - smtpd\nqmgr unix n - n 300 1 qmgr\n")
    r = postern.posternctl("check", "--postfix", str(d))
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[-1] == ("summary: 4 items: 1 same, 2 mapped, 1 informational, 0 left out, "
                                         "0 not supported, 0 unknown, 0 errors")


def test_missing_table_file_is_an_error_not_unsupported(postern):
    d = postfix_dir(postern, main=f"alias_maps = hash:{postern.root}/nonexistent/aliases\n", master=None)
    rc, got, _ = items(postern, d)
    assert rc == 1
    line, verdict, detail = got[("main.cf", "alias_maps")]
    assert verdict == "error" and "No such file or directory" in detail


def test_missing_directory_is_an_error(postern):
    r = postern.posternctl("check", "--postfix", str(postern.root / "nothing"))
    assert r.returncode == 1
    assert "No such file or directory" in r.stderr


def test_import_comments_out_what_postern_cannot_use(postern):
    src = postfix_dir(postern)
    dest = postern.root / "imported"
    r = postern.posternctl("import", str(src), "--to", str(dest))
    assert r.returncode == 0, r.stderr
    main = (dest / "main.cf").read_text()
    assert "# posternctl import: left out: queue_directory: " in main
    assert "\n#queue_directory = /var/spool/postfix\n" in main
    assert ('# posternctl import: not supported: smtp_tls_security_level: invalid value "fingerprint"' in main)
    assert "\n#smtp_tls_security_level = fingerprint\n" in main
    assert "# posternctl import: unknown: plaintext_reject_code: Postern has no parameter of this name\n#plaintext_reject_code = 450\n" in main
    assert "\n#virtual_alias_maps = proxy:mongodb:" in main
    # what Postern uses stays as it was, continuation lines included
    assert "\nmyhostname = mx.example.org\n" in main
    assert "\nrelayhost =\n    [smtp.example.net]:587\n" in main
    assert "\nmua_sender_restrictions = reject_unknown_sender_domain\n" in main
    # the listeners' -o options become per-listener settings (syslog_name, accepted and ignored, does not)
    assert main.endswith("\n# posternctl import: the -o options of master.cf's listeners, as Postern's "
                         "per-listener settings\n"
                         "submission/smtpd_tls_security_level = encrypt\n"
                         "submission/smtpd_sender_restrictions = $mua_sender_restrictions\n"
                         "127.0.0.1-10025/content_filter =\n"), main
    master = (dest / "master.cf").read_text()
    # postscreen on 25 stays: postern-smtpd screens there itself
    assert "\nsmtp      inet  n       -       y       -       1       postscreen\n" in master
    # a listener of its own stays (postern-generator makes its socket), -o content_filter= too
    assert "\n127.0.0.1:10025 inet n  -       n       -       -       smtpd\n  -o content_filter=\n" in master
    assert "content_filter=: Postern has no parameter" not in master
    assert "\namavis    unix" in master
    assert "#policy    unix  -       n       n       -       0       spawn\n#  user=nobody argv=/usr/bin/policyd\n" in master
    # an unused -o option gets a note; its entry stays
    assert ("# posternctl import: unknown: submission/inet -o cleanup_service_name=pre-cleanup: "
            "Postern has no parameter of this name\nsubmission inet") in master
    assert "\nrelay     unix  -       -       y       -       -       smtp\n" in master

    # Postern reads the result with no unknown parameter and no error
    r = postern.posternctl("check", "-c", str(dest))
    assert "unknown parameter" not in r.stderr
    assert "invalid value" not in r.stderr
    rc, got, _ = items(postern, dest)
    assert not [k for k, v in got.items() if v[1] in ("unsupported", "unknown") and " -o " not in k[1]
                and k != ("master.cf", "local/unix maxproc 4")], got


def test_import_never_overwrites_without_force(postern):
    src = postfix_dir(postern)
    dest = postern.root / "imported"
    dest.mkdir()
    (dest / "master.cf").write_text("# mine\n")
    r = postern.posternctl("import", str(src), "--to", str(dest))
    assert r.returncode == 1
    assert f"{dest}/master.cf exists; nothing was written (--force replaces it)" in r.stderr
    assert not (dest / "main.cf").exists()
    assert (dest / "master.cf").read_text() == "# mine\n"
    r = postern.posternctl("import", str(src), "--to", str(dest), "--force")
    assert r.returncode == 0, r.stderr
    assert (dest / "master.cf").read_text().startswith("# Imported from ")
    assert sorted(os.listdir(dest)) == ["main.cf", "master.cf"]   # no temporary files left


def test_plain_check_reports_unusable_master_cf_listeners(postern):
    """posternctl check (no --postfix) shares the master.cf verdicts: a port-25 postscreen entry is
    postern-smtpd's screening (nothing to report); a listener of its own is postern-generator's (its -o options reported by conf_load)."""
    (postern.etc_dir / "master.cf").write_text(MASTER_CF)
    postern.configure(mua_sender_restrictions="reject_unknown_sender_domain")
    r = postern.posternctl("check")
    path = postern.etc_dir / "master.cf"
    assert f"{path}:1: smtp: not supported" not in r.stderr
    assert "content_filter" not in r.stderr, r.stderr   # a listener setting like the others
    assert f"{path}:8: 127.0.0.1:10025: not supported: a listener" not in r.stderr
    assert (f"posternctl: {path}:3: submission: not supported: -o cleanup_service_name on submission (Postern has no "
            "parameter of this name)") in r.stderr
    assert (f"posternctl: {path}:14: local: not supported: maxproc 4 on local (set local_process_limit in "
            "main.cf)") in r.stderr


def test_directory_without_main_cf_and_broken_master_cf_are_errors(postern):
    d = postern.root / "postfix"
    d.mkdir()
    (d / "master.cf").write_text("relay unix - - y - lots smtp\n")
    rc, got, _ = items(postern, d)
    assert rc == 1
    assert got[("main.cf", "main.cf")] == (0, "error", f"{d}/main.cf: No such file or directory")
    assert got[("master.cf", "master.cf")] == (0, "error", f"{d}/master.cf:1: relay: maxproc field \"lots\" is not a number or -")


def test_myorigin_from_a_file_is_read_or_an_error(postern):
    """Debian's main.cf says myorigin = /etc/mailname: check --postfix shows the domain read from
    the file, or an error when the file cannot be read."""
    mailname = postern.root / "mailname"
    d = postfix_dir(postern, main=f"myorigin = {mailname}\n", master=None)
    rc, got, _ = items(postern, d)
    assert rc == 1
    assert got[("main.cf", "myorigin")] == (
        1, "error", f"$myorigin: cannot read {mailname}: No such file or directory")
    mailname.write_text("# this host\nexample.org\n")
    rc, got, _ = items(postern, d)
    assert rc == 0
    assert got[("main.cf", "myorigin")] == (1, "same", f"read from {mailname}: example.org")


def test_address_verify_map_of_postfix_types_is_mapped(postern):
    """modoboa's proxy:btree: cache becomes postern-verify's SQLite file: mapped, not an error."""
    d = postfix_dir(postern, main="address_verify_map = proxy:btree:$data_directory/verify_cache\n"
                                  "unverified_recipient_reject_code = 550\n",
                    master="verify unix - - n - 1 verify\n")
    rc, got, _ = items(postern, d)
    assert rc == 0
    assert got[("main.cf", "address_verify_map")][1:] == ("mapped", "postern-verify keeps its cache in SQLite, "
                                                                    "$queue_directory/verify.db")
    assert got[("main.cf", "unverified_recipient_reject_code")][1] == "same"
    assert got[("master.cf", "verify/unix verify")][1:] == ("mapped", "built in: postern-verify")
