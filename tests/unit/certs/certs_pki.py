"""A small test PKI built with ``cryptography``: fixed validity windows, cached keys.

Every certificate carries what strongSwan's ``pki --self --ca`` / ``pki --issue`` would put
there (basicConstraints, keyUsage, SKI/AKI, subjectAltName), so the same PKI passes both the
library verifier (cryptography >= 45) and the fallback path validation.  Options produce the
broken certificates the error tests need.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import warnings
from typing import List, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.timezone.utc
# The fixed clock of the tests, and validity windows around it.
NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
CA_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=UTC)
CA_NOT_AFTER = datetime.datetime(2040, 1, 1, tzinfo=UTC)
EE_NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=UTC)
EE_NOT_AFTER = datetime.datetime(2030, 1, 1, tzinfo=UTC)
PAST = (datetime.datetime(2021, 1, 1, tzinfo=UTC), datetime.datetime(2022, 1, 1, tzinfo=UTC))
FUTURE = (datetime.datetime(2031, 1, 1, tzinfo=UTC), datetime.datetime(2032, 1, 1, tzinfo=UTC))


@functools.cache
def key(kind: str, slot: int = 0):
    """A private key per (kind, slot), generated once per test session."""
    if kind == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(65537, 3072)
    if kind == "rsa1024":
        return rsa.generate_private_key(65537, 1024)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    raise ValueError(kind)


def name(cn: str, org: str = "pyike test") -> x509.Name:
    """C=CH, O=<org>, CN=<cn> (DER in that order)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _sign_args(signer_key, hash_name: str, pss: bool):
    algorithm = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[hash_name]
    if pss:
        return algorithm, {"rsa_padding": padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)}
    return algorithm, {}


def make_cert(
    subject: x509.Name,
    subject_key,
    issuer: Optional[x509.Certificate] = None,
    issuer_key=None,
    *,
    ca: Optional[bool] = False,
    path_length: Optional[int] = None,
    key_usage: Optional[str] = "default",
    validity=None,
    san: Optional[List[x509.GeneralName]] = None,
    eku: Optional[List[x509.ObjectIdentifier]] = None,
    hash_name: str = "sha256",
    pss: bool = False,
    serial: int = 1000,
    ski: bool = True,
) -> x509.Certificate:
    """One certificate; ``ca=None`` leaves basicConstraints out, ``key_usage=None`` keyUsage.

    ``key_usage`` is "ee" (digitalSignature), "ca" (keyCertSign, cRLSign), "crl-only" (cRLSign)
    or "encipher" (keyEncipherment); "default" picks "ca" or "ee".
    """
    not_before, not_after = validity or (
        (CA_NOT_BEFORE, CA_NOT_AFTER) if ca else (EE_NOT_BEFORE, EE_NOT_AFTER)
    )
    signer_key = issuer_key if issuer_key is not None else subject_key
    issuer_name = issuer.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True
        )
    if key_usage == "default":
        key_usage = "ca" if ca else "ee"
    if key_usage is not None:
        ca_bits = key_usage in ("ca",)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=key_usage == "ee",
                content_commitment=False,
                key_encipherment=key_usage == "encipher",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca_bits,
                crl_sign=ca_bits or key_usage == "crl-only",
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), False
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), False)
    algorithm, extra = _sign_args(signer_key, hash_name, pss)
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        extra = {}
    with warnings.catch_warnings():  # SHA-1 signing, where still possible, warns of deprecation
        warnings.simplefilter("ignore")
        return builder.sign(signer_key, algorithm, **extra)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


GW_SAN = [
    x509.DNSName("gw1.example.org"),
    x509.RFC822Name("admin@example.org"),
    x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
]
SERVER_AUTH = [ExtendedKeyUsageOID.SERVER_AUTH]


class Pki:
    """Root CA -> intermediate CA -> gateway certificates, per key family."""

    def __init__(self, family: str = "rsa2048", org: str = "pyike test") -> None:
        self.family = family
        self.family_is_ec = family.startswith("p")
        ca_kind = {"rsa2048": "rsa2048", "rsa3072": "rsa3072", "p256": "p256", "p384": "p384"}[family]
        self.root_key = key(ca_kind, 1)
        self.root = make_cert(name("Root CA", org), self.root_key, ca=True, serial=1)
        self.inter_key = key(ca_kind, 2)
        self.inter = make_cert(
            name("Intermediate CA", org), self.inter_key, self.root, self.root_key, ca=True, serial=2
        )
        self.leaf_key = key(family, 3)
        self.leaf = make_cert(name("gw1.example.org"), self.leaf_key, self.inter, self.inter_key, san=GW_SAN)

    def issue(self, cn: str = "gw1.example.org", subject_key=None, **options) -> x509.Certificate:
        options.setdefault("san", GW_SAN)
        return make_cert(name(cn), subject_key or self.leaf_key, self.inter, self.inter_key, **options)
