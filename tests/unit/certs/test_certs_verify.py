"""The peer's certificate: path to a configured CA, validity, identity; every error case.

Each case runs through our own path validation and, where the installed cryptography has a
configurable verifier (45+), through ``cryptography.x509.verification`` as well: both must
give the same distinct error.
"""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from certs_pki import (
    FUTURE,
    NOW,
    PAST,
    SERVER_AUTH,
    UTC,
    Pki,
    der,
    key,
    make_cert,
    name,
)
from cryptography import x509
from pyike.config.identity import encode_dn
from pyike.crypto.certs import (
    CertError,
    CertExpiredError,
    CertFormatError,
    CertIdentityError,
    CertNotCaError,
    CertNotYetValidError,
    CertPolicyError,
    CertSignatureError,
    CertUntrustedError,
)
from pyike.crypto.certs_verify import (
    build_path,
    check_identity,
    identity_matches,
    library_verifier_available,
    verify_peer,
)
from pyike.crypto.signature import SCHEMES, SignatureAuthenticator
from pyike.ids import AuthMethod, IdType

FQDN = (IdType.ID_FQDN, b"gw1.example.org")
MODES = [
    "pyike",
    pytest.param(
        "library",
        marks=pytest.mark.skipif(
            not library_verifier_available(), reason="cryptography < 45 has no configurable X.509 verifier"
        ),
    ),
]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture(scope="module", params=["rsa2048", "p256", "p384"])
def pki(request):
    return Pki(request.param)


@pytest.fixture(scope="module")
def ec_pki():
    return Pki("p256")


def verify(mode, leaf, intermediates, anchors, identity=FQDN, now=NOW):
    return verify_peer(
        der(leaf),
        [der(cert) for cert in intermediates],
        anchors,
        now,
        identity,
        use_library=(mode == "library"),
    )


# -- success ---------------------------------------------------------------------------------


def test_valid_chain(mode, pki):
    result = verify(mode, pki.leaf, [pki.inter], [pki.root])
    assert der(result.certificate) == der(pki.leaf)
    assert [der(cert) for cert in result.chain] == [der(pki.leaf), der(pki.inter), der(pki.root)]
    assert der(result.trust_anchor) == der(pki.root)
    assert result.verifier == ("cryptography.x509.verification" if mode == "library" else "pyike")
    assert result.identity == FQDN
    # The verified key checks the peer's AUTH payload.
    scheme = SCHEMES["ecdsa-sha256" if pki.family_is_ec else "rsa-pss-sha256"]
    data = SignatureAuthenticator.signer(pki.leaf_key, AuthMethod.DIGITAL_SIGNATURE, scheme).build(b"octets")
    assert result.authenticator(AuthMethod.DIGITAL_SIGNATURE).verify(b"octets", data)
    assert "gw1.example.org" in result.describe()


def test_intermediate_as_anchor_and_extra_certificates(mode, ec_pki):
    other = Pki("rsa2048")
    result = verify(mode, ec_pki.leaf, [], [other.root, ec_pki.inter])
    assert len(result.chain) == 2
    # Unrelated and duplicate intermediates, in any order, do not disturb path building.
    result = verify(mode, ec_pki.leaf, [other.inter, ec_pki.root, ec_pki.inter], [other.root, ec_pki.root])
    assert der(result.trust_anchor) == der(ec_pki.root)


def test_now_as_epoch_seconds_or_naive_utc(mode, ec_pki):
    verify(mode, ec_pki.leaf, [ec_pki.inter], [ec_pki.root], now=NOW.timestamp())
    verify(mode, ec_pki.leaf, [ec_pki.inter], [ec_pki.root], now=NOW.replace(tzinfo=None))


def test_relaxed_ca_extensions_accepted(mode, ec_pki):
    """basicConstraints not critical, keyUsage absent: RFC 5280 path validation allows both."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("Intermediate CA"))
        .issuer_name(ec_pki.root.subject)
        .public_key(ec_pki.inter_key.public_key())
        .serial_number(77)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ec_pki.root_key.public_key()), False
        )
    )
    from cryptography.hazmat.primitives import hashes

    inter = builder.sign(ec_pki.root_key, hashes.SHA256())
    leaf = make_cert(
        name("gw1.example.org"),
        ec_pki.leaf_key,
        inter,
        ec_pki.inter_key,
        san=[x509.DNSName("gw1.example.org")],
    )
    assert len(verify(mode, leaf, [inter], [ec_pki.root]).chain) == 3


def test_end_entity_extensions_are_not_web_pki_rules(mode, ec_pki):
    """No subjectAltName (DN identity) or a serverAuth EKU: both fine for IKE."""
    dn_only = ec_pki.issue(san=None)
    identity = (IdType.ID_DER_ASN1_DN, dn_only.subject.public_bytes())
    verify(mode, dn_only, [ec_pki.inter], [ec_pki.root], identity=identity)
    verify(mode, ec_pki.issue(eku=SERVER_AUTH), [ec_pki.inter], [ec_pki.root])


def test_rsa_pss_signed_chain(mode):
    pki = Pki("rsa2048")
    try:
        inter = make_cert(name("PSS CA"), pki.inter_key, pki.root, pki.root_key, ca=True, pss=True, serial=40)
        leaf = make_cert(
            name("gw1.example.org"),
            pki.leaf_key,
            inter,
            pki.inter_key,
            pss=True,
            hash_name="sha384",
            san=[x509.DNSName("gw1.example.org")],
        )
    except TypeError:
        pytest.skip("this cryptography cannot sign certificates with RSASSA-PSS (needs 41+)")
    assert len(verify(mode, leaf, [inter], [pki.root]).chain) == 3


# -- validity --------------------------------------------------------------------------------


def test_expired(mode, ec_pki):
    with pytest.raises(
        CertExpiredError, match=r"certificate CN=gw1.example.org.* expired on 2022-01-01"
    ) as error:
        verify(mode, ec_pki.issue(validity=PAST), [ec_pki.inter], [ec_pki.root])
    assert error.value.reason == "expired"


def test_not_yet_valid(mode, ec_pki):
    with pytest.raises(CertNotYetValidError, match="is not valid before 2031-01-01") as error:
        verify(mode, ec_pki.issue(validity=FUTURE), [ec_pki.inter], [ec_pki.root])
    assert error.value.reason == "not_yet_valid"


def test_expired_intermediate(mode, ec_pki):
    inter = make_cert(
        name("Old CA"), ec_pki.inter_key, ec_pki.root, ec_pki.root_key, ca=True, validity=PAST, serial=41
    )
    leaf = make_cert(name("gw1.example.org"), ec_pki.leaf_key, inter, ec_pki.inter_key)
    with pytest.raises(CertExpiredError, match=r"CA certificate CN=Old CA.* expired"):
        verify(
            mode, leaf, [inter], [ec_pki.root], identity=(IdType.ID_DER_ASN1_DN, leaf.subject.public_bytes())
        )


def test_checked_at_the_given_time(mode, ec_pki):
    later = datetime.datetime(2035, 1, 1, tzinfo=UTC)
    with pytest.raises(CertExpiredError):
        verify(mode, ec_pki.leaf, [ec_pki.inter], [ec_pki.root], now=later)


# -- trust -----------------------------------------------------------------------------------


def test_untrusted_other_ca(mode, ec_pki):
    other = Pki("rsa2048", org="elsewhere")
    with pytest.raises(
        CertUntrustedError, match="no path to a configured CA: the issuer CN=Root CA"
    ) as error:
        verify(mode, ec_pki.leaf, [ec_pki.inter], [other.root, other.inter])
    assert error.value.reason == "untrusted"


def test_untrusted_missing_intermediate(mode, ec_pki):
    with pytest.raises(CertUntrustedError, match=r"issuer CN=Intermediate CA.* among the 0 intermediate"):
        verify(mode, ec_pki.leaf, [], [ec_pki.root])


def test_untrusted_without_configured_cas(mode, ec_pki):
    with pytest.raises(CertUntrustedError, match="no CA certificates are configured"):
        verify(mode, ec_pki.leaf, [ec_pki.inter], [])


def test_untrusted_same_name_other_key(mode, ec_pki):
    """A root with the same name but another key: the intermediate's signature does not verify."""
    impostor = make_cert(name("Root CA"), key("p256", 8), ca=True, serial=42)
    match = "certificate CN=Intermediate CA.* does not verify with the key of the configured CA certificate CN=Root CA"
    with pytest.raises(CertSignatureError, match=match):
        verify(mode, ec_pki.leaf, [ec_pki.inter], [impostor])


def test_bad_signature_on_a_link(mode, ec_pki):
    forged = make_cert(name("gw1.example.org"), ec_pki.leaf_key, ec_pki.inter, key("p256", 9))  # wrong signer
    with pytest.raises(CertSignatureError, match=r"signature on certificate CN=gw1.example.org") as error:
        verify(
            mode,
            forged,
            [ec_pki.inter],
            [ec_pki.root],
            identity=(IdType.ID_DER_ASN1_DN, forged.subject.public_bytes()),
        )
    assert error.value.reason == "bad_signature"


def test_tampered_certificate(mode, ec_pki):
    data = bytearray(der(ec_pki.leaf))
    index = data.find(b"gw1.example.org")
    data[index] ^= 0x20  # "Gw1.example.org" in the subject: the signature no longer covers it
    with pytest.raises(CertSignatureError):
        verify_peer(
            bytes(data), [der(ec_pki.inter)], [ec_pki.root], NOW, FQDN, use_library=(mode == "library")
        )


def test_ca_without_basic_constraints(mode, ec_pki):
    inter = make_cert(
        name("No BC CA"), ec_pki.inter_key, ec_pki.root, ec_pki.root_key, ca=None, key_usage="ca", serial=43
    )
    leaf = make_cert(
        name("gw1.example.org"),
        ec_pki.leaf_key,
        inter,
        ec_pki.inter_key,
        san=[x509.DNSName("gw1.example.org")],
    )
    with pytest.raises(
        CertNotCaError, match=r"CN=No BC CA.* is used as a CA but has no basicConstraints"
    ) as error:
        verify(mode, leaf, [inter], [ec_pki.root])
    assert error.value.reason == "not_a_ca"


def test_ca_with_basic_constraints_false(mode, ec_pki):
    inter = make_cert(
        name("Not A CA"), ec_pki.inter_key, ec_pki.root, ec_pki.root_key, ca=False, key_usage="ca", serial=44
    )
    leaf = make_cert(
        name("gw1.example.org"),
        ec_pki.leaf_key,
        inter,
        ec_pki.inter_key,
        san=[x509.DNSName("gw1.example.org")],
    )
    with pytest.raises(CertNotCaError, match="basicConstraints say it is not one"):
        verify(mode, leaf, [inter], [ec_pki.root])


def test_ca_key_usage_without_cert_sign(mode, ec_pki):
    inter = make_cert(
        name("CRL CA"),
        ec_pki.inter_key,
        ec_pki.root,
        ec_pki.root_key,
        ca=True,
        key_usage="crl-only",
        serial=45,
    )
    leaf = make_cert(
        name("gw1.example.org"),
        ec_pki.leaf_key,
        inter,
        ec_pki.inter_key,
        san=[x509.DNSName("gw1.example.org")],
    )
    with pytest.raises(CertNotCaError, match="keyUsage without keyCertSign"):
        verify(mode, leaf, [inter], [ec_pki.root])


def test_path_length_constraint(mode, ec_pki):
    root = make_cert(name("Root CA"), ec_pki.root_key, ca=True, path_length=0, serial=46)
    with pytest.raises(CertPolicyError, match="allows 0 intermediate CA"):
        verify(mode, ec_pki.leaf, [ec_pki.inter], [root])


def test_weak_rsa_key(mode):
    pki = Pki("rsa2048")
    leaf = pki.issue(subject_key=key("rsa1024"))
    with pytest.raises(CertPolicyError, match="RSA key of 1024 bits"):
        verify(mode, leaf, [pki.inter], [pki.root])


def test_end_entity_key_usage_without_digital_signature(mode, ec_pki):
    with pytest.raises(CertPolicyError, match="keyUsage without digitalSignature"):
        verify(mode, ec_pki.issue(key_usage="encipher"), [ec_pki.inter], [ec_pki.root])


def test_sha1_signed_certificate(mode):
    pki = Pki("rsa2048")
    try:
        leaf = pki.issue(hash_name="sha1")
    except Exception:
        pytest.skip("this cryptography refuses to sign with SHA-1")
    with pytest.raises(CertPolicyError, match="signed with rsa-pkcs1-sha1"):
        verify(mode, leaf, [pki.inter], [pki.root])


def test_malformed_certificates(mode, ec_pki):
    with pytest.raises(CertFormatError, match=r"end-entity certificate is not a DER X.509"):
        verify_peer(b"\x30\x00", [], [ec_pki.root], NOW, FQDN, use_library=(mode == "library"))
    with pytest.raises(CertFormatError, match=r"CERT payload 2 is not a DER X.509"):
        verify_peer(der(ec_pki.leaf), [b"junk"], [ec_pki.root], NOW, FQDN, use_library=(mode == "library"))


def test_error_classes_are_distinct():
    classes = [
        CertExpiredError,
        CertNotYetValidError,
        CertUntrustedError,
        CertSignatureError,
        CertNotCaError,
        CertIdentityError,
        CertPolicyError,
        CertFormatError,
    ]
    assert len({cls.reason for cls in classes}) == len(classes)
    assert all(issubclass(cls, CertError) for cls in classes)


def test_build_path_direct(ec_pki):
    path = build_path(ec_pki.leaf, [ec_pki.inter], [ec_pki.root], NOW)
    assert [der(cert) for cert in path] == [der(ec_pki.leaf), der(ec_pki.inter), der(ec_pki.root)]
    with pytest.raises(CertUntrustedError):
        build_path(ec_pki.leaf, [ec_pki.inter], [ec_pki.root], NOW, max_depth=0)


# -- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        (IdType.ID_FQDN, b"gw1.example.org"),
        (IdType.ID_FQDN, b"GW1.Example.ORG."),
        (IdType.ID_RFC822_ADDR, b"admin@example.org"),
        (IdType.ID_IPV4_ADDR, ipaddress.ip_address("192.0.2.1").packed),
        (IdType.ID_IPV6_ADDR, ipaddress.ip_address("2001:db8::1").packed),
        (IdType.ID_DER_ASN1_DN, name("gw1.example.org").public_bytes()),
        # strongSwan's encoding of the same DN (PrintableString where cryptography wrote UTF8String)
        (IdType.ID_DER_ASN1_DN, encode_dn("C=CH, O=pyike test, CN=gw1.example.org")),
        (IdType.ID_DER_ASN1_DN, encode_dn("C=ch, O=PyIKE  Test, CN=GW1.example.org")),
    ],
)
def test_identity_matches(mode, ec_pki, identity):
    assert verify(mode, ec_pki.leaf, [ec_pki.inter], [ec_pki.root], identity=identity).identity == identity


def test_key_id_and_directory_name_identities(ec_pki):
    ski = ec_pki.leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert identity_matches(ec_pki.leaf, (IdType.ID_KEY_ID, ski))
    assert not identity_matches(ec_pki.leaf, (IdType.ID_KEY_ID, b"\x00" * 20))
    leaf = ec_pki.issue(san=[x509.DirectoryName(name("alias"))])
    assert identity_matches(leaf, (IdType.ID_DER_ASN1_DN, name("alias").public_bytes()))


@pytest.mark.parametrize(
    "identity,shown",
    [
        ((IdType.ID_FQDN, b"gw2.example.org"), "ID_FQDN gw2.example.org"),
        ((IdType.ID_FQDN, b"example.org"), "ID_FQDN example.org"),
        ((IdType.ID_RFC822_ADDR, b"root@example.org"), "ID_RFC822_ADDR root@example.org"),
        ((IdType.ID_IPV4_ADDR, ipaddress.ip_address("192.0.2.2").packed), "ID_IPV4_ADDR 192.0.2.2"),
        ((IdType.ID_IPV6_ADDR, ipaddress.ip_address("2001:db8::2").packed), "ID_IPV6_ADDR 2001:db8::2"),
        ((IdType.ID_DER_ASN1_DN, encode_dn("C=CH, O=pyike test, CN=gw2.example.org")), "ID_DER_ASN1_DN"),
        ((IdType.ID_DER_ASN1_DN, encode_dn("CN=gw1.example.org, O=pyike test, C=CH")), "ID_DER_ASN1_DN"),
        ((IdType.ID_DER_ASN1_DN, b"\x30\x03junk"), "ID_DER_ASN1_DN #"),
        ((IdType.ID_KEY_ID, b"\x01\x02"), "ID_KEY_ID #0102"),
        ((IdType.ID_DER_ASN1_GN, b"\x82\x03abc"), "ID_DER_ASN1_GN"),
    ],
)
def test_wrong_identity(mode, ec_pki, identity, shown):
    with pytest.raises(CertIdentityError, match="peer identity %s" % shown) as error:
        verify(mode, ec_pki.leaf, [ec_pki.inter], [ec_pki.root], identity=identity)
    assert "does not match its certificate CN=gw1.example.org" in str(error.value)
    assert "dns:gw1.example.org" in str(error.value)
    assert error.value.reason == "identity_mismatch"


def test_fqdn_identity_needs_a_subject_alt_name(ec_pki):
    """The CN is not an FQDN identity: only subjectAltName dNSName counts."""
    dn_only = ec_pki.issue(san=None)
    with pytest.raises(CertIdentityError, match=r"subjectAltName: none\)"):
        check_identity(dn_only, FQDN)


def test_library_rejection_that_our_checks_cannot_explain(monkeypatch, ec_pki):
    """If only the library verifier objects, its reason is reported as untrusted."""
    from pyike.crypto import certs_verify

    def reject(*args):
        raise certs_verify._LibraryRejected("name constraints violated")

    monkeypatch.setattr(certs_verify, "_library_path", reject)
    with pytest.raises(
        CertUntrustedError,
        match=r"X\.509 verifier found no acceptable path to a configured CA: name constraints violated",
    ):
        verify_peer(der(ec_pki.leaf), [der(ec_pki.inter)], [ec_pki.root], NOW, FQDN, use_library=True)


def test_trust_anchor_without_basic_constraints(mode, ec_pki):
    root = make_cert(name("Root CA"), ec_pki.root_key, ca=None, key_usage="ca", serial=47)
    with pytest.raises(CertNotCaError, match="has no basicConstraints"):
        verify(mode, ec_pki.leaf, [ec_pki.inter], [root])


def test_bounded_work_for_a_hostile_peer(mode, ec_pki):
    with pytest.raises(CertFormatError, match="sent 17 intermediate certificates"):
        verify(mode, ec_pki.leaf, [ec_pki.inter] * 17, [ec_pki.root])
    # Look-alike issuers (same name, other key) cost one signature check each and fail cleanly.
    decoys = [
        make_cert(
            name("Intermediate CA"),
            key("p256", 20 + index),
            ec_pki.root,
            ec_pki.root_key,
            ca=True,
            serial=60 + index,
        )
        for index in range(16)
    ]
    with pytest.raises(CertSignatureError):
        verify(mode, ec_pki.leaf, decoys, [ec_pki.root])
