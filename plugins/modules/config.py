#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: config
short_description: Write the pyike engine's configuration on a host and reload the daemon
description:
  - Writes the configuration file of the pyike daemon (see M(pyike.ipsec.engine)), either as a
    whole (O(config)) or by adding, replacing or removing named connections (O(connections) with
    O(state)) while the file's other connections and its settings stay.
  - The result is checked on the target with the engine's own loader, which is the one the daemon
    uses. It checks the schema (C(schemas/pyike-config.schema.json)) and everything a schema
    cannot express, such as proposals, traffic selectors, identities and C(psk_file) permissions.
    Every problem is reported with its field path, and nothing is written when there is one.
  - The file is written atomically with mode 0600. A missing directory is created with mode 0700,
    and an existing directory whose name contains C(pyike) is set to 0700. YAML is written for
    C(.yml) and C(.yaml) paths (this needs PyYAML on the target), JSON otherwise.
  - When the file changed and the daemon runs, the module asks it to reload (control socket
    command C(reload)). The daemon applies added, removed and changed connections and keeps the
    others up. If the daemon refuses the file, the previous file is put back, the daemon keeps
    running its current configuration, and the task fails with the daemon's message.
  - Pre-shared keys are given only in the O(secrets) option, which is C(no_log). A C(psk) inside
    O(config) or O(connections) is refused, because those options are not C(no_log). Keys never
    appear in results, diffs or logs. C(psk_file) references work as in the engine.
  - The same content gives no change and no reload.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  path:
    description:
      - The configuration file. Use the same path as O(pyike.ipsec.engine#module:config_path).
    type: path
    default: /etc/pyike/pyike.yml
  config:
    description:
      - The whole configuration, C(settings) (optional) and C(connections), as described by
        C(schemas/pyike-config.schema.json). Replaces the file's content.
      - Connections must not contain C(psk); put keys in O(secrets).
      - Mutually exclusive with O(connections) and O(settings).
    type: dict
  connections:
    description:
      - With O(state=present), a mapping of connection name to its definition (as under
        C(connections) in the engine configuration, without C(psk)). Each one is added or
        replaced as a whole; the file's other connections stay.
      - With O(state=absent), the names of connections to remove, as a list or as the keys of a
        mapping.
    type: raw
  settings:
    description:
      - The C(settings) section (listen addresses, control socket, TUN device and so on). When
        given, it replaces the file's settings. When omitted, they stay as they are, or take the
        engine's defaults in a new file.
      - Only with O(connections) or alone; for a whole file use O(config).
    type: dict
  state:
    description:
      - Whether the connections in O(connections) should be present or absent.
    type: str
    choices: [present, absent]
    default: present
  secrets:
    description:
      - Pre-shared keys by connection name, in strongSwan's syntax (text, C(0x) hex or C(0s)
        base64). Each becomes that connection's C(psk) in the file.
      - A key must have at least 20 octets and not be one character repeated, unless the
        connection sets C(allow_weak_psk=true). The file holds the keys, so it is written with mode
        0600, and the daemon refuses it when group or others can read it.
      - Names must be connections that this task writes (in O(config) or O(connections)).
    type: dict
  reload:
    description:
      - Ask the running daemon to reload when the file changed. When no daemon runs, the file is
        only written (the daemon reads it when it starts).
    type: bool
    default: true
  control_socket:
    description:
      - The running daemon's control socket. By default it is C(settings.control_socket) of the
        file before the change (the running daemon uses that one), or C(/run/pyike/pyike.ctl).
    type: path
  reload_timeout:
    description:
      - Seconds to wait for the daemon to answer the reload.
    type: int
    default: 30
attributes:
  check_mode:
    description: Validates the new configuration and reports whether the file would change (with a diff), without writing or reloading.
    support: full
  diff_mode:
    description: Shows the file before and after, with every pre-shared key replaced by C(<hidden>) (C(<hidden, changed>) where a key changes).
    support: full
notes:
  - Needs the engine's Python dependencies on the target (see M(pyike.ipsec.engine)), because the
    configuration is validated there with the engine's loader.
  - The module does not log its invocation to syslog or the journal.
seealso:
  - module: pyike.ipsec.engine
  - module: pyike.ipsec.sa_info
"""

EXAMPLES = r"""
- name: Add (or replace) one connection, keeping the others
  pyike.ipsec.config:
    settings:
      listen: [192.0.2.1]
    connections:
      hq:
        local: {address: 192.0.2.1, id: gw1.example.com}
        remote: {address: 198.51.100.1, id: gw2.example.com}
        auth: psk
        ike_proposals: [aes256gcm16-prfsha256-x25519]
        children:
          lan:
            local_ts: [10.1.0.0/24]
            remote_ts: [10.2.0.0/24]
            esp_proposals: [aes256gcm16]
            start_action: start
    secrets:
      hq: "{{ vault_hq_psk }}"

- name: Remove a connection
  pyike.ipsec.config:
    connections: [old_branch]
    state: absent

- name: Write the whole file
  pyike.ipsec.config:
    path: /etc/pyike/pyike.json
    config:
      settings: {listen: [192.0.2.1]}
      connections:
        hq:
          local: {address: 192.0.2.1}
          remote: {address: 198.51.100.1}
          psk_file: /etc/pyike/psk/hq
          children:
            lan: {local_ts: [10.1.0.0/24], remote_ts: [10.2.0.0/24]}
"""

RETURN = r"""
path:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/pyike/pyike.yml
connections:
  description: Names of the connections in the file after the task.
  returned: success
  type: list
  elements: str
  sample: [hq]
added:
  description: Connections the task added.
  returned: success
  type: list
  elements: str
removed:
  description: Connections the task removed.
  returned: success
  type: list
  elements: str
modified:
  description: Connections whose definition (or key) changed.
  returned: success
  type: list
  elements: str
reloaded:
  description: Whether the daemon reloaded the new file.
  returned: always
  type: bool
reload_message:
  description: The daemon's answer to the reload, or why there was none.
  returned: when the file changed
  type: str
  sample: "reloaded /etc/pyike/pyike.yml: 1 connection(s), added ['hq'], removed none"
control_socket:
  description: The control socket the reload went to.
  returned: always
  type: str
problems:
  description: Every problem found in the new configuration, one line each (file, field path, message).
  returned: failure
  type: list
  elements: str
  sample: ["/etc/pyike/pyike.yml: connections.hq.children.lan.local_ts[0]: invalid traffic selector '10.1.0.0/33': ..."]
restored:
  description: Whether the previous file was put back because the daemon refused the new one.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import DEFAULT_CONFIG_PATH
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.config_task import (
    ConfigTask,
    ConfigTaskError,
    secret_values,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default=DEFAULT_CONFIG_PATH),
            config=dict(type="dict"),
            connections=dict(type="raw"),
            settings=dict(type="dict"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            secrets=dict(type="dict", no_log=True),
            reload=dict(type="bool", default=True),
            control_socket=dict(type="path"),
            reload_timeout=dict(type="int", default=30),
        ),
        mutually_exclusive=[("config", "connections"), ("config", "settings")],
        required_one_of=[("config", "connections", "settings")],
        supports_check_mode=True,
        # Not even a misplaced key (a psk inside config/connections, refused below) may reach
        # syslog/journal through the invocation log; results are scrubbed through no_log_values.
        no_log=True,
    )
    module.no_log_values.update(secret_values(module.params))
    task = ConfigTask(module.params, module.check_mode, module.no_log_values.add)
    try:
        result = task.execute()
    except ConfigTaskError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
