"""IKEv2 cryptography: transform registry, proposals, key exchange, key derivation, AUTH, SK.

Pure computation, no I/O.  Every primitive comes from the ``cryptography`` package; this
package only composes them as RFC 7296 (and RFC 5282, 7634, 8031, 9370) prescribe.
"""

from .auth import Authenticator, PskAuthenticator, constant_time_equal, psk_auth, signed_octets
from .errors import CryptoError, IntegrityError, KeyExchangeError, ProposalError, UnsupportedTransformError
from .ke import KeyExchange, new_key_exchange
from .keys import (
    ChildKeys,
    IkeKeys,
    child_key_lengths,
    child_keymat,
    derive_ike_keys,
    ike_key_lengths,
    prf,
    prf_plus,
    rekey_skeyseed,
    skeyseed,
    update_after_additional_ke,
)
from .proposals import ProposalSpec, parse_proposal, parse_proposals
from .selection import SelectedProposal, accept_response, select_proposal, spec_from_selected
from .sk import SkCipher, sk_ciphers
from .transforms import (
    EncrTransform,
    IntegTransform,
    KeTransform,
    PrfTransform,
    available_ke_groups,
    encr_transform,
    integ_transform,
    is_supported,
    ke_transform,
    prf_transform,
    transform_name,
)

__all__ = [
    "Authenticator",
    "ChildKeys",
    "CryptoError",
    "EncrTransform",
    "IkeKeys",
    "IntegTransform",
    "IntegrityError",
    "KeTransform",
    "KeyExchange",
    "KeyExchangeError",
    "PrfTransform",
    "ProposalError",
    "ProposalSpec",
    "PskAuthenticator",
    "SelectedProposal",
    "SkCipher",
    "UnsupportedTransformError",
    "accept_response",
    "available_ke_groups",
    "child_key_lengths",
    "child_keymat",
    "constant_time_equal",
    "derive_ike_keys",
    "encr_transform",
    "ike_key_lengths",
    "integ_transform",
    "is_supported",
    "ke_transform",
    "new_key_exchange",
    "parse_proposal",
    "parse_proposals",
    "prf",
    "prf_plus",
    "prf_transform",
    "psk_auth",
    "rekey_skeyseed",
    "select_proposal",
    "signed_octets",
    "sk_ciphers",
    "skeyseed",
    "spec_from_selected",
    "transform_name",
    "update_after_additional_ke",
]
