# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's configuration file as pyike.ipsec.config manages it.

* The document is built from the module's options: a whole ``config``, or named ``connections``
  added/replaced (state present) or removed (state absent) while the file's other connections
  and its settings stay. Pre-shared keys come only from the no_log option ``secrets``
  ({connection: key}); a ``psk`` inside ``config``/``connections`` is refused, because those
  options are not no_log.
* It is validated with the engine's own loader (pyike.config.parse_config) on the target, which
  reports every problem with its field path and never quotes a key.
* It is written atomically with mode 0600 (a temporary file created 0600 in the same directory,
  fsync, rename) as YAML for *.yml/*.yaml paths (needs PyYAML) and as JSON otherwise.
* Diffs show ``psk: <hidden>`` (``<hidden, changed>`` when the key changes), never a key.
"""

from __future__ import annotations

import copy
import json
import os
import stat

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import (
    DEFAULT_CONTROL_SOCKET,
    is_yaml_path,
    write_atomic,
)

try:
    import yaml

    HAS_YAML = True
except ImportError:
    yaml = None
    HAS_YAML = False

HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"
FILE_MODE = 0o600
DIR_MODE = 0o700
YAML_HEADER = b"# pyike engine configuration, managed by pyike.ipsec.config: edits here are replaced.\n"


class ConfigTaskError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def plain(value):
    """Nested dicts/lists/scalars as plain Python types (loaders return dict subclasses)."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def render(document, path):
    """The file content for `document`: YAML for *.yml/*.yaml, JSON otherwise."""
    if is_yaml_path(path):
        if not HAS_YAML:
            raise ConfigTaskError(
                "%s is a YAML file but PyYAML is not installed for this interpreter: install python3-yaml "
                "(Debian) or python3-pyyaml (RHEL), or use a .json path" % path
            )
        text = yaml.safe_dump(plain(document), default_flow_style=False, sort_keys=False, width=1000)
        return YAML_HEADER + text.encode("utf-8")
    return (json.dumps(plain(document), indent=2) + "\n").encode("utf-8")


def read_existing(path, parse_document):
    """(raw bytes or None, document or None, error text or None) of the file at `path`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, None, None
    except OSError as exc:
        raise ConfigTaskError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    try:
        document = parse_document(raw.decode("utf-8-sig"), path)
    except UnicodeDecodeError:
        return raw, None, "%s is not UTF-8 text" % path
    except ValueError as exc:  # ConfigError is a ValueError
        return raw, None, str(exc)
    return raw, plain(document), None


def inline_psks(document, option):
    """[(field path, key)] of every psk given inside `option` (refused: keys go in `secrets`)."""
    found = []
    connections = document.get("connections") if isinstance(document, dict) else None
    if option == "connections":
        connections = document
    if isinstance(connections, dict):
        for name, conn in connections.items():
            if isinstance(conn, dict) and "psk" in conn:
                where = "%s.%s.psk" % ("config.connections" if option == "config" else "connections", name)
                found.append((where, conn["psk"]))
    return found


def all_psks(document):
    keys = []
    connections = document.get("connections") if isinstance(document, dict) else None
    if isinstance(connections, dict):
        for conn in connections.values():
            if isinstance(conn, dict) and isinstance(conn.get("psk"), (str, int, float)):
                keys.append(str(conn["psk"]))
    return keys


def _place_psk(conn, key):
    """`conn` with psk next to auth (or after remote), where a reader of the file expects it."""
    anchor = "auth" if "auth" in conn else "remote" if "remote" in conn else None
    if anchor is None:
        return dict(conn, psk=key)
    placed = {}
    for field, value in conn.items():
        placed[field] = value
        if field == anchor:
            placed["psk"] = key
    return placed


def _with_secrets(connections, secrets, known_from):
    unknown = sorted(set(secrets) - set(connections))
    if unknown:
        raise ConfigTaskError(
            "secrets names connection(s) %s that %s does not define (it defines: %s)"
            % (", ".join(unknown), known_from, ", ".join(sorted(connections)) or "none")
        )
    result = {}
    for name, conn in connections.items():
        conn = copy.deepcopy(plain(conn)) if conn is not None else {}
        if name in secrets:
            if isinstance(conn, dict) and "psk_file" in conn:
                raise ConfigTaskError(
                    "connection %s has psk_file and a key in secrets: give one of them" % name
                )
            conn = _place_psk(conn, str(secrets[name]))
        result[name] = conn
    return result


def build_document(existing, config=None, connections=None, settings=None, state="present", secrets=None):
    """The desired document from the current one (`existing`, may be None) and the options."""
    secrets = secrets or {}
    if config is not None:
        document = copy.deepcopy(plain(config))
        if not isinstance(document.get("connections"), dict):
            raise ConfigTaskError("config needs a 'connections' mapping (it may be empty)")
        document["connections"] = _with_secrets(document["connections"], secrets, "config")
        return document
    document = copy.deepcopy(existing) if isinstance(existing, dict) else {}
    current = document.get("connections")
    if not isinstance(current, dict):
        current = {}
    if settings is not None:
        document["settings"] = copy.deepcopy(plain(settings))
    if state == "absent":
        names = list(connections) if connections is not None else []
        document["connections"] = {name: conn for name, conn in current.items() if name not in names}
    else:
        merged = dict(current)
        merged.update(_with_secrets(connections or {}, secrets, "connections"))
        document["connections"] = merged
    ordered = {}
    for key in ("settings", "connections"):
        if key in document:
            ordered[key] = document.pop(key)
    ordered.update(document)
    return ordered


def masked_pair(before, after):
    """Copies of `before` and `after` with every psk hidden; a changed key reads <hidden, changed>."""
    before_conns = (before or {}).get("connections") if isinstance(before, dict) else None
    before_conns = before_conns if isinstance(before_conns, dict) else {}

    def mask(document, other_conns, mark_changes):
        if not isinstance(document, dict):
            return document
        result = copy.deepcopy(document)
        conns = result.get("connections")
        if isinstance(conns, dict):
            for name, conn in conns.items():
                if isinstance(conn, dict) and "psk" in conn:
                    old = other_conns.get(name) if isinstance(other_conns.get(name), dict) else {}
                    changed = mark_changes and "psk" in old and old.get("psk") != conn["psk"]
                    conn["psk"] = HIDDEN_CHANGED if changed else HIDDEN
        return result

    return mask(before, {}, False), mask(after, before_conns, True)


def diff_text(document, path):
    if document is None:
        return ""
    return render(document, path).decode("utf-8")


def changed_connections(before, after):
    old = (before or {}).get("connections") or {}
    new = (after or {}).get("connections") or {}
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "modified": sorted(name for name in set(old) & set(new) if old[name] != new[name]),
    }


def control_socket_of(document):
    settings = document.get("settings") if isinstance(document, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("control_socket"), str):
        return settings["control_socket"]
    return DEFAULT_CONTROL_SOCKET


def control_socket_for_file(path, parse_document):
    """The control socket named by the configuration at `path` (the default if unreadable)."""
    try:
        document = read_existing(path, parse_document)[1]
    except ConfigTaskError:
        return DEFAULT_CONTROL_SOCKET
    return control_socket_of(document)


def file_mode(path):
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def directory_needs_fix(directory):
    """'create' / 'mode' / None: the directory is created 0700; an existing one is tightened to
    0700 only when it is pyike's own (its name contains 'pyike'), never a shared one such as /etc."""
    if not os.path.isdir(directory):
        return "create"
    if "pyike" in os.path.basename(directory.rstrip("/")) and file_mode(directory) != DIR_MODE:
        return "mode"
    return None


def prepare_directory(directory):
    action = directory_needs_fix(directory)
    if action == "create":
        os.makedirs(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)
    elif action == "mode":
        os.chmod(directory, DIR_MODE)


def restore(path, previous):
    """Put back the file as it was before this task: `previous` bytes, or no file at all."""
    if previous is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        write_atomic(path, previous)
