#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_network
short_description: Set up a host's forwarding, firewall and MSS clamping for its pyike IPsec gateway
description:
  - Reads what an engine configuration (as M(pyike.ipsec.config) takes it) asks of the host, namely the
    peers (each connection's C(remote.address)), the traffic of each Child SA (C(local_ts), C(remote_ts)),
    the TUN device, its MTU and the IKE ports (C(settings)), and sets the host up for it. Nothing else of
    the configuration is read; it needs no secret.
  - B(Forwarding.) Switches on IP forwarding for the address families the tunnels carry, persistently
    (O(sysctl_file)) and in the running kernel. It never switches forwarding off.
  - B(Firewall.) Where nftables rules are loaded (any table), or firewalld runs, it lets in UDP to the IKE
    ports (500 and 4500) and ESP (IP protocol 50) from the peers only, and lets the tunnelled traffic
    through between the LAN and the TUN device, where the ruleset would drop it. A host without a
    firewall gets none; nothing is installed.
  - With nftables, a packet accepted by one table is still dropped by another table's base chain at the
    same hook, and a jump cannot leave its table. So in each table whose input or forward base chain can
    drop (policy drop, or a drop or reject rule), the module adds chains C(pyike_ipsec_input) and
    C(pyike_ipsec_forward) and a jump to them at the top of that base chain. Tables of firewalld and of
    iptables-nft are left alone (with a warning). Every rule carries the comment C(pyike.ipsec).
  - With firewalld, the module adds ipsets, a zone (C(pyike-ipsec), with the TUN device) and two policies
    of its own, in the runtime and the permanent configuration, and rich rules admitting IKE and ESP from
    the peers in the zone that receives them (the zone of the interface that routes to each peer, or
    O(firewalld_zone)). Creating these objects reloads firewalld once.
  - A peer whose address is C(%any) opens IKE and ESP to every address (with a warning), and so does a
    peer given by DNS name, because the engine resolves the name at each initiation and the address it
    has when the play runs (if it resolves at all then) may not be the one it has when the tunnel starts.
  - B(MSS clamping.) With O(mss_clamping), the table C(inet pyike_ipsec) lowers the MSS option of TCP SYNs
    into and out of the TUN device to what fits its MTU (MTU - 40 for IPv4, MTU - 60 for IPv6), so that
    TCP through the tunnel needs no fragmentation or path MTU discovery.
  - B(After a reboot.) The nftables rules are re-applied by C(pyike-nftables apply) (in O(bin_dir)), from
    the spec C(nftables.json) in O(state_dir). Where systemd is PID 1 the unit C(pyike-nftables.service)
    does so at boot and whenever C(nftables.service) is restarted or reloaded; elsewhere run that command
    after the ruleset is loaded at boot. firewalld keeps its permanent configuration itself.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  state:
    description:
      - V(present) sets the host up as described.
      - V(absent) removes everything this module added (sysctl file, nftables chains, jumps and table, the
        boot files and unit). Running forwarding values and firewalld objects stay.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - The gateway's engine configuration (its C(settings) and C(connections)), as M(pyike.ipsec.config)
        takes it; the role passes the one C(pyike.ipsec.validate) computed. Required with O(state=present).
    type: dict
  forwarding:
    description: Switch on IPv4 and/or IPv6 forwarding for the families the tunnels carry.
    type: bool
    default: true
  sysctl_file:
    description: The file in C(sysctl.d) that switches forwarding on at boot.
    type: path
    default: /etc/sysctl.d/60-pyike-ipsec.conf
  firewall:
    description:
      - V(auto) uses firewalld when it runs, else nftables when any nftables table is loaded, else
        nothing (no firewall is installed).
      - V(nftables) or V(firewalld) insist on one (the task fails when it is not there).
      - V(none) leaves the firewall alone (also rules this module added before; MSS clamping is separate).
    type: str
    choices: [auto, nftables, firewalld, none]
    default: auto
  firewalld_zone:
    description:
      - The firewalld zone that receives the peers' packets. By default the zone of each interface that
        routes to a peer (for C(%any), to the default route), or the default zone.
    type: str
  mss_clamping:
    description: Clamp the TCP MSS of SYNs into and out of the TUN device to its MTU (needs nft).
    type: bool
    default: true
  state_dir:
    description: Directory for C(nftables.json), the spec that C(pyike-nftables) re-applies at boot.
    type: path
    default: /etc/pyike
  bin_dir:
    description: Directory for the C(pyike-nftables) command.
    type: path
    default: /usr/local/sbin
attributes:
  check_mode:
    description: Reports what would change (and the diff) and changes nothing.
    support: full
  diff_mode:
    description: Shows the sysctl file and running values, our nftables rules, or our firewalld objects, before and after.
    support: full
notes:
  - Needs root. C(nft) for nftables and MSS clamping; C(firewall-cmd) for firewalld.
  - An OUTPUT chain that drops is not opened; nor are iptables rules. With those, open UDP 500/4500 and ESP
    yourself and use O(firewall=none).
seealso:
  - module: pyike.ipsec.config
  - module: pyike.ipsec.engine
"""

EXAMPLES = r"""
- name: Forwarding, firewall and MSS clamping for this gateway's tunnels
  pyike.ipsec.host_network:
    config:
      connections:
        hq:
          local: {address: 192.0.2.1}
          remote: {address: 198.51.100.1}
          children:
            lan: {local_ts: [10.1.0.0/24], remote_ts: [10.2.0.0/24]}

- name: Only forwarding; the firewall is managed elsewhere
  pyike.ipsec.host_network:
    config: "{{ engine_config }}"
    firewall: none
    mss_clamping: false
"""

RETURN = r"""
firewall:
  description: The firewall that was set up, V(nftables), V(firewalld) or V(none).
  returned: always
  type: str
  sample: nftables
forwarding:
  description: The address families forwarded.
  returned: always
  type: list
  elements: str
  sample: [ipv4]
peers:
  description: The addresses IKE and ESP are admitted from, or V(any).
  returned: O(state=present)
  type: raw
  sample: [198.51.100.1, 203.0.113.1]
tunnel_device:
  description: The TUN device of the tunnelled traffic.
  returned: O(state=present)
  type: str
  sample: pyike0
mss_clamping:
  description: Whether the MSS clamping table is in place.
  returned: always
  type: bool
nftables:
  description: The base chains that jump to our rules, and the tables left alone although they may drop.
  returned: when nftables was looked at
  type: dict
  sample: {opened: [inet filter input, inet filter forward], not_changed: []}
boot:
  description: The command, spec and systemd unit that re-apply the nftables rules at boot.
  returned: when nftables was looked at
  type: dict
  sample: {command: /usr/local/sbin/pyike-nftables, spec: /etc/pyike/nftables.json, systemd_unit: null}
changes:
  description: What was (or, in check mode, would be) changed.
  returned: always
  type: list
  elements: str
msg:
  description: The changes in one line.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host.task import (
    HostNetworkError,
    HostNetworkTask,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            config=dict(type="dict"),
            forwarding=dict(type="bool", default=True),
            sysctl_file=dict(type="path", default="/etc/sysctl.d/60-pyike-ipsec.conf"),
            firewall=dict(type="str", choices=["auto", "nftables", "firewalld", "none"], default="auto"),
            firewalld_zone=dict(type="str"),
            mss_clamping=dict(type="bool", default=True),
            state_dir=dict(type="path", default="/etc/pyike"),
            bin_dir=dict(type="path", default="/usr/local/sbin"),
        ),
        required_if=[("state", "present", ["config"])],
        supports_check_mode=True,
    )

    def run(argv):
        return module.run_command(argv)

    task = HostNetworkTask(module.params, module.check_mode, run, module.warn)
    try:
        result = task.execute()
    except HostNetworkError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
