"""Certificates for lab tests, made with ``cryptography``: a root CA, an intermediate CA, gateway leaves.

Everything strongSwan's ``pki --self --ca`` / ``pki --issue`` puts into certificates is there
(basicConstraints, keyUsage, SKI/AKI, subjectAltName with the gateway's DNS name), valid from a
day ago for 30 days of wall-clock time unless a test asks for an expired one.
"""

from __future__ import annotations

import datetime
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)

# Key types per family: (CA keys, gw1's leaf, gw2's leaf). RSA-3072 chains make IKE_AUTH exceed
# 1280 octets, so both ends fragment (RFC 7383).
FAMILIES = {
    "rsa": ("rsa3072", "rsa3072", "rsa2048"),
    "ecdsa": ("p384", "p256", "p384"),
}


@functools.cache
def new_key(kind: str, slot: str):
    """One private key per (kind, slot) and test session (RSA generation is slow)."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}[kind])


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issue(subject, subject_key, issuer=None, issuer_key=None, *, ca=False, dns=None, validity=None, serial=1):
    now = datetime.datetime.now(UTC)
    not_before, not_after = validity or (now - DAY, now + 30 * DAY)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .add_extension(_usage(ca), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), False
        )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
    return builder.sign(issuer_key if issuer_key is not None else subject_key, hashes.SHA256())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(private_key, pkcs8: bool = True) -> bytes:
    """PKCS#8, or the traditional form (PKCS#1 for RSA, SEC1 for ECDSA)."""
    form = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    return private_key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


class LabPki:
    """Root CA -> intermediate CA -> leaves for the gateways of one key family ("rsa" or "ecdsa")."""

    def __init__(self, family: str, org: str = "pyike lab"):
        ca_kind, self.gw1_kind, self.gw2_kind = FAMILIES[family]
        self.family = family
        self.org = "%s %s" % (org, family)
        self.root_key = new_key(ca_kind, self.org + " root")
        self.root = issue(_name("Root CA", self.org), self.root_key, ca=True, serial=1)
        self.inter_key = new_key(ca_kind, self.org + " intermediate")
        self.inter = issue(
            _name("Intermediate CA", self.org), self.inter_key, self.root, self.root_key, ca=True, serial=2
        )

    def leaf(self, host_id: str, kind: str, validity=None, serial: int = 10):
        """(certificate, private key) for ``host_id`` (CN and subjectAltName dNSName)."""
        private_key = new_key(kind, self.org + " " + host_id)
        certificate = issue(
            _name(host_id, self.org),
            private_key,
            self.inter,
            self.inter_key,
            dns=host_id,
            validity=validity,
            serial=serial,
        )
        return certificate, private_key


def expired_validity():
    now = datetime.datetime.now(UTC)
    return now - 60 * DAY, now - 30 * DAY
