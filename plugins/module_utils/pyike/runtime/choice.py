"""Which dataplane carries ESP on this host: settings.dataplane (auto | kernel | userspace) and the probe.

``auto`` installs throw-away ESP states in the kernel (:func:`.xfrm.probe`: every ESP transform the
engine can negotiate, IPv4 and IPv6, and ESP in UDP) and picks the kernel only when all of them work,
else the userspace dataplane (TUN), which has them all; ``kernel`` refuses to start without kernel ESP
and starts with a warning when only some transforms are missing (a Child SA that needs one then fails to
install); ``userspace`` never asks the kernel. The choice and its reason are kept for ``pyikectl stats``
and the sa_info module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

KERNEL = "kernel"
USERSPACE = "userspace"
AUTO = "auto"

Probe = Callable[[], Tuple[bool, str]]  # (ok, reason); may carry .esp: ESP at all, even if not ok


class DataplaneUnavailable(Exception):
    """settings.dataplane asks for the kernel, and the kernel cannot install ESP states."""


@dataclass(frozen=True)
class DataplaneChoice:
    mode: str  # kernel | userspace
    setting: str  # what settings.dataplane said
    reason: str
    complete: bool = True  # False: kernel mode although the probe found something missing

    def as_dict(self) -> Dict[str, str]:
        return {"mode": self.mode, "setting": self.setting, "reason": self.reason}


def choose_dataplane(setting: str, probe: Optional[Probe] = None) -> DataplaneChoice:
    """The dataplane for ``setting``; raises DataplaneUnavailable for ``kernel`` without kernel ESP."""
    if setting == USERSPACE:
        return DataplaneChoice(USERSPACE, setting, "settings.dataplane is userspace")
    if probe is None:
        from .xfrm import probe  # pyroute2's message classes: only when the kernel is asked
    result = probe()
    ok, found = result[0], result[1]
    if setting == KERNEL:
        if not getattr(result, "esp", ok):
            raise DataplaneUnavailable(
                "settings.dataplane is kernel, but %s; set settings.dataplane to auto or userspace "
                "(ipsec_dataplane in the inventory) to use the userspace dataplane" % found
            )
        return DataplaneChoice(KERNEL, setting, "settings.dataplane is kernel; %s" % found, complete=ok)
    if setting != AUTO:
        raise ValueError("settings.dataplane must be auto, kernel or userspace, not %r" % (setting,))
    if ok:
        return DataplaneChoice(KERNEL, setting, "auto: %s" % found)
    return DataplaneChoice(USERSPACE, setting, "auto: %s" % found)
