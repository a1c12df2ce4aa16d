"""Client certificates, both directions. postern-smtpd: smtpd_tls_ask_ccert / _req_ccert with
smtpd_tls_CAfile, the Trusted/Untrusted/Anonymous log line, the Received: clause,
permit_tls_clientcerts (relay_clientcerts by certificate or public key fingerprint),
permit_tls_all_clientcerts, check_ccert_access and the milters' {cert_subject}/{cert_issuer};
the client is Python's ssl (OpenSSL) with certificates certtool makes. postern-smtp:
smtp_tls_cert_file / smtp_tls_chain_files presented to a server that asks (Python's ssl)."""

import base64
import hashlib
import shutil
import socket
import ssl
import subprocess

import pytest

import mailtest
import postern_harness
from milter_peer import ScriptedMilter, wait_for
from smtp_peers import peer_factory
from test_smtpd_helpers import Raw, content_of, queue_ids
from test_smtpd_tls import CERTTOOL, _ca, _certtool, _leaf, tls_params
from tls_smtp_peer import TlsSmtpServer

pytestmark = pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool)")


def _client_leaf(d, name, cn):
    _certtool("--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--outfile", f"{name}.key", cwd=d)
    (d / f"{name}.tmpl").write_text(f"cn = {cn}\nexpiration_days = 365\ntls_www_client\nsigning_key\n")
    _certtool("--generate-certificate", "--load-privkey", f"{name}.key", "--load-ca-certificate", "ca.crt",
              "--load-ca-privkey", "ca.key", "--template", f"{name}.tmpl", "--outfile", f"{name}.crt", cwd=d)
    crt = (d / f"{name}.crt").read_text()
    der = ssl.PEM_cert_to_DER_cert(crt)
    info = subprocess.run([CERTTOOL, "-i", "--infile", f"{name}.crt"], cwd=d, capture_output=True, text=True,
                          check=True).stdout
    pin = info.split("pin-sha256:", 1)[1].split()[0]      # SHA-256 of the SubjectPublicKeyInfo
    return {"crt": d / f"{name}.crt", "key": d / f"{name}.key",
            "fp": ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()),
            "pkey_fp": ":".join(f"{b:02X}" for b in base64.b64decode(pin))}


@pytest.fixture(scope="module")
def pki():
    server = _ca("postern-ccert-server-", "Postern Server CA")
    _leaf(server, "rsa", ["--key-type=rsa", "--bits=2048"], ["postern.test"])
    good = _ca("postern-ccert-good-", "Postern Client CA")
    bad = _ca("postern-ccert-bad-", "Stranger CA")
    yield {"server": server, "server_ca": server / "ca.crt", "chain": server / "rsa.pem",
           "client_ca": good / "ca.crt",
           "trusted": _client_leaf(good, "alice", "alice.client.test"),
           "untrusted": _client_leaf(bad, "mallory", "mallory.client.test")}
    for d in (server, good, bad):
        shutil.rmtree(d, ignore_errors=True)


def start(postern, pki, **extra):
    p = tls_params({"rsa": pki["chain"], "ecdsa": pki["chain"]}, smtpd_tls_chain_files=str(pki["chain"]),
                   smtpd_tls_ask_ccert="yes", smtpd_tls_CAfile=str(pki["client_ca"]),
                   mynetworks="127.0.0.1/32", mydestination="localhost, postern.test")
    p.update(extra)
    postern.configure(**p)
    postern.start("smtpd")


def client(postern, pki, cert=None, source="127.0.0.2"):
    """A Raw client after EHLO, STARTTLS and a handshake with cert (a _client_leaf or None)."""
    s = socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10, source_address=(source, 0))
    c = Raw.__new__(Raw)
    c.s, c.buf = s, b""
    assert c.reply()[0] == 220
    c.send("EHLO client.test\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("STARTTLS").startswith("220 ")
    ctx = ssl.create_default_context(cafile=str(pki["server_ca"]))
    if cert:
        ctx.load_cert_chain(certfile=str(cert["crt"]), keyfile=str(cert["key"]))
    c.s = ctx.wrap_socket(s, server_hostname="postern.test")
    c.s.settimeout(10)
    return c


def ehlo(c):
    c.send("EHLO client.test\r\n")
    return c.reply()[0]


def relay_reply(c):
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    return c.cmd("RCPT TO:<x@remote.example>")


RELAY_ALL = "permit_mynetworks, permit_tls_all_clientcerts, reject_unauth_destination"
RELAY_LISTED = "permit_mynetworks, permit_tls_clientcerts, reject_unauth_destination"


def test_trusted_certificate_is_logged_written_and_may_relay(postern, pki):
    start(postern, pki, smtpd_relay_restrictions=RELAY_ALL, smtpd_tls_loglevel="2")
    c = client(postern, pki, pki["trusted"])
    assert ehlo(c) == 250
    assert relay_reply(c) == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: x\r\n\r\nbody\r\n.").startswith("250 ")
    postern.wait_log("smtpd", r"Trusted TLS connection established from localhost\[127\.0\.0\.2\]: TLSv1\.3")
    postern.wait_log("smtpd", r'client certificate subject CN="alice\.client\.test", issuer CN="Postern Client '
                              r'CA", verified, fingerprint %s, pkey_fingerprint %s'
                     % (pki["trusted"]["fp"], pki["trusted"]["pkey_fp"]))
    [qid] = queue_ids(postern)
    assert '(Client CN "alice.client.test", Issuer "Postern Client CA" (verified OK))' in content_of(postern, qid)


def test_no_certificate_and_an_untrusted_one_may_not_relay_with_all_clientcerts(postern, pki):
    start(postern, pki, smtpd_relay_restrictions=RELAY_ALL)
    c = client(postern, pki)
    assert ehlo(c) == 250
    assert relay_reply(c).startswith("554 5.7.1 <x@remote.example>: Relay access denied")
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: x\r\n\r\nbody\r\n.").startswith("250 ")
    postern.wait_log("smtpd", r"Anonymous TLS connection established from localhost\[127\.0\.0\.2\]")
    [qid] = queue_ids(postern)
    assert "(Client did not present a certificate)" in content_of(postern, qid)
    c = client(postern, pki, pki["untrusted"])
    assert ehlo(c) == 250
    assert relay_reply(c).startswith("554 5.7.1 <x@remote.example>: Relay access denied")
    postern.wait_log("smtpd", r"Untrusted TLS connection established from localhost\[127\.0\.0\.2\]")


@pytest.mark.parametrize("which", ["fp", "pkey_fp"])
def test_relay_clientcerts_fingerprint_permits_even_an_untrusted_certificate(postern, pki, tmp_path, which):
    listed = tmp_path / "relay_clientcerts"
    listed.write_text(f"{pki['untrusted'][which]} mallory\n")
    start(postern, pki, smtpd_relay_restrictions=RELAY_LISTED, relay_clientcerts=f"texthash:{listed}")
    c = client(postern, pki, pki["untrusted"])
    assert ehlo(c) == 250
    assert relay_reply(c) == "250 2.1.5 Ok"
    # a trusted certificate that is not listed does not relay with permit_tls_clientcerts
    c = client(postern, pki, pki["trusted"])
    assert ehlo(c) == 250
    assert relay_reply(c).startswith("554 5.7.1")


def test_check_ccert_access_rejects_by_fingerprint(postern, pki, tmp_path):
    access = tmp_path / "ccert_access"
    access.write_text(f"{pki['trusted']['fp']} REJECT certificate revoked here\n")
    start(postern, pki, smtpd_client_restrictions=f"check_ccert_access texthash:{access}")
    c = client(postern, pki, pki["trusted"])
    assert ehlo(c) == 250
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<ptest1@localhost>") == \
        "554 5.7.1 <localhost[127.0.0.2]>: Client certificate rejected: certificate revoked here"
    c = client(postern, pki, pki["untrusted"])      # not listed: nothing happens
    assert ehlo(c) == 250
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_req_ccert_at_encrypt_ends_sessions_without_a_trusted_certificate(postern, pki):
    start(postern, pki, smtpd_tls_security_level="encrypt", smtpd_tls_req_ccert="yes",
          smtpd_tls_ask_ccert="no")
    for cert, why in ((None, "No client certificate presented"),
                      (pki["untrusted"], "Client certificate not trusted")):
        c = client(postern, pki, cert)
        assert c.text() == f"421 4.7.1 {postern_harness.HOSTNAME} Error: {why}"
        postern.wait_log("smtpd", rf"NOQUEUE: abort: TLS from localhost\[127\.0\.0\.2\]: {why}")
    c = client(postern, pki, pki["trusted"])
    assert ehlo(c) == 250


def test_req_ccert_without_encrypt_is_ignored_with_a_warning(postern, pki):
    start(postern, pki, smtpd_tls_req_ccert="yes", smtpd_tls_ask_ccert="no")
    postern.wait_log("smtpd", r"smtpd_tls_req_ccert = yes needs smtpd_tls_security_level = encrypt; ignored")
    c = client(postern, pki)
    assert ehlo(c) == 250


def test_milters_get_the_certificate_macros(postern, pki):
    m = ScriptedMilter()
    start(postern, pki, smtpd_milters=m.spec, milter_command_timeout="5s")
    c = client(postern, pki, pki["trusted"])
    assert ehlo(c) == 250
    wait_for(lambda: "H" in m.macros)
    assert m.macros["H"]["{cert_subject}"] == "alice.client.test"
    assert m.macros["H"]["{cert_issuer}"] == "Postern Client CA"
    assert m.macros["H"]["{tls_version}"] == "TLSv1.3"


# --- postern-smtp presents its certificate -----------------------------------------------------

@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["server"] / "rsa.crt", pki["server"] / "rsa.key",
                                                       client_ca=pki["client_ca"], **kw))


@pytest.mark.parametrize("how", ["cert_file", "chain_files"])
def test_smtp_client_presents_its_certificate_when_asked(postern, pki, peer, tmp_path, how):
    p = peer()
    t = pki["trusted"]
    if how == "cert_file":
        conf = {"smtp_tls_cert_file": str(t["crt"]), "smtp_tls_key_file": str(t["key"])}
    else:
        chain = tmp_path / "client.pem"
        chain.write_text(t["key"].read_text() + t["crt"].read_text())
        conf = {"smtp_tls_chain_files": str(chain)}
    postern.configure(relayhost=f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt",
                      smtp_tls_CAfile=str(pki["server_ca"]), **conf)
    postern.start()
    qid = mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"],
                        mailtest.msg("ccert", subject="client cert", body="hi\r\n"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*status=sent", timeout=20)
    assert p.client_certs and p.client_certs[-1] == ssl.PEM_cert_to_DER_cert(t["crt"].read_text())
