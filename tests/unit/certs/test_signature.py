"""Signature AUTH (RFC 7427, RFC 7296 §2.15 RSA, RFC 4754 ECDSA) and SIGNATURE_HASH_ALGORITHMS."""

from __future__ import annotations

import pytest
from certs_pki import Pki, der, key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from pyike.crypto import x509_der
from pyike.crypto.auth import Authenticator
from pyike.crypto.signature import (
    SCHEMES,
    SUPPORTED_HASHES,
    AuthChoice,
    SignatureAuthenticator,
    SignatureError,
    SignatureScheme,
    choose_auth,
    decode_digital_signature,
    ecdsa,
    encode_digital_signature,
    encode_hash_algorithms,
    parse_algorithm_identifier,
    parse_hash_algorithms,
    rsa_pkcs1,
    rsa_pss,
)
from pyike.ids import AuthMethod, HashAlgorithm

SHA256, SHA384, SHA512, SHA1 = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.SHA1,
)
SIGNED = b"<IKE_SA_INIT request><Nr><prf(SK_pi, IDi')>"

# RFC 7427 Appendix A: the AlgorithmIdentifier DER octets.
KAT_ALGORITHM_IDENTIFIERS = {
    # A.1 PKCS#1 v1.5 RSA: { sha*WithRSAEncryption, NULL }
    "rsa-pkcs1-sha256": "300d06092a864886f70d01010b0500",
    "rsa-pkcs1-sha384": "300d06092a864886f70d01010c0500",
    "rsa-pkcs1-sha512": "300d06092a864886f70d01010d0500",
    # A.3 ECDSA: { ecdsa-with-SHA*, parameters absent }
    "ecdsa-sha256": "300a06082a8648ce3d040302",
    "ecdsa-sha384": "300a06082a8648ce3d040303",
    "ecdsa-sha512": "300a06082a8648ce3d040304",
    # A.4.3-style RSASSA-PSS (RFC 4055): [0] {sha-X, NULL}, [1] {mgf1, {sha-X, NULL}}, [2] hash length;
    # trailerField left at its DEFAULT and so omitted (DER).
    "rsa-pss-sha256": "304106092a864886f70d01010a3034"
    "a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500"
    "a203020120",
    "rsa-pss-sha384": "304106092a864886f70d01010a3034"
    "a00f300d06096086480165030402020500"
    "a11c301a06092a864886f70d010108300d06096086480165030402020500"
    "a203020130",
    "rsa-pss-sha512": "304106092a864886f70d01010a3034"
    "a00f300d06096086480165030402030500"
    "a11c301a06092a864886f70d010108300d06096086480165030402030500"
    "a203020140",
}


# -- AlgorithmIdentifier KATs ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KAT_ALGORITHM_IDENTIFIERS))
def test_algorithm_identifier_kat(name):
    expected = bytes.fromhex(KAT_ALGORITHM_IDENTIFIERS[name])
    scheme = SCHEMES[name]
    assert scheme.algorithm_identifier() == expected
    assert parse_algorithm_identifier(expected) == scheme


def test_pss_identifier_structure_is_the_rfc_4055_one():
    # Decoded by hand: the PSS KAT is exactly the RFC 7427 A.4.3 structure for SHA-256.
    top = x509_der.read_one(bytes.fromhex(KAT_ALGORITHM_IDENTIFIERS["rsa-pss-sha256"]), x509_der.SEQUENCE)
    algorithm, params = x509_der.children(top.content)
    assert x509_der.oid_text(algorithm.content) == "1.2.840.113549.1.1.10"
    hash_field, mgf_field, salt_field = x509_der.children(params.content)
    assert [hash_field.tag, mgf_field.tag, salt_field.tag] == [0xA0, 0xA1, 0xA2]
    sha256_null = bytes.fromhex("300d06096086480165030402010500")
    assert hash_field.content == sha256_null
    assert mgf_field.content == bytes.fromhex("301a06092a864886f70d010108") + sha256_null
    assert x509_der.integer_value(x509_der.read_one(salt_field.content)) == 32


def test_ecdsa_and_pkcs1_identifiers_match_cryptographys_certificates():
    """A certificate's signatureAlgorithm, as written by cryptography, is the same DER."""
    for family, names in (("p256", ["ecdsa-sha256"]), ("rsa2048", ["rsa-pkcs1-sha256"])):
        pki = Pki(family)
        fields = x509_der.children(x509_der.read_one(der(pki.leaf)).content)
        assert fields[1].encoded == SCHEMES[names[0]].algorithm_identifier()


def test_pss_identifier_matches_cryptographys_pss_certificate():
    pki = Pki("rsa2048")
    try:
        cert = pki.issue(pss=True)
    except TypeError:
        pytest.skip("this cryptography cannot sign certificates with RSASSA-PSS (needs 41+)")
    fields = x509_der.children(x509_der.read_one(der(cert)).content)
    assert fields[1].encoded == SCHEMES["rsa-pss-sha256"].algorithm_identifier()


def test_parse_accepts_equivalent_encodings():
    pss = SCHEMES["rsa-pss-sha256"]
    sha256_absent = x509_der.sequence(x509_der.oid("2.16.840.1.101.3.4.2.1"))
    params = x509_der.sequence(
        x509_der.explicit(0, sha256_absent),
        x509_der.explicit(1, x509_der.sequence(x509_der.oid("1.2.840.113549.1.1.8"), sha256_absent)),
        x509_der.explicit(2, x509_der.integer(32)),
        x509_der.explicit(3, x509_der.integer(1)),  # trailerField spelled out
    )
    assert parse_algorithm_identifier(x509_der.sequence(x509_der.oid("1.2.840.113549.1.1.10"), params)) == pss
    # PKCS#1 identifiers with absent parameters, ECDSA with NULL ones.
    assert parse_algorithm_identifier(bytes.fromhex("300b06092a864886f70d01010b")) == rsa_pkcs1(SHA256)
    assert parse_algorithm_identifier(bytes.fromhex("300c06082a8648ce3d0403020500")) == ecdsa(SHA256)


def test_parse_pss_defaults():
    # RFC 7427 A.4.2 "RSASSA-PSS with default parameters": SHA-1, MGF1-SHA-1, salt 20.
    scheme = parse_algorithm_identifier(bytes.fromhex("300d06092a864886f70d01010a3000"))
    assert (scheme.kind, scheme.hash_id, scheme.mgf_hash, scheme.salt_length) == ("rsa-pss", SHA1, SHA1, 20)
    # A.4.1, empty parameters: the same defaults.
    assert parse_algorithm_identifier(bytes.fromhex("300b06092a864886f70d01010a")) == scheme
    assert scheme.algorithm_identifier() == bytes.fromhex("300d06092a864886f70d01010a3000")


@pytest.mark.parametrize(
    "hex_data",
    [
        "",
        "3000",
        "300906072a8648ce3d0401ff",  # data after the item
        "300a06082a8648ce3d040399",  # unknown OID
        "3003020101",  # not an OID
        "300d06092a864886f70d01010a3005a303020102",  # trailer 2
        "300d06092a864886f70d01010a3005a103020101",  # MGF not a SEQUENCE
        "308100",  # long form for a short length
        "3080",  # indefinite length
        "300e06092a864886f70d01010b050000",  # NULL with content
    ],
)
def test_parse_rejects_malformed_or_unknown(hex_data):
    with pytest.raises(SignatureError):
        parse_algorithm_identifier(bytes.fromhex(hex_data))


def test_der_helpers():
    assert x509_der.oid("1.2.840.113549.1.1.11") == bytes.fromhex("06092a864886f70d01010b")
    assert x509_der.oid_text(bytes.fromhex("2a864886f70d01010b")) == "1.2.840.113549.1.1.11"
    assert x509_der.integer(128) == bytes.fromhex("02020080")
    assert x509_der.encode(0x04, bytes(200))[:3] == bytes.fromhex("0481c8")
    assert x509_der.read_one(x509_der.encode(0x04, bytes(300))).content == bytes(300)


# -- AUTH data framing -----------------------------------------------------------------------


def test_digital_signature_framing():
    scheme = SCHEMES["ecdsa-sha256"]
    data = encode_digital_signature(scheme, b"SIG")
    assert data == b"\x0c" + bytes.fromhex(KAT_ALGORITHM_IDENTIFIERS["ecdsa-sha256"]) + b"SIG"
    assert decode_digital_signature(data) == (scheme.algorithm_identifier(), b"SIG")
    for bad in (b"", b"\x00abc", b"\x0c" + scheme.algorithm_identifier(), b"\xff\x30"):
        with pytest.raises(SignatureError):
            decode_digital_signature(bad)


# -- round trips -----------------------------------------------------------------------------

RSA_CASES = [
    (kind, name)
    for kind in ("rsa2048", "rsa3072")
    for name in (
        "rsa-pss-sha256",
        "rsa-pss-sha384",
        "rsa-pss-sha512",
        "rsa-pkcs1-sha256",
        "rsa-pkcs1-sha384",
        "rsa-pkcs1-sha512",
    )
]
EC_CASES = [
    (kind, name) for kind in ("p256", "p384") for name in ("ecdsa-sha256", "ecdsa-sha384", "ecdsa-sha512")
]


@pytest.mark.parametrize("kind,name", RSA_CASES + EC_CASES)
def test_digital_signature_round_trip(kind, name):
    private = key(kind)
    scheme = SCHEMES[name]
    signer = SignatureAuthenticator.signer(private, AuthMethod.DIGITAL_SIGNATURE, scheme)
    assert isinstance(signer, Authenticator) and signer.method == AuthMethod.DIGITAL_SIGNATURE
    data = signer.build(SIGNED)
    assert data[0] == len(scheme.algorithm_identifier())
    assert data[1 : 1 + data[0]] == scheme.algorithm_identifier()
    verifier = SignatureAuthenticator.verifier(private.public_key(), AuthMethod.DIGITAL_SIGNATURE)
    assert verifier.verify(SIGNED, data)
    assert verifier.check(SIGNED, data) == scheme
    assert not verifier.verify(SIGNED + b"x", data)
    tampered = bytearray(data)
    tampered[-5] ^= 0x01
    assert not verifier.verify(SIGNED, bytes(tampered))
    assert not SignatureAuthenticator.verifier(key(kind, 9).public_key(), 14).verify(SIGNED, data)


def test_signatures_are_what_they_claim_independently_checked():
    """Our PSS uses MGF1 with the same hash and salt = hash length; ECDSA is X.509 DER."""
    rsa_key, ec_key = key("rsa2048"), key("p384")
    data = SignatureAuthenticator.signer(rsa_key, 14, SCHEMES["rsa-pss-sha384"]).build(SIGNED)
    signature = decode_digital_signature(data)[1]
    rsa_key.public_key().verify(
        signature, SIGNED, padding.PSS(padding.MGF1(hashes.SHA384()), 48), hashes.SHA384()
    )
    with pytest.raises(InvalidSignature):  # a different salt length is a different signature scheme
        rsa_key.public_key().verify(
            signature, SIGNED, padding.PSS(padding.MGF1(hashes.SHA384()), 20), hashes.SHA384()
        )
    data = SignatureAuthenticator.signer(ec_key, 14, SCHEMES["ecdsa-sha384"]).build(SIGNED)
    signature = decode_digital_signature(data)[1]
    decode_dss_signature(signature)
    ec_key.public_key().verify(signature, SIGNED, ec.ECDSA(hashes.SHA384()))


def test_verifies_a_peer_built_pkcs1_auth():
    """AUTH data as strongSwan (rsa_pss=no) builds it, composed without our code."""
    private = key("rsa2048")
    algorithm = bytes.fromhex(KAT_ALGORITHM_IDENTIFIERS["rsa-pkcs1-sha256"])
    data = bytes([len(algorithm)]) + algorithm + private.sign(SIGNED, padding.PKCS1v15(), hashes.SHA256())
    assert SignatureAuthenticator.verifier(private.public_key(), 14).verify(SIGNED, data)


@pytest.mark.parametrize(
    "kind,method,size,hash_class",
    [
        ("p256", AuthMethod.ECDSA_SHA256_P256, 32, hashes.SHA256),
        ("p384", AuthMethod.ECDSA_SHA384_P384, 48, hashes.SHA384),
    ],
)
def test_classic_ecdsa_round_trip(kind, method, size, hash_class):
    private = key(kind)
    data = SignatureAuthenticator.signer(private, method).build(SIGNED)
    assert len(data) == 2 * size
    # RFC 4754: r || s, fixed length; checked with cryptography directly.
    r_value, s_value = int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big")
    private.public_key().verify(encode_dss_signature(r_value, s_value), SIGNED, ec.ECDSA(hash_class()))
    verifier = SignatureAuthenticator.verifier(private.public_key(), method)
    assert verifier.verify(SIGNED, data)
    assert not verifier.verify(SIGNED, data[:-1])
    assert not verifier.verify(SIGNED, bytes(reversed(data)))
    assert not verifier.verify(b"other", data)


def test_classic_ecdsa_needs_the_right_curve():
    with pytest.raises(SignatureError, match="secp256r1"):
        SignatureAuthenticator.signer(key("p384"), AuthMethod.ECDSA_SHA256_P256)
    data = SignatureAuthenticator.signer(key("p384"), AuthMethod.ECDSA_SHA384_P384).build(SIGNED)
    verifier = SignatureAuthenticator.verifier(key("p256").public_key(), AuthMethod.ECDSA_SHA384_P384)
    with pytest.raises(SignatureError, match="secp384r1"):
        verifier.check(SIGNED, data)


def test_classic_rsa_sha1():
    private = key("rsa2048")
    data = SignatureAuthenticator.signer(private, AuthMethod.RSA_SIG).build(SIGNED)
    private.public_key().verify(data, SIGNED, padding.PKCS1v15(), hashes.SHA1())
    assert SignatureAuthenticator.verifier(private.public_key(), AuthMethod.RSA_SIG).verify(SIGNED, data)
    strict = SignatureAuthenticator.verifier(private.public_key(), AuthMethod.RSA_SIG, accept_rsa_sha1=False)
    with pytest.raises(SignatureError, match="not accepted"):
        strict.check(SIGNED, data)
    assert not SignatureAuthenticator.verifier(key("p256").public_key(), AuthMethod.RSA_SIG).verify(
        SIGNED, data
    )


def test_verify_refuses_a_scheme_that_does_not_fit_the_key_or_policy():
    rsa_key, ec_key = key("rsa2048"), key("p256")
    # ECDSA AUTH checked against an RSA certificate key.
    data = SignatureAuthenticator.signer(ec_key, 14, SCHEMES["ecdsa-sha256"]).build(SIGNED)
    with pytest.raises(SignatureError, match="RSA-2048"):
        SignatureAuthenticator.verifier(rsa_key.public_key(), 14).check(SIGNED, data)
    # sha1WithRSAEncryption under method 14: SHA-1 is not among the allowed hashes.
    algorithm = rsa_pkcs1(SHA1).algorithm_identifier()
    data = bytes([len(algorithm)]) + algorithm + rsa_key.sign(SIGNED, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(SignatureError, match="not allowed"):
        SignatureAuthenticator.verifier(rsa_key.public_key(), 14).check(SIGNED, data)
    # A narrower allowed list refuses SHA-512.
    data = SignatureAuthenticator.signer(rsa_key, 14, rsa_pss(SHA512)).build(SIGNED)
    assert not SignatureAuthenticator.verifier(rsa_key.public_key(), 14, allowed_hashes=[SHA256]).verify(
        SIGNED, data
    )
    # Garbage AUTH data.
    assert not SignatureAuthenticator.verifier(rsa_key.public_key(), 14).verify(SIGNED, b"\x05abcdefgh")


def test_signer_setup_errors():
    with pytest.raises(SignatureError, match="cannot sign"):
        SignatureAuthenticator.signer(key("p256"), 14, SCHEMES["rsa-pss-sha256"])
    with pytest.raises(SignatureError, match="needs a signature scheme"):
        SignatureAuthenticator.signer(key("p256"), 14)
    with pytest.raises(SignatureError, match="not a signature"):
        SignatureAuthenticator.signer(key("p256"), AuthMethod.SHARED_KEY_MIC)
    with pytest.raises(SignatureError, match="only verify"):
        SignatureAuthenticator.verifier(key("p256").public_key(), 14).build(SIGNED)
    with pytest.raises(SignatureError, match="unsupported elliptic curve"):
        SignatureAuthenticator.verifier(ec.generate_private_key(ec.SECP256K1()).public_key(), 14)


def test_repr_hides_the_private_key():
    private = key("rsa2048")
    text = repr(SignatureAuthenticator.signer(private, 14, SCHEMES["rsa-pss-sha256"]))
    assert "hidden" in text and "RSA-2048" in text and "rsa-pss-sha256" in text
    assert str(private.private_numbers().d)[:12] not in text
    assert "PSS" not in repr(SCHEMES["ecdsa-sha256"])


# -- SIGNATURE_HASH_ALGORITHMS ---------------------------------------------------------------


def test_hash_algorithms_notify_data():
    assert encode_hash_algorithms() == bytes.fromhex("000200030004")
    assert parse_hash_algorithms(bytes.fromhex("0001000200030004000500ff")) == [1, 2, 3, 4, 5, 255]
    for bad in (b"", b"\x00\x02\x00"):
        with pytest.raises(SignatureError):
            parse_hash_algorithms(bad)
    assert tuple(SUPPORTED_HASHES) == (SHA256, SHA384, SHA512)


@pytest.mark.parametrize(
    "kind,peer,options,expected",
    [
        ("rsa2048", [2, 3, 4], {}, AuthChoice(AuthMethod.DIGITAL_SIGNATURE, rsa_pss(SHA256))),
        ("rsa2048", [4, 1], {}, AuthChoice(AuthMethod.DIGITAL_SIGNATURE, rsa_pss(SHA512))),
        (
            "rsa2048",
            [2],
            {"rsa_padding": "pkcs1"},
            AuthChoice(AuthMethod.DIGITAL_SIGNATURE, rsa_pkcs1(SHA256)),
        ),
        (
            "rsa2048",
            [2, 3],
            {"hash_preference": [3, 2]},
            AuthChoice(AuthMethod.DIGITAL_SIGNATURE, rsa_pss(SHA384)),
        ),
        ("rsa2048", None, {"allow_rsa_sha1": True}, AuthChoice(AuthMethod.RSA_SIG, None)),
        ("rsa2048", [1], {"allow_rsa_sha1": True}, AuthChoice(AuthMethod.RSA_SIG, None)),
        ("p256", [2, 3, 4], {}, AuthChoice(AuthMethod.DIGITAL_SIGNATURE, ecdsa(SHA256))),
        ("p384", [2, 3, 4], {}, AuthChoice(AuthMethod.DIGITAL_SIGNATURE, ecdsa(SHA384))),
        ("p384", [2], {}, AuthChoice(AuthMethod.DIGITAL_SIGNATURE, ecdsa(SHA256))),
        ("p256", None, {}, AuthChoice(AuthMethod.ECDSA_SHA256_P256, None)),
        ("p384", [], {}, AuthChoice(AuthMethod.ECDSA_SHA384_P384, None)),
        ("p521", [1, 5], {}, AuthChoice(AuthMethod.ECDSA_SHA512_P521, None)),
    ],
)
def test_choose_auth(kind, peer, options, expected):
    choice = choose_auth(key(kind), peer, **options)
    assert choice == expected
    data = SignatureAuthenticator.signer(key(kind), *choice).build(SIGNED)
    assert SignatureAuthenticator.verifier(key(kind).public_key(), choice.method).verify(SIGNED, data)


def test_choose_auth_refuses_sha1_unless_configured():
    with pytest.raises(SignatureError, match="enabled explicitly"):
        choose_auth(key("rsa2048"), None)
    with pytest.raises(SignatureError, match="no hash algorithm"):
        choose_auth(key("rsa2048"), [1])
    with pytest.raises(SignatureError, match="rsa_padding"):
        choose_auth(key("rsa2048"), [2], rsa_padding="raw")


def test_scheme_names():
    assert sorted(SCHEMES) == sorted(KAT_ALGORITHM_IDENTIFIERS)
    odd = SignatureScheme("rsa-pss", SHA256, SHA1, 20)
    assert odd.name == "rsa-pss-sha256(mgf1-sha1,salt=20)"
    assert parse_algorithm_identifier(odd.algorithm_identifier()) == odd
