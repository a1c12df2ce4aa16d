"""postern-smtpd TLS: STARTTLS (RFC 3207) on 25/587, implicit TLS on submissions (465), security
levels, protocol limits, SNI, RSA+ECDSA chain files, resumption, the plaintext-injection case,
logging and the Received: clause. Real clients: gnutls-cli, swaks, Python's ssl (OpenSSL) and
testssl.sh. Keys and certificates are made with certtool at test time."""

import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from test_smtpd_helpers import Raw, raw, start_smtpd, queue_ids, content_of

CERTTOOL = shutil.which("certtool")
pytestmark = pytest.mark.skipif(not CERTTOOL or not shutil.which("gnutls-cli"),
                                reason="needs gnutls-bin (certtool, gnutls-cli)")


def _certtool(*args, cwd):
    subprocess.run([CERTTOOL, *args], cwd=cwd, check=True, capture_output=True)


def _ca(prefix, cn):
    """A new directory under /var/tmp (named prefix...) holding a CA: ca.key and ca.crt."""
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    _certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", "ca.key", cwd=d)
    (d / "ca.tmpl").write_text(f"cn = {cn}\nca\ncert_signing_key\nexpiration_days = 365\n")
    _certtool("--generate-self-signed", "--load-privkey", "ca.key", "--template", "ca.tmpl",
              "--outfile", "ca.crt", cwd=d)
    return d


def _leaf(d, name, keyargs, dns):
    _certtool("--generate-privkey", *keyargs, "--outfile", f"{name}.key", cwd=d)
    (d / f"{name}.tmpl").write_text(f"cn = {dns[0]}\n" + "".join(f"dns_name = {n}\n" for n in dns)
                                    + "ip_address = 127.0.0.1\n"
                                    + "crl_dist_points = http://127.0.0.1/ca.crl\n"
                                    + "expiration_days = 365\ntls_www_server\nsigning_key\nencryption_key\n")
    _certtool("--generate-certificate", "--load-privkey", f"{name}.key", "--load-ca-certificate", "ca.crt",
              "--load-ca-privkey", "ca.key", "--template", f"{name}.tmpl", "--outfile", f"{name}.crt", cwd=d)
    # A chain file: the private key, then the certificate chain (leaf first).
    (d / f"{name}.pem").write_text((d / f"{name}.key").read_text() + (d / f"{name}.crt").read_text()
                                   + (d / "ca.crt").read_text())
    os.chmod(d / f"{name}.pem", 0o600)
    return d / f"{name}.pem"


@pytest.fixture(scope="module")
def certs():
    d = _ca("postern-tls-", "Postern Test CA")
    c = {
        "dir": d,
        "ca": d / "ca.crt",
        "rsa": _leaf(d, "rsa", ["--key-type=rsa", "--bits=2048"], ["postern.test"]),
        "ecdsa": _leaf(d, "ecdsa", ["--key-type=ecdsa", "--curve=secp256r1"], ["postern.test"]),
        "other": _leaf(d, "other", ["--key-type=ecdsa", "--curve=secp256r1"], ["mail.other.test"]),
    }
    (d / "sni").write_text(f"mail.other.test {c['other']}\n")
    c["sni_map"] = f"texthash:{d / 'sni'}"
    yield c
    shutil.rmtree(d, ignore_errors=True)


def tls_params(certs, **extra):
    p = {"smtpd_tls_chain_files": f"{certs['rsa']}, {certs['ecdsa']}",
         "smtpd_tls_security_level": "may", "smtpd_tls_loglevel": "1",
         # gnutls-cli and swaks pipeline EHLO with what follows; pipelining rules have their
         # own tests (test_smtpd_restrictions.py)
         "smtpd_forbid_unauth_pipelining": "no"}
    p.update(extra)
    return p


def gnutls_cli(port, certs, *args, starttls=True, input=b"", timeout=30):
    cmd = ["gnutls-cli", "--port", str(port), "--x509cafile", str(certs["ca"]), "--verify-hostname",
           "postern.test"]
    if starttls:
        cmd.append("--starttls-proto=smtp")
    cmd += list(args) + ["127.0.0.1"]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


def tls_wrap(sock, certs, hostname="postern.test", **kw):
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx.wrap_socket(sock, server_hostname=hostname)


def raw_on(sock):
    """A Raw client on an already connected (TLS) socket, without reading a greeting."""
    r = Raw.__new__(Raw)
    r.s, r.buf = sock, b""
    r.s.settimeout(10)
    return r


def ehlo_keywords(c):
    c.send("EHLO client.test\r\n")
    code, lines = c.reply()
    assert code == 250
    return [l.split()[0] for l in lines[1:]]


def test_starttls_advertised_and_state_reset(postern, certs):
    start_smtpd(postern, **tls_params(certs, smtpd_helo_required="yes"))
    with raw(postern) as c:
        assert "STARTTLS" in ehlo_keywords(c)
        assert c.cmd("MAIL FROM:<a@postern.test>") == "250 2.1.0 Ok"
        assert c.cmd("STARTTLS") == "503 5.5.1 Error: MAIL transaction in progress"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("STARTTLS now") == "501 5.5.4 Syntax: STARTTLS"
        assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        t = raw_on(tls_wrap(c.s, certs))
        # RFC 3207: the EHLO from before TLS is forgotten.
        assert t.cmd("MAIL FROM:<a@postern.test>") == "503 5.5.1 Error: send HELO/EHLO first"
        kws = ehlo_keywords(t)
        assert "STARTTLS" not in kws and "PIPELINING" in kws
        assert t.cmd("STARTTLS") == "554 5.5.1 Error: TLS already active"
        assert t.cmd("QUIT") == "221 2.0.0 Bye"
    m = postern.wait_log("smtpd", r"Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: "
                                  r"(TLSv1\.[23]) with cipher (\S+) \((\d+)/(\d+) bits\)")
    assert m.group(1) == "TLSv1.3" and m.group(2).startswith("TLS_") and m.group(3) == m.group(4)
    postern.wait_log("smtpd", r"disconnect from .* starttls=1/4 ")


def test_plaintext_after_starttls_is_discarded(postern, certs):
    """CVE-2011-0411: commands pipelined behind STARTTLS in plaintext must never be answered
    inside TLS."""
    start_smtpd(postern, **tls_params(certs))
    with raw(postern) as c:
        ehlo_keywords(c)
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert c.text() == "220 2.0.0 Ready to start TLS"
        assert c.buf == b""
        t = raw_on(tls_wrap(c.s, certs))
        t.s.settimeout(1.0)
        with pytest.raises((socket.timeout, TimeoutError)):
            t._line()          # nothing arrives inside TLS: the RSET was dropped
        t.s.settimeout(10)
        assert t.cmd("HELP").startswith("214 ")   # the first reply inside TLS is to HELP
        assert t.cmd("QUIT") == "221 2.0.0 Bye"
    postern.wait_log("smtpd", r"improper command pipelining after STARTTLS from localhost\[127\.0\.0\.1\]")
    log = postern.wait_log("smtpd", r"disconnect from localhost.*").group(0)
    assert "rset" not in log and "starttls=1" in log


def test_encrypt_level_refuses_mail_without_tls(postern, certs):
    postern.configure(**tls_params(certs))
    postern.configure(**{"submission/smtpd_tls_security_level": "encrypt"})
    postern.start("smtpd")
    # Port 25 (may): plaintext mail is fine.
    with raw(postern) as c:
        ehlo_keywords(c)
        assert c.cmd("MAIL FROM:<a@postern.test>") == "250 2.1.0 Ok"
    # Port 587 (encrypt, as in Postfix's master.cf example): STARTTLS first.
    with Raw(port=postern.submission_port) as c:
        assert "STARTTLS" in ehlo_keywords(c)
        assert c.cmd("MAIL FROM:<a@postern.test>") == "530 5.7.0 Must issue a STARTTLS command first"
        assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        t = raw_on(tls_wrap(c.s, certs))
        ehlo_keywords(t)
        assert t.cmd("MAIL FROM:<a@postern.test>") == "250 2.1.0 Ok"
        assert t.cmd("RCPT TO:<root@postern.test>") == "250 2.1.5 Ok"
        assert t.cmd("DATA").startswith("354")
        assert t.cmd("Subject: over tls\r\n\r\nhello\r\n.").startswith("250 2.0.0 Ok: queued as ")
        assert t.cmd("QUIT") == "221 2.0.0 Bye"
    qid = queue_ids(postern)[-1]
    text = content_of(postern, qid)
    assert re.search(r"Received: from client\.test \(localhost \[127\.0\.0\.1\]\)\n"
                     r"\t\(using TLSv1\.3 with cipher TLS_\S+ \((\d+)/\1 bits\)\)\n"
                     r"\t\(No client certificate requested\)\n"
                     r"\tby postern\.test \(Postern\) with ESMTPS id " + qid, text), text


def test_no_tls_at_level_none_and_454_when_credentials_fail(postern, certs):
    postern.configure(smtpd_tls_security_level="may",
                      smtpd_tls_chain_files=str(certs["dir"] / "missing.pem"),
                      **{"submission/smtpd_tls_security_level": "none"})
    postern.start("smtpd")
    with raw(postern) as c:
        assert "STARTTLS" not in ehlo_keywords(c)
        assert c.cmd("STARTTLS") == "454 4.7.0 TLS not available due to local problem"
    with Raw(port=postern.submission_port) as c:
        assert "STARTTLS" not in ehlo_keywords(c)
        assert c.cmd("STARTTLS") == "502 5.5.1 Error: command not implemented"
    assert "cannot load TLS credentials" in postern.log("smtpd")
    assert "missing.pem" in postern.log("smtpd")


def test_key_file_from_systemd_credential(postern, certs, monkeypatch, tmp_path):
    """A key file the postern user cannot open (Debian's /etc/ssl/private/ssl-cert-snakeoil.key is
    root:ssl-cert 0640) reaches smtpd as a systemd credential: postern-generator writes
    LoadCredential=<name from the path>:<path>, and smtpd loads $CREDENTIALS_DIRECTORY/<name> in
    place of the path main.cf names (common/daemon/credential.c). Without the credential the
    same configuration has no TLS."""
    key = "/etc/ssl/private/postern-test-root-only.key"     # does not exist here: only the credential
    params = tls_params(certs, smtpd_tls_chain_files="", smtpd_tls_cert_file=str(certs["rsa"]),
                        smtpd_tls_key_file=key)
    start_smtpd(postern, **params)
    with raw(postern) as c:
        assert c.cmd("STARTTLS") == "454 4.7.0 TLS not available due to local problem"
    creds = tmp_path / "credentials"
    creds.mkdir()
    shutil.copy(certs["rsa"], creds / "etc-ssl-private-postern_2dtest_2droot_2donly.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    postern.restart("smtpd")
    with raw(postern) as c:
        ehlo_keywords(c)
        assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        t = raw_on(tls_wrap(c.s, certs))
        assert "STARTTLS" not in ehlo_keywords(t)
        assert t.cmd("QUIT") == "221 2.0.0 Bye"


def test_tls_preempt_cipherlist_and_ssl_options(postern, certs):
    """tls_preempt_cipherlist: with "yes" (Postern's default; Postfix's is no) postern-smtpd's own
    order picks the cipher (GnuTLS NORMAL puts AES-256-GCM first), with "no" the client's. tls_ssl_options =
    NO_TICKET: no session ticket, so gnutls-cli --resume cannot resume; a name GnuTLS has no
    equivalent for is logged as not supported."""
    client_prio = "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:-VERS-ALL:+VERS-TLS1.3"

    def cipher():
        r = gnutls_cli(postern.smtp_port, certs, "--priority", client_prio, input=b"QUIT\r\n")
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        m = re.search(r"- Description: \(TLS1\.3[^)]*\)(?:-\([^)]*\))*-\(([A-Z0-9-]+)\)\s*$", out, re.M)
        assert m, out
        return m.group(1)        # the last group: the cipher

    start_smtpd(postern, **tls_params(certs))
    assert cipher() == "AES-256-GCM"
    postern.configure(tls_preempt_cipherlist="no", tls_ssl_options="NO_COMPRESSION, NO_TICKET, PRIORITIZE_CHACHA")
    postern.restart("smtpd")
    assert cipher() == "AES-128-GCM"
    postern.wait_log("smtpd", r"tls_ssl_options: not supported: PRIORITIZE_CHACHA \(")
    assert "not supported: NO_COMPRESSION" not in postern.log("smtpd")
    r = gnutls_cli(postern.smtp_port, certs, "--resume", input=b"QUIT\r\n")
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert "Handshake was completed" in out and "This is a resumed session" not in out, out


def test_submissions_implicit_tls(postern, certs):
    start_smtpd(postern, **tls_params(certs))
    s = socket.create_connection(("127.0.0.1", postern.submissions_port))
    t = raw_on(tls_wrap(s, certs))
    assert t.text() == "220 postern.test ESMTP Postern"
    kws = ehlo_keywords(t)
    assert "STARTTLS" not in kws
    assert t.cmd("QUIT") == "221 2.0.0 Bye"
    t.close()
    # Plaintext on 465 gets no SMTP at all.
    with socket.create_connection(("127.0.0.1", postern.submissions_port)) as p:
        p.settimeout(10)
        p.sendall(b"EHLO client.test\r\n")
        data = b""
        try:
            while True:
                d = p.recv(4096)
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
        assert b"220" not in data and b"250" not in data
    postern.wait_log("smtpd", r"SSL_accept error from localhost\[127\.0\.0\.1\]")


def test_gnutls_cli_starttls_rsa_ecdsa_and_resumption(postern, certs):
    start_smtpd(postern, **tls_params(certs))
    for prio, subject_key in (("NORMAL:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256", "EC/ECDSA"),
                              ("NORMAL:-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-SHA256", "RSA")):
        r = gnutls_cli(postern.smtp_port, certs, "--priority", prio, "--print-cert",
                       input=b"EHLO client.test\r\nQUIT\r\n")
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        # (gnutls-cli may report the server's close after 221 as an error; the exit code is moot)
        assert "Handshake was completed" in out, out
        leaf = re.search(r"Certificate\[0\] info:\n - subject `CN=postern\.test'.*", out)
        assert leaf and f", {subject_key} key " in leaf.group(0), out
        assert "221 2.0.0 Bye" in out
    # --resume: the second connection resumes from the ticket of the first.
    r = gnutls_cli(postern.smtp_port, certs, "--resume", input=b"QUIT\r\n")
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert "This is a resumed session" in out, out
    # gnutls-cli on the implicit-TLS port.
    r = gnutls_cli(postern.submissions_port, certs, starttls=False, input=b"EHLO client.test\r\nQUIT\r\n")
    assert b"221 2.0.0 Bye" in r.stdout, r.stdout + r.stderr


def test_sni_picks_the_certificate(postern, certs):
    start_smtpd(postern, **tls_params(certs, tls_server_sni_maps=certs["sni_map"]))
    for name, want in (("mail.other.test", "CN=mail.other.test"), ("unknown.test", "CN=postern.test")):
        s = socket.create_connection(("127.0.0.1", postern.submissions_port))
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
        ctx.check_hostname = False
        t = ctx.wrap_socket(s, server_hostname=name)
        der = t.getpeercert(binary_form=True)
        pem = ssl.DER_cert_to_PEM_cert(der)
        info = subprocess.run([CERTTOOL, "-i"], input=pem.encode(), capture_output=True).stdout.decode()
        assert f"Subject: {want}" in info, info
        t.close()


def test_old_protocols_refused(postern, certs):
    start_smtpd(postern, **tls_params(certs))
    r = gnutls_cli(postern.submissions_port, certs, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0",
                   starttls=False, input=b"QUIT\r\n")
    assert r.returncode != 0
    assert b"221 2.0.0" not in r.stdout   # (not just "221": the port number may contain it)
    r = gnutls_cli(postern.smtp_port, certs, "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                   input=b"QUIT\r\n")
    assert b"Handshake was completed" in r.stdout + r.stderr and b"221 2.0.0 Bye" in r.stdout
    postern.wait_log("smtpd", r"TLSv1\.2 with cipher TLS_ECDHE_")


def test_mandatory_protocols_and_ciphers_apply_at_encrypt(postern, certs):
    """smtpd_tls_mandatory_* apply where TLS is required (587 at encrypt), smtpd_tls_* elsewhere."""
    postern.configure(**tls_params(certs, smtpd_tls_mandatory_protocols="TLSv1.3",
                                   smtpd_tls_mandatory_ciphers="high"))
    postern.configure(**{"submission/smtpd_tls_security_level": "encrypt"})
    postern.start("smtpd")
    tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2"
    aes128 = "NORMAL:-CIPHER-ALL:+AES-128-GCM"
    r = gnutls_cli(postern.smtp_port, certs, "--priority", tls12, input=b"QUIT\r\n")
    assert b"221 2.0.0 Bye" in r.stdout
    r = gnutls_cli(postern.submission_port, certs, "--priority", tls12, input=b"QUIT\r\n")
    assert b"221 2.0.0" not in r.stdout   # (not just "221": the port number may contain it)
    r = gnutls_cli(postern.submission_port, certs, "--priority", aes128, input=b"QUIT\r\n")
    assert b"221 2.0.0" not in r.stdout   # (not just "221": the port number may contain it)
    r = gnutls_cli(postern.submission_port, certs, input=b"QUIT\r\n")
    assert b"221 2.0.0 Bye" in r.stdout
    postern.wait_log("smtpd", r"TLSv1\.3 with cipher TLS_(AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256) \(256/256 bits\)")
    # A protocol list that leaves nothing enabled is a configuration error: the reload keeps
    # the old settings.
    postern.configure(smtpd_tls_protocols="!TLSv1.2, !TLSv1.3, !TLSv1, !TLSv1.1")
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"smtpd_tls_protocols = .*leaves no protocol enabled")
    r = gnutls_cli(postern.smtp_port, certs, input=b"QUIT\r\n")
    assert b"221 2.0.0 Bye" in r.stdout

def test_swaks_tls_and_tlsc(postern, certs):
    start_smtpd(postern, **tls_params(certs))
    for args, port in ((["--tls"], postern.smtp_port), (["--tlsc"], postern.submissions_port)):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--from", "a@postern.test",
                            "--to", "root@postern.test", "--helo", "client.test", *args],
                           capture_output=True, timeout=60)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, out + r.stderr.decode(errors="replace")
        assert "TLS started" in out
        assert re.search(r"<~\s+250 2\.0\.0 Ok: queued as", out), out
    assert len(queue_ids(postern)) == 2


def test_handshake_does_not_block_and_times_out(postern, certs):
    start_smtpd(postern, **tls_params(certs, smtpd_starttls_timeout="2s"))
    # A client that connects to 465 and says nothing holds a handshake open ...
    idle = socket.create_connection(("127.0.0.1", postern.submissions_port))
    half = raw(postern)
    ehlo_keywords(half)
    assert half.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    # ... while other sessions are served at once.
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", postern.submissions_port))
    t = raw_on(tls_wrap(s, certs))
    assert t.text().startswith("220 ")
    assert t.cmd("NOOP") == "250 2.0.0 Ok"
    assert time.monotonic() - t0 < 1.5
    t.close()
    # The stalled handshakes end after smtpd_starttls_timeout.
    postern.wait_log("smtpd", r"SSL_accept error from .*: handshake timeout", count=2, timeout=10)
    idle.settimeout(5)
    assert idle.recv(100) == b""
    assert half.is_closed()
    idle.close()
    half.close()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("testssl"), reason="needs testssl.sh (Debian's testssl)")
def test_testssl_finds_nothing_high_or_critical(postern, certs):
    """testssl.sh against implicit TLS (465) and STARTTLS on the smtp port: no finding of
    severity HIGH or CRITICAL. Slow (minutes); offline and local: no DNS, only 127.0.0.1."""
    start_smtpd(postern, **tls_params(certs, smtpd_tls_loglevel="0"))
    findings = []
    outdir = pathlib.Path(tempfile.mkdtemp(prefix="postern-testssl-"))
    for label, port, extra in (("submissions", postern.submissions_port, []),
                               ("smtp+STARTTLS", postern.smtp_port, ["-t", "smtp"])):
        out = outdir / f"testssl-{label}.json"
        r = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
                            "--ip", "127.0.0.1", "--add-ca", str(certs["ca"]), "--connect-timeout", "10",
                            "--openssl-timeout", "10", "--jsonfile", str(out), *extra, f"127.0.0.1:{port}"],
                           capture_output=True, timeout=900)
        assert out.exists(), r.stdout.decode(errors="replace")[-3000:] + r.stderr.decode(errors="replace")
        entries = json.loads(out.read_text())
        assert len(entries) > 20, entries       # it really ran its checks
        assert not [e for e in entries if e.get("severity") == "FATAL"], entries
        findings += [(label, e["id"], e["severity"], e.get("finding")) for e in entries
                     if e.get("severity") in ("HIGH", "CRITICAL")]
    shutil.rmtree(outdir, ignore_errors=True)
    assert not findings, "\n".join(map(str, findings))


def test_ticket_resumption_and_key_rotation_on_reload(postern, certs):
    """Session tickets resume (logged at loglevel 2, tls_new_session false); SIGHUP builds new
    settings with a new ticket key, so older tickets give a full handshake."""
    start_smtpd(postern, **tls_params(certs, smtpd_tls_loglevel="2"))
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))

    def connect(session=None):
        s = socket.create_connection(("127.0.0.1", postern.submissions_port))
        t = ctx.wrap_socket(s, server_hostname="postern.test", session=session)
        c = raw_on(t)
        assert c.text().startswith("220 ")          # the tickets arrive with the first read
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
        reused, sess = t.session_reused, t.session
        t.close()
        return reused, sess

    reused, first = connect()
    assert not reused
    reused, _ = connect(first)
    assert reused
    reused, _ = connect(first)                       # the same ticket again: still resumes
    assert reused
    postern.wait_log("smtpd", r"reusing TLS session \(resumed from a ticket\)")
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"reload -- configuration")
    reused, _ = connect(first)
    assert not reused
