"""Signature authentication for IKE_AUTH: RFC 7427 Digital Signature and the classic methods.

Both peers sign the same "signed octets" as with a PSK (:func:`.auth.signed_octets`); what
this module adds is how the AUTH payload data is formed for signatures:

* Digital Signature (method 14, RFC 7427 §3): ``len(AlgorithmIdentifier) || AlgorithmIdentifier
  || signature``, the length a single octet.  We sign with RSASSA-PSS (RFC 4055 parameters:
  SHA-256/384/512, MGF1 with the same hash, salt as long as the hash), RSASSA-PKCS1-v1_5 with
  sha256/384/512WithRSAEncryption if configured, or ECDSA with SHA-256/384/512 (signature
  DER-encoded as in X.509, RFC 3279 Ecdsa-Sig-Value).  We verify any of these from the peer,
  as long as the hash is allowed and the algorithm suits the peer's key.
* RSA Digital Signature (method 1, RFC 7296 §2.15/§3.8): RSASSA-PKCS1-v1_5 with SHA-1.  Accepted
  from old peers; produced only when configured explicitly.
* ECDSA with SHA-256 on P-256 (9), SHA-384 on P-384 (10), SHA-512 on P-521 (11) (RFC 4754):
  the signature is ``r || s``, each as a fixed-length big-endian integer of the curve's size.

:func:`choose_auth` picks the method and algorithm for our AUTH from our key and the hash
algorithms the peer announced in N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4), whose data
:func:`encode_hash_algorithms` builds and :func:`parse_hash_algorithms` reads.

All signing and verification is done by ``cryptography``; only the framing is ours.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..ids import AuthMethod, HashAlgorithm
from . import x509_der as der
from .auth import Authenticator
from .errors import CryptoError

# -- object identifiers ----------------------------------------------------------------------

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
_OID_HASH: Dict[int, str] = {
    HashAlgorithm.SHA1: "1.3.14.3.2.26",
    HashAlgorithm.SHA2_256: "2.16.840.1.101.3.4.2.1",
    HashAlgorithm.SHA2_384: "2.16.840.1.101.3.4.2.2",
    HashAlgorithm.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_OID_RSA_PKCS1: Dict[int, str] = {
    HashAlgorithm.SHA1: "1.2.840.113549.1.1.5",  # sha1WithRSAEncryption
    HashAlgorithm.SHA2_256: "1.2.840.113549.1.1.11",
    HashAlgorithm.SHA2_384: "1.2.840.113549.1.1.12",
    HashAlgorithm.SHA2_512: "1.2.840.113549.1.1.13",
}
_OID_ECDSA: Dict[int, str] = {
    HashAlgorithm.SHA1: "1.2.840.10045.4.1",  # ecdsa-with-SHA1
    HashAlgorithm.SHA2_256: "1.2.840.10045.4.3.2",
    HashAlgorithm.SHA2_384: "1.2.840.10045.4.3.3",
    HashAlgorithm.SHA2_512: "1.2.840.10045.4.3.4",
}
_HASH_BY_OID = {text: hash_id for hash_id, text in _OID_HASH.items()}
_PKCS1_BY_OID = {text: hash_id for hash_id, text in _OID_RSA_PKCS1.items()}
_ECDSA_BY_OID = {text: hash_id for hash_id, text in _OID_ECDSA.items()}

_HASH_CLASSES = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}

# What we announce in N(SIGNATURE_HASH_ALGORITHMS) and accept under method 14 by default.
SUPPORTED_HASHES: Tuple[int, ...] = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
PSS_TRAILER_FIELD = 1  # trailerFieldBC, the only value RFC 4055 allows
MAX_PSS_SALT = 512

# Curves of the classic ECDSA methods (RFC 4754): method -> (curve name, hash, octets per r and s).
_CLASSIC_ECDSA: Dict[int, Tuple[str, int, int]] = {
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", HashAlgorithm.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", HashAlgorithm.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", HashAlgorithm.SHA2_512, 66),
}
_CLASSIC_BY_CURVE = {curve: method for method, (curve, _hash, _size) in _CLASSIC_ECDSA.items()}
SUPPORTED_CURVES = tuple(_CLASSIC_BY_CURVE)
MIN_RSA_BITS = 2048


class SignatureError(CryptoError):
    """A signature that cannot be produced or checked: wrong key type, unknown algorithm, bad data."""


# -- signature schemes of method 14 ----------------------------------------------------------


@dataclass(frozen=True)
class SignatureScheme:
    """One RFC 7427 signature algorithm: what the AlgorithmIdentifier in AUTH data names.

    ``kind`` is ``"rsa-pss"``, ``"rsa-pkcs1"`` or ``"ecdsa"``; for RSASSA-PSS ``mgf_hash`` and
    ``salt_length`` are the RFC 4055 parameters (ours: the same hash, salt of the hash's size).
    """

    kind: str
    hash_id: int
    mgf_hash: Optional[int] = None
    salt_length: Optional[int] = None

    @property
    def name(self) -> str:
        text = "%s-%s" % (self.kind, _hash_name(self.hash_id))
        if self.kind == "rsa-pss" and (
            self.mgf_hash != self.hash_id or self.salt_length != _digest_size(self.hash_id)
        ):
            text += "(mgf1-%s,salt=%s)" % (_hash_name(self.mgf_hash or 0), self.salt_length)
        return text

    @property
    def key_type(self) -> str:
        return "ecdsa" if self.kind == "ecdsa" else "rsa"

    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier of this scheme, as sent in AUTH data."""
        if self.kind == "ecdsa":
            return der.sequence(der.oid(_OID_ECDSA[self.hash_id]))  # parameters absent (RFC 5758 §3.2)
        if self.kind == "rsa-pkcs1":
            return der.sequence(der.oid(_OID_RSA_PKCS1[self.hash_id]), der.null())
        return der.sequence(der.oid(OID_RSASSA_PSS), _pss_parameters(self))

    def __repr__(self) -> str:
        return "SignatureScheme(%s)" % self.name


def _hash_name(hash_id: int) -> str:
    try:
        return {1: "sha1", 2: "sha256", 3: "sha384", 4: "sha512"}[hash_id]
    except KeyError:
        return "hash%d" % hash_id


def _digest_size(hash_id: int) -> int:
    return _HASH_CLASSES[hash_id].digest_size


def _hash_identifier(hash_id: int) -> bytes:
    """{ id-shaX, NULL }: RFC 4055 §2.1 requires the NULL inside RSASSA-PSS parameters."""
    return der.sequence(der.oid(_OID_HASH[hash_id]), der.null())


def _pss_parameters(scheme: SignatureScheme) -> bytes:
    """RSASSA-PSS-params (RFC 4055 §3.1); fields equal to their DEFAULT are omitted, as DER demands."""
    mgf_hash = scheme.mgf_hash if scheme.mgf_hash is not None else scheme.hash_id
    salt = scheme.salt_length if scheme.salt_length is not None else _digest_size(scheme.hash_id)
    fields = []
    if scheme.hash_id != HashAlgorithm.SHA1:
        fields.append(der.explicit(0, _hash_identifier(scheme.hash_id)))
    if mgf_hash != HashAlgorithm.SHA1:
        fields.append(der.explicit(1, der.sequence(der.oid(OID_MGF1), _hash_identifier(mgf_hash))))
    if salt != 20:
        fields.append(der.explicit(2, der.integer(salt)))
    return der.sequence(*fields)


def rsa_pss(hash_id: int) -> SignatureScheme:
    return SignatureScheme("rsa-pss", hash_id, hash_id, _digest_size(hash_id))


def rsa_pkcs1(hash_id: int) -> SignatureScheme:
    return SignatureScheme("rsa-pkcs1", hash_id)


def ecdsa(hash_id: int) -> SignatureScheme:
    return SignatureScheme("ecdsa", hash_id)


# Our schemes by configuration keyword.
SCHEMES: Dict[str, SignatureScheme] = {}
for _hash_id in SUPPORTED_HASHES:
    for _scheme in (rsa_pss(_hash_id), rsa_pkcs1(_hash_id), ecdsa(_hash_id)):
        SCHEMES[_scheme.name] = _scheme
del _hash_id, _scheme


def parse_algorithm_identifier(data: bytes) -> SignatureScheme:
    """The scheme a peer's AlgorithmIdentifier names; SignatureError if malformed or unknown.

    Hash AlgorithmIdentifiers inside PSS parameters may have NULL or absent parameters (RFC
    4055 §2.1 says to accept both).  Whether the hash is *allowed* is the caller's decision.
    """
    try:
        top = der.read_one(data, der.SEQUENCE)
        fields = der.children(top.content)
        if not fields or fields[0].tag != der.OID or len(fields) > 2:
            raise der.DerError("not an AlgorithmIdentifier")
        algorithm = der.oid_text(fields[0].content)
        parameters = fields[1] if len(fields) == 2 else None
        if algorithm in _ECDSA_BY_OID:
            _require_no_parameters(parameters, absent_only=False)
            return ecdsa(_ECDSA_BY_OID[algorithm])
        if algorithm in _PKCS1_BY_OID:
            _require_no_parameters(parameters, absent_only=False)
            return rsa_pkcs1(_PKCS1_BY_OID[algorithm])
        if algorithm == OID_RSASSA_PSS:
            return _parse_pss_parameters(parameters)
    except der.DerError as error:
        raise SignatureError("malformed signature AlgorithmIdentifier: %s" % error) from None
    raise SignatureError("unsupported signature algorithm %s" % algorithm)


def _require_no_parameters(parameters: Optional[der.Item], absent_only: bool) -> None:
    if parameters is None:
        return
    if absent_only or parameters.tag != der.NULL or parameters.content:
        raise der.DerError("unexpected algorithm parameters")


def _parse_hash_identifier(item: der.Item) -> int:
    if item.tag != der.SEQUENCE:
        raise der.DerError("hash AlgorithmIdentifier is not a SEQUENCE")
    fields = der.children(item.content)
    if not fields or fields[0].tag != der.OID or len(fields) > 2:
        raise der.DerError("bad hash AlgorithmIdentifier")
    _require_no_parameters(fields[1] if len(fields) == 2 else None, absent_only=False)
    text = der.oid_text(fields[0].content)
    if text not in _HASH_BY_OID:
        raise der.DerError("unsupported hash %s" % text)
    return _HASH_BY_OID[text]


def _parse_pss_parameters(parameters: Optional[der.Item]) -> SignatureScheme:
    hash_id, mgf_hash, salt, trailer = HashAlgorithm.SHA1, HashAlgorithm.SHA1, 20, PSS_TRAILER_FIELD
    if parameters is not None:  # absent parameters (RFC 7427 A.4.1) mean all defaults
        if parameters.tag != der.SEQUENCE:
            raise der.DerError("RSASSA-PSS parameters are not a SEQUENCE")
        last = -1
        for field in der.children(parameters.content):
            number = field.tag - 0xA0
            if not 0 <= number <= 3 or number <= last:
                raise der.DerError("unexpected field in RSASSA-PSS parameters")
            last = number
            inner = der.read_one(field.content)
            if number == 0:
                hash_id = _parse_hash_identifier(inner)
            elif number == 1:
                mgf = der.children(inner.content) if inner.tag == der.SEQUENCE else []
                if len(mgf) != 2 or mgf[0].tag != der.OID or der.oid_text(mgf[0].content) != OID_MGF1:
                    raise der.DerError("mask generation function is not MGF1")
                mgf_hash = _parse_hash_identifier(mgf[1])
            elif number == 2:
                salt = der.integer_value(inner)
            else:
                trailer = der.integer_value(inner)
    if trailer != PSS_TRAILER_FIELD:
        raise der.DerError("RSASSA-PSS trailer field must be 1")
    if not 0 <= salt <= MAX_PSS_SALT:
        raise der.DerError("RSASSA-PSS salt length %d out of range" % salt)
    return SignatureScheme("rsa-pss", hash_id, mgf_hash, salt)


def pss_padding(scheme: SignatureScheme) -> padding.PSS:
    """The ``cryptography`` padding object for an RSASSA-PSS scheme."""
    mgf_hash = scheme.mgf_hash if scheme.mgf_hash is not None else scheme.hash_id
    salt = scheme.salt_length if scheme.salt_length is not None else _digest_size(scheme.hash_id)
    return padding.PSS(mgf=padding.MGF1(_HASH_CLASSES[mgf_hash]()), salt_length=salt)


# -- AUTH data of method 14 ------------------------------------------------------------------


def encode_digital_signature(scheme: SignatureScheme, signature: bytes) -> bytes:
    """AUTH data: 1-octet ASN.1 length, AlgorithmIdentifier, signature (RFC 7427 §3)."""
    identifier = scheme.algorithm_identifier()
    if len(identifier) > 255:
        raise SignatureError("AlgorithmIdentifier longer than 255 octets")
    return bytes([len(identifier)]) + identifier + bytes(signature)


def decode_digital_signature(auth_data: bytes) -> Tuple[bytes, bytes]:
    """(AlgorithmIdentifier DER, signature) of method-14 AUTH data; SignatureError if malformed."""
    auth_data = bytes(auth_data)
    if not auth_data:
        raise SignatureError("empty Digital Signature AUTH data")
    size = auth_data[0]
    if size == 0 or 1 + size >= len(auth_data):
        raise SignatureError("Digital Signature AUTH data: AlgorithmIdentifier length %d does not fit" % size)
    return auth_data[1 : 1 + size], auth_data[1 + size :]


# -- keys ------------------------------------------------------------------------------------


def key_type(key) -> str:
    """``"rsa"`` or ``"ecdsa"`` for a public or private key; SignatureError for anything else."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if key.curve.name not in SUPPORTED_CURVES:
            raise SignatureError("unsupported elliptic curve %s (P-256, P-384 or P-521)" % key.curve.name)
        return "ecdsa"
    raise SignatureError("unsupported key type %s (RSA or ECDSA)" % type(key).__name__)


def key_description(key) -> str:
    """``RSA-3072`` or ``ECDSA-secp384r1``: for messages, never the key itself."""
    kind = key_type(key)
    if kind == "rsa":
        return "RSA-%d" % key.key_size
    return "ECDSA-%s" % key.curve.name


# -- hash algorithm negotiation (RFC 7427 §4) ------------------------------------------------


def encode_hash_algorithms(hash_ids: Sequence[int] = SUPPORTED_HASHES) -> bytes:
    """Notification data of N(SIGNATURE_HASH_ALGORITHMS): 16-bit identifiers, in order."""
    return b"".join(struct.pack("!H", int(hash_id)) for hash_id in hash_ids)


def parse_hash_algorithms(data: bytes) -> List[int]:
    """The peer's hash identifiers (unknown ones kept as ints); SignatureError if malformed."""
    data = bytes(data)
    if not data or len(data) % 2:
        raise SignatureError("SIGNATURE_HASH_ALGORITHMS data must be a non-empty list of 16-bit identifiers")
    return [value for (value,) in struct.iter_unpack("!H", data)]


class AuthChoice(NamedTuple):
    """What to put in our AUTH payload: the method and, for method 14, the scheme."""

    method: AuthMethod
    scheme: Optional[SignatureScheme]


def choose_auth(
    private_key,
    peer_hashes: Optional[Sequence[int]],
    *,
    rsa_padding: str = "pss",
    hash_preference: Sequence[int] = SUPPORTED_HASHES,
    allow_rsa_sha1: bool = False,
) -> AuthChoice:
    """Our AUTH method for ``private_key`` given the peer's SIGNATURE_HASH_ALGORITHMS.

    ``peer_hashes`` is :func:`parse_hash_algorithms` of the peer's notify, or None when it sent
    none.  With a common hash we use Digital Signature (14): for ECDSA the hash that matches the
    curve if the peer has it, else our first preference it has; for RSA our first preference it
    has, with PSS (``rsa_padding="pss"``) or PKCS#1 v1.5 (``"pkcs1"``).  Without one we fall back
    to the classic method: ECDSA (9/10/11) for the key's curve; for RSA, method 1 (SHA-1) only when
    ``allow_rsa_sha1`` is set, otherwise SignatureError.
    """
    kind = key_type(private_key)
    if rsa_padding not in ("pss", "pkcs1"):
        raise SignatureError("rsa_padding must be 'pss' or 'pkcs1', not %r" % rsa_padding)
    ours = [hash_id for hash_id in hash_preference if hash_id in SUPPORTED_HASHES]
    if kind == "ecdsa":
        classic = _CLASSIC_BY_CURVE[private_key.curve.name]
        ours = [_CLASSIC_ECDSA[classic][1], *ours]
    common = [hash_id for hash_id in ours if peer_hashes and hash_id in peer_hashes]
    if common:
        if kind == "ecdsa":
            return AuthChoice(AuthMethod.DIGITAL_SIGNATURE, ecdsa(common[0]))
        scheme = rsa_pss(common[0]) if rsa_padding == "pss" else rsa_pkcs1(common[0])
        return AuthChoice(AuthMethod.DIGITAL_SIGNATURE, scheme)
    if kind == "ecdsa":
        return AuthChoice(AuthMethod(classic), None)
    if allow_rsa_sha1:
        return AuthChoice(AuthMethod.RSA_SIG, None)
    announced = (
        "announced no SIGNATURE_HASH_ALGORITHMS" if not peer_hashes else "shares no hash algorithm with us"
    )
    raise SignatureError(
        "the peer %s; RSA signature authentication would need the classic SHA-1 method, "
        "which must be enabled explicitly" % announced
    )


# -- the Authenticator -----------------------------------------------------------------------


class SignatureAuthenticator(Authenticator):
    """AUTH data by signature: builds with our private key, verifies with the peer's public key.

    Make one with :meth:`signer` for our AUTH payload (method and scheme from :func:`choose_auth`)
    and one with :meth:`verifier` for the peer's AUTH payload (its method, the public key from
    the verified certificate).  The private key never appears in the repr or in messages.
    """

    def __init__(
        self,
        method: int,
        *,
        private_key=None,
        public_key=None,
        scheme: Optional[SignatureScheme] = None,
        allowed_hashes: Sequence[int] = SUPPORTED_HASHES,
        accept_rsa_sha1: bool = True,
    ) -> None:
        try:
            self.method = AuthMethod(method)
        except ValueError:
            raise SignatureError("unknown authentication method %d" % method) from None
        if self.method not in (AuthMethod.RSA_SIG, AuthMethod.DIGITAL_SIGNATURE, *_CLASSIC_ECDSA):
            raise SignatureError("%s is not a signature authentication method" % self.method.name)
        if private_key is not None and public_key is None:
            public_key = private_key.public_key()
        if public_key is None:
            raise SignatureError("a signature authenticator needs a key")
        self._private_key = private_key
        self._public_key = public_key
        self._key_type = key_type(public_key)
        self.scheme = scheme
        self.allowed_hashes = tuple(allowed_hashes)
        self.accept_rsa_sha1 = accept_rsa_sha1
        if private_key is not None:
            self._check_signing_setup()

    @classmethod
    def signer(
        cls, private_key, method: int, scheme: Optional[SignatureScheme] = None
    ) -> SignatureAuthenticator:
        """For our own AUTH payload: ``AuthChoice`` fields from :func:`choose_auth`."""
        return cls(method, private_key=private_key, scheme=scheme)

    @classmethod
    def verifier(
        cls,
        public_key,
        method: int,
        allowed_hashes: Sequence[int] = SUPPORTED_HASHES,
        accept_rsa_sha1: bool = True,
    ) -> SignatureAuthenticator:
        """For the peer's AUTH payload: ``method`` is the one in that payload."""
        return cls(
            method, public_key=public_key, allowed_hashes=allowed_hashes, accept_rsa_sha1=accept_rsa_sha1
        )

    def _check_signing_setup(self) -> None:
        if self.method == AuthMethod.DIGITAL_SIGNATURE:
            if self.scheme is None:
                raise SignatureError("Digital Signature authentication needs a signature scheme")
            if self.scheme.key_type != self._key_type:
                raise SignatureError(
                    "%s cannot sign with a %s key" % (self.scheme.name, key_description(self._public_key))
                )
        elif self.scheme is not None:
            raise SignatureError("a signature scheme only applies to Digital Signature authentication")
        else:
            self._classic_parameters()  # raises if the key does not suit the method

    # The three AUTH data forms ----------------------------------------------------------------
    def build(self, signed: bytes) -> bytes:
        if self._private_key is None:
            raise SignatureError("this authenticator has no private key; it can only verify")
        signed = bytes(signed)
        if self.method == AuthMethod.DIGITAL_SIGNATURE:
            if self.scheme is None:  # pragma: no cover - refused in __init__
                raise SignatureError("Digital Signature authentication needs a signature scheme")
            return encode_digital_signature(self.scheme, _sign(self._private_key, self.scheme, signed))
        if self.method == AuthMethod.RSA_SIG:
            return self._private_key.sign(signed, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - RFC 7296 §3.8
        hash_id, size = self._classic_parameters()
        r_value, s_value = decode_dss_signature(
            self._private_key.sign(signed, ec.ECDSA(_HASH_CLASSES[hash_id]()))
        )
        return r_value.to_bytes(size, "big") + s_value.to_bytes(size, "big")

    def verify(self, signed: bytes, auth_data: bytes) -> bool:
        try:
            self.check(signed, auth_data)
        except SignatureError:
            return False
        return True

    def check(self, signed: bytes, auth_data: bytes) -> SignatureScheme:
        """Like :meth:`verify`, but raises SignatureError saying why; returns the scheme used.

        For the classic methods the returned scheme describes the implied algorithm.
        """
        signed, auth_data = bytes(signed), bytes(auth_data)
        if self.method == AuthMethod.DIGITAL_SIGNATURE:
            identifier, signature = decode_digital_signature(auth_data)
            scheme = parse_algorithm_identifier(identifier)
            if scheme.hash_id not in self.allowed_hashes or (
                scheme.mgf_hash is not None and scheme.mgf_hash not in self.allowed_hashes
            ):
                raise SignatureError("the peer signed with %s, whose hash is not allowed" % scheme.name)
            if scheme.key_type != self._key_type:
                raise SignatureError(
                    "the peer signed with %s but its certificate has a %s key"
                    % (scheme.name, key_description(self._public_key))
                )
        elif self.method == AuthMethod.RSA_SIG:
            if self._key_type != "rsa":
                raise SignatureError(
                    "RSA signature AUTH from a peer with a %s key" % key_description(self._public_key)
                )
            if not self.accept_rsa_sha1:
                raise SignatureError("the peer used the classic RSA method (SHA-1), which is not accepted")
            scheme, signature = rsa_pkcs1(HashAlgorithm.SHA1), auth_data
        else:
            hash_id, size = self._classic_parameters()
            if len(auth_data) != 2 * size:
                raise SignatureError(
                    "%s signature must be %d octets, not %d" % (self.method.name, 2 * size, len(auth_data))
                )
            scheme = ecdsa(hash_id)
            r_value = int.from_bytes(auth_data[:size], "big")
            s_value = int.from_bytes(auth_data[size:], "big")
            signature = encode_dss_signature(r_value, s_value)
        if not _verify(self._public_key, scheme, signature, signed):
            raise SignatureError("the %s signature does not verify with the peer's public key" % scheme.name)
        return scheme

    def _classic_parameters(self) -> Tuple[int, int]:
        """(hash, octets per r and s) of a classic ECDSA method; checks the RSA method's key too."""
        if self.method == AuthMethod.RSA_SIG:
            if self._key_type != "rsa":
                raise SignatureError("the RSA signature method needs an RSA key")
            return HashAlgorithm.SHA1, 0
        curve, hash_id, size = _CLASSIC_ECDSA[self.method]
        if self._key_type != "ecdsa" or self._public_key.curve.name != curve:
            raise SignatureError(
                "%s needs a %s key, not %s" % (self.method.name, curve, key_description(self._public_key))
            )
        return hash_id, size

    def __repr__(self) -> str:
        scheme = " %s" % self.scheme.name if self.scheme is not None else ""
        role = "signs, private key=<hidden>" if self._private_key is not None else "verifies"
        return "SignatureAuthenticator(%s%s, %s, %s)" % (
            self.method.name,
            scheme,
            key_description(self._public_key),
            role,
        )


def _sign(private_key, scheme: SignatureScheme, data: bytes) -> bytes:
    algorithm = _HASH_CLASSES[scheme.hash_id]()
    if scheme.kind == "ecdsa":
        return private_key.sign(data, ec.ECDSA(algorithm))
    if scheme.kind == "rsa-pkcs1":
        return private_key.sign(data, padding.PKCS1v15(), algorithm)
    return private_key.sign(data, pss_padding(scheme), algorithm)


def _verify(public_key, scheme: SignatureScheme, signature: bytes, data: bytes) -> bool:
    algorithm = _HASH_CLASSES[scheme.hash_id]()
    try:
        if scheme.kind == "ecdsa":
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif scheme.kind == "rsa-pkcs1":
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            public_key.verify(signature, data, pss_padding(scheme), algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def verify_with_scheme(public_key, scheme: SignatureScheme, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` over ``data`` verifies under ``scheme`` (used for certificate links too)."""
    if scheme.key_type != key_type(public_key):
        return False
    return _verify(public_key, scheme, bytes(signature), bytes(data))
