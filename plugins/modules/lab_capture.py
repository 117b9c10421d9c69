#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_capture
short_description: Capture packets on a lab link while commands run in lab hosts or containers
description:
  - Runs C(tcpdump) inside one host of a lab built by M(pyike.ipsec.lab) (by default on the
    C(internet) host's bridge C(inet0), which every gateway's WAN joins), runs the given commands one
    after the other inside lab hosts while the capture is running, then stops the capture and returns
    tcpdump's one-line summaries of every packet it saw.
  - With O(container_engine), the hosts are podman or docker containers instead. This machine's
    C(tcpdump) then runs in the network namespace of container O(host) (for example on a gateway's
    interface on the network that stands for the internet), and the commands run with C(podman exec)
    or C(docker exec). A container network's bridge on the machine would be the wrong place, because
    it does not see the frames it forwards between two containers.
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
      - Required unless O(container_engine) is set.
    type: str
  host:
    description:
      - Lab host (or container, with O(container_engine)) whose interface is captured.
    type: str
    default: internet
  interface:
    description:
      - Interface inside O(host) to capture on.
    type: str
    default: inet0
  container_engine:
    description:
      - C(podman) or C(docker) when the hosts of O(commands) are containers of that engine rather
        than lab hosts.
    type: str
    choices: [podman, docker]
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
        description: Lab host (or container, with O(container_engine)) that runs the command.
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
  - Needs root, C(nsenter) and C(tcpdump) on this machine (the lab's hosts see the machine's C(/usr); a
    container needs no tcpdump of its own) and, with O(container_engine), that engine's CLI.
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
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_lab.capture import Capture
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_lab.lab import Lab, LabError, nsenter_argv


def _exec_argv(lab, engine, command):
    """How to run the command in its host: nsenter into a lab host, or ``podman exec`` / ``docker exec``."""
    if engine:
        return [engine, "exec", command["host"], *command["argv"]]
    return nsenter_argv(lab.pid_of(command["host"]), command["argv"])


def _container_pid(engine, name):
    """The PID of the container's first process, whose network namespace is the container's."""
    argv = [engine, "inspect", "--format", "{{.State.Pid}}", name]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError("cannot run %s: %s" % (" ".join(argv), exc)) from None
    pid = done.stdout.strip()
    if done.returncode != 0 or not pid.isdigit() or pid == "0":
        raise LabError("%s is not a running container (%s)" % (name, (done.stderr or pid).strip()))
    return int(pid)


def _run(lab, engine, command, timeout):
    result = dict(host=command["host"], argv=command["argv"])
    try:
        done = subprocess.run(
            _exec_argv(lab, engine, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        result.update(rc=-1, stdout=exc.stdout or "", stderr="timed out after %ss" % timeout)
        return result
    except OSError as exc:  # no podman/docker/nsenter on this machine
        result.update(rc=-1, stdout="", stderr=str(exc))
        return result
    result.update(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str"),
            host=dict(type="str", default="internet"),
            interface=dict(type="str", default="inet0"),
            container_engine=dict(type="str", choices=["podman", "docker"]),
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
        required_one_of=[("lab", "container_engine")],
        mutually_exclusive=[("lab", "container_engine")],
    )
    if os.geteuid() != 0:
        module.fail_json(msg="pyike.ipsec.lab_capture needs root: it enters the lab hosts' namespaces")
    params = module.params
    engine = params["container_engine"]
    lab = None if engine else Lab(params["lab"], params["state_root"])
    where = engine if engine else "lab %s" % params["lab"]  # the messages below name the host themselves
    results = []
    packets = []
    try:
        net_pid = _container_pid(engine, params["host"]) if engine else None
        capture = Capture(lab, params["host"], params["interface"], params["filter"], net_pid).start()
        failed = None
        try:
            for command in params["commands"]:
                results.append(_run(lab, engine, command, params["timeout"]))
                if results[-1]["rc"] != 0:
                    failed = results[-1]
                    break
        finally:
            packets = capture.stop()
    except LabError as exc:
        module.fail_json(msg="%s: %s" % (where, exc), commands=results, packets=packets)
    result = dict(changed=False, packets=packets, commands=results, capture_stderr=capture.stderr)
    if failed is not None:
        module.fail_json(
            msg="%s %s: %s exited with %d: %s"
            % (
                "container" if engine else "lab host",
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
