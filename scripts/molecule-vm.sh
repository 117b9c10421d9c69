#!/usr/bin/env bash
# make molecule-vm: Molecule scenarios in kernel mode (XFRM) inside the VM lab, where the kernel has ESP.
# On the host it boots the VM (scripts/vmlab.py, with Debian's stock kernel) and runs itself in there;
# inside, it runs scripts/molecule.sh with PYIKE_MOLECULE_DATAPLANE=kernel, which every scenario's
# gateways take as ipsec_dataplane (molecule/shared/group_vars/all.yml) and verify asserts through
# pyike.ipsec.sa_info. A gateway without kernel ESP fails to start in kernel mode, so nothing falls back.
#
#   scripts/molecule-vm.sh [SCENARIO...]     default: default
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${PYIKE_VM_LAB:-}" ]; then  # on the host: vm-guest.sh sets PYIKE_VM_LAB inside the VM
  # Ansible under QEMU TCG is slow: the default scenario alone took 718 s and 1190 s in two runs in the VM.
  VM_TIMEOUT="${VM_TIMEOUT:-2400}" exec "${PYTHON:-$ROOT/.venv/bin/python}" scripts/vmlab.py --script scripts/molecule-vm.sh "$@"
fi
export PYIKE_MOLECULE_DATAPLANE=kernel
if [ "$#" -eq 0 ]; then
  set -- default
fi
exec bash scripts/molecule.sh "$@"
