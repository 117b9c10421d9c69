"""Shared helpers for the configuration tests: a valid base document and error collection."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from pyike.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[3]
SCHEMA_FILE = REPO / "schemas" / "pyike-config.schema.json"
EXAMPLES = REPO / "schemas" / "examples"
EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".json", ".yaml", ".yml"))

SOURCE = "/etc/pyike/test.yaml"

# Both validation engines; tests call need_engine(), which skips jsonschema where it is not
# installed (Debian's python3 has no python3-jsonschema by default).
ENGINES = ["builtin", "jsonschema"]

_BASE: Dict[str, Any] = {
    "settings": {"listen": ["0.0.0.0", "::"]},
    "connections": {
        "hq": {
            "local": {"address": "192.0.2.1", "id": "gw1.example.com"},
            "remote": {"address": "198.51.100.1", "id": "gw2.example.com"},
            "auth": "psk",
            "psk": "base-config-psk-value",
            "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
            "children": {
                "lan": {
                    "local_ts": ["10.1.0.0/24"],
                    "remote_ts": ["10.2.0.0/24"],
                    "esp_proposals": ["aes256gcm16"],
                }
            },
        }
    },
}


def base_config() -> Dict[str, Any]:
    """A fresh copy of a small valid configuration (connection hq, child lan)."""
    return copy.deepcopy(_BASE)


def installed(example: Path, directory: Path) -> str:
    """A copy of an example in ``directory`` as an administrator installs it: the examples hold an
    inline psk, so their mode is 0600 (a checkout leaves them as the umask says)."""
    target = directory / example.name
    shutil.copyfile(example, target)
    os.chmod(target, 0o600)
    return str(target)


def need_engine(engine: str) -> None:
    if engine == "jsonschema":
        pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")


def problems(
    data: Any, engine: Optional[str] = None, source: str = SOURCE, base_dir: Optional[str] = None
) -> List[str]:
    """The problem lines parse_config reports (fails the test if it accepts the data)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source, base_dir=base_dir, engine=engine)
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems]
    return lines
