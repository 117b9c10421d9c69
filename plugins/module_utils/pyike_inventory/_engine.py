# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the inventory code uses from the engine package ``pyike`` (a sibling in module_utils).

Inside the collection both packages live under ``...plugins.module_utils`` and the relative
import works; with ``plugins/module_utils`` on ``sys.path`` (unit tests, a checkout) they are
top-level packages and the relative import reaches beyond the top, so the absolute one is used.
"""

from __future__ import annotations

try:
    from ..pyike.config import ConfigError, parse_config
    from ..pyike.config.build_route import default_if_id
    from ..pyike.config.errors import format_path
    from ..pyike.config.identity import IdentityError, parse_identity
    from ..pyike.config.load import decode_psk, psk_weakness
    from ..pyike.config.peer_name import parse_peer_address
    from ..pyike.config.schema import DEFAULT_TUN_NAME, INTERFACE_NAME_PATTERN, MIN_PSK_OCTETS
    from ..pyike.config.schema import SCHEMA as ENGINE_SCHEMA
    from ..pyike.config.validate import schema_violations, type_phrase
    from ..pyike.crypto.certs import (
        CertError,
        LocalCredential,
        parse_certificates,
        parse_private_key,
        subject_text,
        to_der,
    )
    from ..pyike.crypto.certs_verify import identity_matches, verify_peer
    from ..pyike.crypto.errors import ProposalError
    from ..pyike.crypto.proposals import parse_proposal
    from ..pyike.ids import DhId, IntegId, PrfId, ProtocolId, TransformType
    from ..pyike.selectors import SelectorError, TrafficSelector, narrow
except ImportError:  # plugins/module_utils on sys.path: pyike_inventory is a top-level package
    from pyike.config import ConfigError, parse_config  # type: ignore[no-redef]
    from pyike.config.build_route import default_if_id  # type: ignore[no-redef]
    from pyike.config.errors import format_path  # type: ignore[no-redef]
    from pyike.config.identity import IdentityError, parse_identity  # type: ignore[no-redef]
    from pyike.config.load import decode_psk, psk_weakness  # type: ignore[no-redef]
    from pyike.config.peer_name import parse_peer_address  # type: ignore[no-redef]
    from pyike.config.schema import DEFAULT_TUN_NAME, INTERFACE_NAME_PATTERN, MIN_PSK_OCTETS  # type: ignore[no-redef]
    from pyike.config.schema import SCHEMA as ENGINE_SCHEMA  # type: ignore[no-redef]
    from pyike.config.validate import schema_violations, type_phrase  # type: ignore[no-redef]
    from pyike.crypto.certs import (  # type: ignore[no-redef]
        CertError,
        LocalCredential,
        parse_certificates,
        parse_private_key,
        subject_text,
        to_der,
    )
    from pyike.crypto.certs_verify import identity_matches, verify_peer  # type: ignore[no-redef]
    from pyike.crypto.errors import ProposalError  # type: ignore[no-redef]
    from pyike.crypto.proposals import parse_proposal  # type: ignore[no-redef]
    from pyike.ids import DhId, IntegId, PrfId, ProtocolId, TransformType  # type: ignore[no-redef]
    from pyike.selectors import SelectorError, TrafficSelector, narrow  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_TUN_NAME",
    "ENGINE_SCHEMA",
    "INTERFACE_NAME_PATTERN",
    "MIN_PSK_OCTETS",
    "CertError",
    "ConfigError",
    "DhId",
    "IdentityError",
    "IntegId",
    "LocalCredential",
    "PrfId",
    "ProposalError",
    "ProtocolId",
    "SelectorError",
    "TrafficSelector",
    "TransformType",
    "decode_psk",
    "default_if_id",
    "format_path",
    "identity_matches",
    "narrow",
    "parse_certificates",
    "parse_config",
    "parse_identity",
    "parse_peer_address",
    "parse_private_key",
    "parse_proposal",
    "psk_weakness",
    "schema_violations",
    "subject_text",
    "to_der",
    "type_phrase",
    "verify_peer",
]
