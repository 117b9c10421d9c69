# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyike.ipsec.host_network's work: forwarding, the firewall and MSS clamping, planned then applied.

Everything is planned first (what changes, the diff); outside check mode it is then applied: the
sysctl file and running values, the firewall (nftables in one transaction, or firewalld), and the
files that re-apply the nftables rules at boot.
"""

from __future__ import annotations

import os
import shutil
import sys

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.payload import (
    PayloadError,
    module_source,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.service import systemd_is_pid1
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import (
    boot,
    firewalld,
    forwarding,
    nftables,
    traffic,
)


class HostNetworkError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


class HostNetworkTask:
    """One run of the module: `params` as the module received them; `run(argv)` is run_command."""

    def __init__(self, params, check_mode, run, warn, systemd=None):
        self.params = params
        self.check_mode = check_mode
        self.run = run
        self.warn = warn
        self.present = params["state"] == "present"
        self.systemd = systemd
        self.changes = []
        self.diffs = []
        self.result = {"changed": False, "firewall": "none", "forwarding": [], "mss_clamping": False}

    def execute(self):
        try:
            host = traffic.host_traffic(self.params["config"] or {}) if self.present else None
        except traffic.TrafficError as exc:
            raise HostNetworkError("config: %s" % exc) from None
        if host is not None:
            self._report_peers(host)
        steps = []
        try:
            if self.params["forwarding"] or not self.present:
                steps.append(self._plan_forwarding(host))
            steps += self._plan_firewall(host)
        except (
            forwarding.ForwardingError,
            nftables.NftError,
            firewalld.FirewalldError,
            boot.BootError,
        ) as exc:
            raise HostNetworkError(str(exc), changes=self.changes) from None
        self.result["changed"] = bool(self.changes)
        self.result["changes"] = self.changes
        self.result["diff"] = self.diffs
        if not self.check_mode:
            try:
                for apply in steps:
                    if apply is not None:
                        apply()
            except (
                OSError,
                forwarding.ForwardingError,
                nftables.NftError,
                firewalld.FirewalldError,
                boot.BootError,
            ) as exc:
                raise HostNetworkError(
                    "%s (planned: %s)" % (exc, "; ".join(self.changes)), changes=self.changes
                ) from None
        self.result["msg"] = (
            "; ".join(self.changes) if self.changes else "the host is set up as this gateway needs"
        )
        return self.result

    def _report_peers(self, host):
        self.result["peers"] = "any" if host["peers"]["any"] else host["peers"]["4"] + host["peers"]["6"]
        self.result["tunnel_device"] = host["tun"]
        if host["peers"]["any"]:
            why = "a connection's remote address is %any"
            if host["named"]:
                why = "peer %s is given by DNS name (its address may change between runs)" % ", ".join(
                    host["named"]
                )
            self.warn(
                "%s: UDP ports %s and ESP are opened to every address"
                % (why, "/".join(str(port) for port in host["ike_ports"]))
            )

    # --- forwarding --------------------------------------------------------------------------------
    def _plan_forwarding(self, host):
        versions = host["versions"] if host is not None else []
        planned = forwarding.plan(versions, self.params["sysctl_file"], present=self.present)
        self.result["forwarding"] = ["ipv%d" % version for version in versions]
        self._record("sysctl", planned["changes"], *forwarding.diff_text(planned))
        return lambda: forwarding.apply(planned)

    # --- firewall and MSS clamping ---------------------------------------------------------------
    def _plan_firewall(self, host):
        nft_path = shutil.which(nftables.NFT, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if nft_path:
            nftables.NFT = nft_path
        backend = self._backend(nft_path)
        self.result["firewall"] = backend
        mss = self.present and self.params["mss_clamping"]
        steps = []
        if backend == "firewalld":
            steps.append(self._plan_firewalld(host))
        if nft_path is None:
            if mss:
                self.warn("nft is not installed: TCP MSS clamping for the tunnelled traffic is not set up")
            return steps
        spec = None
        if host is not None and (mss or backend == "nftables"):
            spec = {
                "tun": host["tun"],
                "ike_ports": host["ike_ports"],
                "peers": host["peers"],
                "tunnels": host["tunnels"],
                "interfaces": host["interfaces"],
                "open": None if self.params["firewall"] == "none" else backend == "nftables",
                "mss": host["mss"] if mss else None,
            }
        if spec is None and self.params["firewall"] == "none" and self.present:
            spec = {"open": None, "mss": None}  # only our own table goes (MSS clamping off)
        ruleset = nftables.Ruleset.read()
        result = nftables.plan(spec or {}, ruleset, present=spec is not None)
        self.result["mss_clamping"] = bool(spec and spec["mss"])
        self.result["nftables"] = {"opened": result.opened, "not_changed": result.skipped}
        for table in result.skipped:
            self.warn(
                "nftables table %s may drop the tunnel's traffic and was left alone: open UDP %s and ESP "
                "from the peers and the tunnelled traffic there yourself"
                % (table, "/".join(str(port) for port in spec["ike_ports"]) if spec else "500/4500")
            )
        before = nftables.before_text(result) if result.changed else nftables.after_text(result)
        self._record("nftables", result.changes, before, nftables.after_text(result))
        steps.append(lambda: nftables.apply(result))
        needed_at_boot = spec is not None and (spec.get("open") or spec.get("mss"))
        steps.append(self._plan_boot(spec if needed_at_boot else None))
        return steps

    def _backend(self, nft_path):
        wanted = self.params["firewall"]
        if wanted == "none" or not self.present:
            return "none"
        running = firewalld.is_running(self.run)
        if wanted == "firewalld" and not running:
            raise HostNetworkError(
                "firewall=firewalld, but firewalld is not running on this host (firewall-cmd --state)"
            )
        if wanted == "nftables" and nft_path is None:
            raise HostNetworkError("firewall=nftables, but nft is not installed on this host")
        if wanted != "auto":
            return wanted
        if running:
            return "firewalld"
        if nft_path and nftables.Ruleset.read().foreign_tables():
            return "nftables"
        return "none"

    def _plan_firewalld(self, host):
        zone = self.params["firewalld_zone"]
        planned = firewalld.plan(self.run, host, zone)
        self._record("firewalld", planned.changes, planned.before, planned.after)
        return lambda: planned.apply(self.run)

    def _plan_boot(self, spec):
        try:
            source = module_source(nftables)
        except PayloadError as exc:
            raise HostNetworkError("cannot read the nftables helper to install it: %s" % exc) from None
        systemd = self.systemd
        if systemd is None and systemd_is_pid1():
            systemd = boot.SystemdUnit(self.run)
        files = boot.BootFiles(
            self.params["state_dir"], self.params["bin_dir"], sys.executable, source, systemd
        )
        changes = files.plan(spec)
        self.result["boot"] = {
            "command": files.script_path if spec else None,
            "spec": files.spec_path if spec else None,
            "systemd_unit": boot.UNIT_NAME if spec and systemd is not None else None,
        }
        self._record("boot", changes, *files.diff())
        return files.apply

    def _record(self, what, changes, before, after):
        self.changes += changes
        if changes and (before or after):
            self.diffs.append({"before_header": what, "after_header": what, "before": before, "after": after})
