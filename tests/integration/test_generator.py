"""postern-generator and master.cf listeners: the generator binary run on master.cf excerpts of
the shapes docker-mailserver and mailcow ship (postscreen on 25 with its smtpd pass entry,
submission and submissions with -o overrides, smtps/10465 implicit TLS, a reinjection listener on
127.0.0.1:10025, an inet spawn and a second postscreen it cannot express) writes the socket units
and drop-ins expected, `systemd-analyze verify` is silent on all of them, and nothing is written
without a master.cf. Then postern-smtpd itself, given sockets under the generator's fd names,
serves each with its entry's -o options in force, main.cf's own listener settings winning, and
`posternctl check` names what it skipped."""

import os
import pathlib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile

import pytest

import postern_harness
from postern_harness import tcp_listener
from test_smtpd_tls import certs, tls_params   # noqa: F401 — the certificate fixture

GENERATOR = postern_harness.binary("tools/generator/postern-generator")

# The shapes of docker-mailserver's and mailcow's master.cf (written here, not copied).
MASTER_CF = """\
smtp       inet  n       -       n       -       1       postscreen
smtpd      pass  -       -       n       -       -       smtpd
  -o smtpd_sasl_auth_enable=no
  -o smtpd_sender_restrictions=permit_mynetworks,reject_unlisted_sender
dnsblog    unix  -       -       n       -       0       dnsblog
10025      inet  n       -       n       -       1       postscreen
  -o postscreen_upstream_proxy_protocol=haproxy
submission inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o cleanup_service_name=pre-cleanup
smtps      inet  n       -       n       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
10465      inet  n       -       n       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
127.0.0.1:10025 inet n   -       n       -       -       smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
  -o smtpd_helo_restrictions=
  -o smtpd_client_restrictions=
  -o mynetworks=127.0.0.0/8
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
127.0.0.1:10027 inet n   n       n       -       0       spawn
  user=nobody argv=/usr/bin/true
pickup     fifo  n       -       n       60      1       pickup
qmgr       unix  n       -       n       300     1       qmgr
relay      unix  -       -       n       -       -       smtp
"""


def run_generator(postern, out):
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run([GENERATOR, str(out), str(out), str(out)], env=postern.env(),
                          capture_output=True, text=True, timeout=30)


def tree(out, access=False):
    """The files the generator wrote; without access=True, not its access drop-ins (20-access.conf,
    which the harness's own queue_directory already calls for)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if not p.is_dir() and (access or p.name != "20-access.conf"))


def verify(units_dir, names):
    """systemd-analyze verify on names in units_dir, next to the build's units (ExecStart= pointed
    at the build tree, as tests/system/verify-units does)."""
    build = postern_harness.BUILD_DIR
    for f in (build / "units").glob("postern*"):
        if f.suffix == ".in":
            continue
        text = re.sub(r"(?m)^ExecStart=.*/postern-([a-z]+)$",
                      lambda m: f"ExecStart={build}/daemons/{m[1]}/postern-{m[1]}", f.read_text())
        (units_dir / f.name).write_text(text)
    # --man=no: the manual pages that Documentation= names are checked by verify-units
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + [str(units_dir / n) for n in names],
                       cwd="/", capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    return r.returncode, r.stdout + r.stderr


def test_generator_writes_units_for_dms_and_mailcow_shapes(postern, tmp_path):
    (postern.etc_dir / "master.cf").write_text(MASTER_CF)
    postern.configure(inet_interfaces="127.0.0.1", inet_protocols="ipv4")
    out = tmp_path / "generator"
    r = run_generator(postern, out)
    assert r.returncode == 0
    assert tree(out) == [
        "postern-smtpd-10465.socket",
        "postern-smtpd-127.0.0.1-10025.socket",
        "postern-smtpd.service.d/10-master-cf.conf",
        "postern-smtpd.socket.d/10-master-cf.conf",
        "postern-submission.socket.d/10-master-cf.conf",
        "postern-submissions.socket.d/10-master-cf.conf",
        "postern.target.wants/postern-smtpd-10465.socket",
        "postern.target.wants/postern-smtpd-127.0.0.1-10025.socket",
    ]
    assert os.readlink(out / "postern.target.wants/postern-smtpd-10465.socket") == "../postern-smtpd-10465.socket"
    reinject = (out / "postern-smtpd-127.0.0.1-10025.socket").read_text()
    assert "\n[Socket]\nListenStream=127.0.0.1:10025\nFileDescriptorName=127.0.0.1-10025\n" \
           "Service=postern-smtpd.service\nAccept=no\n" in reinject
    assert f"SourcePath={postern.etc_dir}/master.cf\n" in reinject
    # inet_interfaces narrows the entries without a host, shipped ones by a drop-in
    assert "ListenStream=127.0.0.1:10465\nFileDescriptorName=10465\n" in \
        (out / "postern-smtpd-10465.socket").read_text()
    assert (out / "postern-smtpd.socket.d/10-master-cf.conf").read_text().endswith(
        "[Socket]\nListenStream=\nListenStream=127.0.0.1:25\n")
    assert (out / "postern-submissions.socket.d/10-master-cf.conf").read_text().endswith(
        "[Socket]\nListenStream=\nListenStream=127.0.0.1:465\n")
    service = (out / "postern-smtpd.service.d/10-master-cf.conf").read_text()
    assert "Sockets=postern-smtpd-10465.socket postern-smtpd-127.0.0.1-10025.socket\n" in service
    assert "Wants=postern-smtpd-10465.socket postern-smtpd-127.0.0.1-10025.socket\n" in service
    # what it cannot express, said (the kernel log / journal at boot)
    assert f"{postern.etc_dir}/master.cf:6: 10025: skipped: postscreen is not part of Postern" in r.stderr
    assert f"{postern.etc_dir}/master.cf:1: smtp: postscreen is not part of Postern: postern-smtpd answers " \
           "on this port itself, with the -o options of the smtpd pass entry at line 2" in r.stderr

    units = tmp_path / "units"
    units.mkdir()
    for p in out.iterdir():
        if p.is_dir():
            shutil.copytree(p, units / p.name, symlinks=True)
        else:
            shutil.copy(p, units / p.name)
    names = [p for p in tree(out) if p.endswith(".socket") and "/" not in p]
    names += ["postern-smtpd.service", "postern-smtpd.socket", "postern-submission.socket",
              "postern-submissions.socket", "postern.target"]
    rc, text = verify(units, names)
    assert rc == 0 and text == "", text


def test_posternctl_check_names_what_the_generator_skips(postern):
    """The same classification as the generator's (common/conf/master-inet.c), with reasons."""
    (postern.etc_dir / "master.cf").write_text(MASTER_CF + "mail.example.com:2525 inet n - n - - smtpd\n"
                                               "local-smtpd unix n - n - - smtpd\n")
    r = postern.posternctl("check")
    path = postern.etc_dir / "master.cf"
    wants = [
            f"posternctl: {path}:1: smtp: not supported: postscreen is not part of Postern: postern-smtpd answers on this port "
            "itself, with the -o options of the smtpd pass entry at line 2",
            f"posternctl: {path}:6: 10025: not supported: postscreen is not part of Postern; only a postscreen on "
            "port 25 is replaced, by postern-smtpd.socket",
            f"posternctl: {path}:8: submission: not supported: -o cleanup_service_name on submission (Postern "
            "has no parameter of this name)",
            f"posternctl: {path}:32: mail.example.com:2525: not supported: host \"mail.example.com\": the generator "
            "does not resolve host names (no network at boot); use the address",
            f"posternctl: {path}:33: local-smtpd: not supported: unix listeners (smtpd) are not supported; only "
            "inet entries become socket units",
            f"posternctl: {path}:27: 127.0.0.1:10027: not supported: command \"spawn\" (inet) is not part of "
            "Postern; run it as a service of its own"]
    # nothing else: the known -o options (smtpd_tls_security_level, smtpd_tls_wrappermode, ...)
    # and the built-in entries are not reported
    assert sorted(r.stderr.splitlines()) == sorted(wants), r.stderr
    assert r.returncode == 0


def test_generator_writes_units_for_instances(postern, tmp_path):
    """A directory beside the default configuration directory named <it>-NAME with a main.cf is
    instance NAME (/etc/postern-NAME, README "Multiple instances"): its master.cf's listeners
    become postern-smtpd-<fd name>@NAME.socket (port 25's too: an instance has no shipped port
    sockets), wanted by postern@NAME.target and added to postern-smtpd@NAME.service; a directory
    without main.cf or with a name that is no instance name is not one; the units verify."""
    inst = pathlib.Path(str(postern.etc_dir) + "-second")
    inst.mkdir()
    (inst / "main.cf").write_text("inet_interfaces = 127.0.0.1\n")
    (inst / "master.cf").write_text("smtp inet n - n - - smtpd\n"
                                    "127.0.0.1:2526 inet n - n - - smtpd\n  -o content_filter=\n")
    pathlib.Path(str(postern.etc_dir) + "-nomain").mkdir()
    bad = pathlib.Path(str(postern.etc_dir) + "--dash")
    bad.mkdir()
    (bad / "main.cf").write_text("")
    (bad / "master.cf").write_text("2527 inet n - n - - smtpd\n")
    out = tmp_path / "generator"
    r = run_generator(postern, out)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert tree(out) == [
        "postern-smtpd-127.0.0.1-2526@second.socket",
        "postern-smtpd-smtp@second.socket",
        "postern-smtpd@second.service.d/10-master-cf.conf",
        "postern@second.target.wants/postern-smtpd-127.0.0.1-2526@second.socket",
        "postern@second.target.wants/postern-smtpd-smtp@second.socket",
    ]
    smtp = (out / "postern-smtpd-smtp@second.socket").read_text()
    assert "\nListenStream=127.0.0.1:25\nFileDescriptorName=smtp\nService=postern-smtpd@second.service\n" in smtp
    assert "\nPartOf=postern@second.target\n" in smtp
    assert os.readlink(out / "postern@second.target.wants/postern-smtpd-smtp@second.socket") == \
        "../postern-smtpd-smtp@second.socket"
    assert "Sockets=postern-smtpd-smtp@second.socket postern-smtpd-127.0.0.1-2526@second.socket\n" in \
        (out / "postern-smtpd@second.service.d/10-master-cf.conf").read_text()
    code, text = verify(out, ["postern-smtpd-smtp@second.socket", "postern-smtpd-127.0.0.1-2526@second.socket"])
    assert code == 0 and text == "", text


def test_generator_without_master_cf_writes_nothing(postern, tmp_path):
    out = tmp_path / "generator"
    postern.configure(queue_directory="/var/spool/postern", mail_spool_directory="/var/mail")  # the units' own
    r = run_generator(postern, out)
    assert r.returncode == 0 and r.stderr == ""
    assert tree(out, access=True) == []


def test_generator_access_dropins_credentials_and_paths(postern, tmp_path, request):
    """Without any master.cf: a TLS key the postern user cannot read (root-only, as Debian's
    snakeoil key) gets LoadCredential= on postern-smtpd.service, a readable certificate does not;
    a queue_directory other than the units' own gets ReadWritePaths= on every role writing the
    queue, virtual_mailbox_base outside postern-local's writable directories on postern-local.
    systemd-analyze verify accepts the drop-ins."""
    base = pathlib.Path(tempfile.mkdtemp(dir="/var/tmp", prefix="postern-genaccess-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    base.chmod(0o755)                    # traversable by anyone, as /etc/ssl is
    keys = base / "private"
    keys.mkdir(mode=0o700)
    (keys / "root-only.key").write_text("not a key\n")
    (keys / "root-only.key").chmod(0o600)
    public = base / "public"
    public.mkdir()
    public.chmod(0o755)
    (public / "cert.pem").write_text("not a cert\n")
    (public / "cert.pem").chmod(0o644)
    postern.configure(mail_owner="nobody",      # the daemons' user; "postern" may not exist here
                      smtpd_tls_cert_file=str(public / "cert.pem"),
                      smtpd_tls_key_file=str(keys / "root-only.key"),
                      virtual_mailbox_base=str(tmp_path / "vmail"),
                      # missing: no credential (systemd would refuse to start smtpd over it)
                      **{"submission/smtpd_tls_key_file": "/nonexistent/postern-test.key"})
    out = tmp_path / "generator"
    r = run_generator(postern, out)
    assert r.returncode == 0 and r.stderr == ""
    assert tree(out, access=True) == [f"postern-{u}.service.d/20-access.conf" for u in ("local", "qmgr", "smtp", "smtpd")]
    smtpd = (out / "postern-smtpd.service.d/20-access.conf").read_text()
    cred = "".join("-" if ch == "/" else ch if (ch.isascii() and ch.isalnum()) or ch == "." else f"_{ord(ch):02x}"
                   for ch in str(keys / "root-only.key").lstrip("/"))
    assert f"LoadCredential={cred}:{keys / 'root-only.key'}\n" in smtpd
    assert "cert.pem" not in smtpd and "nonexistent" not in smtpd
    for u in ("local", "qmgr", "smtp", "smtpd"):
        assert f"ReadWritePaths=-{postern.queue_dir}\n" in (out / f"postern-{u}.service.d/20-access.conf").read_text()
    assert f"ReadWritePaths=-{tmp_path / 'vmail'}\n" in (out / "postern-local.service.d/20-access.conf").read_text()
    rc, output = verify(out, ["postern-smtpd.service", "postern-local.service"])
    assert rc == 0 and output == "", output


def test_generator_never_fails_boot(postern, tmp_path):
    (postern.etc_dir / "master.cf").write_text("smtp inet n - n - lots smtpd\n")
    r = run_generator(postern, tmp_path / "generator")
    assert r.returncode == 0
    assert "maxproc field \"lots\"" in r.stderr and "the shipped units apply" in r.stderr
    assert tree(tmp_path / "generator") == []


def test_smtpd_serves_master_cf_listeners_with_their_overrides(postern):
    sub, reinject = tcp_listener(), tcp_listener()
    sub_port, reinject_port = sub.getsockname()[1], reinject.getsockname()[1]
    (postern.etc_dir / "master.cf").write_text(
        f"smtp      inet n - n - - smtpd\n"
        f"127.0.0.1:{sub_port} inet n - n - - smtpd\n"
        f"  -o syslog_name=postfix/submission-alt\n"
        f"  -o smtpd_tls_security_level=encrypt\n"
        f"  -o smtpd_helo_required=yes\n"
        f"127.0.0.1:{reinject_port} inet n - n - - smtpd\n"
        f"  -o content_filter=\n"
        f"  -o mynetworks=127.0.0.0/8\n"
        f"  -o smtpd_recipient_restrictions=$reinject_restrictions\n"
        f"  -o smtpd_helo_required=yes\n")
    postern.configure(mynetworks="127.0.0.9/32", reinject_restrictions="permit_mynetworks, reject",
                      **{f"127.0.0.1-{reinject_port}/smtpd_helo_required": "no"})
    postern.listeners["smtpd"] += [(f"127.0.0.1-{sub_port}", sub), (f"127.0.0.1-{reinject_port}", reinject)]
    postern.start("smtpd")

    # port 25's listener: no overrides, relaying from 127.0.0.2 is refused
    with smtplib.SMTP("127.0.0.1", postern.smtp_port, source_address=("127.0.0.2", 0), timeout=10) as s:
        s.ehlo("client.test")
        assert s.mail("alice@example.org")[0] == 250
        code, msg = s.rcpt("bob@remote.example")
        assert code in (454, 554) and b"Relay access denied" in msg, msg

    # the submission-like listener: -o smtpd_tls_security_level=encrypt and smtpd_helo_required
    with smtplib.SMTP("127.0.0.1", sub_port, source_address=("127.0.0.2", 0), timeout=10) as s:
        code, msg = s.docmd("MAIL FROM:<alice@example.org>")
        assert code == 503 and b"helo" in msg.lower(), msg
        s.ehlo("client.test")
        code, msg = s.mail("alice@example.org")
        assert code == 530 and b"STARTTLS" in msg, msg

    # the reinjection listener: its mynetworks and ($name-expanded) recipient restrictions;
    # main.cf's own 127.0.0.1-PORT/smtpd_helo_required = no wins over the -o
    with smtplib.SMTP("127.0.0.1", reinject_port, source_address=("127.0.0.2", 0), timeout=10) as s:
        assert s.docmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert s.rcpt("bob@remote.example")[0] == 250

    log = postern.log("smtpd")
    assert "Ignoring passed socket" not in log
    assert "3 settings snapshot(s) for 6 listener(s)" in log, log
    # content_filter is a listener setting like the others (test_content_filter.py)
    assert "content_filter" not in log, log
    r = postern.posternctl("check")
    assert "content_filter" not in r.stderr, r.stderr


def test_smtpd_ignores_sockets_master_cf_does_not_name(postern):
    stray = tcp_listener()
    postern.listeners["smtpd"] += [("127.0.0.1-2", stray)]
    postern.start("smtpd")
    postern.wait_log("smtpd", r'Ignoring passed socket "127.0.0.1-2" that smtpd does not serve')


def test_smtpd_wrappermode_listener_is_implicit_tls(postern, certs):
    """mailcow's "10465 inet ... smtpd -o smtpd_tls_wrappermode=yes": TLS from the first byte."""
    l = tcp_listener()
    port = l.getsockname()[1]
    (postern.etc_dir / "master.cf").write_text(f"{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n")
    postern.configure(**tls_params(certs))
    postern.listeners["smtpd"] += [(str(port), l)]
    postern.start("smtpd")
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    ctx.check_hostname = False
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250 and not s.has_extn("starttls")
    # the plain port 25 listener still greets in the clear
    with smtplib.SMTP("127.0.0.1", postern.smtp_port, timeout=10) as s:
        assert s.ehlo("client.test")[0] == 250
