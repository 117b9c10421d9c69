"""The engine's recipe for certificate authentication, run end to end without the engine.

IKE_SA_INIT carries N(SIGNATURE_HASH_ALGORITHMS) both ways and CERTREQ in the response;
IKE_AUTH carries CERT(s) and AUTH built over the same signed octets as with a PSK.
"""

from __future__ import annotations

import pytest
from certs_pki import NOW, Pki
from pyike.crypto.auth import signed_octets
from pyike.crypto.certs import (
    CertError,
    LocalCredential,
    certreq_authority,
    select_credential,
    split_authority,
)
from pyike.crypto.certs_verify import verify_peer
from pyike.crypto.signature import SignatureError, encode_hash_algorithms, parse_hash_algorithms
from pyike.ids import AuthMethod, CertEncoding, IdType, PrfId
from pyike.wire.identity import CertPayload, CertReqPayload, IdiPayload

PRF = PrfId.HMAC_SHA2_256


def side(pki, fqdn):
    return LocalCredential(pki.leaf, pki.leaf_key, [pki.inter]), [pki.root], (IdType.ID_FQDN, fqdn)


@pytest.mark.parametrize(
    "initiator_family,responder_family,peer_sends_hashes,expected_method",
    [
        ("rsa2048", "p256", True, AuthMethod.DIGITAL_SIGNATURE),
        ("p384", "rsa3072", True, AuthMethod.DIGITAL_SIGNATURE),
        ("p256", "p384", False, AuthMethod.ECDSA_SHA256_P256),  # an old peer: classic RFC 4754
    ],
)
def test_initiator_auth_checked_by_responder(
    initiator_family, responder_family, peer_sends_hashes, expected_method
):
    initiator_pki = Pki(initiator_family)
    responder_pki = Pki(responder_family, org="responder")
    credential, _initiator_cas, idi = side(initiator_pki, b"gw1.example.org")
    responder_cas = [initiator_pki.root]

    # IKE_SA_INIT: both announce hashes; the responder asks for certificates by its CAs' key hashes.
    notify_data = encode_hash_algorithms() if peer_sends_hashes else None
    certreq = CertReqPayload(
        CertEncoding.X509_SIGNATURE, certreq_authority([*responder_cas, responder_pki.root])
    )

    # Initiator, IKE_AUTH request: pick the chain the CERTREQ names, choose method, sign.
    chosen = select_credential([credential], split_authority(certreq.authority))
    assert chosen is credential and chosen.answers(certreq.authority_hashes(), [initiator_pki.root])
    peer_hashes = parse_hash_algorithms(notify_data) if notify_data is not None else None
    choice = chosen.choose_auth(peer_hashes)
    assert choice.method == expected_method
    id_payload = IdiPayload(*idi)
    signed = signed_octets(b"<IKE_SA_INIT request>", b"<Nr>", PRF, b"k" * 32, id_payload.encode_body())
    auth_data = chosen.signer(choice).build(signed)
    certs = [CertPayload(CertEncoding.X509_SIGNATURE, data) for data in chosen.cert_payloads()]

    # Responder: verify the chain and the identity, then the AUTH with the certificate's key.
    result = verify_peer(certs[0].data, [c.data for c in certs[1:]], responder_cas, NOW, idi)
    assert result.authenticator(choice.method).verify(signed, auth_data)
    assert not result.authenticator(choice.method).verify(signed[:-1] + b"\x00", auth_data)


def test_failures_surface_as_crypto_errors():
    pki = Pki("p256")
    credential, cas, idi = side(pki, b"gw1.example.org")
    with pytest.raises(CertError) as error:
        verify_peer(credential.cert_payloads()[0], [], cas, NOW, idi)  # intermediate not sent
    assert error.value.reason == "untrusted"
    result = verify_peer(credential.cert_payloads()[0], credential.cert_payloads()[1:], cas, NOW, idi)
    with pytest.raises(SignatureError):
        result.authenticator(AuthMethod.ECDSA_SHA256_P256).check(b"signed", b"\x00" * 63)
