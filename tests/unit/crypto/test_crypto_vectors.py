"""Known-answer tests from published vectors, run through pyike.crypto's own entry points."""

from __future__ import annotations

import pytest
from pyike.crypto import SkCipher, features, new_key_exchange, prf
from pyike.crypto.keys import prf_plus
from pyike.crypto.transforms import integ_transform
from pyike.ids import DhId, EncrId, IntegId, PrfId

# RFC 4231 §4.2, §4.3, §4.7 (HMAC-SHA-256/384/512, full length)
RFC4231 = [
    (
        bytes([0x0B] * 20),
        b"Hi There",
        {
            PrfId.HMAC_SHA2_256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            PrfId.HMAC_SHA2_384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
            "faea9ea9076ede7f4af152e8b2fa9cb6",
            PrfId.HMAC_SHA2_512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
            "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        },
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        {
            PrfId.HMAC_SHA2_256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            PrfId.HMAC_SHA2_384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
            "8e2240ca5e69e2c78b3239ecfab21649",
            PrfId.HMAC_SHA2_512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        },
    ),
    (
        bytes([0xAA] * 131),
        b"This is a test using a larger than block-size key and a larger than block-size data. "
        b"The key needs to be hashed before being used by the HMAC algorithm.",
        {
            PrfId.HMAC_SHA2_512: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
            "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
        },
    ),
]


@pytest.mark.parametrize(
    "key,data,prf_id,expected",
    [(k, d, p, e) for k, d, table in RFC4231 for p, e in table.items()],
)
def test_hmac_rfc4231(key, data, prf_id, expected):
    assert prf(prf_id, key, data).hex() == expected


def test_hmac_sha256_truncated_rfc4231_case5():
    # RFC 4231 §4.6: truncation to 128 bits, as HMAC-SHA-256-128 does (RFC 4868 §2.3).
    integ = integ_transform(IntegId.HMAC_SHA2_256_128)
    full = prf(PrfId.HMAC_SHA2_256, bytes([0x0C] * 20), b"Test With Truncation")
    assert full[: integ.icv_bytes].hex() == "a3b6167473100ee06e0c796c2955552b"


# RFC 4868 §2.7.1: PRF-HMAC-SHA-256/384/512 with keys of the PRF's own length.
RFC4868_PRF = [
    (
        PrfId.HMAC_SHA2_256,
        bytes([0x0B] * 32),
        b"Hi There",
        "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7",
    ),
    (
        PrfId.HMAC_SHA2_256,
        b"Jefe" * 8,
        b"what do ya want for nothing?",
        "167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6",
    ),
    (
        PrfId.HMAC_SHA2_384,
        bytes([0x0B] * 48),
        b"Hi There",
        "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee9737a959796489bddbc4c5df61d5b3297b4fb68dab9f1b582c2",
    ),
    (
        PrfId.HMAC_SHA2_384,
        b"Jefe" * 12,
        b"what do ya want for nothing?",
        "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184da86a368e9b8e16f5349524ca4e82400cbde0686d403371c9",
    ),
    (
        PrfId.HMAC_SHA2_512,
        bytes([0x0B] * 64),
        b"Hi There",
        "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"
        "ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b",
    ),
    (
        PrfId.HMAC_SHA2_512,
        b"Jefe" * 16,
        b"what do ya want for nothing?",
        "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454"
        "6aa334ae9fb9afc2184932d8695e397bfa0ffb93466cfcceaae38c833b7dba38",
    ),
]


@pytest.mark.parametrize("prf_id,key,data,expected", RFC4868_PRF)
def test_prf_rfc4868(prf_id, key, data, expected):
    assert prf(prf_id, key, data).hex() == expected


def test_prf_plus_matches_independent_composition():
    # RFC 7296 §2.13 built here from the standard library's hmac, not from pyike.
    import hashlib
    import hmac

    key, seed = b"k" * 32, b"seed material"
    t, stream = b"", b""
    for counter in range(1, 6):
        t = hmac.new(key, t + seed + bytes([counter]), hashlib.sha256).digest()
        stream += t
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 150) == stream[:150]
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 32) == stream[:32]
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 0) == b""


def test_prf_plus_limit_of_255_blocks():
    from pyike.crypto import CryptoError

    assert len(prf_plus(PrfId.HMAC_SHA1, b"k", b"s", 255 * 20)) == 255 * 20
    with pytest.raises(CryptoError):
        prf_plus(PrfId.HMAC_SHA1, b"k", b"s", 255 * 20 + 1)


# RFC 7748 §6.1
X25519_A = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
X25519_A_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
X25519_B = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
X25519_B_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
X25519_K = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

# RFC 7748 §6.2
X448_A = (
    "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
    "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b"
)
X448_A_PUB = (
    "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c"
    "22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0"
)
X448_B = (
    "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d"
    "6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d"
)
X448_B_PUB = (
    "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b430"
    "27d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609"
)
X448_K = (
    "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
    "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d"
)

# RFC 5903 §8.1 (group 19) and §8.2 (group 20): i, g^i (x|y), r, g^r (x|y), g^ir x
RFC5903 = {
    DhId.ECP_256: (
        "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
        "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
        "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
    ),
    DhId.ECP_384: (
        "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
        "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA"
        "9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
        "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
        "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571"
        "DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
        "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746",
    ),
}


def test_x25519_rfc7748():
    alice = new_key_exchange(DhId.CURVE25519, bytes.fromhex(X25519_A))
    bob = new_key_exchange(DhId.CURVE25519, bytes.fromhex(X25519_B))
    assert alice.public_bytes().hex() == X25519_A_PUB
    assert bob.public_bytes().hex() == X25519_B_PUB
    assert alice.shared_secret(bytes.fromhex(X25519_B_PUB)).hex() == X25519_K
    reply, secret = bob.respond(bytes.fromhex(X25519_A_PUB))
    assert (reply.hex(), secret.hex()) == (X25519_B_PUB, X25519_K)


@pytest.mark.skipif(not features.has_x448(), reason="this OpenSSL build has no X448")
def test_x448_rfc7748():
    alice = new_key_exchange(DhId.CURVE448, bytes.fromhex(X448_A))
    bob = new_key_exchange(DhId.CURVE448, bytes.fromhex(X448_B))
    assert alice.public_bytes().hex() == X448_A_PUB
    assert bob.public_bytes().hex() == X448_B_PUB
    assert alice.shared_secret(bytes.fromhex(X448_B_PUB)).hex() == X448_K
    assert bob.respond(bytes.fromhex(X448_A_PUB)) == (bytes.fromhex(X448_B_PUB), bytes.fromhex(X448_K))


@pytest.mark.parametrize("group", sorted(RFC5903))
def test_ecp_rfc5903(group):
    i, gi, r, gr, gir = (bytes.fromhex(v) for v in RFC5903[group])
    initiator = new_key_exchange(group, i)
    responder = new_key_exchange(group, r)
    assert initiator.public_bytes() == gi
    assert responder.public_bytes() == gr
    assert initiator.shared_secret(gr) == gir
    assert responder.respond(gi) == (gr, gir)


# RFC 8439 §2.8.2.  In an SK body the nonce is salt | IV (RFC 7634 §2), so the vector's nonce
# 07000000 | 4041424344454647 is salt 07000000 and IV 4041424344454647.  Its plaintext ends
# in "." (0x2e), which the SK format reads as a Pad Length of 46.
RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC8439_PLAIN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
RFC8439_CIPHER = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
    "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
RFC8439_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


@pytest.mark.skipif(
    not features.has_chacha20_poly1305(), reason="this OpenSSL build has no ChaCha20-Poly1305"
)
def test_chacha20_poly1305_rfc8439_through_sk_cipher():
    cipher = SkCipher(EncrId.CHACHA20_POLY1305, None, None, RFC8439_KEY + bytes.fromhex("07000000"))
    body = bytes.fromhex("4041424344454647") + RFC8439_CIPHER + RFC8439_TAG
    assert cipher.open(RFC8439_AAD, body) == RFC8439_PLAIN[: -(RFC8439_PLAIN[-1] + 1)]
