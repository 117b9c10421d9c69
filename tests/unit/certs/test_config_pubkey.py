"""Configuration with `auth: pubkey`: certificate, chain, private key and CA files are read on load.

Every problem names the file and the field; the private key never shows in a message, a repr or
a listing.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from certs_pki import FUTURE, GW_SAN, NOW, Pki, key, make_cert, name, pem
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pyike.config import ConfigError, connection_digest, parse_config
from pyike.ids import IdType
from pyike.ike.policy import policy_from_config, policy_signature

SOURCE = "/etc/pyike/test.yaml"
ENGINES = ["builtin", "jsonschema"]
PKCS8 = serialization.PrivateFormat.PKCS8


def key_pem(private, fmt=PKCS8, encryption=None):
    return private.private_bytes(serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    return Pki("p256")


@pytest.fixture
def files(tmp_path, pki):
    """The PEM files of a working pubkey connection, the key written 0600."""

    def write(name, data, mode=0o644):
        path = tmp_path / name
        path.write_bytes(data)
        os.chmod(path, mode)
        return str(path)

    paths = {
        "cert": write("gw1.pem", pem(pki.leaf) + pem(pki.inter)),
        "key": write("gw1.key", key_pem(pki.leaf_key), 0o600),
        "ca": write("ca.pem", pem(pki.root)),
        "dir": str(tmp_path),
    }
    paths["write"] = write
    return paths


def pubkey_config(files, **changes):
    conn = {
        "local": {"address": "192.0.2.1", "id": "gw1.example.org"},
        "remote": {"address": "198.51.100.1", "id": "gw2.example.org"},
        "auth": "pubkey",
        "cert": files["cert"],
        "private_key": files["key"],
        "ca_certs": [files["ca"]],
        "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
        "children": {"lan": {"local_ts": ["10.1.0.0/24"], "remote_ts": ["10.2.0.0/24"]}},
    }
    for field, value in changes.items():
        if value is None:
            conn.pop(field, None)
        else:
            conn[field] = value
    return {"settings": {"listen": ["0.0.0.0"]}, "connections": {"hq": conn}}


def problems(data, engine=None, base_dir=None):
    if engine == "jsonschema":
        pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE, base_dir=base_dir, engine=engine)
    return str(caught.value)


def test_a_pubkey_connection_loads_its_credential_and_cas(files, pki):
    conn = parse_config(pubkey_config(files), SOURCE).connection("hq")
    assert conn.auth == "pubkey" and conn.psk is None and conn.auth_method == "signature"
    assert conn.credential.certificate == pki.leaf
    assert conn.credential.intermediates == [pki.inter]
    assert list(conn.ca_certs) == [pki.root]
    assert (conn.cert, conn.private_key, conn.ca_cert_files) == (files["cert"], files["key"], (files["ca"],))
    listing = conn.as_dict()
    assert listing["cert_subject"] == pki.leaf.subject.rfc4514_string()
    assert listing["ca_subjects"] == [pki.root.subject.rfc4514_string()]
    assert listing["psk"] is None
    policy = policy_from_config(conn)
    assert policy.auth == "pubkey" and policy.credential is conn.credential and policy.ca_certs == [pki.root]


def test_relative_paths_a_separate_chain_file_and_a_ca_directory(files, pki, tmp_path):
    files["write"]("leaf.pem", pem(pki.leaf))
    files["write"]("inter.pem", pem(pki.inter))
    cas = tmp_path / "cas"
    cas.mkdir()
    (cas / "root.pem").write_bytes(pem(pki.root))
    (cas / "other.pem").write_bytes(pem(Pki("rsa2048", org="other").root))
    data = pubkey_config(
        files, cert="leaf.pem", cert_chain="inter.pem", private_key="gw1.key", ca_certs=["cas"]
    )
    conn = parse_config(data, SOURCE, base_dir=str(tmp_path)).connection("hq")
    assert conn.credential.intermediates == [pki.inter]
    assert len(conn.ca_certs) == 2 and conn.cert == str(tmp_path / "leaf.pem")


def test_without_local_id_the_certificate_subject_is_used(files, pki):
    data = pubkey_config(files)
    del data["connections"]["hq"]["local"]["id"]
    conn = parse_config(data, SOURCE).connection("hq")
    assert conn.local.id == (IdType.ID_DER_ASN1_DN, pki.leaf.subject.public_bytes())


@pytest.mark.parametrize("engine", ENGINES)
def test_pubkey_needs_cert_key_and_cas(files, engine):
    text = problems(pubkey_config(files, cert=None, private_key=None, ca_certs=None), engine)
    for field in ("cert", "private_key", "ca_certs"):
        assert "%s: connections.hq.%s: required field is missing" % (SOURCE, field) in text
    assert "psk" not in text
    text = problems(pubkey_config(files, auth=None), engine)  # auth defaults to psk
    assert "connections.hq: one of psk or psk_file is required" in text
    assert "connections.hq.cert: is only used with auth: pubkey" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_psk_with_pubkey_and_bad_values(files, engine):
    text = problems(pubkey_config(files, psk="some-psk-value", auth_method="rsa"), engine)
    assert "connections.hq.psk: is not used with auth: pubkey" in text
    assert "connections.hq.auth_method: must be one of signature, classic, got 'rsa'" in text
    assert "some-psk-value" not in text


def test_unreadable_or_broken_files_name_the_file_and_field(files, pki, tmp_path):
    missing = str(tmp_path / "missing.pem")
    text = problems(pubkey_config(files, cert=missing))
    assert "connections.hq.cert: %s: cannot read the certificate file: No such file" % missing in text
    garbage = files["write"]("garbage.pem", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    text = problems(pubkey_config(files, cert=garbage))
    assert "connections.hq.cert: %s: no CERTIFICATE block found (PEM blocks: PUBLIC KEY)" % garbage in text
    text = problems(pubkey_config(files, private_key=missing))
    assert "connections.hq.private_key: %s does not exist" % missing in text
    text = problems(pubkey_config(files, private_key=files["cert"]))  # 0644, and not a key
    assert (
        "connections.hq.private_key: %s is accessible by group or others (mode 0644)" % files["cert"] in text
    )
    not_key = files["write"]("notkey.pem", pem(pki.leaf), 0o600)
    text = problems(pubkey_config(files, private_key=not_key))
    assert "connections.hq.private_key: %s: no private key block found" % not_key in text
    text = problems(pubkey_config(files, ca_certs=[files["ca"], missing]))
    assert "connections.hq.ca_certs[1]: %s: cannot read the certificate file" % missing in text


def test_a_key_that_is_not_the_certificates(files):
    other = files["write"]("other.key", key_pem(key("p256", 7)), 0o600)
    text = problems(pubkey_config(files, private_key=other))
    assert "connections.hq.private_key: %s: the private key does not belong to certificate" % other in text


def test_unsupported_and_encrypted_keys(files):
    ed = files["write"]("ed.key", key_pem(ed25519.Ed25519PrivateKey.generate()), 0o600)
    text = problems(pubkey_config(files, private_key=ed))
    assert "connections.hq.private_key: %s: " % ed in text and "unsupported key type" in text
    locked = files["write"](
        "locked.key",
        key_pem(key("p256", 3), encryption=serialization.BestAvailableEncryption(b"passphrase")),
        0o600,
    )
    text = problems(pubkey_config(files, private_key=locked))
    assert (
        "connections.hq.private_key: %s: the private key is encrypted; store it unencrypted" % locked in text
    )


def test_ca_certs_must_be_cas(files, pki):
    leaf = files["write"]("leaf-as-ca.pem", pem(pki.leaf))
    text = problems(pubkey_config(files, ca_certs=[leaf]))
    assert (
        "connections.hq.ca_certs[0]: %s: certificate %s is not a CA certificate"
        % (
            leaf,
            pki.leaf.subject.rfc4514_string(),
        )
        in text
    )
    no_sign = make_cert(name("CRL signer"), key("p256", 9), ca=True, key_usage="crl-only")
    path = files["write"]("crl-only.pem", pem(no_sign))
    text = problems(pubkey_config(files, ca_certs=[path]))
    assert "connections.hq.ca_certs[0]: %s: CA certificate" % path in text
    assert "keyUsage without keyCertSign" in text


def test_local_id_must_be_in_the_certificate(files):
    data = pubkey_config(files)
    data["connections"]["hq"]["local"]["id"] = "moon.example.org"
    text = problems(data)
    assert "connections.hq.local.id: moon.example.org is not an identity of the certificate" in text
    assert "dns:gw1.example.org" in text
    for good in (
        "gw1.example.org",
        "admin@example.org",
        "192.0.2.1",
        "C=CH, O=pyike test, CN=gw1.example.org",
    ):
        data["connections"]["hq"]["local"]["id"] = good
        parse_config(data, SOURCE)
    assert len(GW_SAN) == 4


def test_the_private_key_never_shows(files, pki):
    key_text = key_pem(pki.leaf_key).decode()
    body = "".join(key_text.splitlines()[1:-1])
    private_number = pki.leaf_key.private_numbers().private_value
    config = parse_config(pubkey_config(files), SOURCE)
    conn = config.connection("hq")
    policy = policy_from_config(conn)
    texts = [
        repr(config),
        repr(conn),
        repr(conn.credential),
        repr(policy),
        json.dumps(config.as_dict()),
        json.dumps(conn.as_dict(fingerprint=True)),
        str(policy_signature(policy)),
    ]
    for text in texts:
        assert body[:40] not in text and body[-40:] not in text
        assert str(private_number) not in text and "%x" % private_number not in text
    assert "private key=<hidden>" in repr(conn.credential)
    # A broken configuration that points the certificate at the key file: the message names the
    # file and says what is wrong, without the key.
    text = problems(pubkey_config(files, cert=files["key"], ca_certs=[files["key"]]))
    assert body[:40] not in text and body[-40:] not in text
    assert "no CERTIFICATE block found (PEM blocks: PRIVATE KEY)" in text


def test_a_new_certificate_changes_the_digest_and_the_policy(files, pki):
    before = parse_config(pubkey_config(files), SOURCE).connection("hq")
    again = parse_config(pubkey_config(files), SOURCE).connection("hq")
    assert connection_digest(before) == connection_digest(again)
    assert policy_signature(policy_from_config(before)) == policy_signature(policy_from_config(again))
    renewed = pki.issue(san=GW_SAN, serial=4242)
    files["write"]("gw1.pem", pem(renewed) + pem(pki.inter))
    after = parse_config(pubkey_config(files), SOURCE).connection("hq")
    assert connection_digest(before) != connection_digest(after)
    assert policy_signature(policy_from_config(before)) != policy_signature(policy_from_config(after))
    data = copy.deepcopy(pubkey_config(files))
    data["connections"]["hq"]["auth_method"] = "classic"
    classic = parse_config(data, SOURCE).connection("hq")
    assert connection_digest(classic) != connection_digest(after)
    assert policy_from_config(classic).auth_method == "classic"


def test_the_daemon_refuses_to_start_with_a_broken_credential(files, tmp_path, capsys):
    """run_daemon loads the configuration (and so the credentials) before it touches anything."""
    from pyike.runtime.daemon import run_daemon

    other = files["write"]("other.key", key_pem(key("p256", 7)), 0o600)
    config = tmp_path / "pyike.json"
    config.write_text(json.dumps(pubkey_config(files, private_key=other)))
    assert run_daemon(str(config)) == 2
    error = capsys.readouterr().err
    assert (
        "%s: connections.hq.private_key: %s: the private key does not belong to certificate"
        % (
            config,
            other,
        )
        in error
    )
    assert "".join(key_pem(key("p256", 7)).decode().splitlines()[1:-1])[:40] not in error


def test_the_daemon_warns_about_our_own_expired_certificate(files, pki, caplog):
    from pyike.runtime.daemon import _check_own_certificates

    config = parse_config(pubkey_config(files), SOURCE)
    assert _check_own_certificates(config, now=NOW.timestamp()) == []
    later = _check_own_certificates(config, now=FUTURE[0].timestamp())
    assert later == [
        "connection hq: our certificate %s (%s) expired on 2030-01-01 00:00:00 UTC; peers will refuse it"
        % (pki.leaf.subject.rfc4514_string(), files["cert"])
    ]
    assert later[0] in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_a_key_pasted_into_private_key_is_not_echoed(files, pki, engine):
    pasted = key_pem(pki.leaf_key).decode()
    text = problems(pubkey_config(files, private_key=pasted), engine)
    assert "connections.hq.private_key: must be the path of the key file, not the key itself" in text
    body = "".join(pasted.splitlines()[1:-1])
    assert body[:40] not in text and body[-40:] not in text and "BEGIN" not in text
    text = problems(pubkey_config(files, private_key=12345), engine)
    assert "connections.hq.private_key: expected a string, got an integer" in text and "12345" not in text
