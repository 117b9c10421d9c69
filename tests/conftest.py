"""Shared fixtures: lab hosts in namespaces (root only) and an Ansible runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS_PATH = REPO / ".build" / "collections"

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if IS_ROOT:
        return
    skip = pytest.mark.skip(
        reason="needs root: creates network namespaces, veths and TUN devices (CI runs as root)"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab_name():
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def make_lab(lab_name):
    """Create labs from host specs; every lab made here is destroyed after the test."""
    from pyike_lab.lab import Lab
    from pyike_lab.plan import build_plan

    labs = []

    def make(hosts, name=None):
        lab = Lab(name or lab_name)
        labs.append(lab)
        lab.up(build_plan(lab.name, hosts))
        return lab

    yield make
    for lab in labs:
        lab.down()


@pytest.fixture(scope="module")
def module_lab():
    """A two-site lab (TWO_SITES) shared by the tests of one module; removed after its last test."""
    from pyike_lab.lab import Lab
    from pyike_lab.plan import build_plan

    lab = Lab("m" + uuid.uuid4().hex[:8])
    try:
        lab.up(build_plan(lab.name, TWO_SITES))
        yield lab
    finally:
        lab.down()


@pytest.fixture
def daemons():
    """Daemons a test starts (pyike or strongSwan, anything with stop()); all stopped afterwards."""
    started = []
    yield started
    for daemon in started:
        daemon.stop()


TWO_SITES = [
    {"name": "gw1", "site": 1, "role": "gateway"},
    {"name": "c1", "site": 1, "role": "client"},
    {"name": "gw2", "site": 2, "role": "gateway"},
    {"name": "c2", "site": 2, "role": "client"},
]


@pytest.fixture
def lab(make_lab):
    """The usual two-site lab: gateways gw1, gw2 and LAN clients c1, c2."""
    return make_lab(TWO_SITES)


def ansible_env():
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_PATH)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_CALLBACK_PLUGINS"] = str(REPO / "tests" / "integration" / "callback_plugins")
    env["ANSIBLE_STDOUT_CALLBACK"] = "results_json"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run_playbook(playbook: Path, inventory: Path, *extra: str, timeout: float = 300):
    """Run ansible-playbook with the json callback; returns (returncode, parsed json or None, stderr)."""
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(playbook), *extra],
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=timeout,
        check=False,
    )
    result = None
    # With -v.. the display's lines come first; the callback's document is the last line.
    for line in reversed(done.stdout.splitlines()):
        if line.startswith('{"plays"'):
            try:
                result = json.loads(line)
            except ValueError:
                result = None
            break
    return done.returncode, result, done.stderr + done.stdout


def task_results(result, task_name):
    """{host: result} of the task called `task_name` in a json-callback run."""
    for play in result["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == task_name:
                return task["hosts"]
    raise KeyError(task_name)
