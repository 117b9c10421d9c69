# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: nsenter
short_description: Run tasks inside a lab host's Linux namespaces
description:
  - Runs commands, and copies files in and out, inside the network, mount, UTS, IPC and PID
    namespaces of a lab host created by the P(pyike.ipsec.lab#role) role (or any process that holds
    such namespaces), using C(nsenter) on the controller.
  - The controller must run as root on the same machine as the lab.
  - The host is named by the PID of its holder process, read from a pid file. By default the pid file
    is C(<state_root>/<lab name>/<inventory host>.pid), as the lab role writes it.
  - Supports pipelining.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  remote_addr:
    description:
      - The lab host's name; used to find its pid file when O(pid_file) is not set.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
  pid:
    description:
      - PID of a process whose namespaces the commands enter. Takes precedence over O(pid_file).
    type: int
    vars:
      - name: ansible_nsenter_pid
  pid_file:
    description:
      - File that holds the PID of the lab host's holder process.
    type: path
    vars:
      - name: ansible_nsenter_pid_file
      - name: pyike_lab_pid_file
  lab_name:
    description:
      - Name of the lab the host belongs to; used to find the pid file when O(pid_file) is not set.
    type: str
    default: demo
    vars:
      - name: pyike_lab_name
  lab_state_root:
    description:
      - Directory that holds the state of all labs.
    type: path
    default: /run/pyike-lab
    vars:
      - name: pyike_lab_state_root
  nsenter_path:
    description:
      - The C(nsenter) program on the controller, a path or a name looked up on E(PATH).
    type: str
    default: nsenter
    vars:
      - name: ansible_nsenter_path
extends_documentation_fragment:
  - ansible.builtin.connection_pipelining
notes:
  - The remote user is ignored; commands run as root inside the host.
  - Files are written and read through the host's own mount namespace, so private directories of the
    host (its C(/run) and copy-on-write C(/etc), C(/var/lib), C(/var/log), C(/tmp)) behave as on a real
    machine.
"""

EXAMPLES = r"""
# inventory.yml: two lab hosts reached through their namespaces
# all:
#   vars:
#     ansible_connection: pyike.ipsec.nsenter
#     ansible_python_interpreter: /usr/bin/python3
#     pyike_lab_name: demo
#   hosts:
#     gw1:
#     gw2:

- name: Ping every lab host through its namespaces
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""

import os
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

NAMESPACE_FLAGS = ("--mount", "--uts", "--ipc", "--net", "--pid")
HOLDER_MARKER = b"pyike-lab-holder"
COPY_CHUNK = 1024 * 1024


class Connection(ConnectionBase):
    """Enter a lab host's namespaces with nsenter."""

    transport = "pyike.ipsec.nsenter"
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._target_pid = None

    def _host_name(self):
        return self.get_option("remote_addr") or self._play_context.remote_addr

    def _pid_file(self):
        configured = self.get_option("pid_file")
        if configured:
            return configured
        return os.path.join(
            self.get_option("lab_state_root"), self.get_option("lab_name"), self._host_name() + ".pid"
        )

    def _resolve_pid(self):
        pid = self.get_option("pid")
        if pid:
            source = "ansible_nsenter_pid"
        else:
            source = self._pid_file()
            try:
                with open(source) as handle:
                    text = handle.read().strip()
            except FileNotFoundError:
                raise AnsibleConnectionFailure(
                    "lab host %s: pid file %s does not exist; is the lab up? (make demo, or playbooks/lab_up.yml)"
                    % (self._host_name(), source)
                ) from None
            except OSError as exc:
                raise AnsibleConnectionFailure(
                    "lab host %s: cannot read pid file %s: %s" % (self._host_name(), source, exc)
                ) from None
            if not text.isdigit():
                raise AnsibleConnectionFailure(
                    "lab host %s: pid file %s does not hold a PID" % (self._host_name(), source)
                )
            pid = int(text)
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read()
        except OSError:
            raise AnsibleConnectionFailure(
                "lab host %s: its holder process %d (from %s) is not running; the lab host is down"
                % (self._host_name(), pid, source)
            ) from None
        if self.get_option("pid") is None and HOLDER_MARKER not in cmdline:
            raise AnsibleConnectionFailure(
                "lab host %s: process %d (from %s) is not a lab holder; the lab host is down and its PID was reused"
                % (self._host_name(), pid, source)
            )
        return pid

    def _connect(self):
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure(
                "the pyike.ipsec.nsenter connection needs root on the controller (it runs nsenter)"
            )
        if not self._connected:
            self._target_pid = self._resolve_pid()
            display.vvv("ENTER namespaces of PID %d" % self._target_pid, host=self._host_name())
            self._connected = True
        return self

    def _nsenter(self, argv):
        return [
            self.get_option("nsenter_path"),
            "--target",
            str(self._target_pid),
            *NAMESPACE_FLAGS,
            "--",
            *argv,
        ]

    def _run(self, argv, stdin=subprocess.PIPE, in_data=None):
        try:
            proc = subprocess.Popen(
                self._nsenter(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise AnsibleConnectionFailure("cannot run nsenter: %s" % exc) from None
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        executable = self._play_context.executable or "/bin/sh"
        display.vvv("EXEC %s" % cmd, host=self._host_name())
        # Revalidate on every command: a holder that died mid-play must not send commands elsewhere.
        if not os.path.exists("/proc/%d" % self._target_pid):
            raise AnsibleConnectionFailure(
                "lab host %s: its holder process %d exited" % (self._host_name(), self._target_pid)
            )
        return self._run([executable, "-c", to_text(cmd)], in_data=in_data)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._connect()
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._host_name())
        if not os.path.exists(to_bytes(in_path)):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        with open(to_bytes(in_path), "rb") as source:
            rc, _stdout, stderr = self._run(
                ["/bin/sh", "-c", "cat > %s" % shlex.quote(out_path)], stdin=source
            )
        if rc != 0:
            raise AnsibleError(
                "failed to transfer file to %s on %s: %s" % (out_path, self._host_name(), to_text(stderr))
            )

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._connect()
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._host_name())
        with open(to_bytes(out_path), "wb") as target:
            try:
                proc = subprocess.Popen(
                    self._nsenter(["cat", "--", in_path]),
                    stdin=subprocess.DEVNULL,
                    stdout=target,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                raise AnsibleConnectionFailure("cannot run nsenter: %s" % exc) from None
            _stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise AnsibleError(
                "failed to fetch %s from %s: %s" % (in_path, self._host_name(), to_text(stderr))
            )

    def reset(self):
        self.close()

    def close(self):
        self._connected = False
        self._target_pid = None
