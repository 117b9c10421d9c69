"""The peer's certificate checks: path validation to a configured CA, validity, identity.

:func:`verify_peer` is the one entry point: the end-entity certificate from the peer's CERT
payloads must chain to one of our configured CA certificates, be valid now, and carry the
identity the peer claimed in IDi/IDr (RFC 4945 §3.1).  Path validation uses
``cryptography.x509.verification`` where the installed release has a configurable verifier (45
and later); older releases (Debian 12 ships 38) get :func:`build_path`, the same checks composed
from ``cryptography`` primitives: each link's signature verified with its issuer's public key,
validity dates, basicConstraints cA and keyUsage keyCertSign for issuers, path length, name
chaining.  When the library verifier rejects a path, :func:`build_path` runs to name the precise
failure.  Every failure is one distinct :class:`.certs.CertError` subclass.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from ..ids import IdType
from ..text import printable
from . import x509_der as der
from .certs import (
    CertError,
    CertExpiredError,
    CertFormatError,
    CertIdentityError,
    CertNotCaError,
    CertNotYetValidError,
    CertPolicyError,
    CertSignatureError,
    CertUntrustedError,
    Identity,
    as_utc,
    is_self_issued,
    name_text,
    not_valid_after,
    not_valid_before,
    public_key_of,
    subject_text,
    to_der,
)
from .signature import (
    MIN_RSA_BITS,
    SUPPORTED_HASHES,
    SignatureAuthenticator,
    SignatureError,
    key_description,
    key_type,
    parse_algorithm_identifier,
    verify_with_scheme,
)

MAX_PATH_DEPTH = 8  # certificates between the end entity and the trust anchor, at most
MAX_INTERMEDIATES = 16  # CERT payloads beyond the end entity that we look at
MAX_LINK_CHECKS = 64  # signature checks while building one path (a peer controls the candidates)


# -- identity ----------------------------------------------------------------------------------

_STRING_DECODERS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # TeletexString (T.61; latin-1 is what everyone reads)
    0x16: "latin-1",  # IA5String
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


def _normalize(value: str) -> str:
    """RFC 4518-lite: case-insensitive, insignificant whitespace removed."""
    return " ".join(value.split()).casefold()


def _dn_from_der(data: bytes) -> List[frozenset]:
    """A DER Name as a list of RDNs, each a set of (OID text, normalized value)."""
    rdns = []
    for rdn in der.children(der.read_one(data, der.SEQUENCE).content):
        if rdn.tag != der.SET:
            raise der.DerError("RDN is not a SET")
        attributes = set()
        for attribute in der.children(rdn.content):
            fields = der.children(attribute.content) if attribute.tag == der.SEQUENCE else []
            if len(fields) != 2 or fields[0].tag != der.OID:
                raise der.DerError("bad AttributeTypeAndValue")
            encoding = _STRING_DECODERS.get(fields[1].tag)
            value = fields[1].content.decode(encoding) if encoding else "#" + fields[1].encoded.hex()
            attributes.add((der.oid_text(fields[0].content), _normalize(value)))
        rdns.append(frozenset(attributes))
    return rdns


def _dn_from_name(name: x509.Name) -> List[frozenset]:
    return [
        frozenset((attribute.oid.dotted_string, _normalize(str(attribute.value))) for attribute in rdn)
        for rdn in name.rdns
    ]


def _names_equal(name: x509.Name, encoded: bytes) -> bool:
    if name.public_bytes() == encoded:
        return True
    try:
        return _dn_from_name(name) == _dn_from_der(encoded)
    except (der.DerError, UnicodeDecodeError):
        return False


def _san(certificate: x509.Certificate) -> List[x509.GeneralName]:
    try:
        return list(certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value)
    except x509.ExtensionNotFound:
        return []


def _fold_name(value: str) -> str:
    return value.rstrip(".").lower()


def identity_matches(certificate: x509.Certificate, identity: Identity) -> bool:
    """True if ``identity`` (IdType, data) is an identity of ``certificate`` (RFC 4945 §3.1).

    ID_FQDN / ID_RFC822_ADDR / ID_IPV4_ADDR / ID_IPV6_ADDR against subjectAltName dNSName /
    rfc822Name / iPAddress; ID_DER_ASN1_DN against the subject (same DER, or the same RDNs with
    values compared case-insensitively) or a directoryName; ID_KEY_ID against the
    subjectKeyIdentifier.
    """
    id_type, data = int(identity[0]), bytes(identity[1])
    names = _san(certificate)
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        try:
            wanted = _fold_name(data.decode("ascii"))
        except UnicodeDecodeError:
            return False
        kind = x509.DNSName if id_type == IdType.ID_FQDN else x509.RFC822Name
        return any(isinstance(name, kind) and _fold_name(name.value) == wanted for name in names)
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        return any(
            isinstance(name, x509.IPAddress)
            and isinstance(name.value, (ipaddress.IPv4Address, ipaddress.IPv6Address))
            and name.value.packed == data
            for name in names
        )
    if id_type == IdType.ID_DER_ASN1_DN:
        if _names_equal(certificate.subject, data):
            return True
        return any(isinstance(name, x509.DirectoryName) and _names_equal(name.value, data) for name in names)
    if id_type == IdType.ID_KEY_ID:
        try:
            ski = certificate.extensions.get_extension_for_oid(
                ExtensionOID.SUBJECT_KEY_IDENTIFIER
            ).value.digest
        except x509.ExtensionNotFound:
            return False
        return ski == data
    return False


def _identity_text(identity: Identity) -> str:
    id_type, data = int(identity[0]), bytes(identity[1])
    try:
        name = IdType(id_type).name
    except ValueError:
        name = "ID type %d" % id_type
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR) and len(data) in (4, 16):
        return "%s %s" % (name, ipaddress.ip_address(data))
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        return "%s %s" % (name, printable(data.decode("ascii", "backslashreplace")))
    if id_type == IdType.ID_DER_ASN1_DN:
        try:
            rdns = _dn_from_der(data)
            return "%s %s" % (
                name,
                printable(", ".join("%s=%s" % pair for rdn in rdns for pair in sorted(rdn))),
            )
        except (der.DerError, UnicodeDecodeError):
            pass
    return "%s #%s" % (name, data.hex())


def _san_text(certificate: x509.Certificate) -> str:
    parts = []
    for name in _san(certificate):
        if isinstance(name, x509.DNSName):
            parts.append("dns:%s" % name.value)
        elif isinstance(name, x509.RFC822Name):
            parts.append("email:%s" % name.value)
        elif isinstance(name, x509.IPAddress):
            parts.append("ip:%s" % name.value)
        elif isinstance(name, x509.DirectoryName):
            parts.append("dn:%s" % name.value.rfc4514_string())
    return printable(", ".join(parts)) or "none"


def san_text(certificate: x509.Certificate) -> str:
    """The certificate's subjectAltName entries for messages: ``dns:gw1.example.org, ip:192.0.2.1``."""
    return _san_text(certificate)


def check_identity(certificate: x509.Certificate, identity: Identity) -> None:
    """Raise CertIdentityError unless ``identity`` is an identity of ``certificate``."""
    if not identity_matches(certificate, identity):
        raise CertIdentityError(
            "peer identity %s does not match its certificate %s (subjectAltName: %s)"
            % (_identity_text(identity), subject_text(certificate), _san_text(certificate))
        )


# -- path validation -------------------------------------------------------------------------


def _check_dates(certificate: x509.Certificate, now: datetime.datetime, role: str) -> None:
    start, end = not_valid_before(certificate), not_valid_after(certificate)
    if now < start:
        raise CertNotYetValidError(
            "%s %s is not valid before %s"
            % (role, subject_text(certificate), start.strftime("%Y-%m-%d %H:%M:%S UTC"))
        )
    if now > end:
        raise CertExpiredError(
            "%s %s expired on %s" % (role, subject_text(certificate), end.strftime("%Y-%m-%d %H:%M:%S UTC"))
        )


def _check_key(certificate: x509.Certificate, role: str) -> None:
    key = public_key_of(certificate)
    try:
        kind = key_type(key)
    except SignatureError as error:
        raise CertPolicyError("%s %s: %s" % (role, subject_text(certificate), error)) from None
    if kind == "rsa" and key.key_size < MIN_RSA_BITS:
        raise CertPolicyError(
            "%s %s has an RSA key of %d bits; at least %d are required"
            % (role, subject_text(certificate), key.key_size, MIN_RSA_BITS)
        )


def _extension(certificate: x509.Certificate, oid):
    try:
        return certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _signature_scheme(certificate: x509.Certificate):
    """The scheme of the certificate's own signatureAlgorithm (PSS parameters included)."""
    fields = der.children(der.read_one(to_der(certificate), der.SEQUENCE).content)
    if len(fields) != 3:
        raise der.DerError("a Certificate has three fields")
    return parse_algorithm_identifier(fields[1].encoded)


def check_link(
    child: x509.Certificate,
    issuer: x509.Certificate,
    now: datetime.datetime,
    below: int,
    is_anchor: bool = False,
) -> None:
    """Check that ``issuer`` may have issued ``child`` (whose issuer name it carries).

    ``below`` is the number of non-self-issued intermediates between ``issuer`` and the end
    entity, for the path length constraint; ``is_anchor`` says ``issuer`` is a configured CA
    certificate (for the messages).  Raises the CertError that describes the failure.
    """
    who = subject_text(issuer)
    try:
        scheme = _signature_scheme(child)
    except (der.DerError, SignatureError) as error:
        raise CertPolicyError(
            "certificate %s is signed with an unsupported algorithm: %s" % (subject_text(child), error)
        ) from None
    if scheme.hash_id not in SUPPORTED_HASHES:
        raise CertPolicyError(
            "certificate %s is signed with %s, which is not accepted" % (subject_text(child), scheme.name)
        )
    if not verify_with_scheme(public_key_of(issuer), scheme, child.signature, child.tbs_certificate_bytes):
        if is_anchor:
            raise CertSignatureError(
                "the signature on certificate %s does not verify with the key of the configured CA "
                "certificate %s (same name, different key: was that CA re-created?)"
                % (subject_text(child), who)
            )
        raise CertSignatureError(
            "the signature on certificate %s does not verify with the key of its issuer %s"
            % (subject_text(child), who)
        )
    constraints = _extension(issuer, ExtensionOID.BASIC_CONSTRAINTS)
    if constraints is None:
        raise CertNotCaError("certificate %s is used as a CA but has no basicConstraints extension" % who)
    if not constraints.ca:
        raise CertNotCaError(
            "certificate %s is used as a CA but its basicConstraints say it is not one" % who
        )
    usage = _extension(issuer, ExtensionOID.KEY_USAGE)
    if usage is not None and not usage.key_cert_sign:
        raise CertNotCaError("CA certificate %s has a keyUsage without keyCertSign" % who)
    if constraints.path_length is not None and below > constraints.path_length:
        raise CertPolicyError(
            "CA certificate %s allows %d intermediate CA(s) below it, the path has %d"
            % (who, constraints.path_length, below)
        )
    _check_dates(issuer, now, "CA certificate")
    _check_key(issuer, "CA certificate")


def build_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    now: datetime.datetime,
    max_depth: int = MAX_PATH_DEPTH,
) -> List[x509.Certificate]:
    """A path leaf -> intermediates -> trust anchor, built and checked with ``cryptography`` primitives.

    Depth-first over issuer candidates by name, each link checked by :func:`check_link`
    (signature with the issuer's key, issuer is a CA with keyCertSign, path length, validity,
    key strength).  Without any path it raises the failure that got furthest, or
    CertUntrustedError when no candidate issuer exists at all.  The leaf's own dates and key are
    the caller's to check (:func:`verify_peer` does it first).
    """
    anchors = list(trust_anchors)
    pool = list(intermediates)
    failures: List[Tuple[int, CertError]] = []
    dead_ends: List[x509.Certificate] = []
    budget = [MAX_LINK_CHECKS]

    def extend(chain: List[x509.Certificate]) -> Optional[List[x509.Certificate]]:
        current = chain[-1]
        below = sum(1 for cert in chain[1:] if not is_self_issued(cert))
        candidates = [(anchor, True) for anchor in anchors if anchor.subject == current.issuer]
        if len(chain) <= max_depth:
            candidates += [
                (cert, False)
                for cert in pool
                if cert.subject == current.issuer and all(to_der(cert) != to_der(seen) for seen in chain)
            ]
        if not candidates:
            dead_ends.append(current)
        for candidate, is_anchor in candidates:
            if budget[0] <= 0:
                raise CertUntrustedError(
                    "no path to a configured CA within %d signature checks" % MAX_LINK_CHECKS
                )
            budget[0] -= 1
            try:
                check_link(current, candidate, now, below, is_anchor)
            except CertError as error:
                failures.append((len(chain), error))
                continue
            if is_anchor:
                return [*chain, candidate]
            found = extend([*chain, candidate])
            if found is not None:
                return found
        return None

    path = extend([leaf])
    if path is not None:
        return path
    if failures:
        deepest = max(depth for depth, _error in failures)
        raise next(error for depth, error in failures if depth == deepest)
    stuck = dead_ends[-1] if dead_ends else leaf
    raise CertUntrustedError(
        "no path to a configured CA: the issuer %s of %s is neither a configured CA certificate nor among "
        "the %d intermediate certificate(s) the peer sent"
        % (name_text(stuck.issuer), subject_text(stuck), len(pool))
    )


def library_verifier_available() -> bool:
    """True if the installed ``cryptography`` has a verifier whose extension policies we can set (45+)."""
    try:
        from cryptography.x509 import verification
    except ImportError:
        return False
    return hasattr(verification, "ExtensionPolicy") and hasattr(
        verification.PolicyBuilder, "extension_policies"
    )


def _library_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    now: datetime.datetime,
    max_depth: int,
) -> List[x509.Certificate]:
    """Path validation by ``cryptography.x509.verification``; raises its VerificationError.

    The CA policy is the library's web PKI one, relaxed where IKE PKIs differ: basicConstraints
    may be non-critical and keyUsage may be absent (RFC 5280 §6.1.4 checks them only when
    present).  End-entity extensions are ours to judge (IKE certificates need no serverAuth
    EKU and may identify by DN only), so the end-entity policy permits them all.
    """
    from cryptography.x509 import verification

    ca_policy = (
        verification.ExtensionPolicy.webpki_defaults_ca()
        .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, None)
        .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _ca_key_usage)
    )
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trust_anchors)))
        .time(now)
        .max_chain_depth(max_depth)
        .extension_policies(ca_policy=ca_policy, ee_policy=verification.ExtensionPolicy.permit_all())
    )
    try:
        return list(builder.build_client_verifier().verify(leaf, list(intermediates)).chain)
    except verification.VerificationError as error:
        raise _LibraryRejected(str(error)) from None


def _ca_key_usage(policy, certificate: x509.Certificate, usage: Optional[x509.KeyUsage]) -> None:
    """Library validator: a CA's keyUsage, when present, must assert keyCertSign."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage of a CA certificate lacks keyCertSign")


class _LibraryRejected(Exception):
    """The library verifier found no acceptable path (its message says why)."""


@dataclass
class PeerCertResult:
    """A verified peer certificate: its public key verifies the peer's AUTH payload."""

    certificate: x509.Certificate
    chain: List[x509.Certificate]  # end entity first, trust anchor last
    identity: Identity
    verifier: str  # "cryptography.x509.verification" or "pyike"
    public_key: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.public_key = public_key_of(self.certificate)

    @property
    def trust_anchor(self) -> x509.Certificate:
        return self.chain[-1]

    def authenticator(self, method: int, **options) -> SignatureAuthenticator:
        """The authenticator that checks the peer's AUTH payload of ``method`` with this key."""
        return SignatureAuthenticator.verifier(self.public_key, method, **options)

    def describe(self) -> str:
        return "%s (%s) via %s" % (
            subject_text(self.certificate),
            key_description(self.public_key),
            " <- ".join(subject_text(cert) for cert in self.chain[1:]),
        )


def parse_peer_certificate(data: bytes, position: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(bytes(data))
    except ValueError as error:
        raise CertFormatError("%s is not a DER X.509 certificate: %s" % (position, error)) from None


def verify_peer(
    end_cert_der: bytes,
    intermediates_der: Sequence[bytes],
    trust_anchors: Sequence[x509.Certificate],
    now: Union[datetime.datetime, float, int],
    expected_identity: Identity,
    *,
    max_depth: int = MAX_PATH_DEPTH,
    use_library: Optional[bool] = None,
) -> PeerCertResult:
    """Check the peer's certificate; return it with its public key, or raise a CertError.

    ``end_cert_der`` is the first CERT payload (X509_SIGNATURE), ``intermediates_der`` the
    others, ``trust_anchors`` the configured CA certificates, ``now`` wall-clock time (a
    datetime or epoch seconds, never a monotonic clock), ``expected_identity`` the peer's
    IDi/IDr as (IdType, data).  Checks, in order: the end entity's dates (CertExpiredError,
    CertNotYetValidError) and key (CertPolicyError); a path to a trust anchor
    (CertUntrustedError, CertSignatureError, CertNotCaError, CertExpiredError of a CA, ...);
    the identity (CertIdentityError).  ``use_library`` forces (True) or forbids (False) the
    ``cryptography`` verifier; by default it is used when available.  Whatever else ``cryptography``
    raises on a peer's malformed certificate (duplicate extensions, unsupported algorithms, an
    unknown version, undecodable names) becomes a CertFormatError too.
    """
    try:
        return _verify_peer(
            end_cert_der, intermediates_der, trust_anchors, now, expected_identity, max_depth, use_library
        )
    except CertError:
        raise
    except Exception as error:
        raise CertFormatError(
            "the peer's certificate cannot be processed: %s: %s"
            % (type(error).__name__, printable(str(error)))
        ) from None


def _verify_peer(
    end_cert_der, intermediates_der, trust_anchors, now, expected_identity, max_depth, use_library
):
    moment = as_utc(now)
    if not trust_anchors:
        raise CertUntrustedError("no CA certificates are configured to verify the peer's certificate")
    if len(intermediates_der) > MAX_INTERMEDIATES:
        raise CertFormatError(
            "the peer sent %d intermediate certificates; at most %d are accepted"
            % (len(intermediates_der), MAX_INTERMEDIATES)
        )
    leaf = parse_peer_certificate(end_cert_der, "the peer's end-entity certificate")
    intermediates = [
        parse_peer_certificate(data, "the peer's CERT payload %d" % index)
        for index, data in enumerate(intermediates_der, start=2)
    ]
    _check_dates(leaf, moment, "certificate")
    _check_key(leaf, "certificate")
    usage = _extension(leaf, ExtensionOID.KEY_USAGE)
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise CertPolicyError(
            "certificate %s has a keyUsage without digitalSignature (RFC 4945 §5.1.3.2)" % subject_text(leaf)
        )
    library = library_verifier_available() if use_library is None else use_library
    if library:
        try:
            chain = _library_path(leaf, intermediates, trust_anchors, moment, max_depth)
        except _LibraryRejected as error:  # diagnose with our own checks for a precise error
            build_path(leaf, intermediates, trust_anchors, moment, max_depth)
            raise CertUntrustedError(
                "certificate %s: the X.509 verifier found no acceptable path to a configured CA: %s"
                % (subject_text(leaf), error)
            ) from None
        verifier = "cryptography.x509.verification"
    else:
        chain = build_path(leaf, intermediates, trust_anchors, moment, max_depth)
        verifier = "pyike"
    check_identity(leaf, expected_identity)
    return PeerCertResult(leaf, chain, (int(expected_identity[0]), bytes(expected_identity[1])), verifier)
