"""Tests that run inside the VM lab (make vm-test), where the kernel has ESP; see kernel_lab.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernel_lab import IN_VM, TWO_SITES, KernelLab

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # A global hook: only the items of this directory are VM tests.
    skip = pytest.mark.skip(
        reason="a VM lab test: runs only inside the VM with Debian's stock kernel (kernel ESP) that "
        "`make vm-test` boots, where PYIKE_VM_LAB=1"
    )
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.vm)
            item.add_marker(pytest.mark.root)
            if not IN_VM:
                item.add_marker(skip)


@pytest.fixture
def vm_lab(make_lab, daemons):
    """A :class:`kernel_lab.KernelLab`: gateways gw1, gw2, clients c1, c2, kernel ESP available."""
    return KernelLab(make_lab(TWO_SITES), daemons)


@pytest.fixture
def shared_vm_lab(module_lab, daemons):
    """A :class:`kernel_lab.KernelLab` on the module's lab, its XFRM states and policies flushed first."""
    kernel_lab = KernelLab(module_lab, daemons)
    kernel_lab.reset()
    return kernel_lab
