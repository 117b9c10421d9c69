#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lab
short_description: Create or remove a lab of namespace hosts on this machine
description:
  - Builds a test lab without containers or VMs on the machine the module runs on (normally the
    controller, with C(delegate_to=localhost)). Every lab host is a holder process with its own
    network, mount, UTS, IPC and PID namespaces, its own hostname, a private C(/run),
    copy-on-write C(/etc), C(/var/lib), C(/var/log), C(/opt), C(/usr/local) and C(/tmp), and a remounted C(/sys).
  - An C(internet) host joins every gateway's WAN link on one bridge and routes between the
    documentation ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24. Each site has a LAN
    10.<site>.0.0/24 behind its gateway (10.<site>.0.1), with optional client hosts routed through
    the gateway.
  - Lab hosts are reached with the P(pyike.ipsec.nsenter#connection) connection plugin.
  - Removing the lab kills exactly the holder processes it recorded (by PID); it succeeds on a
    half-built or already removed lab.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  name:
    description:
      - Name of the lab; its state lives in O(state_root)/O(name).
    type: str
    required: true
  state:
    description:
      - V(present) creates the lab, or re-creates it when the hosts differ from the running lab.
      - V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  hosts:
    description:
      - The lab hosts. Required with O(state=present).
    type: list
    elements: dict
    suboptions:
      name:
        description: Host name (lowercase letters, digits and dashes); the inventory name.
        type: str
        required: true
      site:
        description: Site number 1-250; the site's LAN is 10.<site>.0.0/24.
        type: int
        required: true
      role:
        description: V(gateway) (one per site, WAN and LAN) or V(client) (on the site's LAN).
        type: str
        choices: [gateway, client]
        default: gateway
      wan_address:
        description:
          - WAN address with prefix of a gateway. Default by site number, 1 -> 192.0.2.1/24,
            2 -> 198.51.100.1/24, 3 -> 203.0.113.1/24, 4 -> 192.0.2.2/24, and so on.
        type: str
      lan_address:
        description: LAN address with prefix of a client. Default 10.<site>.0.10/24 upwards.
        type: str
      forwarding:
        description:
          - Whether a gateway forwards IPv4 and IPv6 (C(net.ipv4.ip_forward), C(net.ipv6.conf.all.forwarding))
            when the lab is built. V(false) gives a stock host, on which the gateway role must switch it on.
        type: bool
        default: true
      nftables:
        description:
          - An nftables ruleset (the text C(nft -f) reads) loaded into the host once its links are up, for
            example one whose input and forward chains drop by default.
        type: str
  state_root:
    description:
      - Directory that holds the state of all labs.
    type: path
    default: /run/pyike-lab
attributes:
  check_mode:
    description: Reports whether the lab would be created, re-created or removed, and changes nothing.
    support: full
  diff_mode:
    description: No diff is produced.
    support: none
notes:
  - Needs root, C(unshare), C(nsenter) and C(ip) (iproute2), and C(/usr/bin/python3) for the holders; C(nft)
    for hosts with O(hosts[].nftables).
"""

EXAMPLES = r"""
- name: Two sites, each with a gateway and one LAN client
  pyike.ipsec.lab:
    name: demo
    hosts:
      - {name: gw1, site: 1, role: gateway}
      - {name: c1, site: 1, role: client}
      - {name: gw2, site: 2, role: gateway}
      - {name: c2, site: 2, role: client}
  delegate_to: localhost

- name: Remove the lab
  pyike.ipsec.lab:
    name: demo
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
hosts:
  description: Per lab host, its holder PID, role, site and addresses (internet host included).
  returned: state is present
  type: dict
  sample:
    gw1: {pid: 4242, role: gateway, site: 1, addresses: {wan0: [192.0.2.1/24], lan0: [10.1.0.1/24]}}
state_dir:
  description: Directory with the lab's pid files and plan.
  returned: always
  type: str
  sample: /run/pyike-lab/demo
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_lab.lab import Lab, LabError
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_lab.plan import LabPlanError, build_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            hosts=dict(
                type="list",
                elements="dict",
                options=dict(
                    name=dict(type="str", required=True),
                    site=dict(type="int", required=True),
                    role=dict(type="str", choices=["gateway", "client"], default="gateway"),
                    wan_address=dict(type="str"),
                    lan_address=dict(type="str"),
                    forwarding=dict(type="bool", default=True),
                    nftables=dict(type="str"),
                ),
            ),
            state_root=dict(type="path", default="/run/pyike-lab"),
        ),
        required_if=[("state", "present", ["hosts"])],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="pyike.ipsec.lab needs root: it creates namespaces and links")
    lab = Lab(module.params["name"], module.params["state_root"])
    result = dict(changed=False, state_dir=lab.state_dir)
    try:
        if module.params["state"] == "absent":
            result["changed"] = lab.recorded_plan() is not None or os.path.isdir(lab.state_dir)
            if not module.check_mode:
                lab.down()
            module.exit_json(**result)
        plan = build_plan(module.params["name"], module.params["hosts"])
        if module.check_mode:
            result["changed"] = not lab.is_up(plan)
        else:
            result["changed"] = lab.up(plan)
        recorded = lab.recorded_plan() or {}
        pids = recorded.get("pids", {})
        result["hosts"] = {
            host.name: dict(pid=pids.get(host.name), role=host.role, site=host.site, addresses=host.addresses)
            for host in plan.hosts
        }
    except (LabError, LabPlanError) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
