#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: sa_info
short_description: Report the pyike daemon's IKE and Child SAs, and wait until connections are up
description:
  - Asks the running pyike daemon (see M(pyike.ipsec.engine)) over its control socket for its
    configured connections and its IKE and Child SAs (C(list-conns), C(list-sas)), with addresses,
    identities, SPIs, proposals, traffic selectors and byte and packet counters.
  - With O(wait_for), waits until the named connections are up, for at most O(timeout) seconds,
    and fails naming every connection that is not up, with its state and the reasons the daemon
    knows (for example that IKE_AUTH failed with AUTHENTICATION_FAILED).
  - A connection C(CONN) is up when an established IKE SA carries every Child SA the connection
    configures; C(CONN/CHILD) waits for one Child SA.
  - With O(initiate=true), the module asks the daemon to initiate the connections that are not up
    while it waits, and asks again every few seconds after a failure (for example while the peer
    is not configured yet).
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  wait_for:
    description:
      - Connections (C(CONN)) or Child SAs (C(CONN/CHILD)) to wait for. Names the daemon does not
        know fail the task at once.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds to wait for O(wait_for).
    type: int
    default: 30
  initiate:
    description:
      - Initiate the connections in O(wait_for) that are not up (this host acts as IKE initiator).
        Leave it V(false) on the peer that should respond, so that both ends do not initiate at
        once.
    type: bool
    default: false
  control_socket:
    description:
      - The daemon's control socket (C(settings.control_socket) of its configuration).
    type: path
    default: /run/pyike/pyike.ctl
attributes:
  check_mode:
    description:
      - Reports SAs. O(wait_for) is checked once, without waiting, initiating or failing; the
        connections that are not up are returned in RV(not_up).
    support: full
  diff_mode:
    description: Not applicable; nothing changes.
    support: none
notes:
  - Never changes the host's configuration; O(initiate) only starts negotiations, so the task
    reports C(changed=false).
seealso:
  - module: pyike.ipsec.engine
  - module: pyike.ipsec.config
"""

EXAMPLES = r"""
- name: Bring the tunnel up from this side and wait for it
  pyike.ipsec.sa_info:
    wait_for: [hq]
    initiate: true
    timeout: 60

- name: Report SAs
  pyike.ipsec.sa_info:
  register: ipsec

- name: Show bytes through each Child SA
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ item.value.children }}"
  loop: "{{ ipsec.connections | dict2items }}"
"""

RETURN = r"""
ike_sas:
  description: The daemon's IKE SAs (C(list-sas)), each with its Child SAs and their counters.
  returned: always
  type: list
  elements: dict
  sample:
    - name: hq
      state: ESTABLISHED
      initiator: true
      local_address: "192.0.2.1[500]"
      remote_address: "198.51.100.1[500]"
      local_id: gw1.example.com
      remote_id: gw2.example.com
      spi_i: 9a1c03f6e2d4b871
      spi_r: 51f0e2d3c4b5a697
      proposal: AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519
      established_seconds: 12.5
      children:
        - name: lan
          state: INSTALLED
          spi_in: c1a2b3c4
          spi_out: d1e2f3a4
          local_ts: [10.1.0.0/24]
          remote_ts: [10.2.0.0/24]
          proposal: AES_GCM_16_256
          bytes_in: 840
          bytes_out: 840
          packets_in: 10
          packets_out: 10
connections:
  description:
    - Per configured connection, whether it is up, the state of its best IKE SA (C(DOWN) without
      one) and per configured Child SA its state (C(DOWN) when not installed) and counters.
  returned: always
  type: dict
  sample:
    hq:
      up: true
      ike_state: ESTABLISHED
      local_address: 192.0.2.1
      remote_address: 198.51.100.1
      children:
        lan: {state: INSTALLED, bytes_in: 840, bytes_out: 840, packets_in: 10, packets_out: 10}
dataplane:
  description:
    - Which dataplane carries ESP on the host (the engine's C(settings.dataplane)) and why - C(kernel)
      (XFRM states and policies) or C(userspace) (the daemon encrypts, packets pass a TUN device); with
      C(auto) the reason says what the probe at start found.
  returned: always
  type: dict
  sample:
    mode: userspace
    setting: auto
    reason: "auto: kernel ESP unavailable: XFRM_MSG_NEWSA for esp: Requested type not found (errno 93)"
not_up:
  description: Entries of O(wait_for) that are not up (empty on success).
  returned: always
  type: list
  elements: str
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.client import DaemonError, request
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.sas import (
    Waiter,
    WaitError,
    dataplane_of,
    summarize,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            wait_for=dict(type="list", elements="str", default=[]),
            timeout=dict(type="int", default=30),
            initiate=dict(type="bool", default=False),
            control_socket=dict(type="path", default="/run/pyike/pyike.ctl"),
        ),
        supports_check_mode=True,
    )
    socket_path = module.params["control_socket"]
    targets = module.params["wait_for"]
    timeout = module.params["timeout"]

    def call(command, args, call_timeout):
        return request(socket_path, command, args, timeout=call_timeout)

    waiter = Waiter(call)
    started = time.monotonic()
    try:
        sas, conns, not_up = waiter.wait(
            targets,
            timeout,
            initiate=module.params["initiate"] and not module.check_mode,
            once=module.check_mode,
        )
        result = dict(
            changed=False,
            ike_sas=sas,
            connections=summarize(conns, sas),
            not_up=not_up,
            waited=round(time.monotonic() - started, 2),
        )
        try:
            stats = call("stats", None, 10.0)
        except DaemonError:
            stats = {}
        result["dataplane"] = dataplane_of(stats)
        if not_up and not module.check_mode:
            failures = stats.get("recent_failures", [])
            failures = [f for f in failures if f.get("seconds_ago", 0) <= timeout + 10]
            module.fail_json(msg=waiter.failure_message(not_up, conns, sas, timeout, failures), **result)
    except WaitError as exc:
        module.fail_json(msg=str(exc), not_up=exc.not_up)
    except DaemonError as exc:
        module.fail_json(msg=str(exc), not_up=list(targets))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
