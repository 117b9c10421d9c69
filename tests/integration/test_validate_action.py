"""pyike.ipsec.validate run by ansible-playbook on the example inventories (controller only, no root).

The bad inventories fail with exactly the problems the unit corpus expects (which also shows that
the action gathers hostvars, group_names and groups the way the unit tests model them), and no
pre-shared key reaches the output at -vvv, the log file or the failure messages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, ansible_env, run_playbook, task_results

sys.path.insert(0, str(REPO / "tests" / "unit" / "inventory"))
from inventory_cases import BAD, GOOD, expected_problems

HUB_AND_SPOKE = REPO / "schemas" / "examples" / "inventory" / "good" / "hub-and-spoke.yml"
VAULT_PASSWORD = "integration-vault-password"
VAULTED_PSK = "vaulted-moon-psk-4f1c9a7e"
CHECK = "Check the IPsec inventory"
FULL = "Engine configurations with their keys"
USE = "The keys reach the registered variable"

PLAYBOOK = [
    {
        "name": "Validate the IPsec inventory",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": CHECK,
                "pyike.ipsec.validate": None,
                "run_once": True,
                "delegate_to": "localhost",
                "register": "ipsec_check",
            },
            {
                "name": FULL,
                "pyike.ipsec.validate": {"include_secrets": True},
                "run_once": True,
                "delegate_to": "localhost",
                "register": "ipsec_full",
            },
            {
                "name": USE,
                "ansible.builtin.assert": {
                    "that": [
                        "ipsec_full.secrets_included",
                        "ipsec_full.engine_secrets[item.0][item.1] == lookup('ansible.builtin.vars', item.2)",
                        "'psk' not in ipsec_full.engine_configs[item.0].connections[item.1]",
                    ],
                    "quiet": True,
                },
                "loop": "{{ expected_keys | default([]) }}",
                "run_once": True,
                "delegate_to": "localhost",
            },
        ],
    }
]


@pytest.fixture
def playbook(tmp_path):
    path = tmp_path / "validate.yml"
    path.write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    return path


def _vault_inventory(tmp_path: Path) -> Path:
    """hub-and-spoke.yml with the moon key from an ansible-vault encrypted group variable."""
    directory = tmp_path / "inventory"
    (directory / "group_vars").mkdir(parents=True)
    shutil.copy(HUB_AND_SPOKE, directory / "hosts.yml")
    password = tmp_path / "vault-password"
    password.write_text(VAULT_PASSWORD + "\n")
    encrypted = subprocess.run(
        [
            "ansible-vault",
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "--name",
            "vault_psk_moon",
            VAULTED_PSK,
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=True,
    ).stdout
    (directory / "group_vars" / "all.yml").write_text(encrypted)
    return directory


def _secrets_of(path: Path):
    variables = yaml.safe_load(path.read_text())["all"].get("vars") or {}
    secrets = [str(v) for k, v in variables.items() if k.startswith("vault_")]
    for key in ("ipsec_tunnels", "ipsec_topologies"):
        for item in variables.get(key) or []:
            if item.get("psk") is not None and "{{" not in str(item["psk"]):
                secrets.append(str(item["psk"]))
            secrets.extend(str(v) for v in (item.get("psks") or {}).values())
    return [s for s in secrets if len(s) >= 6]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_inventory_validates(path, playbook):
    rc, result, output = run_playbook(playbook, path)
    assert rc == 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert check["problems"] == [] and check.get("failed") is not True
    assert check["secrets_included"] is False
    assert check["engine_configs"] and set(check["engine_configs"]) == set(check["managed_hosts"])
    for config in check["engine_configs"].values():
        for conn in config["connections"].values():
            assert "psk" not in conn
    for host, refs in check["psk_refs"].items():
        assert set(refs) == set(check["engine_configs"][host]["connections"])
    assert "engine_secrets" not in check
    full = next(iter(task_results(result, FULL).values()))
    assert "censored" in full and "engine_configs" not in full


def test_hub_and_spoke_example(playbook, tmp_path):
    inventory = _vault_inventory(tmp_path)
    # (host, connection, the variable that holds its key): the items name variables, not keys.
    keys = [
        ["hub", "moon", "vault_psk_moon"],
        ["hub", "star-spoke1", "vault_psk_spokes"],
        ["spoke2", "star-spoke2", "vault_psk_spokes"],
    ]
    rc, result, output = run_playbook(
        playbook,
        inventory,
        "--vault-password-file",
        str(tmp_path / "vault-password"),
        "-e",
        yaml.safe_dump({"expected_keys": keys}, default_flow_style=True).strip(),
    )
    assert rc == 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert check["managed_hosts"] == ["hub", "spoke1", "spoke2"]
    assert [t["name"] for t in check["tunnels"]] == ["moon", "star-spoke1", "star-spoke2"]
    spoke1 = check["engine_configs"]["spoke1"]["connections"]["star-spoke1"]["children"]["lan"]
    assert spoke1["local_ts"] == ["10.2.0.0/24"]
    assert spoke1["remote_ts"] == ["10.1.0.0/24", "10.3.0.0/24"]
    assert check["psk_refs"]["hub"] == {
        "moon": "ipsec_tunnels[0].psk",
        "star-spoke1": "ipsec_topologies[0].psk",
        "star-spoke2": "ipsec_topologies[0].psk",
    }
    assert VAULTED_PSK not in output
    used = next(iter(task_results(result, USE).values()))
    assert not used.get("failed") and len(used["results"]) == len(keys), used


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_inventory_fails_naming_every_problem(path, playbook):
    rc, result, output = run_playbook(playbook, path)
    assert rc != 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert check["failed"] is True
    expected = expected_problems(path)
    assert sorted(check["problems"]) == sorted(expected)
    for problem in expected:
        assert problem in check["msg"]
    assert check["engine_configs"] == {}
    with pytest.raises(KeyError):
        task_results(result, FULL)  # the play stopped at the failed check
    for secret in _secrets_of(path):
        assert secret not in output


def _run_verbose(playbook: Path, inventory: Path, tmp_path: Path, *extra: str):
    env = ansible_env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "default"
    env["ANSIBLE_LOG_PATH"] = str(tmp_path / "ansible.log")
    env["ANSIBLE_DISPLAY_ARGS_TO_STDOUT"] = "1"
    done = subprocess.run(
        ["ansible-playbook", "-vvv", "--diff", "-i", str(inventory), str(playbook), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    log = (tmp_path / "ansible.log").read_text() if (tmp_path / "ansible.log").exists() else ""
    return done.returncode, done.stdout + done.stderr + log


def test_no_psk_in_verbose_output(playbook, tmp_path):
    inventory = _vault_inventory(tmp_path)
    rc, output = _run_verbose(
        playbook, inventory, tmp_path, "--vault-password-file", str(tmp_path / "vault-password")
    )
    assert rc == 0, output
    assert "ipsec_topologies[0].psk" in output  # the configurations without keys are shown
    for secret in [VAULTED_PSK, *_secrets_of(HUB_AND_SPOKE)]:
        assert secret not in output


@pytest.mark.parametrize("name", ["secrets", "overlap"])
def test_no_psk_in_verbose_failure(name, playbook, tmp_path):
    path = next(p for p in BAD if p.stem == name)
    rc, output = _run_verbose(playbook, path, tmp_path)
    assert rc != 0, output
    for problem in expected_problems(path):
        assert problem in output
    secrets = _secrets_of(path)
    assert secrets
    for secret in secrets:
        assert secret not in output
    assert os.path.getsize(tmp_path / "ansible.log") > 0


def test_variables_that_cannot_be_templated_are_problems_too(playbook, tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
                        "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
                        "ipsec_tunnels": [
                            {
                                "name": "a",
                                "left": "gw1",
                                "right": "gw2",
                                "ike_group": "ike",
                                "esp_group": "nope",
                                "psk": "{{ vault_psk_missing }}",
                            }
                        ],
                        "ipsec_topologies": [
                            {
                                "name": "m",
                                "type": "full_mesh",
                                "members": ["gw1", "gw2"],
                                "ike_group": "ike",
                                "esp_group": "esp",
                                "psk": "topology-literal-secret",
                            }
                        ],
                    },
                    "hosts": {
                        "gw1": {
                            "ipsec_public_address": "192.0.2.1",
                            "ipsec_lan_subnets": ["{{ lan_of_gw1 }}"],
                        },
                        "gw2": {"ipsec_public_address": "198.51.100.1", "ipsec_lan_subnets": ["10.2.0.0/24"]},
                    },
                }
            }
        )
    )
    rc, result, output = run_playbook(playbook, inventory)
    assert rc != 0, output
    check = next(iter(task_results(result, CHECK).values()))
    # Every value that cannot be templated is named with its full path, and the rest is still checked.
    assert check["problems"] == [
        "ipsec_tunnels[0].psk: cannot be templated: 'vault_psk_missing' is undefined",
        "hostvars.gw1.ipsec_lan_subnets[0]: cannot be templated: 'lan_of_gw1' is undefined",
        "ipsec_tunnels[0].esp_group: unknown ESP group 'nope' (ipsec_esp_groups defines: esp)",
        "ipsec_topologies[0]: tunnel 'm-gw1-gw2' joins the same addresses and identities as tunnel 'a' "
        "(ipsec_tunnels[0]) on gw1, so the engine could not tell them apart; make them children of one tunnel",
    ]
    assert "topology-literal-secret" not in output
