#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine
short_description: Install the pyike IKEv2/IPsec engine on a host and run its daemon
description:
  - Installs the pure-Python IKEv2 engine and ESP dataplane that this module carries in its own
    payload (the collection's C(module_utils), shipped by AnsiballZ) into a versioned directory
    O(install_root)/O(version), with the commands C(pyiked) (the daemon) and C(pyikectl) (its
    control CLI) in O(bin_dir). The commands are small C(sh) wrappers that set C(PYTHONPATH) and use
    the interpreter this module runs with.
  - Checks the engine's Python dependencies for that interpreter, C(cryptography) and C(pyroute2)
    (and C(PyYAML) when O(config_path) is a YAML file), and fails naming the distribution packages
    to install when they are missing (Debian/Ubuntu C(python3-cryptography python3-pyroute2
    python3-yaml), RHEL/Fedora C(python3-cryptography python3-pyroute2 python3-pyyaml)).
  - Runs the daemon as a service. Where systemd is PID 1 this is the unit C(pyiked.service)
    (enabled with O(state=started)). Elsewhere (containers, the lab's namespace hosts) a small
    supervisor, started detached with C(setsid), keeps the daemon running, restarts it when it
    exits (with back-off), holds a lock on O(pid_file) and writes both its own and the daemon's
    output to O(log_file).
  - The daemon is only started when O(config_path) exists. Write the configuration with
    M(pyike.ipsec.config) first, or run this module with O(state=present), then
    M(pyike.ipsec.config), then this module with O(state=started).
  - Idempotent. The same engine installed and running reports no change. A different engine (a
    newer collection, or O(version)) is installed beside the old one. A running daemon is
    restarted on it, and then older versions are removed. The configuration is never touched.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  state:
    description:
      - V(started) installs the engine and makes sure the daemon runs (when O(config_path) exists;
        otherwise it only installs and warns).
      - V(present) installs the engine. It neither starts nor stops the daemon, but a running daemon
        is restarted when its engine changed.
      - V(stopped) installs the engine and stops the daemon (and disables the systemd unit).
      - V(absent) stops the daemon and removes every engine version, the commands and the unit that
        this module installed. The configuration directory and the log stay.
    type: str
    choices: [started, stopped, present, absent]
    default: started
  config_path:
    description:
      - The daemon's configuration file (YAML or JSON, see M(pyike.ipsec.config)). Its
        C(settings.control_socket) is where the module checks that the daemon answers.
      - Any path can be used; the wrappers and the systemd unit quote it.
    type: path
    default: /etc/pyike/pyike.yml
  version:
    description:
      - Name of the directory the engine is installed into under O(install_root). The default, the
        version of this collection, is nearly always right. A different value installs the engine
        of this collection under that name, which upgrades the host like a new collection version
        would.
    type: str
    default: 0.1.0
  install_root:
    description:
      - Directory that holds one subdirectory per installed engine version.
    type: path
    default: /opt/pyike
  bin_dir:
    description:
      - Directory for the C(pyiked) and C(pyikectl) commands. Files there that this module did not
        write are never replaced.
      - With systemd it must be an absolute path without quotes, backslashes or control characters,
        which systemd refuses in the program of a unit; the module fails before writing anything.
    type: path
    default: /usr/local/sbin
  service_manager:
    description:
      - How the daemon is run. V(auto) picks V(systemd) when systemd is PID 1 (C(/run/systemd/system)
        exists) and V(supervisor) otherwise.
    type: str
    choices: [auto, systemd, supervisor]
    default: auto
  pid_file:
    description:
      - The supervisor's pid file (V(supervisor) only). The supervisor keeps it locked while it runs.
    type: path
    default: /run/pyike/pyiked.pid
  log_file:
    description:
      - The daemon's and the supervisor's log, mode 0600 (V(supervisor) only; systemd uses the
        journal).
    type: path
    default: /var/log/pyike/pyiked.log
  cryptography_wheel:
    description:
      - A C(cryptography) wheel file on the target (copy it there first, as the P(pyike.ipsec.gateway#role) role
        does with C(gateway_cryptography_wheel)), to run the engine with instead of the interpreter's own
        C(cryptography).
      - C(cryptography) before 42 (Debian 12 has 38) builds a new OpenSSL context for every packet it seals
        or opens, which makes the userspace ESP dataplane about two and a half times slower than with 42 or
        later. The wheel is unpacked into O(install_root)/O(version)/site, which the daemon finds after
        the engine and before the system's packages; nothing in the system changes.
      - It is used only when it is newer than the installed C(cryptography) and, unpacked under
        O(install_root), imports as the version its file name gives and seals a test packet under the
        module's interpreter (a wheel for another Python, architecture or C library fails that). Otherwise
        the module warns, says why, and the engine keeps the installed C(cryptography). Check mode does not
        run the wheel.
      - A wheel with anything but the C(cryptography) package and its C(.dist-info), with links, paths
        that leave them or a member twice is not used either (a warning says why). The result's
        RV(cryptography) says which C(cryptography) runs.
      - The path must be a file owned by root (or the user the module runs as) that no one else can
        write, since the test runs its code; otherwise, or when it does not exist, the task fails.
      - "To fetch one for Debian 12 on x86_64: C(pip download --no-deps --only-binary :all:
        --platform manylinux_2_34_x86_64 --python-version 3.11 --implementation cp cryptography)."
    type: path
  start_timeout:
    description:
      - Seconds to wait for a started daemon to answer on its control socket. When it does not,
        the task fails with the end of its log (or journal) and the daemon is stopped again.
      - A daemon that dies while starting fails the task at once; the wait is only for one that
        starts slowly, as it does on a busy gateway or a slow virtual machine.
    type: int
    default: 120
attributes:
  check_mode:
    description: Reports what would be installed, started, restarted, stopped or removed, and changes nothing.
    support: full
  diff_mode:
    description: Shows the installed engine versions and whether the daemon runs, before and after.
    support: full
notes:
  - Needs root on the target. Targets need Python 3.9 or later.
  - The engine files are the ones in this module's own payload, so the installed engine always
    matches the collection that runs the play.
seealso:
  - module: pyike.ipsec.config
  - module: pyike.ipsec.sa_info
"""

EXAMPLES = r"""
- name: Install the engine (the daemon starts once a configuration exists)
  pyike.ipsec.engine:
    state: present

- name: Write the configuration
  pyike.ipsec.config:
    connections:
      hq:
        local: {address: 192.0.2.1, id: gw1.example.com}
        remote: {address: 198.51.100.1, id: gw2.example.com}
        children:
          lan: {local_ts: [10.1.0.0/24], remote_ts: [10.2.0.0/24]}
    secrets:
      hq: "{{ vault_hq_psk }}"

- name: Run the daemon
  pyike.ipsec.engine:
    state: started

- name: Run the engine with a newer cryptography than Debian 12's (copied to the host first)
  pyike.ipsec.engine:
    state: started
    cryptography_wheel: /opt/pyike/wheels/cryptography-51.0.1-cp311-abi3-manylinux_2_34_x86_64.whl

- name: Remove the engine (the configuration stays)
  pyike.ipsec.engine:
    state: absent
"""

RETURN = r"""
version:
  description: The engine version installed.
  returned: always
  type: str
  sample: 0.1.0
install_dir:
  description: Directory that holds the engine package C(pyike).
  returned: always
  type: str
  sample: /opt/pyike/0.1.0
python:
  description: The interpreter the commands and the daemon use (the module's).
  returned: always
  type: str
  sample: /usr/bin/python3
dependencies:
  description: Versions of the engine's Python dependencies for that interpreter (null when missing).
  returned: unless O(state=absent)
  type: dict
  sample: {cryptography: 38.0.4, pyroute2: 0.7.2, yaml: "6.0"}
cryptography:
  description:
    - The C(cryptography) the daemon runs with. O(cryptography_wheel) is used only when it works and is newer.
  returned: unless O(state=absent)
  type: dict
  contains:
    version:
      description: Its version.
      type: str
      sample: 51.0.1
    source:
      description: V(wheel) (O(cryptography_wheel), unpacked beside the engine) or V(distribution).
      type: str
      sample: wheel
    path:
      description: Where the wheel was unpacked (V(wheel) only).
      type: str
      sample: /opt/pyike/0.1.0/site
    slow_aead:
      description: True for a C(cryptography) before 42, which makes an OpenSSL context per ESP packet.
      type: bool
      sample: false
engine_digest:
  description: SHA-256 over the engine's files; a daemon started from other files is restarted.
  returned: unless O(state=absent)
  type: str
service_manager:
  description: V(systemd) or V(supervisor).
  returned: always
  type: str
  sample: supervisor
control_socket:
  description: The daemon's control socket, from the configuration.
  returned: always
  type: str
  sample: /run/pyike/pyike.ctl
running:
  description: Whether the daemon (its supervisor or unit) runs after the task.
  returned: always
  type: bool
pid:
  description: PID of the supervisor, or the unit's main PID.
  returned: always
  type: int
  sample: 4711
installed:
  description: Whether engine files, commands or the unit were written.
  returned: unless O(state=absent)
  type: bool
started:
  description: Whether the daemon was started.
  returned: unless O(state=absent)
  type: bool
restarted:
  description: Whether a running daemon was restarted on a changed engine.
  returned: always
  type: bool
stopped:
  description: Whether the daemon was stopped.
  returned: unless O(state=absent)
  type: bool
removed_versions:
  description: Engine versions removed from O(install_root).
  returned: always
  type: list
  elements: str
config_exists:
  description: Whether O(config_path) exists.
  returned: unless O(state=absent)
  type: bool
msg:
  description: What was done.
  returned: always
  type: str
  sample: installed engine 0.1.0 in /opt/pyike/0.1.0; started pyiked
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import (
    COLLECTION_VERSION,
    DEFAULT_CONFIG_PATH,
)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.deploy import (
    EngineTask,
    EngineTaskError,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["started", "stopped", "present", "absent"], default="started"),
            config_path=dict(type="path", default=DEFAULT_CONFIG_PATH),
            version=dict(type="str", default=COLLECTION_VERSION),
            install_root=dict(type="path", default="/opt/pyike"),
            bin_dir=dict(type="path", default="/usr/local/sbin"),
            service_manager=dict(type="str", choices=["auto", "systemd", "supervisor"], default="auto"),
            pid_file=dict(type="path", default="/run/pyike/pyiked.pid"),
            log_file=dict(type="path", default="/var/log/pyike/pyiked.log"),
            start_timeout=dict(type="int", default=120),
            cryptography_wheel=dict(type="path"),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        return module.run_command(argv)

    task = EngineTask(module.params, module.check_mode, run, module.warn)
    try:
        result = task.execute()
    except EngineTaskError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
