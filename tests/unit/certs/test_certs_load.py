"""Loading certificates, chains, CA bundles and private keys; our own credential."""

from __future__ import annotations

import base64

import pytest
from certs_pki import Pki, der, key, pem
from cryptography.hazmat.primitives import serialization
from pyike.crypto.certs import (
    CertLoadError,
    LocalCredential,
    load_ca_bundle,
    load_certificate,
    load_certificates,
    load_chain,
    load_private_key,
    parse_certificates,
    parse_private_key,
)
from pyike.crypto.errors import CryptoError

PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1 for RSA, SEC1 for EC
NO_ENCRYPTION = serialization.NoEncryption()


@pytest.fixture(scope="module")
def pki():
    return Pki("p256")


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def key_bytes(private, encoding, fmt, encryption=NO_ENCRYPTION):
    return private.private_bytes(encoding, fmt, encryption)


def same_key(one, two):
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return one.public_key().public_bytes(DER, spki) == two.public_key().public_bytes(DER, spki)


# -- certificates ----------------------------------------------------------------------------


def test_pem_chain_der_and_single(tmp_path, pki):
    chain = write(tmp_path, "chain.pem", pem(pki.leaf) + b"\n" + pem(pki.inter) + pem(pki.root))
    assert [der(cert) for cert in load_certificates(chain)] == [der(pki.leaf), der(pki.inter), der(pki.root)]
    leaf, intermediates = load_chain(chain)
    assert der(leaf) == der(pki.leaf) and len(intermediates) == 2
    assert der(load_certificate(write(tmp_path, "leaf.der", der(pki.leaf)))) == der(pki.leaf)
    assert der(load_certificate(write(tmp_path, "leaf.pem", b"comment\r\n" + pem(pki.leaf)))) == der(pki.leaf)
    with pytest.raises(CertLoadError, match=r"chain\.pem: holds 3 certificates"):
        load_certificate(chain)


def test_certificate_errors_name_the_file(tmp_path, pki):
    with pytest.raises(CertLoadError, match=r"missing\.pem: cannot read the certificate file"):
        load_certificates(str(tmp_path / "missing.pem"))
    key_pem = key_bytes(key("p256"), PEM, PKCS8)
    with pytest.raises(
        CertLoadError, match=r"key\.pem: no CERTIFICATE block found \(PEM blocks: PRIVATE KEY\)"
    ) as error:
        load_certificates(write(tmp_path, "key.pem", key_pem))
    assert base64.b64encode(key_bytes(key("p256"), DER, PKCS8))[:40].decode() not in str(error.value)
    with pytest.raises(CertLoadError, match=r"junk\.der: not a PEM file and not a DER certificate"):
        load_certificates(write(tmp_path, "junk.der", b"\x30\x03\x02\x01\x01"))
    broken = pem(pki.leaf).replace(b"MII", b"AAA", 1)
    with pytest.raises(CertLoadError, match=r"broken\.pem: PEM block 1 is not a valid certificate"):
        load_certificates(write(tmp_path, "broken.pem", broken))
    assert issubclass(CertLoadError, CryptoError)
    with pytest.raises(CertLoadError, match="inline"):
        parse_certificates(b"", "inline")


def test_ca_bundle_files_and_directories(tmp_path, pki):
    other = Pki("rsa2048")
    directory = tmp_path / "cacerts"
    directory.mkdir()
    write(directory, "a.pem", pem(pki.root))
    write(directory, "b.der", der(other.root))
    write(directory, "c.pem", pem(pki.root) + pem(pki.inter))  # a duplicate root is dropped
    (directory / "sub").mkdir()
    anchors = load_ca_bundle(str(directory))
    assert [der(cert) for cert in anchors] == [der(pki.root), der(other.root), der(pki.inter)]
    single = write(tmp_path, "bundle.pem", pem(other.root))
    assert [der(cert) for cert in load_ca_bundle([single, str(directory)])][:2] == [
        der(other.root),
        der(pki.root),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CertLoadError, match="empty: the CA directory holds no files"):
        load_ca_bundle(str(empty))


# -- private keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa2048", "p256", "p384"])
@pytest.mark.parametrize("encoding", [PEM, DER])
@pytest.mark.parametrize("fmt", [PKCS8, TRADITIONAL])
def test_private_key_formats(tmp_path, kind, encoding, fmt):
    private = key(kind)
    loaded = load_private_key(write(tmp_path, "key", key_bytes(private, encoding, fmt)))
    assert same_key(loaded, private)


def test_pem_key_after_ec_parameters(tmp_path):
    """`openssl ecparam -genkey` writes EC PARAMETERS before the EC PRIVATE KEY."""
    private = key("p256")
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    loaded = load_private_key(write(tmp_path, "ec.pem", params + key_bytes(private, PEM, TRADITIONAL)))
    assert same_key(loaded, private)


@pytest.mark.parametrize("encoding,fmt", [(PEM, PKCS8), (PEM, TRADITIONAL), (DER, PKCS8)])
def test_encrypted_private_keys(tmp_path, encoding, fmt):
    private = key("rsa2048")
    data = key_bytes(private, encoding, fmt, serialization.BestAvailableEncryption(b"s3cret"))
    path = write(tmp_path, "enc.key", data)
    with pytest.raises(CertLoadError, match=r"enc\.key: the private key is encrypted; give its passphrase"):
        load_private_key(path)
    assert same_key(load_private_key(path, b"s3cret"), private)
    assert same_key(load_private_key(path, "s3cret"), private)
    with pytest.raises(
        CertLoadError, match=r"enc\.key: cannot load the private key \(wrong passphrase"
    ) as error:
        load_private_key(path, b"wrong")
    assert "s3cret" not in str(error.value) and "wrong" not in str(error.value).split("(", maxsplit=1)[0]


def test_private_key_errors(tmp_path, pki):
    with pytest.raises(
        CertLoadError, match=r"cert\.pem: no private key block found \(PEM blocks: CERTIFICATE\)"
    ):
        load_private_key(write(tmp_path, "cert.pem", pem(pki.leaf)))
    with pytest.raises(CertLoadError, match=r"junk\.key: not a PEM or DER private key"):
        load_private_key(write(tmp_path, "junk.key", b"\x30\x03\x02\x01\x01"))
    with pytest.raises(CertLoadError, match=r"nokey: cannot read the private key file"):
        load_private_key(str(tmp_path / "nokey"))
    # A passphrase for a plain key is harmless.
    assert same_key(parse_private_key(key_bytes(key("p256"), PEM, PKCS8), "inline", b"unused"), key("p256"))


def test_unsupported_key_type(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(CertLoadError, match=r"k1\.pem: unsupported elliptic curve secp256k1"):
        load_private_key(write(tmp_path, "k1.pem", key_bytes(private, PEM, PKCS8)))


# -- our credential --------------------------------------------------------------------------


def test_local_credential_from_files(tmp_path, pki):
    cert_path = write(tmp_path, "gw.pem", pem(pki.leaf) + pem(pki.inter))
    key_path = write(tmp_path, "gw.key", key_bytes(pki.leaf_key, PEM, TRADITIONAL))
    credential = LocalCredential.from_files(cert_path, key_path)
    assert credential.cert_payloads() == [der(pki.leaf), der(pki.inter)]
    chain_path = write(tmp_path, "chain.pem", pem(pki.inter) + pem(pki.root))
    leaf_only = write(tmp_path, "leaf.pem", pem(pki.leaf))
    credential = LocalCredential.from_files(leaf_only, key_path, chain_path)
    assert credential.cert_payloads() == [der(pki.leaf), der(pki.inter)]  # the self-signed root is not sent
    text = repr(credential)
    assert "hidden" in text and "gw1.example.org" in text and "ECDSA-secp256r1" in text
    assert str(pki.leaf_key.private_numbers().private_value) not in text


def test_local_credential_refuses_a_foreign_key(tmp_path, pki):
    cert_path = write(tmp_path, "gw.pem", pem(pki.leaf))
    key_path = write(tmp_path, "other.key", key_bytes(key("p256", 7), PEM, PKCS8))
    with pytest.raises(
        CertLoadError, match=r"gw\.pem, .*other\.key: the private key does not belong to certificate"
    ):
        LocalCredential.from_files(cert_path, key_path)
    with pytest.raises(CertLoadError, match="does not belong"):
        LocalCredential(pki.leaf, key("rsa2048"))
