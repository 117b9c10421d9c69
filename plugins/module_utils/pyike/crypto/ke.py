"""Key exchange methods behind one API for Diffie-Hellman groups and KEMs.

An IKE state machine drives every method the same way:

* initiator: ``ke = new_key_exchange(group)``; send ``ke.public_bytes()`` as KE data; on the
  reply, ``secret = ke.shared_secret(reply_ke_data)``;
* responder: ``reply_ke_data, secret = new_key_exchange(group).respond(initiator_ke_data)``.

For Diffie-Hellman ``respond`` is "our public value, and the secret with theirs".  For ML-KEM
(FIPS 203, used as in RFC 9370 and draft-ietf-ipsecme-ikev2-mlkem) the initiator sends an
encapsulation key, the responder replies with the ciphertext, and the initiator decapsulates.

Peer values are checked before use (RFC 7296 §3.4 exact length; RFC 5903 §7 / RFC 6989 point
and range checks; RFC 8031 §2 all-zero X25519/X448 output) and rejected with
:class:`KeyExchangeError`.  ``private_key`` injection exists for known-answer tests.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator, Optional, Tuple

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519

from ..ids import DhId, TransformType
from .errors import KeyExchangeError, UnsupportedTransformError
from .features import is_before_42
from .modp_groups import GENERATOR, MODP_2048_PRIME, MODP_3072_PRIME, MODP_4096_PRIME
from .transforms import KIND_ECP, KIND_ECX, KIND_MLKEM, KIND_MODP, is_supported, ke_transform

try:
    from cryptography.hazmat.primitives.asymmetric import dh as _dh
except ImportError:  # finite-field DH is deprecated upstream and may be removed
    _dh = None  # type: ignore[assignment]
try:
    from cryptography.hazmat.primitives.asymmetric import mlkem as _mlkem
except ImportError:  # cryptography before 47
    _mlkem = None  # type: ignore[assignment]

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)

_MODP_PRIMES = {
    DhId.MODP_2048: MODP_2048_PRIME,
    DhId.MODP_3072: MODP_3072_PRIME,
    DhId.MODP_4096: MODP_4096_PRIME,
}

# RFC 5903 §7: x and y each padded to the field size.
_ECP_CURVES = {
    DhId.ECP_256: (ec.SECP256R1, 32),
    DhId.ECP_384: (ec.SECP384R1, 48),
    DhId.ECP_521: (ec.SECP521R1, 66),
}

# RFC 8031 §2 (public values and shared secrets), FIPS 203 §8 Table 3 (ek, ciphertext).
_ECX_LENGTHS = {DhId.CURVE25519: 32, DhId.CURVE448: 56}
# RFC 7748 §6: the public value is X25519(k, 9) / X448(k, 5), the scalar multiplication of the base point.
# cryptography before 42 takes 215-450 us for public_key() (a DER round trip through OpenSSL) and 52 us for
# that multiplication through exchange(); 51 takes 5 us for public_key(), so it keeps that.
_ECX_BASE_POINTS = {DhId.CURVE25519: b"\x09" + bytes(31), DhId.CURVE448: b"\x05" + bytes(55)}
_SLOW_PUBLIC_KEY = is_before_42()
_MLKEM_LENGTHS = {DhId.ML_KEM_768: (1184, 1088), DhId.ML_KEM_1024: (1568, 1568)}
_MLKEM_SEED_BYTES = 64


@contextlib.contextmanager
def _ffdh_deprecation_silenced() -> Iterator[None]:
    """Recent cryptography releases flag finite-field DH as deprecated, but IKEv2 still needs
    the MODP groups (RFC 8247 §2.4 keeps group 14 a MUST); mute that one warning around them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Diffie-Hellman over finite fields.*")
        yield


class KeyExchange:
    """One side of one key exchange.  Subclasses hold the private state."""

    group: DhId
    is_kem = False

    def public_bytes(self) -> bytes:
        """The KE payload data this side sends as initiator."""
        raise NotImplementedError

    def shared_secret(self, peer_public: bytes) -> bytes:
        """Initiator side: the secret from the responder's KE data."""
        raise NotImplementedError

    def respond(self, peer_public: bytes) -> Tuple[bytes, bytes]:
        """Responder side: ``(KE data to send, shared secret)`` for the initiator's KE data."""
        raise NotImplementedError

    def _check_length(self, data: bytes, expected: int, what: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise KeyExchangeError(f"{self.group.name}: {what} must be bytes")
        if len(data) != expected:
            raise KeyExchangeError(
                f"{self.group.name}: {what} is {len(data)} octets, RFC 7296 §3.4 requires {expected}"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.group.name}>"


class _DiffieHellman(KeyExchange):
    def respond(self, peer_public: bytes) -> Tuple[bytes, bytes]:
        secret = self.shared_secret(peer_public)
        return self.public_bytes(), secret


class ModpKeyExchange(_DiffieHellman):
    """RFC 3526 MODP groups with generator 2."""

    def __init__(self, group: DhId, private_key: Optional[bytes]) -> None:
        dh = _dh
        self.group = group
        self._prime = _MODP_PRIMES[group]
        self._length = (self._prime.bit_length() + 7) // 8
        with _ffdh_deprecation_silenced():
            self._numbers = dh.DHParameterNumbers(self._prime, GENERATOR)
            if private_key is None:
                self._key = self._numbers.parameters().generate_private_key()
            else:
                exponent = int.from_bytes(private_key, "big")
                if not 1 < exponent < self._prime - 1:
                    raise KeyExchangeError(f"{group.name}: injected private exponent out of range")
                # cryptography derives no public value from a bare exponent; this path serves
                # only injected test keys, generated keys come from OpenSSL.
                public = pow(GENERATOR, exponent, self._prime)
                self._key = dh.DHPrivateNumbers(
                    exponent, dh.DHPublicNumbers(public, self._numbers)
                ).private_key()
        y = self._key.public_key().public_numbers().y
        self._public = y.to_bytes(self._length, "big")

    def public_bytes(self) -> bytes:
        return self._public

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, self._length, "peer public value")
        y = int.from_bytes(bytes(peer_public), "big")
        # RFC 6989 §2.1 / SP 800-56A: reject 0, 1 and p-1 (and anything >= p).
        if not 1 < y < self._prime - 1:
            raise KeyExchangeError(f"{self.group.name}: peer public value out of range")
        try:
            with _ffdh_deprecation_silenced():
                peer_key = _dh.DHPublicNumbers(y, self._numbers).public_key()
                secret = self._key.exchange(peer_key)
        except ValueError:
            raise KeyExchangeError(f"{self.group.name}: peer public value rejected") from None
        # RFC 7296 §2.14: g^ir is fixed-length, with leading zeros kept.
        return secret.rjust(self._length, b"\0")


class EcpKeyExchange(_DiffieHellman):
    """RFC 5903 NIST curves: KE data is x | y, the shared secret is x of the product point."""

    def __init__(self, group: DhId, private_key: Optional[bytes]) -> None:
        self.group = group
        curve_class, self._coordinate_bytes = _ECP_CURVES[group]
        self._curve = curve_class()
        if private_key is None:
            self._key = ec.generate_private_key(self._curve)
        else:
            try:
                self._key = ec.derive_private_key(int.from_bytes(private_key, "big"), self._curve)
            except ValueError:
                raise KeyExchangeError(f"{group.name}: injected private key out of range") from None
        encoded = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public = encoded[1:]

    def public_bytes(self) -> bytes:
        return self._public

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, 2 * self._coordinate_bytes, "peer public value")
        try:
            # from_encoded_point checks that the point lies on the curve (RFC 6989 §2.3).
            peer_key = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + bytes(peer_public))
            return self._key.exchange(ec.ECDH(), peer_key)
        except ValueError:
            raise KeyExchangeError(
                f"{self.group.name}: peer public value is not a point on the curve"
            ) from None


class EcxKeyExchange(_DiffieHellman):
    """RFC 8031 Curve25519 / Curve448 (X25519 and X448 of RFC 7748)."""

    def __init__(self, group: DhId, private_key: Optional[bytes]) -> None:
        private_class: Any
        if group == DhId.CURVE25519:
            private_class, self._public_class = x25519.X25519PrivateKey, x25519.X25519PublicKey
        else:
            private_class, self._public_class = x448.X448PrivateKey, x448.X448PublicKey
        self.group = group
        self._length = _ECX_LENGTHS[group]
        if private_key is None:
            self._key = private_class.generate()
        else:
            self._check_length(private_key, self._length, "injected private key")
            self._key = private_class.from_private_bytes(bytes(private_key))
        if _SLOW_PUBLIC_KEY:
            self._public = self._key.exchange(self._public_class.from_public_bytes(_ECX_BASE_POINTS[group]))
        else:
            self._public = self._key.public_key().public_bytes(*_RAW)

    def public_bytes(self) -> bytes:
        return self._public

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, self._length, "peer public value")
        try:
            secret = self._key.exchange(self._public_class.from_public_bytes(bytes(peer_public)))
        except ValueError:
            raise KeyExchangeError(f"{self.group.name}: peer public value rejected") from None
        # RFC 8031 §2: an all-zero result means a small-order peer value.
        if not any(secret):
            raise KeyExchangeError(f"{self.group.name}: peer public value gives an all-zero secret")
        return secret


class MlKemKeyExchange(KeyExchange):
    """ML-KEM-768/1024.  The initiator's key pair is created on first use, from ``seed`` if given."""

    is_kem = True

    def __init__(self, group: DhId, seed: Optional[bytes]) -> None:
        mlkem = _mlkem
        self.group = group
        if group == DhId.ML_KEM_768:
            self._private_class, self._public_class = mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey
        else:
            self._private_class, self._public_class = mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey
        self._ek_length, self._ct_length = _MLKEM_LENGTHS[group]
        if seed is not None:
            self._check_length(seed, _MLKEM_SEED_BYTES, "injected seed")
        self._seed = None if seed is None else bytes(seed)
        self._key: Any = None

    def _private(self) -> Any:
        if self._key is None:
            if self._seed is None:
                self._key = self._private_class.generate()
            else:
                self._key = self._private_class.from_seed_bytes(self._seed)
        return self._key

    def public_bytes(self) -> bytes:
        return self._private().public_key().public_bytes(*_RAW)

    def shared_secret(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, self._ct_length, "ciphertext")
        try:
            return self._private().decapsulate(bytes(peer_public))
        except ValueError:
            raise KeyExchangeError(f"{self.group.name}: ciphertext rejected") from None

    def respond(self, peer_public: bytes) -> Tuple[bytes, bytes]:
        self._check_length(peer_public, self._ek_length, "encapsulation key")
        try:
            # from_public_bytes performs the FIPS 203 §7.2 encapsulation key check.
            public_key = self._public_class.from_public_bytes(bytes(peer_public))
        except ValueError:
            raise KeyExchangeError(f"{self.group.name}: encapsulation key fails the FIPS 203 check") from None
        secret, ciphertext = public_key.encapsulate()
        return ciphertext, secret


def new_key_exchange(group_id: int, private_key: Optional[bytes] = None) -> KeyExchange:
    """A fresh key exchange for ``group_id``.

    ``private_key`` fixes the private value for known-answer tests: the big-endian exponent
    (MODP) or scalar (ECP), the raw RFC 7748 scalar (X25519/X448) or the 64-octet d|z seed
    (ML-KEM).  Raises :class:`UnsupportedTransformError` for methods that are not implemented
    or not available in the installed cryptography.
    """
    entry = ke_transform(group_id)
    if not is_supported(TransformType.DH, group_id):
        raise UnsupportedTransformError(f"key exchange method {entry.name} is not available here")
    if private_key is not None and not isinstance(private_key, (bytes, bytearray)):
        raise KeyExchangeError("injected private key must be bytes")
    group = DhId(group_id)
    try:
        if entry.kind == KIND_MODP:
            return ModpKeyExchange(group, private_key)
        if entry.kind == KIND_ECP:
            return EcpKeyExchange(group, private_key)
        if entry.kind == KIND_ECX:
            return EcxKeyExchange(group, private_key)
        if entry.kind == KIND_MLKEM:
            return MlKemKeyExchange(group, private_key)
    except UnsupportedAlgorithm:
        raise UnsupportedTransformError(f"key exchange method {entry.name} is not available here") from None
    except ValueError:
        raise KeyExchangeError(f"{entry.name}: injected private key rejected") from None
    raise UnsupportedTransformError(f"key exchange method {entry.name} is not implemented")
