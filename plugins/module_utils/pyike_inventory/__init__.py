# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inventory variables -> checked VPN model -> per-host engine configurations (no Ansible imports).

``validate_inventory(data, hosts)`` lists every problem as ``path: message``;
``check_views(views, groups)`` does it for the variables as every host sees them (the action);
``engine_configs(data, hosts)`` gives ``{host: engine configuration}`` in the form of
schemas/pyike-config.schema.json, or raises :class:`InventoryError`.  The data model is
schemas/inventory.schema.json (:data:`SCHEMA`).
"""

from __future__ import annotations

from ._engine import format_path
from .build import (
    CREDENTIAL_FILES,
    build_configs,
    build_credentials,
    build_private_keys,
    build_secrets,
    check,
    engine_configs,
    psk_refs,
    validate_inventory,
)
from .model import Child, End, Gateway, InventoryError, Problem, Tunnel
from .resolve import Inventory
from .schema import (
    GLOBAL_VARIABLES,
    HOST_VARIABLES,
    SCHEMA,
    SETTINGS_VARIABLES,
    VARIABLE_PREFIX,
    global_names,
    host_names,
    schema_json,
)
from .secrets import is_secret, templating_message
from .views import HostView, Outcome, check_views, named_hosts

__all__ = [
    "CREDENTIAL_FILES",
    "GLOBAL_VARIABLES",
    "HOST_VARIABLES",
    "SCHEMA",
    "SETTINGS_VARIABLES",
    "VARIABLE_PREFIX",
    "Child",
    "End",
    "Gateway",
    "HostView",
    "Inventory",
    "InventoryError",
    "Outcome",
    "Problem",
    "Tunnel",
    "build_configs",
    "build_credentials",
    "build_private_keys",
    "build_secrets",
    "check",
    "check_views",
    "engine_configs",
    "format_path",
    "global_names",
    "host_names",
    "is_secret",
    "named_hosts",
    "psk_refs",
    "schema_json",
    "templating_message",
    "validate_inventory",
]
