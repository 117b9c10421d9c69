"""X.509 certificates for IKE: loading, errors, CERTREQ, and our own credentials.

* Loading (:func:`load_certificates`, :func:`load_chain`, :func:`load_private_key`,
  :func:`load_ca_bundle`, and the ``parse_*`` twins for data in memory): PEM (any number of
  blocks) or DER; keys as PKCS#1, PKCS#8 or SEC1.  Every error names the file; no error
  carries key material.
* The :class:`CertError` family: one class per way a peer's certificate can fail, raised by
  :func:`.certs_verify.verify_peer` (the path validation and identity checks live there).
* CERTREQ (RFC 7296 §3.7): :func:`certreq_authority` lists SHA-1 hashes of our CA
  certificates' SubjectPublicKeyInfo; :func:`select_credential` picks the
  :class:`LocalCredential` (certificate, chain, private key) that answers the peer's list.
"""

from __future__ import annotations

import datetime
import functools
import os
import re
from typing import Iterable, List, Optional, Sequence, Set, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from ..text import printable
from . import x509_der as der
from .errors import CryptoError
from .signature import (
    AuthChoice,
    SignatureAuthenticator,
    SignatureError,
    choose_auth,
    key_description,
    key_type,
)

UTC = datetime.timezone.utc
SHA1_SIZE = 20

PathLike = Union[str, "os.PathLike[str]"]
Identity = Tuple[int, bytes]


# -- errors ----------------------------------------------------------------------------------


class CertError(CryptoError):
    """A certificate problem; ``reason`` is a stable keyword for logs and tests."""

    reason = "certificate"


class CertLoadError(CertError):
    """A certificate, key or CA file that cannot be read or parsed; the message names the file."""

    reason = "load"


class CertFormatError(CertError):
    """A certificate from the peer that is not DER X.509."""

    reason = "malformed"


class CertExpiredError(CertError):
    reason = "expired"


class CertNotYetValidError(CertError):
    reason = "not_yet_valid"


class CertUntrustedError(CertError):
    """No path from the peer's certificate to any configured CA certificate."""

    reason = "untrusted"


class CertSignatureError(CertError):
    """A link of the chain whose signature does not verify with its issuer's key."""

    reason = "bad_signature"


class CertNotCaError(CertError):
    """A certificate used as an issuer without basicConstraints cA (or without keyCertSign)."""

    reason = "not_a_ca"


class CertPolicyError(CertError):
    """Weak or unsupported keys and signature algorithms, path length, key usage."""

    reason = "policy"


class CertIdentityError(CertError):
    """The peer's IDi/IDr is not an identity of its certificate."""

    reason = "identity_mismatch"


# -- loading ---------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_KEY_LABELS = (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY")


def _read(path: PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise CertLoadError(
            "%s: cannot read the %s: %s" % (os.fspath(path), what, error.strerror or error)
        ) from None


def _pem_blocks(data: bytes) -> List[Tuple[bytes, bytes]]:
    return [(match.group(1), match.group(0)) for match in _PEM_BLOCK.finditer(data)]


def parse_certificates(data: bytes, source: str) -> List[x509.Certificate]:
    """Every certificate in PEM ``data`` (in order), or the one DER certificate."""
    data = bytes(data)
    blocks = _pem_blocks(data)
    if not blocks and b"-----BEGIN" not in data:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError as error:
            raise CertLoadError(
                "%s: not a PEM file and not a DER certificate (%s)" % (source, error)
            ) from None
    certificates = []
    for index, (label, block) in enumerate(blocks, start=1):
        if label != b"CERTIFICATE":
            continue
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError as error:
            raise CertLoadError(
                "%s: PEM block %d is not a valid certificate: %s" % (source, index, error)
            ) from None
    if not certificates:
        labels = ", ".join(sorted({label.decode() for label, _block in blocks})) or "none readable"
        raise CertLoadError("%s: no CERTIFICATE block found (PEM blocks: %s)" % (source, labels))
    return certificates


def load_certificates(path: PathLike) -> List[x509.Certificate]:
    """Every certificate of a PEM file (a chain: end entity first) or the one of a DER file."""
    return parse_certificates(_read(path, "certificate file"), os.fspath(path))


def load_certificate(path: PathLike) -> x509.Certificate:
    """The one certificate of a file; a file with several is refused (use :func:`load_chain`)."""
    certificates = load_certificates(path)
    if len(certificates) != 1:
        raise CertLoadError(
            "%s: holds %d certificates where one was expected; give chains as a chain file"
            % (os.fspath(path), len(certificates))
        )
    return certificates[0]


def load_chain(path: PathLike) -> Tuple[x509.Certificate, List[x509.Certificate]]:
    """(end-entity certificate, the intermediates after it) of a chain file."""
    certificates = load_certificates(path)
    return certificates[0], certificates[1:]


def load_ca_bundle(paths: Union[PathLike, Sequence[PathLike]]) -> List[x509.Certificate]:
    """CA certificates from files and directories (every regular file in them), duplicates dropped."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    anchors: List[x509.Certificate] = []
    seen: Set[bytes] = set()
    for path in paths:
        if os.path.isdir(path):
            names = sorted(os.listdir(path))
            files = [os.path.join(path, name) for name in names if os.path.isfile(os.path.join(path, name))]
            if not files:
                raise CertLoadError("%s: the CA directory holds no files" % os.fspath(path))
        else:
            files = [path]
        for file_path in files:
            for certificate in load_certificates(file_path):
                encoded = certificate.public_bytes(serialization.Encoding.DER)
                if encoded not in seen:
                    seen.add(encoded)
                    anchors.append(certificate)
    return anchors


def parse_private_key(data: bytes, source: str, passphrase: Optional[bytes] = None):
    """An RSA or EC private key from PEM or DER (PKCS#1, PKCS#8, SEC1); encrypted ones need ``passphrase``."""
    data = bytes(data)
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    blocks = [block for label, block in _pem_blocks(data) if label in _KEY_LABELS]
    if b"-----BEGIN" in data and not blocks:
        labels = ", ".join(sorted({label.decode() for label, _block in _pem_blocks(data)})) or "none readable"
        raise CertLoadError("%s: no private key block found (PEM blocks: %s)" % (source, labels))
    encoded = blocks[0] if blocks else data
    loader = serialization.load_pem_private_key if blocks else serialization.load_der_private_key
    encrypted = b"ENCRYPTED" in encoded[:200] if blocks else False
    if encrypted and not passphrase:
        raise CertLoadError("%s: the private key is encrypted; give its passphrase" % source)
    try:
        try:
            key = loader(encoded, password=passphrase or None)
        except TypeError as error:
            text = str(error)
            if "not encrypted" in text:  # a passphrase for a plain key: use the key as it is
                key = loader(encoded, password=None)
            elif "encrypted" in text:
                raise CertLoadError(
                    "%s: the private key is encrypted; give its passphrase" % source
                ) from None
            else:
                raise CertLoadError("%s: cannot load the private key" % source) from None
    except ValueError:
        if passphrase:
            raise CertLoadError(
                "%s: cannot load the private key (wrong passphrase or damaged file)" % source
            ) from None
        raise CertLoadError("%s: not a PEM or DER private key (PKCS#1, PKCS#8 or SEC1)" % source) from None
    except CertLoadError:
        raise
    except Exception as error:  # UnsupportedAlgorithm and friends; the message carries no key data
        raise CertLoadError("%s: cannot load the private key: %s" % (source, type(error).__name__)) from None
    try:
        key_type(key)
    except SignatureError as error:
        raise CertLoadError("%s: %s" % (source, error)) from None
    return key


def load_private_key(path: PathLike, passphrase: Optional[bytes] = None):
    """The private key of a file; see :func:`parse_private_key`."""
    return parse_private_key(_read(path, "private key file"), os.fspath(path), passphrase)


# -- small certificate facts -----------------------------------------------------------------


def to_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def name_text(name: x509.Name) -> str:
    """A distinguished name for messages: ``CN=gw1,O=Example,C=CH`` (RFC 4514 order), escaped: RFC 4514
    leaves newlines and escape sequences of a peer's certificate as they are."""
    try:
        return printable(name.rfc4514_string())
    except Exception:  # undecodable attribute values of a peer's certificate
        return "(a name that cannot be decoded)"


def subject_text(certificate: x509.Certificate) -> str:
    """The subject for messages (see name_text)."""
    return name_text(certificate.subject)


def not_valid_before(certificate: x509.Certificate) -> datetime.datetime:
    value = getattr(certificate, "not_valid_before_utc", None)  # cryptography >= 42
    return value if value is not None else certificate.not_valid_before.replace(tzinfo=UTC)


def not_valid_after(certificate: x509.Certificate) -> datetime.datetime:
    value = getattr(certificate, "not_valid_after_utc", None)
    return value if value is not None else certificate.not_valid_after.replace(tzinfo=UTC)


def as_utc(now: Union[datetime.datetime, float, int]) -> datetime.datetime:
    """Wall-clock time as an aware UTC datetime: from a datetime (naive means UTC) or epoch seconds."""
    if isinstance(now, datetime.datetime):
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return datetime.datetime.fromtimestamp(float(now), tz=UTC)


def _sha1(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 7296 §3.7 names SHA-1 for CA key hashes
    digest.update(data)
    return digest.finalize()


@functools.lru_cache(maxsize=512)
def public_key_of(certificate: x509.Certificate):
    """The certificate's public key, parsed once per certificate: every IKE_AUTH with certificates
    asks for the CA keys several times (CERTREQ hashes, chain checks), and cryptography 38 takes
    about 0.8 ms to parse one. Certificates compare and hash by their DER."""
    return certificate.public_key()


@functools.lru_cache(maxsize=512)
def _spki(certificate: x509.Certificate) -> bytes:
    return public_key_of(certificate).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's DER SubjectPublicKeyInfo: its entry in CERTREQ (RFC 7296 §3.7)."""
    return _sha1(_spki(certificate))


def public_key_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING alone (RFC 5280 §4.2.1.2 method 1).

    Some implementations put this in CERTREQ instead of the SubjectPublicKeyInfo hash, so we
    accept either when reading a peer's CERTREQ.
    """
    fields = der.children(der.read_one(_spki(certificate), der.SEQUENCE).content)
    return _sha1(fields[1].content[1:])  # skip the unused-bits octet of the BIT STRING


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_self_issued(certificate: x509.Certificate) -> bool:
    return certificate.subject == certificate.issuer


# -- CERTREQ ---------------------------------------------------------------------------------


def certreq_authority(trust_anchors: Iterable[x509.Certificate]) -> bytes:
    """Certification Authority data of our CERTREQ: concatenated key hashes of our CA certificates.

    Only CA certificates are listed (as strongSwan does), each once, in configuration order.
    Empty when there is nothing to ask for: then send no CERTREQ at all.
    """
    hashes_seen: List[bytes] = []
    for anchor in trust_anchors:
        if is_ca(anchor):
            digest = key_hash(anchor)
            if digest not in hashes_seen:
                hashes_seen.append(digest)
    return b"".join(hashes_seen)


def split_authority(authority: bytes) -> List[bytes]:
    """The 20-octet hashes of a peer's CERTREQ data ([] when it is not a whole number of them)."""
    authority = bytes(authority)
    if len(authority) % SHA1_SIZE:
        return []
    return [authority[index : index + SHA1_SIZE] for index in range(0, len(authority), SHA1_SIZE)]


class LocalCredential:
    """Our certificate, the intermediates to send with it, and its private key (never shown).

    ``ca_certificates`` may add the CA certificates that issued the top of the chain (usually
    the configured CA bundle), so that a peer's CERTREQ for our root is recognised.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key,
        intermediates: Sequence[x509.Certificate] = (),
        source: str = "",
    ) -> None:
        where = source or subject_text(certificate)
        try:
            key_type(private_key)
            key_type(public_key_of(certificate))
        except SignatureError as error:
            raise CertLoadError("%s: %s" % (where, error)) from None
        if _public_spki(private_key) != _spki(certificate):
            raise CertLoadError(
                "%s: the private key does not belong to certificate %s" % (where, subject_text(certificate))
            )
        self.certificate = certificate
        self.intermediates = [cert for cert in intermediates if not is_self_issued(cert)]
        self.source = where
        self._private_key = private_key

    @classmethod
    def from_files(
        cls,
        cert_path: PathLike,
        key_path: PathLike,
        chain_path: Optional[PathLike] = None,
        passphrase: Optional[bytes] = None,
    ) -> LocalCredential:
        """A certificate file (maybe with its chain after it), the key file, an optional chain file."""
        certificate, intermediates = load_chain(cert_path)
        if chain_path is not None:
            intermediates = intermediates + load_certificates(chain_path)
        key = load_private_key(key_path, passphrase)
        return cls(certificate, key, intermediates, "%s, %s" % (os.fspath(cert_path), os.fspath(key_path)))

    @property
    def public_key(self):
        return public_key_of(self.certificate)

    def cert_payloads(self) -> List[bytes]:
        """DER certificates for our CERT payloads (encoding X509_SIGNATURE), end entity first."""
        return [to_der(self.certificate)] + [to_der(cert) for cert in self.intermediates]

    def authority_hashes(self, ca_certificates: Iterable[x509.Certificate] = ()) -> Set[bytes]:
        """Key hashes (both forms) of every CA above our certificate that we know of."""
        chain = [self.certificate, *self.intermediates]
        authorities = list(self.intermediates)
        issuers = {cert.issuer.public_bytes() for cert in chain}
        authorities += [ca for ca in ca_certificates if ca.subject.public_bytes() in issuers]
        result: Set[bytes] = set()
        for authority in authorities:
            result.add(key_hash(authority))
            result.add(public_key_hash(authority))
        return result

    def answers(self, requested: Iterable[bytes], ca_certificates: Iterable[x509.Certificate] = ()) -> bool:
        """True if one of the requested CA key hashes is above our certificate."""
        return bool(self.authority_hashes(ca_certificates).intersection(requested))

    def choose_auth(self, peer_hashes: Optional[Sequence[int]], **options) -> AuthChoice:
        """:func:`.signature.choose_auth` for our key."""
        return choose_auth(self._private_key, peer_hashes, **options)

    def signer(self, choice: AuthChoice) -> SignatureAuthenticator:
        """The authenticator that builds our AUTH data for ``choice``."""
        return SignatureAuthenticator.signer(self._private_key, choice.method, choice.scheme)

    def __repr__(self) -> str:
        return "LocalCredential(%s, %s, %d intermediate(s), private key=<hidden>)" % (
            subject_text(self.certificate),
            key_description(public_key_of(self.certificate)),
            len(self.intermediates),
        )


def _public_spki(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def select_credential(
    credentials: Sequence[LocalCredential],
    requested: Iterable[bytes],
    ca_certificates: Iterable[x509.Certificate] = (),
) -> Optional[LocalCredential]:
    """The credential whose chain answers the peer's CERTREQ hashes; the first one otherwise.

    ``requested`` is the union of :func:`split_authority` over the peer's CERTREQ payloads
    (empty when it sent none).  None only when there are no credentials.
    """
    if not credentials:
        return None
    wanted = set(requested)
    anchors = list(ca_certificates)
    if wanted:
        for credential in credentials:
            if credential.answers(wanted, anchors):
                return credential
    return credentials[0]
