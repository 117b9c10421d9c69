"""Who the peer is: the AUTH payloads of IKE_AUTH with a PSK or certificates (used by tasks/ike_auth.py).

Both ends prove their identity over the same signed octets (RFC 7296 §2.15, plus IntAuth after
IKE_INTERMEDIATE, RFC 9242 §3.3.2); the connection's ``auth`` says how:

* ``psk``: AUTH is the Shared Key Message Integrity Code (method 2).
* ``pubkey``: CERT payloads carry our X.509 certificate and its intermediates (§3.6, encoding 4,
  end entity first) and AUTH is a signature with its private key: RFC 7427 Digital Signature
  (method 14) with a hash the peer announced in N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4), or
  the classic methods (RSA with SHA-1, §3.8; ECDSA, RFC 4754) for peers that announced none or
  when the connection asks for them.  CERTREQ (§3.7) names the CAs we trust by key hash: the
  responder sends it in its IKE_SA_INIT response, the initiator in its IKE_AUTH request.

The peer's certificate is checked before its AUTH (RFC 4945 §3.1): a path to one of the
connection's CA certificates at wall-clock time, its identity against IDi/IDr, then the
signature with its public key.  Every failure becomes a reason that starts with
AUTHENTICATION_FAILED and names the peer and what was wrong; the engine sends the notify.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Sequence, Tuple

from ..crypto.auth import PskAuthenticator, constant_time_equal, signed_octets
from ..crypto.certs import CertError, certreq_authority, split_authority
from ..crypto.certs_verify import verify_peer
from ..crypto.signature import SignatureError, encode_hash_algorithms, key_description, parse_hash_algorithms
from ..ids import AuthMethod, CertEncoding, NotifyType, PayloadType
from ..wire.identity import AuthPayload, CertPayload, CertReqPayload
from ..wire.message import find_notifies, find_payload
from ..wire.notify import NotifyPayload
from ..wire.payload import Payload
from .policy import IkePolicy
from .sa import IkeSa
from .tasks.ike_intermediate import int_auth

log = logging.getLogger("pyike.ike")

PUBKEY = "pubkey"
CLASSIC = "classic"
SIGNATURE_METHODS = (
    AuthMethod.RSA_SIG,
    AuthMethod.ECDSA_SHA256_P256,
    AuthMethod.ECDSA_SHA384_P384,
    AuthMethod.ECDSA_SHA512_P521,
    AuthMethod.DIGITAL_SIGNATURE,
)


class AuthFailed(Exception):
    """We cannot build our own AUTH payload; the message is the reason for the Failure event."""


def method_name(method: int) -> str:
    try:
        return AuthMethod(method).name
    except ValueError:
        return "method %d" % method


def method_kind(method: int) -> str:
    """The connection ``auth`` that an AUTH payload's method belongs to."""
    return "psk" if method == AuthMethod.SHARED_KEY_MIC else PUBKEY


# --- IKE_SA_INIT: announce hashes, ask for certificates ------------------------------------------
def init_auth_payloads(policies: Sequence[IkePolicy], responder: bool) -> List[Payload]:
    """N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4) when one of ``policies`` uses certificates;
    the responder adds CERTREQ with its CAs' key hashes (RFC 7296 §1.2, §3.7)."""
    pubkey = [policy for policy in policies if policy.auth == PUBKEY]
    if not pubkey:
        return []
    payloads: List[Payload] = [NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, encode_hash_algorithms())]
    if responder:
        payloads += certreq_payloads(pubkey)
    return payloads


def certreq_payloads(policies: Sequence[IkePolicy]) -> List[Payload]:
    anchors = [anchor for policy in policies for anchor in policy.ca_certs]
    authority = certreq_authority(anchors)
    return [CertReqPayload(CertEncoding.X509_SIGNATURE, authority)] if authority else []


def record_init_auth(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    """Remember the peer's hash algorithms (RFC 7427 §4) and CERTREQ CA hashes (§3.7)."""
    notifies = find_notifies(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
    sa.peer_hashes = None
    if notifies:
        try:
            sa.peer_hashes = parse_hash_algorithms(notifies[0].data)
        except SignatureError as exc:
            log.info("%s: ignoring malformed SIGNATURE_HASH_ALGORITHMS: %s", sa.key, exc)
    record_certreq(sa, payloads)


def record_certreq(sa: IkeSa, payloads: Sequence[Payload]) -> None:
    for payload in payloads:
        if isinstance(payload, CertReqPayload) and payload.encoding == CertEncoding.X509_SIGNATURE:
            for digest in split_authority(payload.authority):
                if digest not in sa.peer_certreq:
                    sa.peer_certreq.append(digest)


# --- our AUTH ------------------------------------------------------------------------------------
def signed(sa: IkeSa, ours: bool, id_body: bytes) -> bytes:
    """The octets our AUTH (ours=True) or the peer's AUTH covers (§2.15, RFC 9242 §3.3.2)."""
    as_initiator = sa.initiator if ours else not sa.initiator
    real_message = sa.init_request if as_initiator else sa.init_response
    nonce = sa.nonce_r if as_initiator else sa.nonce_i
    sk_p = sa.keys.sk_pi if as_initiator else sa.keys.sk_pr
    return signed_octets(real_message, nonce, sa.selected.prf, sk_p, id_body) + int_auth(sa)


def psk_auth_data(sa: IkeSa, ours: bool, id_body: bytes) -> bytes:
    """PSK AUTH data for our message (ours=True) or the value expected from the peer."""
    return PskAuthenticator(sa.selected.prf, sa.policy.psk).build(signed(sa, ours, id_body))


def our_auth(sa: IkeSa, id_body: bytes) -> Tuple[List[Payload], AuthPayload]:
    """(CERT payloads, AUTH payload) that prove our identity; AuthFailed if we cannot sign."""
    policy = sa.policy
    if policy.auth != PUBKEY:
        return [], AuthPayload(AuthMethod.SHARED_KEY_MIC, psk_auth_data(sa, True, id_body))
    credential = policy.credential
    if credential is None:
        raise AuthFailed(
            "AUTHENTICATION_FAILED: connection %s has auth pubkey but no certificate loaded" % policy.name
        )
    if sa.peer_certreq and not credential.answers(sa.peer_certreq, policy.ca_certs):
        # §3.7: CERTREQ is a hint; ours is the only certificate we have, so it goes anyway.
        log.info(
            "%s: the peer's CERTREQ names none of the CAs above our certificate; sending it anyway",
            sa.key,
        )
    try:
        if policy.auth_method == CLASSIC:
            choice = credential.choose_auth(None, allow_rsa_sha1=True)
        else:
            choice = credential.choose_auth(sa.peer_hashes)
        data = credential.signer(choice).build(signed(sa, True, id_body))
    except SignatureError as exc:
        hint = " (set auth_method: classic for such a peer)" if "classic" in str(exc) else ""
        raise AuthFailed(
            "AUTHENTICATION_FAILED: cannot sign with our %s certificate for peer %s: %s%s"
            % (key_description(credential.public_key), sa.remote[0], exc, hint)
        ) from None
    certs: List[Payload] = [
        CertPayload(CertEncoding.X509_SIGNATURE, der) for der in credential.cert_payloads()
    ]
    log.debug("%s: signing AUTH with %s", sa.key, method_name(choice.method))
    return certs, AuthPayload(choice.method, data)


# --- the peer's AUTH ------------------------------------------------------------------------------
def check_peer_auth(
    sa: IkeSa, policy: IkePolicy, id_payload: Any, payloads: List[Payload], wall_clock: float
) -> str:
    """The reason the peer's AUTH is refused, or the empty string when the peer proved
    ``id_payload`` the way ``policy`` wants (RFC 7296 §2.15; RFC 4945 §3.1 for certificates)."""
    peer = id_payload.value_text()
    auth = find_payload(payloads, PayloadType.AUTH)
    if auth is None:
        return "AUTHENTICATION_FAILED: peer %s sent no AUTH payload (EAP is not supported)" % peer
    body = getattr(id_payload, "raw_body", None) or id_payload.encode_body()
    if policy.auth != PUBKEY:
        if auth.method != AuthMethod.SHARED_KEY_MIC:
            return (
                "AUTHENTICATION_FAILED: peer %s authenticated with %s (a certificate), but connection %s "
                "uses a pre-shared key (auth: psk)" % (peer, method_name(auth.method), policy.name)
            )
        if not constant_time_equal(auth.data, psk_auth_data(sa, False, body)):
            return "AUTHENTICATION_FAILED: peer %s did not prove the pre-shared key" % peer
        sa.peer_auth = method_name(auth.method)
        return ""
    if auth.method not in SIGNATURE_METHODS:
        return (
            "AUTHENTICATION_FAILED: peer %s authenticated with %s, but connection %s expects a "
            "certificate (auth: pubkey)"
            % (
                peer,
                "a pre-shared key" if auth.method == AuthMethod.SHARED_KEY_MIC else method_name(auth.method),
                policy.name,
            )
        )
    certs = [
        p.data for p in payloads if isinstance(p, CertPayload) and p.encoding == CertEncoding.X509_SIGNATURE
    ]
    if not certs:
        return "AUTHENTICATION_FAILED: peer %s sent no X.509 certificate (CERT payload, encoding 4)" % peer
    try:
        result = verify_peer(
            certs[0], certs[1:], policy.ca_certs, wall_clock, (id_payload.id_type, id_payload.data)
        )
    except CertError as exc:
        return "AUTHENTICATION_FAILED: certificate of peer %s rejected (%s): %s" % (peer, exc.reason, exc)
    try:
        scheme = result.authenticator(auth.method, accept_rsa_sha1=policy.auth_method == CLASSIC).check(
            signed(sa, False, body), auth.data
        )
        described = result.describe()
    except SignatureError as exc:
        hint = " (set auth_method: classic to accept it)" if "not accepted" in str(exc) else ""
        return "AUTHENTICATION_FAILED: AUTH of peer %s (%s) rejected: %s%s" % (
            peer,
            method_name(auth.method),
            exc,
            hint,
        )
    except Exception as exc:
        return "AUTHENTICATION_FAILED: AUTH of peer %s (%s) cannot be checked: %s" % (
            peer,
            method_name(auth.method),
            type(exc).__name__,
        )
    sa.peer_cert = described
    sa.peer_auth = "%s %s" % (method_name(auth.method), scheme.name)
    log.info("%s: peer %s authenticated by %s with certificate %s", sa.key, peer, method_name(auth.method),
             sa.peer_cert)  # fmt: skip
    return ""


def policy_for_peer(
    candidates: Sequence[IkePolicy], peer_id, method: Optional[int] = None
) -> Optional[IkePolicy]:
    """The connection whose remote identity matches IDi, among ``candidates`` (those for these
    addresses, §2.15); with several, one whose ``auth`` fits the peer's AUTH method is preferred."""
    matching = [
        policy
        for policy in candidates
        if policy.remote_id is None or tuple(policy.remote_id) == tuple(peer_id)
    ]
    if method is not None:
        for policy in matching:
            if policy.auth == method_kind(method):
                return policy
    return matching[0] if matching else None
