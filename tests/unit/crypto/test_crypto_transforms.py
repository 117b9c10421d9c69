"""The transform registry: sizes per RFC, RFC 3526 primes recomputed, runtime availability."""

from __future__ import annotations

import pytest
from pyike.crypto import (
    UnsupportedTransformError,
    available_ke_groups,
    features,
    is_supported,
    modp_groups,
    transform_name,
)
from pyike.crypto.transforms import encr_transform, integ_transform, prf_transform
from pyike.ids import DhId, EncrId, IntegId, PrfId, TransformType


def _pi_bits(bits):
    """floor(pi * 2^bits) by Machin's formula in integer arithmetic."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inverse(x):
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (4 * (4 * arctan_inverse(5) - arctan_inverse(239))) >> guard


@pytest.mark.parametrize(
    "prime,bits,offset",
    [
        (modp_groups.MODP_2048_PRIME, 2048, 124476),
        (modp_groups.MODP_3072_PRIME, 3072, 1690314),
        (modp_groups.MODP_4096_PRIME, 4096, 240904),
    ],
)
def test_modp_primes_follow_rfc3526_formula(prime, bits, offset):
    assert prime == 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_bits(bits - 130) + offset)
    assert modp_groups.GENERATOR == 2


@pytest.mark.parametrize(
    "encr_id,key_length,key,salt,iv,icv,block,aead",
    [
        (EncrId.AES_CBC, 128, 16, 0, 16, 0, 16, False),
        (EncrId.AES_CBC, 256, 32, 0, 16, 0, 16, False),
        (EncrId.AES_GCM_16, 128, 16, 4, 8, 16, 1, True),
        (EncrId.AES_GCM_16, 192, 24, 4, 8, 16, 1, True),
        (EncrId.AES_GCM_16, 256, 32, 4, 8, 16, 1, True),
        (EncrId.CHACHA20_POLY1305, None, 32, 4, 8, 16, 1, True),
    ],
)
def test_encr_sizes(encr_id, key_length, key, salt, iv, icv, block, aead):
    entry = encr_transform(encr_id, key_length)
    assert (
        entry.key_bytes,
        entry.salt_bytes,
        entry.iv_bytes,
        entry.icv_bytes,
        entry.block_bytes,
        entry.aead,
    ) == (
        key,
        salt,
        iv,
        icv,
        block,
        aead,
    )
    assert entry.keymat_bytes == key + salt


def test_integ_and_prf_sizes():
    # RFC 4868 §2.1/§2.6, RFC 2404
    sizes = {
        i: (integ_transform(i).key_bytes, integ_transform(i).icv_bytes) for i in IntegId if i != IntegId.NONE
    }
    assert sizes == {
        IntegId.HMAC_SHA1_96: (20, 12),
        IntegId.HMAC_SHA2_256_128: (32, 16),
        IntegId.HMAC_SHA2_384_192: (48, 24),
        IntegId.HMAC_SHA2_512_256: (64, 32),
    }
    assert {p: prf_transform(p).key_bytes for p in PrfId} == {
        PrfId.HMAC_SHA1: 20,
        PrfId.HMAC_SHA2_256: 32,
        PrfId.HMAC_SHA2_384: 48,
        PrfId.HMAC_SHA2_512: 64,
    }


def test_unknown_lookups_raise_package_error():
    for call in (
        lambda: encr_transform(EncrId.AES_CTR, 128),
        lambda: encr_transform(EncrId.CHACHA20_POLY1305, 256),
        lambda: prf_transform(99),
        lambda: integ_transform(IntegId.NONE),
    ):
        with pytest.raises(UnsupportedTransformError):
            call()


def test_availability_follows_installed_cryptography():
    groups = available_ke_groups()
    assert {DhId.MODP_2048, DhId.ECP_256, DhId.CURVE25519} <= set(groups)
    assert (DhId.ML_KEM_768 in groups) == features.has_mlkem(768)
    assert (DhId.ML_KEM_1024 in groups) == features.has_mlkem(1024)
    assert (DhId.CURVE448 in groups) == features.has_x448()
    assert is_supported(TransformType.DH, DhId.NONE)
    assert not is_supported(TransformType.DH, 1)
    assert not is_supported(TransformType.PRF, PrfId.HMAC_SHA2_256, 256)
    assert not is_supported(99, 1)


def test_names():
    assert transform_name(TransformType.ENCR, EncrId.AES_GCM_16, 256) == "aes256gcm16"
    assert transform_name(TransformType.ADDKE3, DhId.ML_KEM_1024) == "ke3_mlkem1024"
    assert transform_name(TransformType.ADDKE1, DhId.NONE) == "ke1_none"
    assert transform_name(TransformType.ENCR, 3) == "UNKNOWN_1_3"
