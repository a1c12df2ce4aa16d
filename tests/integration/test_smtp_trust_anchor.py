"""postern-smtp smtp_tls_trust_anchor_file (Postfix's meaning): at levels verify and secure the
anchors replace smtp_tls_CAfile / smtp_tls_CApath, and an anchor need not be a root: one that is
in the server's chain, or issued its top certificate, is enough. The same per destination with
tafile= in smtp_tls_policy_maps, and bare public keys ("PUBLIC KEY" blocks) as anchors.

The PKI is root -> intermediate -> leaf (mail.ta.test); the anchor is the intermediate. The
server is gnutls-serv (a TLS echo server, so SMTPS: smtp_tls_wrappermode): a verified handshake
is logged "Verified TLS connection established", and the delivery then defers because no SMTP
greeting comes; a refused certificate defers with "Server certificate not verified"."""

import shutil
import subprocess

import pytest

import mailtest
from smtp_peers import free_port, wait_port
from test_smtp_tls import deferred, send
from test_smtpd_tls import CERTTOOL, _ca, _certtool

pytestmark = pytest.mark.skipif(not CERTTOOL or not shutil.which("gnutls-serv"),
                                reason="needs gnutls-bin (certtool, gnutls-serv)")

HOST = "mail.ta.test"


def _signed(d, name, issuer, template):
    _certtool("--generate-privkey", "--key-type=ecdsa", "--curve=secp256r1", "--outfile", f"{name}.key", cwd=d)
    (d / f"{name}.tmpl").write_text(template + "expiration_days = 365\n")
    _certtool("--generate-certificate", "--load-privkey", f"{name}.key", "--load-ca-certificate", f"{issuer}.crt",
              "--load-ca-privkey", f"{issuer}.key", "--template", f"{name}.tmpl", "--outfile", f"{name}.crt", cwd=d)
    return (d / f"{name}.crt").read_text()


@pytest.fixture(scope="module")
def pki():
    d = _ca("postern-smtp-ta-", "Postern TA Test Root")      # ca.crt: the root
    inter = _signed(d, "inter", "ca", "cn = Postern TA Test Intermediate\nca\ncert_signing_key\n")
    leaf = _signed(d, "leaf", "inter", f"cn = {HOST}\ndns_name = {HOST}\ntls_www_server\nsigning_key\n")
    (d / "full.crt").write_text(leaf + inter + (d / "ca.crt").read_text())   # the anchor in the chain
    (d / "leaf-only.crt").write_text(leaf)                                  # the anchor issued it
    _certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", "other.key", cwd=d)
    (d / "other.tmpl").write_text("cn = Unrelated CA\nca\ncert_signing_key\nexpiration_days = 365\n")
    _certtool("--generate-self-signed", "--load-privkey", "other.key", "--template", "other.tmpl",
              "--outfile", "other.crt", cwd=d)
    for name in ("inter", "leaf", "other"):      # bare public keys (certtool adds text before the PEM)
        _certtool("--load-privkey", f"{name}.key", "--pubkey-info", "--outfile", f"{name}.pub", cwd=d)
    (d / "mixed.pem").write_text((d / "other.crt").read_text() + (d / "inter.pub").read_text())
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def gnutls_serv(pki):
    procs = []

    def run(certfile):
        port = free_port("127.0.0.1")
        procs.append(subprocess.Popen(["gnutls-serv", "--echo", "--port", str(port), "--x509certfile",
                                       str(pki / certfile), "--x509keyfile", str(pki / "leaf.key")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port("127.0.0.1", port)
        return port
    yield run
    for p in procs:
        p.terminate()
        p.wait(timeout=5)


def start(postern, port, level, **extra):
    conf = {"relayhost": f"[127.0.0.1]:{port}", "smtp_tls_security_level": level, "smtp_tls_loglevel": "1",
            "smtp_tls_wrappermode": "yes", "smtp_helo_timeout": "1s", "smtp_tls_secure_cert_match": HOST,
            "smtp_tls_verify_cert_match": HOST}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


@pytest.mark.parametrize("chain, level", [("full.crt", "secure"), ("leaf-only.crt", "secure"),
                                          ("leaf-only.crt", "verify")])
def test_intermediate_anchor_verifies(postern, pki, gnutls_serv, chain, level):
    """The anchor in the chain, or the issuer of a chain of the leaf alone; the CA file (an
    unrelated CA, so it alone could not verify) is not used."""
    port = gnutls_serv(chain)
    start(postern, port, level, smtp_tls_trust_anchor_file=str(pki / "inter.crt"),
          smtp_tls_CAfile=str(pki / "other.crt"))
    m = deferred(postern, send(postern, f"ta-{chain}-{level}@test"))
    postern.wait_log("smtp", rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}")
    assert "timed out while receiving the initial server greeting" in m.group(2)


@pytest.mark.parametrize("anchor", ["other.crt", "other.pub"])
def test_anchors_replace_the_ca_file(postern, pki, gnutls_serv, anchor):
    """smtp_tls_CAfile holds the root (it would verify), the anchor file an unrelated CA or an
    unrelated public key: refused."""
    port = gnutls_serv("full.crt")
    start(postern, port, "secure", smtp_tls_trust_anchor_file=str(pki / anchor),
          smtp_tls_CAfile=str(pki / "ca.crt"))
    m = deferred(postern, send(postern, f"ta-replaced-{anchor}@test"))
    assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
    assert "Verified TLS connection" not in postern.log("smtp")


def test_several_anchor_files_and_the_name_still_counts(postern, pki, gnutls_serv):
    """Two files (the unrelated CA, then the intermediate): the second one anchors the chain;
    with a match list naming another host the certificate is refused all the same."""
    port = gnutls_serv("leaf-only.crt")
    start(postern, port, "secure", smtp_tls_secure_cert_match="other.ta.test",
          smtp_tls_trust_anchor_file=f"{pki / 'other.crt'}, {pki / 'inter.crt'}")
    m = deferred(postern, send(postern, "ta-name@test"))
    assert "Server certificate not verified" in m.group(2)
    postern.wait_log("smtp", r"do not match other\.ta\.test")


# --- tafile= in smtp_tls_policy_maps -----------------------------------------------------------

def _outcome(postern, rcpt):
    return postern.wait_log("smtp", rf"to=<{rcpt}>, relay=[^ ]+, .*dsn=(4\.[0-9.]+), status=deferred \((.*)\)",
                            timeout=20)


def test_policy_tafile_for_one_destination(postern, pki, gnutls_serv, tmp_path):
    """Two next hops at level verify, the global anchor an unrelated CA: the one whose policy
    entry names tafile= (twice: the unrelated CA, then the intermediate) verifies, the other
    is refused."""
    pa, pb = gnutls_serv("leaf-only.crt"), gnutls_serv("leaf-only.crt")
    table = tmp_path / "tls_policy"
    table.write_text(f"[127.0.0.1]:{pa} verify tafile={pki / 'other.crt'} tafile={pki / 'inter.crt'}\n"
                     f"[127.0.0.1]:{pb} verify\n")
    start(postern, pa, "may", relayhost="", smtp_tls_trust_anchor_file=str(pki / "other.crt"),
          smtp_tls_policy_maps=f"texthash:{table}",
          transport_maps=f"inline:{{ a.example=smtp:[127.0.0.1]:{pa}, b.example=smtp:[127.0.0.1]:{pb} }}")
    mailtest.send(postern, "ptest1@postern.test", ["bob@a.example"], b"Subject: a\r\n\r\nbody\r\n")
    mailtest.send(postern, "ptest1@postern.test", ["bob@b.example"], b"Subject: b\r\n\r\nbody\r\n")
    assert "initial server greeting" in _outcome(postern, "bob@a.example").group(2)
    postern.wait_log("smtp", rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{pa}")
    m = _outcome(postern, "bob@b.example")
    assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
    assert f"Verified TLS connection established to 127.0.0.1[127.0.0.1]:{pb}" not in postern.log("smtp")


def test_policy_tafile_missing_file_defers(postern, pki, gnutls_serv, tmp_path):
    """A tafile= that does not load: logged, and mail for that destination defers."""
    port = gnutls_serv("leaf-only.crt")
    table = tmp_path / "tls_policy"
    table.write_text(f"[127.0.0.1]:{port} secure tafile={tmp_path / 'nonexistent.pem'}\n")
    start(postern, port, "may", smtp_tls_policy_maps=f"texthash:{table}")
    m = deferred(postern, send(postern, "ta-missing@test"))
    assert m.group(1) == "4.7.5" and "TLS engine is unavailable" in m.group(2)
    postern.wait_log("smtp", r"smtp_tls_policy_maps: tafile=.*nonexistent\.pem: .*TLS not available")


# --- public keys as anchors --------------------------------------------------------------------

@pytest.mark.parametrize("chain, key", [("full.crt", "inter.pub"), ("leaf-only.crt", "leaf.pub"),
                                        ("leaf-only.crt", "inter.pub"), ("full.crt", "mixed.pem")])
def test_public_key_anchor_verifies(postern, pki, gnutls_serv, chain, key):
    """The intermediate's key with the intermediate in the chain, the leaf's own key, the
    intermediate's key that signed the leaf the server sends alone, and a file holding an
    unrelated CA and the key."""
    port = gnutls_serv(chain)
    start(postern, port, "secure", smtp_tls_trust_anchor_file=str(pki / key), smtp_tls_CAfile=str(pki / "ca.crt"))
    m = deferred(postern, send(postern, f"ta-key-{chain}-{key}@test"))
    postern.wait_log("smtp", rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}")
    assert "timed out while receiving the initial server greeting" in m.group(2)


def test_public_key_anchor_name_still_counts(postern, pki, gnutls_serv):
    """The leaf's own key anchors it, but the match list names another host."""
    port = gnutls_serv("full.crt")
    start(postern, port, "secure", smtp_tls_secure_cert_match="other.ta.test",
          smtp_tls_trust_anchor_file=str(pki / "leaf.pub"))
    m = deferred(postern, send(postern, "ta-key-name@test"))
    assert "Server certificate not verified" in m.group(2)
    postern.wait_log("smtp", r"do not match other\.ta\.test")
