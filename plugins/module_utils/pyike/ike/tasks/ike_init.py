"""IKE_SA_INIT (RFC 7296 §1.2): proposals, the key exchange and nonces that key the IKE SA (§2.14),
with INVALID_KE_PAYLOAD (§1.3) and COOKIE (§2.6) retries, NAT detection (§2.23), the announcement of
fragmentation (RFC 7383 §2.3), of IKE_INTERMEDIATE (RFC 9242 §3.1) and of signature hashes and
CERTREQ (RFC 7427 §4, §3.7 of RFC 7296; authenticate.py).

The responder's stateless half (admission under load, cookies, the choice of connection) is the
engine's (engine.py, cookies.py); this task keys the half-open SA it then creates.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from ...crypto.errors import CryptoError
from ...crypto.keys import derive_ike_keys, skeyseed
from ...crypto.sk import sk_ciphers
from ...ids import ExchangeType, NotifyType, PayloadType, ProtocolId
from ...wire.key_exchange import KePayload, NoncePayload
from ...wire.message import find_notifies, find_payload
from ...wire.notify import NotifyPayload
from ...wire.payload import Payload
from .. import authenticate, negotiate
from ..fragments import fragmentation_notify, offers_fragmentation
from ..natd import natd_hash
from ..policy import ChildPolicy, IkePolicy
from ..sa import AUTHENTICATING
from .base import DONE, RETRY, Refused, Task, errors_in, notify_name

NONCE_SIZE = 32  # octets of every nonce we make (§2.10: at least half the PRF's key size)
MAX_COOKIE_TRIES = 3
MAX_KE_TRIES = 3  # IKE_SA_INIT or CREATE_CHILD_SA again after INVALID_KE_PAYLOAD (§1.3, §1.3.1)
ZERO_SPI = bytes(8)


def natd_payloads(engine, sa, spi_r: bytes) -> List[Payload]:
    """N(NAT_DETECTION_SOURCE_IP) and N(NAT_DETECTION_DESTINATION_IP) (§2.23)."""
    source = natd_hash(sa.spi_i, spi_r, sa.local)
    if sa.policy.force_encap:
        # Pretend to be behind a NAT so that both sides use UDP encapsulation (strongSwan's "encap = yes").
        source = engine.random_bytes(len(source))
    return [
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, source),
        NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, natd_hash(sa.spi_i, spi_r, sa.remote)),
    ]


def check_natd(sa, payloads: Sequence[Payload], spi_r: bytes) -> None:
    sources = find_notifies(payloads, NotifyType.NAT_DETECTION_SOURCE_IP)
    destinations = find_notifies(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
    if not sources or not destinations:
        return
    sa.remote_behind_nat = not any(n.data == natd_hash(sa.spi_i, spi_r, sa.remote) for n in sources)
    sa.local_behind_nat = not any(n.data == natd_hash(sa.spi_i, spi_r, sa.local) for n in destinations)


def derive_keys(engine, sa, shared: bytes) -> None:
    """SKEYSEED and the IKE SA's keys (§2.14), its SK ciphers and reassembly."""
    seed = skeyseed(sa.selected.prf, sa.nonce_i, sa.nonce_r, shared)
    sa.keys = derive_ike_keys(sa.selected, seed, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r)
    sa.cipher_out, sa.cipher_in = sk_ciphers(sa.selected, sa.keys, sa.initiator, engine.iv_source())
    sa.max_datagram = engine.fragment_size
    engine.new_reassembler(sa)


class IkeInit(Task):
    """IKE_SA_INIT for a new IKE SA; as initiator it queues the rest of the setup (IKE_INTERMEDIATE for
    each additional key exchange, then IKE_AUTH with `child`) when it is done."""

    exchange = ExchangeType.IKE_SA_INIT

    def __init__(self, engine, sa, child: Optional[ChildPolicy] = None, candidates: Sequence[IkePolicy] = ()):
        super().__init__(engine, sa)
        self.child = child
        self.candidates = list(candidates)  # responder: the connections this peer may turn out to be
        self.cookie = b""
        self.cookie_tries = 0
        self.ke_tries = 0
        self.key_exchange = None
        self.offer: negotiate.Offer = []
        self.public = b""

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        sa, policy = self.sa, self.sa.policy
        if not sa.nonce_i:
            sa.nonce_i = self.engine.random_bytes(NONCE_SIZE)
        if self.key_exchange is None:
            self.key_exchange = self.engine.new_ke(negotiate.first_group(policy.ike_proposals))
        payloads: List[Payload] = []
        if self.cookie:
            payloads.append(NotifyPayload(NotifyType.COOKIE, self.cookie))  # §2.6: first
        sa_payload, self.offer = negotiate.offer(policy.ike_proposals)
        payloads += [
            sa_payload,
            KePayload(self.key_exchange.group, self.key_exchange.public_bytes()),
            NoncePayload(sa.nonce_i),
        ]
        payloads += natd_payloads(self.engine, sa, ZERO_SPI)
        payloads.append(fragmentation_notify())
        payloads += authenticate.init_auth_payloads([policy], responder=False)
        if negotiate.has_additional_kes(policy.ike_proposals):
            payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))  # RFC 9242 §3.1
        return payloads

    def process_response(self, payloads: List[Payload], now: float) -> str:
        sa, engine = self.sa, self.engine
        cookie = find_notifies(payloads, NotifyType.COOKIE)
        if cookie:  # §2.6: the same request again with the cookie in front
            self.cookie_tries += 1
            if self.cookie_tries > MAX_COOKIE_TRIES:
                return self._give_up("the peer keeps asking for a COOKIE (%d times)" % self.cookie_tries,
                                     "cookie exchange did not converge", now)  # fmt: skip
            self.cookie = cookie[0].data
            return RETRY
        invalid_ke = find_notifies(payloads, NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke:
            return self._other_group(negotiate.wanted_group(invalid_ke[0]), now)
        errors = errors_in(payloads)
        if errors:
            return self._give_up("peer answered %s" % notify_name(errors[0]), "IKE_SA_INIT refused", now)
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            sa.selected, _spi = negotiate.accept(self.offer, find_payload(payloads, PayloadType.SA), 0)
            negotiate.check_ke(sa.selected, ke_payload, self.key_exchange.group)
            shared = self.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            return self._give_up("invalid response: %s" % exc, "invalid IKE_SA_INIT response", now)
        sa.nonce_r = find_payload(payloads, PayloadType.NONCE).data
        sa.fragmentation = offers_fragmentation(payloads)
        check_natd(sa, payloads, sa.spi_r)
        authenticate.record_init_auth(sa, payloads)
        derive_keys(engine, sa, shared)
        self.key_exchange = None  # the private value is no longer needed (§2.12)
        if sa.encap:  # §2.23: continue on port 4500 once a NAT is detected
            sa.local = (sa.local[0], engine.nat_t_port)
            sa.remote = (sa.remote[0], engine.nat_t_port)
        sa.move_to(AUTHENTICATING)
        sa.additional_kes = list(sa.selected.additional_kes)
        if sa.additional_kes and not find_notifies(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED):
            return self._give_up("peer chose additional key exchanges without IKE_INTERMEDIATE",
                                 "invalid IKE_SA_INIT response", now)  # fmt: skip
        from .ike_auth import IkeAuth
        from .ike_intermediate import IkeIntermediate

        setup = [IkeIntermediate(engine, sa) for _method in sa.additional_kes] + [
            IkeAuth(engine, sa, self.child)
        ]
        sa.tasks.queue[0:0] = setup
        return DONE

    def _other_group(self, wanted: Optional[int], now: float) -> str:
        """§1.3: INVALID_KE_PAYLOAD names the group the responder wants; we try it if we offered it."""
        offered = negotiate.offers_group(self.sa.policy.ike_proposals, wanted)
        if offered and wanted != self.key_exchange.group and self.ke_tries < MAX_KE_TRIES:
            self.ke_tries += 1
            self.key_exchange = self.engine.new_ke(wanted)
            return RETRY
        name = negotiate.dh_name(wanted)
        why = "which we do not propose" if not offered else "again, after %d retries" % self.ke_tries
        return self._give_up("INVALID_KE_PAYLOAD: peer wants %s, %s" % (name, why),
                             "no common key exchange method", now)  # fmt: skip

    def _give_up(self, reason: str, drop_reason: str, now: float) -> str:
        self.engine.fail(self.sa, "IKE_SA_INIT", reason)
        self.engine.drop_sa(self.sa, drop_reason, now=now)
        return DONE

    def abort(self, reason: str, now: float) -> None:
        self.key_exchange = None

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        """Raises Refused for the answers that create no SA (§1.3, §2.7); the engine sends them."""
        sa, engine = self.sa, self.engine
        policy = self.candidates[0]
        remote = sa.remote[0]
        try:
            choice = negotiate.select(
                find_payload(payloads, PayloadType.SA), policy.ike_proposals, ProtocolId.IKE, 0
            )
        except CryptoError as exc:  # §3.3.1: IKE_SA_INIT proposals carry no SPI
            engine.fail(sa, "IKE_SA_INIT", "invalid proposal from %s: %s" % (remote, exc))
            raise Refused(NotifyType.INVALID_SYNTAX) from None
        if choice is None:
            engine.fail(sa, "IKE_SA_INIT", "NO_PROPOSAL_CHOSEN: no common IKE proposal with %s" % remote)
            raise Refused(NotifyType.NO_PROPOSAL_CHOSEN)
        selected = choice.selected
        if selected.additional_kes and not find_notifies(
            payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED
        ):
            raise Refused(NotifyType.NO_PROPOSAL_CHOSEN)  # RFC 9370 §2.2.1: it needs IKE_INTERMEDIATE
        ke_payload = find_payload(payloads, PayloadType.KE)
        mismatch = negotiate.ke_mismatch(selected, ke_payload)
        if mismatch is not None:  # §1.3: tell the initiator which group we want; no state is kept
            raise Refused(NotifyType.INVALID_KE_PAYLOAD, mismatch.data)
        sa.nonce_i = find_payload(payloads, PayloadType.NONCE).data
        sa.nonce_r = engine.random_bytes(NONCE_SIZE)
        try:
            self.public, shared = engine.new_ke(selected.dh).respond(ke_payload.data)
        except CryptoError as exc:
            engine.fail(sa, "IKE_SA_INIT", "invalid KE payload from %s: %s" % (remote, exc))
            raise Refused(NotifyType.INVALID_SYNTAX) from None
        self.choice = choice
        sa.selected = selected
        check_natd(sa, payloads, ZERO_SPI)
        authenticate.record_init_auth(sa, payloads)
        derive_keys(engine, sa, shared)
        sa.fragmentation = offers_fragmentation(payloads)
        sa.additional_kes = list(selected.additional_kes)

    def build_response(self, now: float) -> List[Payload]:
        sa = self.sa
        payloads: List[Payload] = [
            self.choice.reply(),
            KePayload(sa.selected.dh, self.public),
            NoncePayload(sa.nonce_r),
        ]
        payloads += natd_payloads(self.engine, sa, sa.spi_r)
        if sa.fragmentation:
            payloads.append(fragmentation_notify())
        if sa.additional_kes:
            payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
        # RFC 7427 §4 and RFC 7296 §1.2/§3.7: hash algorithms and CERTREQ when a connection that may take
        # this peer (chosen by IDi in IKE_AUTH) uses certificates.
        payloads += authenticate.init_auth_payloads(self.candidates, responder=True)
        return payloads
