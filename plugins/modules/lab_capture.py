#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_capture
short_description: Capture packets on a lab link while commands run in lab hosts
description:
  - Runs C(tcpdump) inside one host of a lab built by M(pyike.ipsec.lab) (by default on the
    C(internet) host's bridge C(inet0), which every gateway's WAN joins), runs the given commands one
    after the other inside lab hosts while the capture is running, then stops the capture and returns
    tcpdump's one-line summaries of every packet it saw.
  - Meant for tests that prove what crosses the wire, for example that LAN-to-LAN traffic is ESP on
    the internet and never plaintext. The module only observes; the checks belong in the playbook
    (see the examples).
  - Runs on the machine that holds the lab (normally the controller, in a play on C(localhost) or with
    C(delegate_to=localhost)), as root.
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  lab:
    description:
      - Name of the lab (C(pyike_lab_name) in the lab's inventory).
    type: str
    required: true
  host:
    description:
      - Lab host whose interface is captured.
    type: str
    default: internet
  interface:
    description:
      - Interface inside O(host) to capture on.
    type: str
    default: inet0
  filter:
    description:
      - A tcpdump (BPF) filter expression; empty captures everything.
    type: str
    default: ""
  commands:
    description:
      - Commands to run, in this order, while the capture runs.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Lab host that runs the command.
        type: str
        required: true
      argv:
        description: The command and its arguments (no shell).
        type: list
        elements: str
        required: true
  timeout:
    description:
      - Seconds each command may take before it is killed and the task fails.
    type: int
    default: 60
  state_root:
    description:
      - Directory that holds the state of all labs.
    type: path
    default: /run/pyike-lab
attributes:
  check_mode:
    description: Not supported; the commands could change the hosts.
    support: none
  diff_mode:
    description: No diff is produced.
    support: none
notes:
  - Needs root, C(nsenter) and C(tcpdump) (the lab's hosts see the machine's C(/usr)).
  - The task fails when a command exits with a non-zero status or times out, naming the host and the
    command; the capture and the results of the earlier commands are returned with the failure.
  - The task reports C(changed=false); it never changes a host's configuration.
seealso:
  - module: pyike.ipsec.lab
"""

EXAMPLES = r"""
- name: Ping across the tunnel while capturing on the internet
  pyike.ipsec.lab_capture:
    lab: "{{ pyike_lab_name }}"
    commands:
      - {host: c1, argv: [ping, -c, "5", -i, "0.2", 10.2.0.10]}
      - {host: c2, argv: [ping, -c, "5", -i, "0.2", 10.1.0.10]}
  delegate_to: localhost
  register: wire

- name: Only ESP crossed the internet, never a LAN address in the clear
  ansible.builtin.assert:
    that:
      - wire.packets | select('search', 'ESP\\(spi=') | length >= 20
      - wire.packets | select('search', '\\bIP 10\\.') | length == 0
"""

RETURN = r"""
packets:
  description: tcpdump's one-line summary of each packet captured (C(tcpdump -nn)), oldest first.
  returned: always
  type: list
  elements: str
  sample:
    - "23:51:01.402351 IP 192.0.2.1 > 198.51.100.1: ESP(spi=0xc1a2b3c4,seq=0x1), length 120"
commands:
  description: Per command, in order, the host, the argv, the exit status and the output.
  returned: always
  type: list
  elements: dict
  sample:
    - host: c1
      argv: [ping, -c, "5", 10.2.0.10]
      rc: 0
      stdout: "5 packets transmitted, 5 received, 0% packet loss, time 804ms"
      stderr: ""
capture_stderr:
  description: What tcpdump wrote to its standard error (the listening and packet count lines).
  returned: always
  type: str
"""

import os
import select
import signal
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_lab.lab import Lab, LabError, nsenter_argv

START_TIMEOUT = 10.0
SETTLE_SECONDS = 0.3


class _Capture:
    """tcpdump inside a lab host; its one-line packet summaries go to a file, not a pipe that nobody
    reads while the commands run (a full pipe would stall tcpdump)."""

    def __init__(self, pid, interface, bpf_filter):
        self.interface = interface
        self.argv = nsenter_argv(
            pid, ["tcpdump", "-i", interface, "-nn", "-l", "-U", "-p", *([bpf_filter] if bpf_filter else [])]
        )
        self.packets = tempfile.TemporaryFile()
        self.proc = None
        self.said = ""

    def start(self):
        # A session of its own: nsenter does not pass signals on to tcpdump, so the whole group is signalled.
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=self.packets, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as exc:
            raise LabError("cannot run %s: %s" % (self.argv[0], exc)) from None
        # tcpdump says "listening on ..." on stderr once its socket is open and exits on errors. Read the
        # raw pipe (no buffered reader), so that communicate() later gets everything after it.
        said = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"listening on" not in said:
            remaining = deadline - time.monotonic()
            chunk = b""
            if remaining > 0 and select.select([self.proc.stderr], [], [], remaining)[0]:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
            if not chunk:
                self.stop()
                raise LabError(
                    "tcpdump on %s did not start: %s"
                    % (self.interface, said.decode(errors="replace").strip() or "no answer")
                )
            said += chunk
        self.said = said.decode(errors="replace")

    def stop(self):
        """Stop tcpdump; returns (packet lines, what it said on stderr)."""
        if self.proc.poll() is None:
            time.sleep(SETTLE_SECONDS)  # the last replies are still on their way
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            err = self.proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            err = self.proc.communicate()[1]
        with self.packets:
            self.packets.seek(0)
            out = self.packets.read()
        return out.decode(errors="replace").splitlines(), self.said + err.decode(errors="replace")


def _run(lab, command, timeout):
    result = dict(host=command["host"], argv=command["argv"])
    try:
        done = subprocess.run(
            nsenter_argv(lab.pid_of(command["host"]), command["argv"]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        result.update(rc=-1, stdout=exc.stdout or "", stderr="timed out after %ss" % timeout)
        return result
    result.update(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            host=dict(type="str", default="internet"),
            interface=dict(type="str", default="inet0"),
            filter=dict(type="str", default=""),
            commands=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    host=dict(type="str", required=True),
                    argv=dict(type="list", elements="str", required=True),
                ),
            ),
            timeout=dict(type="int", default=60),
            state_root=dict(type="path", default="/run/pyike-lab"),
        ),
        supports_check_mode=False,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="pyike.ipsec.lab_capture needs root: it enters the lab hosts' namespaces")
    params = module.params
    lab = Lab(params["lab"], params["state_root"])
    results = []
    try:
        capture = _Capture(lab.pid_of(params["host"]), params["interface"], params["filter"])
        capture.start()
        failed = None
        try:
            for command in params["commands"]:
                results.append(_run(lab, command, params["timeout"]))
                if results[-1]["rc"] != 0:
                    failed = results[-1]
                    break
        finally:
            packets, stderr = capture.stop()
    except LabError as exc:
        module.fail_json(msg="lab %s: %s" % (params["lab"], exc), commands=results, packets=[])
    result = dict(changed=False, packets=packets, commands=results, capture_stderr=stderr)
    if failed is not None:
        module.fail_json(
            msg="lab host %s: %s exited with %d: %s"
            % (
                failed["host"],
                " ".join(failed["argv"]),
                failed["rc"],
                (failed["stdout"] + failed["stderr"]).strip()[-2000:],
            ),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
