"""Registry of the IKEv2 transforms this implementation runs, keyed by IANA ids.

Each entry holds the sizes the rest of the engine needs (key, salt, IV, ICV, block) and the
strongSwan keyword used in proposal strings.  Sizes come from:
AES-CBC RFC 3602 / RFC 7296 §3.3.5, AES-GCM RFC 5282 §7 and RFC 4106 §8.1,
ChaCha20-Poly1305 RFC 7634 §§2-4, HMAC PRFs RFC 2104 / RFC 4868 §2.7,
HMAC integrity RFC 2404 and RFC 4868 §2.3, KE groups RFC 3526, RFC 5903, RFC 8031,
ML-KEM FIPS 203 (used as in RFC 9370 and draft-ietf-ipsecme-ikev2-mlkem).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Type

from cryptography.hazmat.primitives import hashes

from ..ids import DhId, EncrId, EsnId, IntegId, PrfId, TransformType
from . import features
from .errors import UnsupportedTransformError

MODE_CBC = "cbc"
MODE_GCM = "gcm"
MODE_CHACHA20_POLY1305 = "chacha20-poly1305"

KIND_MODP = "modp"
KIND_ECP = "ecp"
KIND_ECX = "ecx"  # RFC 7748 Montgomery curves (x25519, x448)
KIND_MLKEM = "mlkem"


@dataclass(frozen=True)
class EncrTransform:
    """One ENCR transform at one key length.

    ``key_length`` is the value of the Key Length attribute in bits, None for transforms that
    carry no such attribute (ChaCha20-Poly1305, RFC 7634 §4).  ``keymat_bytes`` is what
    prf+ must produce for it: the cipher key plus the salt of AEAD modes.
    """

    transform_id: EncrId
    key_length: Optional[int]
    name: str
    mode: str
    aead: bool
    key_bytes: int
    salt_bytes: int
    iv_bytes: int
    icv_bytes: int
    block_bytes: int

    @property
    def keymat_bytes(self) -> int:
        return self.key_bytes + self.salt_bytes


@dataclass(frozen=True)
class PrfTransform:
    """An HMAC PRF; its preferred key length equals its output length (RFC 7296 §2.13)."""

    transform_id: PrfId
    name: str
    hash_class: Type[hashes.HashAlgorithm]
    key_bytes: int
    output_bytes: int


@dataclass(frozen=True)
class IntegTransform:
    """An HMAC integrity transform; ``icv_bytes`` is the truncated output length.

    ``prf`` is the PRF using the same hash, which strongSwan adds to IKE proposals that name
    no PRF of their own.
    """

    transform_id: IntegId
    name: str
    hash_class: Type[hashes.HashAlgorithm]
    key_bytes: int
    icv_bytes: int
    prf: PrfId


@dataclass(frozen=True)
class KeTransform:
    """A key exchange method (Diffie-Hellman group or KEM)."""

    transform_id: DhId
    name: str
    kind: str


def _encr_entries() -> Dict[Tuple[int, Optional[int]], EncrTransform]:
    entries = []
    for bits in (128, 192, 256):
        entries.append(
            EncrTransform(EncrId.AES_CBC, bits, f"aes{bits}", MODE_CBC, False, bits // 8, 0, 16, 0, 16)
        )
    for bits in (128, 192, 256):
        entries.append(
            EncrTransform(EncrId.AES_GCM_16, bits, f"aes{bits}gcm16", MODE_GCM, True, bits // 8, 4, 8, 16, 1)
        )
    entries.append(
        EncrTransform(
            EncrId.CHACHA20_POLY1305, None, "chacha20poly1305", MODE_CHACHA20_POLY1305, True, 32, 4, 8, 16, 1
        )
    )
    return {(e.transform_id, e.key_length): e for e in entries}


ENCR_TRANSFORMS: Dict[Tuple[int, Optional[int]], EncrTransform] = _encr_entries()

PRF_TRANSFORMS: Dict[int, PrfTransform] = {
    PrfId.HMAC_SHA1: PrfTransform(PrfId.HMAC_SHA1, "prfsha1", hashes.SHA1, 20, 20),
    PrfId.HMAC_SHA2_256: PrfTransform(PrfId.HMAC_SHA2_256, "prfsha256", hashes.SHA256, 32, 32),
    PrfId.HMAC_SHA2_384: PrfTransform(PrfId.HMAC_SHA2_384, "prfsha384", hashes.SHA384, 48, 48),
    PrfId.HMAC_SHA2_512: PrfTransform(PrfId.HMAC_SHA2_512, "prfsha512", hashes.SHA512, 64, 64),
}

INTEG_TRANSFORMS: Dict[int, IntegTransform] = {
    IntegId.HMAC_SHA1_96: IntegTransform(IntegId.HMAC_SHA1_96, "sha1", hashes.SHA1, 20, 12, PrfId.HMAC_SHA1),
    IntegId.HMAC_SHA2_256_128: IntegTransform(
        IntegId.HMAC_SHA2_256_128, "sha256", hashes.SHA256, 32, 16, PrfId.HMAC_SHA2_256
    ),
    IntegId.HMAC_SHA2_384_192: IntegTransform(
        IntegId.HMAC_SHA2_384_192, "sha384", hashes.SHA384, 48, 24, PrfId.HMAC_SHA2_384
    ),
    IntegId.HMAC_SHA2_512_256: IntegTransform(
        IntegId.HMAC_SHA2_512_256, "sha512", hashes.SHA512, 64, 32, PrfId.HMAC_SHA2_512
    ),
}

KE_TRANSFORMS: Dict[int, KeTransform] = {
    DhId.MODP_2048: KeTransform(DhId.MODP_2048, "modp2048", KIND_MODP),
    DhId.MODP_3072: KeTransform(DhId.MODP_3072, "modp3072", KIND_MODP),
    DhId.MODP_4096: KeTransform(DhId.MODP_4096, "modp4096", KIND_MODP),
    DhId.ECP_256: KeTransform(DhId.ECP_256, "ecp256", KIND_ECP),
    DhId.ECP_384: KeTransform(DhId.ECP_384, "ecp384", KIND_ECP),
    DhId.ECP_521: KeTransform(DhId.ECP_521, "ecp521", KIND_ECP),
    DhId.CURVE25519: KeTransform(DhId.CURVE25519, "x25519", KIND_ECX),
    DhId.CURVE448: KeTransform(DhId.CURVE448, "x448", KIND_ECX),
    DhId.ML_KEM_768: KeTransform(DhId.ML_KEM_768, "mlkem768", KIND_MLKEM),
    DhId.ML_KEM_1024: KeTransform(DhId.ML_KEM_1024, "mlkem1024", KIND_MLKEM),
}

ESN_NAMES: Dict[int, str] = {EsnId.NO_ESN: "noesn", EsnId.ESN: "esn"}

ADDITIONAL_KE_TYPES: Tuple[TransformType, ...] = tuple(
    TransformType(t) for t in range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)
)
KE_TYPES: Tuple[TransformType, ...] = (TransformType.DH, *ADDITIONAL_KE_TYPES)


def encr_transform(encr_id: int, key_length: Optional[int]) -> EncrTransform:
    entry = ENCR_TRANSFORMS.get((encr_id, key_length))
    if entry is None:
        raise UnsupportedTransformError(f"unsupported encryption transform {encr_id} key length {key_length}")
    return entry


def prf_transform(prf_id: int) -> PrfTransform:
    entry = PRF_TRANSFORMS.get(prf_id)
    if entry is None:
        raise UnsupportedTransformError(f"unsupported PRF transform {prf_id}")
    return entry


def integ_transform(integ_id: int) -> IntegTransform:
    entry = INTEG_TRANSFORMS.get(integ_id)
    if entry is None:
        raise UnsupportedTransformError(f"unsupported integrity transform {integ_id}")
    return entry


def ke_transform(group_id: int) -> KeTransform:
    entry = KE_TRANSFORMS.get(group_id)
    if entry is None:
        raise UnsupportedTransformError(f"unsupported key exchange method {group_id}")
    return entry


def _ke_available(entry: KeTransform) -> bool:
    if entry.kind == KIND_MODP:
        return features.has_ffdh()
    if entry.kind == KIND_ECX:
        return features.has_x25519() if entry.transform_id == DhId.CURVE25519 else features.has_x448()
    if entry.kind == KIND_MLKEM:
        return features.has_mlkem(1024 if entry.transform_id == DhId.ML_KEM_1024 else 768)
    return True


def available_ke_groups() -> Tuple[DhId, ...]:
    """Key exchange methods that both this code and the installed cryptography support."""
    return tuple(entry.transform_id for entry in KE_TRANSFORMS.values() if _ke_available(entry))


def is_supported(transform_type: int, transform_id: int, key_length: Optional[int] = None) -> bool:
    """True if a transform can be negotiated here (implemented and available at runtime).

    NONE (0) counts as supported for the transform types where it has a meaning: INTEG
    (with AEAD), key exchange methods (no PFS / optional additional exchange) and ESN.
    """
    if transform_type == TransformType.ENCR:
        entry = ENCR_TRANSFORMS.get((transform_id, key_length))
        if entry is None:
            return False
        return entry.mode != MODE_CHACHA20_POLY1305 or features.has_chacha20_poly1305()
    if key_length is not None:
        return False
    if transform_type == TransformType.PRF:
        return transform_id in PRF_TRANSFORMS
    if transform_type == TransformType.INTEG:
        return transform_id == IntegId.NONE or transform_id in INTEG_TRANSFORMS
    if transform_type in KE_TYPES:
        if transform_id == DhId.NONE:
            return True
        entry = KE_TRANSFORMS.get(transform_id)
        return entry is not None and _ke_available(entry)
    if transform_type == TransformType.ESN:
        return transform_id in ESN_NAMES
    return False


def transform_name(transform_type: int, transform_id: int, key_length: Optional[int] = None) -> str:
    """strongSwan keyword of a transform; ``UNKNOWN_<type>_<id>`` for ids without one."""
    name: Optional[str] = None
    if transform_type == TransformType.ENCR:
        entry = ENCR_TRANSFORMS.get((transform_id, key_length))
        name = entry.name if entry else None
    elif transform_type == TransformType.PRF:
        prf = PRF_TRANSFORMS.get(transform_id)
        name = prf.name if prf else None
    elif transform_type == TransformType.INTEG:
        integ = INTEG_TRANSFORMS.get(transform_id)
        name = integ.name if integ else ("none" if transform_id == IntegId.NONE else None)
    elif transform_type in KE_TYPES:
        ke = KE_TRANSFORMS.get(transform_id)
        if ke is not None:
            name = ke.name
        elif transform_id == DhId.NONE:
            name = "modpnone" if transform_type == TransformType.DH else "none"
        if name is not None and transform_type != TransformType.DH:
            name = f"ke{transform_type - TransformType.ADDKE1 + 1}_{name}"
    elif transform_type == TransformType.ESN:
        name = ESN_NAMES.get(transform_id)
    if name is None:
        name = f"UNKNOWN_{transform_type}_{transform_id}"
        if key_length is not None:
            name += f"_{key_length}"
    return name
