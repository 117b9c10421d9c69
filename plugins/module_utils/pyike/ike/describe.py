"""What `pyikectl list-sas` shows of an IKE SA: addresses, identities, SPIs, algorithms, Child SAs."""

from __future__ import annotations

from ..selectors import describe
from .identity import identity_text
from .sa import IkeSa


def describe_sa(sa: IkeSa, now: float) -> dict:
    """An IKE SA and its Child SAs for `list-sas` (no keys, no secrets)."""
    return {
        "name": sa.policy.name,
        "ike_sa": sa.key,
        "state": str(sa.state),
        "initiator": sa.initiator,
        "local_address": "%s[%d]" % sa.local,
        "remote_address": "%s[%d]" % sa.remote,
        "local_id": identity_text(sa.policy.local_id),
        "remote_id": identity_text(sa.peer_id) if sa.peer_id else "",
        "auth": sa.policy.auth,
        "remote_auth": sa.peer_auth,
        "remote_cert": sa.peer_cert,
        "spi_i": sa.spi_i.hex(),
        "spi_r": sa.spi_r.hex(),
        "proposal": sa.proposal_text,
        "nat": {"local": sa.local_behind_nat, "remote": sa.remote_behind_nat, "encap": sa.encap},
        "established_seconds": None if sa.established_at is None else round(now - sa.established_at, 3),
        "children": [
            {
                "name": child.name,
                "state": str(child.state),
                "spi_in": "%08x" % child.spi_in,
                "spi_out": "%08x" % child.spi_out,
                "proposal": child.proposal,
                "local_ts": describe(child.local_ts),
                "remote_ts": describe(child.remote_ts),
                "encap": child.encap,
                "installed_seconds": round(now - child.established_at, 3),
            }
            for child in sa.children
        ],
    }
