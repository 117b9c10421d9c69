"""Identity strings -> (IdType, bytes) as strongSwan parses them (RFC 7296 §3.5)."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from pyike.config import Identity, IdentityError, parse_identity
from pyike.config.identity import dn_text, identity_text
from pyike.ids import IdType

# "C=CH, CN=gw1" encoded by hand: SEQUENCE { SET { SEQUENCE { 2.5.4.6, PrintableString "CH" } },
# SET { SEQUENCE { 2.5.4.3, PrintableString "gw1" } } } -- what strongSwan's atodn produces.
DN_C_CN = bytes.fromhex("301b310b3009060355040613024348310c300a06035504031303677731")


@pytest.mark.parametrize(
    ("text", "id_type", "data"),
    [
        ("192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("2001:db8::1", IdType.ID_IPV6_ADDR, ipaddress.IPv6Address("2001:db8::1").packed),
        ("gw1.example.com", IdType.ID_FQDN, b"gw1.example.com"),
        ("@gw1.example.com", IdType.ID_FQDN, b"gw1.example.com"),
        ("gw1", IdType.ID_FQDN, b"gw1"),
        ("10.1", IdType.ID_FQDN, b"10.1"),  # not a dotted quad, so a name (inet_pton rules)
        ("user@example.com", IdType.ID_RFC822_ADDR, b"user@example.com"),
        ("@@user@example.com", IdType.ID_RFC822_ADDR, b"user@example.com"),
        ("@#0a0B0c", IdType.ID_KEY_ID, b"\x0a\x0b\x0c"),
        ("C=CH, CN=gw1", IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("C=CH,CN=gw1", IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("  c = CH ,  cn = gw1  ", IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("/C=CH/CN=gw1", IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("asn1dn:C=CH, CN=gw1", IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("asn1dn:#" + DN_C_CN.hex(), IdType.ID_DER_ASN1_DN, DN_C_CN),
        ("fqdn:192.0.2.1", IdType.ID_FQDN, b"192.0.2.1"),
        ("dns:gw1", IdType.ID_FQDN, b"gw1"),
        ("FQDN:gw1", IdType.ID_FQDN, b"gw1"),
        ("email:gw1@example.com", IdType.ID_RFC822_ADDR, b"gw1@example.com"),
        ("rfc822:gw1@example.com", IdType.ID_RFC822_ADDR, b"gw1@example.com"),
        ("userfqdn:gw1@example.com", IdType.ID_RFC822_ADDR, b"gw1@example.com"),
        ("ipv4:192.0.2.1", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("ipv4:#c0000201", IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1])),
        ("ipv6:2001:db8::1", IdType.ID_IPV6_ADDR, ipaddress.IPv6Address("2001:db8::1").packed),
        ("keyid:my key", IdType.ID_KEY_ID, b"my key"),
        ("keyid:#01:02:03", IdType.ID_KEY_ID, b"\x01\x02\x03"),
        ("{2}:gw1", IdType.ID_FQDN, b"gw1"),
        ("{11}:#ff", IdType.ID_KEY_ID, b"\xff"),
    ],
)
def test_identity_table(text, id_type, data):
    identity = parse_identity(text)
    assert identity == (id_type, data)
    assert isinstance(identity.id_type, IdType)
    assert Identity.parse(text) == identity


def test_dn_string_types_follow_strongswan():
    # PrintableString where the value allows it, UTF8String otherwise, IA5String for e-mail.
    identity = parse_identity("C=CH, O=Example Corp, CN=gw_1, E=admin@example.com, OU=Zürich")
    assert dn_text(identity.data) == "C=CH, O=Example Corp, CN=gw_1, E=admin@example.com, OU=Zürich"
    expected = [(0x13, b"CH"), (0x13, b"Example Corp"), (0x0C, b"gw_1"), (0x16, b"admin@example.com")]
    for tag, value in expected:
        assert bytes([tag, len(value)]) + value in identity.data
    assert bytes([0x0C, len("Zürich".encode())]) + "Zürich".encode() in identity.data


def test_dn_matches_cryptography_name_encoding():
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strongSwan"),
            x509.NameAttribute(NameOID.COMMON_NAME, "moon.strongswan.org"),
        ]
    )
    # cryptography picks UTF8String for O and CN by default; strongSwan's PrintableString differs
    # only in those tags, which is what this checks.
    ours = parse_identity("C=CH, O=strongSwan, CN=moon.strongswan.org").data
    assert (
        ours.replace(b"\x13\x0astrongSwan", b"\x0c\x0astrongSwan").replace(b"\x13\x13moon", b"\x0c\x13moon")
        == name.public_bytes()
    )


@pytest.mark.parametrize(
    "text",
    ["%any", "*", "0.0.0.0", "::", "", "  "],
)
def test_any_identities(text):
    assert parse_identity(text, allow_any=True) is None
    with pytest.raises(IdentityError) as caught:
        parse_identity(text)
    assert "matches any identity" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("XX=foo", "unknown DN attribute 'XX'"),
        ("CN=", "attribute CN has an empty value"),
        ("CN=a,,O=b", "empty relative distinguished name"),
        ("CN=a, O", "'O' is not of the form ATTRIBUTE=value"),
        ("C=CHE, CN=x", "C must be a two-letter country code"),
        ("E=ädmin@example.com", "E must be ASCII"),
        ("@", "the FQDN is empty"),
        ("@@", "the e-mail address is empty"),
        ("user@", "is not a user@host identity"),
        ("@bad name", "printable ASCII without spaces"),
        ("gw 1", "printable ASCII without spaces"),
        ("gw1.exämple.com", "printable ASCII without spaces"),
        ("fe80::1::2", "neither an IPv6 address nor a name"),
        ("ipv4:1.2.3", "is not an IPv4 address"),
        ("ipv6:1.2.3.4", "is not an IPv6 address"),
        ("ipv4:#c00002", "ID_IPV4_ADDR needs 4 bytes"),
        ("@#xyz", "is not hexadecimal data"),
        ("@#", "has no identification data"),
        ("keyid:", "has no identification data"),
        ("asn1gn:foo", "needs binary data"),
        ("{99}:foo", "unknown identity type {99}"),
    ],
)
def test_bad_identities(text, message):
    with pytest.raises(IdentityError) as caught:
        parse_identity(text)
    assert message in str(caught.value)
    with pytest.raises(IdentityError):
        parse_identity(text, allow_any=True)


def test_not_a_string():
    with pytest.raises(IdentityError):
        parse_identity(42)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("@gw1", "gw1"),
        ("user@example.com", "user@example.com"),
        ("/C=CH/O=Example/CN=gw1", "C=CH, O=Example, CN=gw1"),
        ("keyid:ascii-key", "ascii-key"),
        ("@#00ff", "#00ff"),
    ],
)
def test_identity_text(text, shown):
    assert str(parse_identity(text)) == shown


def test_identity_text_of_broken_dn_is_hex():
    assert identity_text(IdType.ID_DER_ASN1_DN, b"\x30\x05\x31") == "#300531"
    assert identity_text(IdType.ID_IPV4_ADDR, b"\x01\x02") == "#0102"
