"""CERTREQ (RFC 7296 §3.7): CA key hashes, and which of our chains answers a peer's request."""

from __future__ import annotations

import hashlib

from certs_pki import Pki, der, make_cert, name
from cryptography.hazmat.primitives.asymmetric import ec
from pyike.crypto.certs import (
    LocalCredential,
    certreq_authority,
    key_hash,
    public_key_hash,
    select_credential,
    split_authority,
)

# The P-256 base point G (FIPS 186-4 D.1.2.3) is the public key of private key 1; its
# SubjectPublicKeyInfo is fixed, so the CERTREQ hash of a CA holding it is a known answer.
P256_G = bytes.fromhex(
    "04"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)
P256_SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + P256_G


def generator_ca():
    return make_cert(name("Generator CA"), ec.derive_private_key(1, ec.SECP256R1()), ca=True, serial=3)


def test_key_hash_is_sha1_of_subject_public_key_info():
    ca = generator_ca()
    assert key_hash(ca) == hashlib.sha1(P256_SPKI).digest()
    assert public_key_hash(ca) == hashlib.sha1(P256_G).digest()
    assert len(key_hash(ca)) == 20


def test_certreq_authority_lists_ca_key_hashes():
    ec_pki, rsa_pki = Pki("p256"), Pki("rsa2048")
    ca = generator_ca()
    data = certreq_authority([ca, rsa_pki.root, ca, ec_pki.leaf, ec_pki.inter])
    # duplicates and non-CA certificates are left out; configuration order is kept
    assert data == hashlib.sha1(P256_SPKI).digest() + key_hash(rsa_pki.root) + key_hash(ec_pki.inter)
    assert split_authority(data) == [data[:20], data[20:40], data[40:]]
    assert split_authority(data[:-1]) == []
    assert split_authority(b"") == []
    assert certreq_authority([ec_pki.leaf]) == b""


def test_select_credential_by_certreq():
    ec_pki, rsa_pki = Pki("p256"), Pki("rsa2048", org="elsewhere")
    ec_cred = LocalCredential(ec_pki.leaf, ec_pki.leaf_key, [ec_pki.inter])
    rsa_cred = LocalCredential(rsa_pki.leaf, rsa_pki.leaf_key, [rsa_pki.inter])
    both = [ec_cred, rsa_cred]
    # the peer asks for the RSA PKI's intermediate, or its root (known from our CA bundle)
    assert select_credential(both, split_authority(certreq_authority([rsa_pki.inter]))) is rsa_cred
    assert select_credential(both, [key_hash(rsa_pki.root)], [ec_pki.root, rsa_pki.root]) is rsa_cred
    # without our CA bundle the root is unknown: the default (first) credential answers
    assert select_credential(both, [key_hash(rsa_pki.root)]) is ec_cred
    # the peer's hash of the bare public key (RFC 5280 method 1) is recognised too
    assert select_credential(both, [public_key_hash(rsa_pki.inter)]) is rsa_cred
    assert rsa_cred.answers([key_hash(rsa_pki.inter)]) and not ec_cred.answers([key_hash(rsa_pki.inter)])
    # no CERTREQ, or one for a CA we have no chain to: the first credential
    assert select_credential(both, []) is ec_cred
    assert select_credential(both, [b"\x00" * 20]) is ec_cred
    assert select_credential([], [key_hash(rsa_pki.inter)]) is None


def test_cert_payloads_answer_the_request():
    pki = Pki("p384")
    credential = LocalCredential(pki.leaf, pki.leaf_key, [pki.inter, pki.root])
    assert credential.cert_payloads() == [der(pki.leaf), der(pki.inter)]
    assert credential.authority_hashes() == {key_hash(pki.inter), public_key_hash(pki.inter)}
    assert key_hash(pki.root) in credential.authority_hashes([pki.root])
