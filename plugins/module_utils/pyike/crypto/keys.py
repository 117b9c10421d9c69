"""Key derivation of IKEv2: prf, prf+, SKEYSEED and the key material of IKE and Child SAs.

RFC 7296 §2.13 (prf+), §2.14 (IKE SA keys), §2.17 (Child SA KEYMAT), §2.18 (IKE SA rekey);
RFC 9370 §2.2.2 (keys updated after each IKE_INTERMEDIATE key exchange) and §2.2.4 (rekeys
with additional key exchanges).  Lengths come from the transform registry; AEAD keys include
their salt (RFC 5282 §7, RFC 7634 §4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from cryptography.hazmat.primitives import hmac

from .errors import CryptoError
from .selection import SelectedProposal
from .transforms import encr_transform, integ_transform, prf_transform

_SPI_BYTES = 8
_PRF_PLUS_MAX_BLOCKS = 255  # the counter octet of prf+ (RFC 7296 §2.13)


def _hidden(*fields: Tuple[str, bytes]) -> str:
    return ", ".join(f"{name}=<{len(value)} bytes>" for name, value in fields)


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(K, S) of the negotiated PRF transform (HMAC with the transform's hash)."""
    transform = prf_transform(prf_id)
    mac = hmac.HMAC(bytes(key), transform.hash_class())
    mac.update(bytes(data))
    return mac.finalize()


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) = T1 | T2 | …, T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n); first ``length`` octets."""
    output_bytes = prf_transform(prf_id).output_bytes
    if length < 0 or length > _PRF_PLUS_MAX_BLOCKS * output_bytes:
        raise CryptoError(f"prf+ cannot produce {length} octets with this PRF")
    blocks = []
    previous = b""
    produced = 0
    counter = 1
    while produced < length:
        previous = prf(prf_id, key, previous + bytes(seed) + bytes((counter,)))
        blocks.append(previous)
        produced += len(previous)
        counter += 1
    return b"".join(blocks)[:length]


def skeyseed(prf_id: int, ni: bytes, nr: bytes, shared_secret: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) for a new IKE SA (RFC 7296 §2.14)."""
    return prf(prf_id, bytes(ni) + bytes(nr), shared_secret)


def rekey_skeyseed(
    old_prf_id: int,
    old_sk_d: bytes,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    additional_secrets: Sequence[bytes] = (),
) -> bytes:
    """SKEYSEED of a rekeyed IKE SA: prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 §2.18).

    The PRF is the old IKE SA's.  With RFC 9370 additional key exchanges their secrets come after
    the nonces, in order: prf(SK_d, SK(0) | Ni | Nr | SK(1) | … | SK(n)) (RFC 9370 §2.2.4).
    """
    extra = b"".join(bytes(s) for s in additional_secrets)
    return prf(old_prf_id, old_sk_d, bytes(shared_secret) + bytes(ni) + bytes(nr) + extra)


@dataclass(frozen=True, repr=False)
class IkeKeys:
    """The seven keys of an IKE SA (RFC 7296 §2.14).  The repr shows lengths only."""

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        return "IkeKeys(" + _hidden(*((name, getattr(self, name)) for name in _IKE_KEY_NAMES)) + ")"


_IKE_KEY_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")


def _negotiated_prf(selected: SelectedProposal) -> int:
    if selected.prf is None:
        raise CryptoError("an IKE SA needs a negotiated PRF")
    return selected.prf


def ike_key_lengths(selected: SelectedProposal) -> Tuple[int, int, int]:
    """(PRF key, INTEG key, ENCR key incl. salt) lengths in octets for an IKE proposal."""
    prf_bytes = prf_transform(_negotiated_prf(selected)).key_bytes
    integ_bytes = 0 if selected.integ is None else integ_transform(selected.integ).key_bytes
    encr = encr_transform(selected.encr, selected.key_length)
    if not encr.aead and selected.integ is None:
        raise CryptoError("a non-AEAD IKE SA needs a negotiated integrity algorithm")
    return prf_bytes, integ_bytes, encr.keymat_bytes


def derive_ike_keys(
    selected: SelectedProposal, skeyseed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    if len(spi_i) != _SPI_BYTES or len(spi_r) != _SPI_BYTES:
        raise CryptoError("IKE SPIs are 8 octets each")
    prf_bytes, integ_bytes, encr_bytes = ike_key_lengths(selected)
    lengths = (prf_bytes, integ_bytes, integ_bytes, encr_bytes, encr_bytes, prf_bytes, prf_bytes)
    stream = prf_plus(
        _negotiated_prf(selected), skeyseed, bytes(ni) + bytes(nr) + bytes(spi_i) + bytes(spi_r), sum(lengths)
    )
    keys = []
    offset = 0
    for length in lengths:
        keys.append(stream[offset : offset + length])
        offset += length
    return IkeKeys(*keys)


def update_after_additional_ke(
    selected: SelectedProposal,
    keys: IkeKeys,
    ke_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> IkeKeys:
    """New IKE SA keys after one IKE_INTERMEDIATE key exchange (RFC 9370 §2.2.2).

    SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then all keys again from prf+ with the
    nonces and SPIs of the IKE_SA_INIT exchange.
    """
    seed = prf(_negotiated_prf(selected), keys.sk_d, bytes(ke_secret) + bytes(ni) + bytes(nr))
    return derive_ike_keys(selected, seed, ni, nr, spi_i, spi_r)


@dataclass(frozen=True, repr=False)
class ChildKeys:
    """Child SA keys per direction (RFC 7296 §2.17): ``_i`` protects initiator→responder.

    ENCR keys include the AEAD salt at their end; INTEG keys are empty with AEAD.
    """

    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes

    def __repr__(self) -> str:
        return (
            "ChildKeys("
            + _hidden(
                ("encr_i", self.encr_i),
                ("integ_i", self.integ_i),
                ("encr_r", self.encr_r),
                ("integ_r", self.integ_r),
            )
            + ")"
        )


def child_key_lengths(encr_id: int, key_length: Optional[int], integ_id: Optional[int]) -> Tuple[int, int]:
    """(ENCR key incl. salt, INTEG key) octets of one direction of a Child SA."""
    encr = encr_transform(encr_id, key_length)
    integ_bytes = 0 if not integ_id else integ_transform(integ_id).key_bytes
    return encr.keymat_bytes, integ_bytes


def child_keymat(
    prf_id: int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_key_len: int,
    integ_key_len: int,
    dh_secret: Optional[bytes] = None,
    additional_secrets: Sequence[bytes] = (),
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr [| SK(1) | … | SK(n)]) (RFC 7296 §2.17, RFC 9370 §2.2.4).

    Taken in order: initiator→responder ENCR then INTEG key, responder→initiator ENCR then INTEG.
    ``ni`` and ``nr`` are the nonces of the exchange that creates the Child SA.
    """
    if additional_secrets and dh_secret is None:
        raise CryptoError("additional key exchange secrets need the main key exchange secret")
    main = b"" if dh_secret is None else bytes(dh_secret)
    extra = b"".join(bytes(s) for s in additional_secrets)
    direction = encr_key_len + integ_key_len
    stream = prf_plus(prf_id, sk_d, main + bytes(ni) + bytes(nr) + extra, 2 * direction)
    return ChildKeys(
        encr_i=stream[:encr_key_len],
        integ_i=stream[encr_key_len:direction],
        encr_r=stream[direction : direction + encr_key_len],
        integ_r=stream[direction + encr_key_len :],
    )
