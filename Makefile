# pyike.ipsec — run `make demo` or `make test` as root on Debian 12 (see README.md).
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.build/collections
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
DEMO_INVENTORY := $(ROOT)/playbooks/inventory/demo.yml

.PHONY: setup demo demo-down test lint ruff unit target-unit integration molecule ansible-lint sanity changelog build

setup:
	@bash $(ROOT)/scripts/setup.sh

demo: setup
	ansible-playbook -i $(DEMO_INVENTORY) $(ROOT)/playbooks/lab_up.yml
	ansible -i $(DEMO_INVENTORY) lab -m ansible.builtin.ping -o
	ansible-playbook -i $(DEMO_INVENTORY) $(ROOT)/playbooks/site.yml
	ansible-playbook -i $(DEMO_INVENTORY) $(ROOT)/playbooks/status.yml
	@echo "== spoke1's LAN client c2 (10.2.0.10) pings spoke2's LAN client c3 (10.3.0.10) through the hub:"
	ansible -i $(DEMO_INVENTORY) c2 -m ansible.builtin.command -a "ping -c 3 -i 0.2 10.3.0.10"
	@echo "The VPN demo is up (hub, spoke1, spoke2 and LAN clients c1-c3). Remove it with: make demo-down"

demo-down: setup
	ansible-playbook -i $(DEMO_INVENTORY) $(ROOT)/playbooks/lab_down.yml

# Every check; the first failure stops the run with a non-zero exit.
test: setup ruff changelog unit target-unit integration molecule ansible-lint sanity build

ruff:
	ruff check $(ROOT)
	ruff format --check $(ROOT)

changelog:
	cd $(ROOT) && antsibull-changelog lint

unit:
	cd $(ROOT) && python -m pytest -q tests/unit

# The engine's unit tests again under the hosts' interpreter (Debian python3 + distro cryptography).
target-unit:
	cd $(ROOT) && /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/unit

integration:
	cd $(ROOT) && python -m pytest -q tests/integration

# Every Molecule scenario (molecule/*/molecule.yml), serially, with each one's time; or some:
#   make molecule MOLECULE_SCENARIOS="default negative"
MOLECULE_SCENARIOS ?=
molecule:
	bash $(ROOT)/scripts/molecule.sh $(MOLECULE_SCENARIOS)

ansible-lint:
	cd $(ROOT) && ansible-lint --offline --profile production

sanity:
	bash $(ROOT)/scripts/ansible-test-sanity.sh

build:
	cd $(ROOT) && rm -rf .build/dist && ansible-galaxy collection build --output-path .build/dist --force >/dev/null
	cd $(ROOT) && ansible-galaxy collection install --offline -p .build/installed --force .build/dist/pyike-ipsec-*.tar.gz >/dev/null
	@echo "build: collection tarball builds and installs offline"
