"""playbooks/validate.yml (the controller-side action) on the cases of the inventory corpus
(tests/unit/inventory/corpus), and on inventory sources that give nothing to validate.

Each case fails with exactly the problems its ``# expect:`` (and ``# expect-action:``) lines name,
or passes with exactly its ``# warn:`` lines; no pre-shared key, private key or ``# secret:`` text
reaches the output.  The cases run a few at a time (each is one ansible-playbook process), once per
module; the parametrized tests then look at their results.  Controller only, no root.

Which cases: every case that Ansible itself could get wrong (a directory with group_vars and
host_vars, templating, vault, problems of the action, warnings, secrets) and the first two of each
corpus directory. The unit test (tests/unit/inventory/test_inventory_corpus.py) checks every case's
problems with the same code; an ansible-playbook process per case for all of them took 4 minutes of
the integration run. PYIKE_CORPUS_ALL=1 runs every case here too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from conftest import REPO, ansible_env, run_playbook, task_results

sys.path.insert(0, str(REPO / "tests" / "unit" / "inventory"))
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
from inventory_cases import CORPUS, case_id, inventory_file, marks

VALIDATE = REPO / "playbooks" / "validate.yml"
CHECK = "Check the inventory against schemas/inventory.schema.json and the cross-checks"
PARALLEL = 3
SAMPLE_PER_DIRECTORY = 2


class _Loader(yaml.SafeLoader):
    """safe_load that reads an ``!vault`` value as None (its plaintext is a ``# secret:`` line)."""


_Loader.add_constructor("!vault", lambda loader, node: None)


def _secrets(path: Path) -> List[str]:
    """The psk, psks and ipsec_private_key values written in the case's files (not templates), and
    its ``# secret:`` texts."""
    texts = list(marks(path)["secret"])

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for name, item in node.items():
                if key == "psks" and not isinstance(item, (dict, list)) and item is not None:
                    texts.append(str(item))
                walk(item, str(name))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif key in ("psk", "ipsec_private_key") and node is not None and "{{" not in str(node):
            texts.append(str(node))

    for item in [inventory_file(path)] + (sorted(path.rglob("*.yml")) if path.is_dir() else []):
        walk(yaml.load(item.read_text(), Loader=_Loader))
    return sorted({text for text in texts if text.strip()})


def _run(path: Path, work: Path) -> Dict[str, Any]:
    extra: List[str] = []
    password = marks(path)["vault-password"]
    if password:
        secret_file = work / ("%s.vault" % case_id(path).replace("/", "_"))
        secret_file.write_text(password[0] + "\n")
        extra = ["--vault-password-file", str(secret_file)]
    rc, result, output = run_playbook(VALIDATE, path, *extra, timeout=600)
    check = next(iter(task_results(result, CHECK).values())) if result else None
    return {"rc": rc, "check": check, "output": output}


def _ansible_could_differ(path: Path) -> bool:
    """Whether Ansible's own loading is at stake: files, templating, vault, its output."""
    found = marks(path)
    text = inventory_file(path).read_text()
    return bool(path.is_dir() or found["expect-action"] or found["vault-password"] or found["warn"]
                or found["secret"] or "{{" in text or "!vault" in text)  # fmt: skip


def _through_ansible(corpus: List[Path]) -> List[Path]:
    if os.environ.get("PYIKE_CORPUS_ALL") == "1":
        return list(corpus)
    sampled: Dict[str, int] = {}
    chosen = []
    for path in corpus:
        directory = case_id(path).split("/")[0]
        if _ansible_could_differ(path) or sampled.get(directory, 0) < SAMPLE_PER_DIRECTORY:
            sampled[directory] = sampled.get(directory, 0) + 1
            chosen.append(path)
    return chosen


THROUGH_ANSIBLE = _through_ansible(CORPUS)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """The runs of the cases selected in this session (all, or those -k picks), a few at a time."""
    work = tmp_path_factory.mktemp("corpus")
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if item.originalname == "test_corpus_case_through_validate_yml"
    ]
    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(zip(selected, pool.map(lambda path: _run(path, work), selected)))


@pytest.mark.parametrize("path", THROUGH_ANSIBLE, ids=case_id)
def test_corpus_case_through_validate_yml(path, outcomes):
    found = outcomes[path]
    expected = marks(path)
    source = str(inventory_file(path) if path.is_file() else path)
    problems = expected["expect"] + [
        text.replace("{inventory}", source) for text in expected["expect-action"]
    ]
    assert found["check"] is not None, found["output"]
    check = found["check"]
    assert sorted(check["problems"]) == sorted(problems), "\n".join(
        ["found:", *check["problems"], "expected:", *problems]
    )
    if problems:
        assert found["rc"] != 0 and check["failed"] is True
        assert check["engine_configs"] == {}
    else:
        assert found["rc"] == 0, found["output"]
        # Ansible keeps a task's warnings in its result when the task succeeds.
        assert sorted(check.get("warnings") or []) == sorted(expected["warn"])
    for secret in _secrets(path):
        assert not re.search(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(secret), found["output"]), (
            "a secret reached the output"
        )


def test_hosts_in_any_order_give_the_same_problems(tmp_path):
    """The same host-order case with its groups' hosts listed the other way round."""
    case = next(path for path in CORPUS if case_id(path) == "issue/host-order")
    copy = tmp_path / "host-order"
    subprocess.run(["cp", "-r", str(case), str(copy)], check=True)
    document = yaml.safe_load((copy / "hosts.yml").read_text())
    children = document["all"]["children"]
    document["all"]["children"] = dict(reversed(list(children.items())))
    (copy / "hosts.yml").write_text(yaml.safe_dump(document))
    first = run_playbook(VALIDATE, case)
    second = run_playbook(VALIDATE, copy)
    problems = [next(iter(task_results(r, CHECK).values()))["problems"] for _rc, r, _out in (first, second)]
    assert problems[0] == problems[1] and problems[0]
    assert first[0] != 0 and second[0] != 0


def _play(*args: str):
    return subprocess.run(
        ["ansible-playbook", *args, str(VALIDATE)],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=300,
        check=False,
    )


def test_missing_inventory_file_fails(tmp_path):
    missing = tmp_path / "no-such-inventory.yml"
    rc, result, output = run_playbook(VALIDATE, missing)
    assert rc != 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert "inventory source %s does not exist" % missing in check["problems"]


def test_unparsable_inventory_fails(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts:\n    gw1: {ipsec_public_address: 192.0.2.1\n  vars: [\n")
    rc, result, output = run_playbook(VALIDATE, broken)
    assert rc != 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert check["problems"][0].startswith("inventory source %s gave no host" % broken)


def test_limit_that_matches_nothing_fails():
    case = next(path for path in CORPUS if case_id(path) == "issue/group-vars-gateways")
    done = _play("-i", str(case), "--limit", "no-such-host")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "leaves us with no hosts to target" in done.stdout + done.stderr


def test_limit_keeps_every_gateway_in_view():
    """--limit narrows the hosts the play runs on, not what is checked: the tunnels in group_vars are
    still seen from every gateway."""
    case = next(path for path in CORPUS if case_id(path) == "issue/group-vars-gateways")
    rc, result, output = run_playbook(VALIDATE, case, "--limit", "c1")
    assert rc != 0, output
    check = next(iter(task_results(result, CHECK).values()))
    assert sorted(check["problems"]) == sorted(marks(case)["expect"])
