"""The example inventories: every bad one gives exactly its expected problems, every good one is
valid and its engine configurations load with the engine's own parse_config.  The corpus
(tests/unit/inventory/corpus: the cases of issue 12 and our own) is checked the way validate.yml
checks it, from every host's view, with both schema validators; tests/integration/
test_validate_corpus.py runs the same cases through ansible-playbook."""

from __future__ import annotations

import os
import re

import pytest
from inventory_cases import BAD, CORPUS, GOOD, case_id, expected_problems, host_views, load_inventory, marks
from pyike.config import parse_config
from pyike_inventory import check_views, engine_configs, validate_inventory

ENGINES = ["builtin", "jsonschema"]


def need_engine(engine):
    if engine == "jsonschema":
        pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")


def _secret_texts(data, hosts):
    texts = []
    for key in ("ipsec_tunnels", "ipsec_topologies"):
        for item in data.get(key) or []:
            if isinstance(item, dict):
                if item.get("psk") is not None:
                    texts.append(str(item["psk"]))
                texts.extend(str(v) for v in (item.get("psks") or {}).values())
    texts.extend(str(h["ipsec_private_key"]) for h in hosts.values() if "ipsec_private_key" in h)
    return texts


def test_the_corpus_is_there():
    assert len(BAD) >= 10 and len(GOOD) >= 3
    assert all(expected_problems(path) for path in BAD)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_inventory_reports_exactly_its_problems(path, engine):
    need_engine(engine)
    data, hosts, groups = load_inventory(path)
    found = [str(p) for p in validate_inventory(data, hosts, groups, engine=engine)]
    expected = expected_problems(path)
    assert len(found) == len(set(found)), "a problem is reported twice"
    assert sorted(found) == sorted(expected), "\n".join(["found:", *found, "expected:", *expected])


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_no_problem_shows_a_secret(path):
    data, hosts, groups = load_inventory(path)
    text = "\n".join(str(p) for p in validate_inventory(data, hosts, groups))
    for secret in _secret_texts(data, hosts):
        assert secret not in text


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_inventory_gives_no_configs(path):
    data, hosts, groups = load_inventory(path)
    with pytest.raises(ValueError) as caught:
        engine_configs(data, hosts, groups)
    assert sorted(str(p) for p in caught.value.problems) == sorted(expected_problems(path))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_inventory_is_valid(path, engine):
    need_engine(engine)
    data, hosts, groups = load_inventory(path)
    assert [str(p) for p in validate_inventory(data, hosts, groups, engine=engine)] == []


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_inventory_configs_load_in_the_engine(path, tmp_path):
    data, hosts, groups = load_inventory(path)
    configs = engine_configs(data, hosts, groups)
    assert configs
    for host, config in configs.items():
        for conn in config["connections"].values():
            if "psk_file" in conn:  # the file lives on the gateway; give the engine a real one
                key_file = tmp_path / ("%s.psk" % host)
                key_file.write_text("a-key-from-a-file-on-the-gateway\n")
                os.chmod(key_file, 0o600)
                conn["psk_file"] = str(key_file)
        loaded = parse_config(config, source="%s:%s" % (path.name, host))
        assert sorted(loaded.connections) == sorted(config["connections"])


# Cases that need Ansible (Jinja filters, vault) run only in the integration test.
UNIT_CORPUS = [path for path in CORPUS if not marks(path)["action-only"]]


def test_the_issue_corpus_and_ours_are_there():
    issue = [path for path in CORPUS if path.parent.name == "issue"]
    assert len(issue) >= 34
    assert len(CORPUS) - len(issue) >= 85


def _corpus_secrets(path, views):
    """Every pre-shared key and private key the hosts see, and the case's ``# secret:`` texts."""
    texts = list(marks(path)["secret"])
    for view in views:
        texts.extend(_secret_texts(view.view, {view.name: view.own}))
    return [text for text in texts if text.strip()]


def _shown(secret, text):
    return re.search(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(secret), text) is not None


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", UNIT_CORPUS, ids=case_id)
def test_corpus_case_gives_exactly_its_problems_and_warnings(path, engine):
    need_engine(engine)
    views, groups = host_views(path)
    outcome = check_views(views, groups, engine=engine, require_tunnels=True)
    expected = marks(path)
    assert len(outcome.problems) == len(set(outcome.problems)), "a problem is reported twice"
    assert sorted(outcome.problems) == sorted(expected["expect"]), "\n".join(
        ["found:", *outcome.problems, "expected:", *expected["expect"]]
    )
    assert sorted(outcome.warnings) == sorted(expected["warn"]), "\n".join(
        ["found:", *outcome.warnings, "expected:", *expected["warn"]]
    )
    assert (outcome.inventory is None) == bool(expected["expect"])
    text = "\n".join(outcome.problems + outcome.warnings)
    for secret in _corpus_secrets(path, views):
        assert not _shown(secret, text), "a secret reached a message"
