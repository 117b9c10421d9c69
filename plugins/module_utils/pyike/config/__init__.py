"""The daemon configuration: JSON Schema, loader with semantic checks, and the immutable model.

``load_config(path)`` / ``parse_config(data, source)`` give an :class:`EngineConfig` or raise
:class:`ConfigError` listing every problem as ``<file>: <field path>: <message>``.
"""

from ..selectors import SelectorError, TrafficSelector, parse_traffic_selector
from .errors import ConfigError, Problem, format_path
from .identity import Identity, IdentityError, identity_text, parse_identity
from .load import decode_psk, load_config, parse_config, parse_document, psk_weakness
from .model import (
    ChildConfig,
    ConfigDiff,
    ConnectionConfig,
    Endpoint,
    EngineConfig,
    Settings,
    config_digest,
    connection_digest,
    default_proposals,
    diff_configs,
    parse_proposal_text,
)
from .schema import SCHEMA, schema_json
from .secret import Secret

__all__ = [
    "SCHEMA",
    "ChildConfig",
    "ConfigDiff",
    "ConfigError",
    "ConnectionConfig",
    "Endpoint",
    "EngineConfig",
    "Identity",
    "IdentityError",
    "Problem",
    "Secret",
    "SelectorError",
    "Settings",
    "TrafficSelector",
    "config_digest",
    "connection_digest",
    "decode_psk",
    "default_proposals",
    "diff_configs",
    "format_path",
    "identity_text",
    "load_config",
    "parse_config",
    "parse_document",
    "parse_identity",
    "parse_proposal_text",
    "parse_traffic_selector",
    "psk_weakness",
    "schema_json",
]
