#!/usr/bin/python
# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: validate
short_description: Check the IPsec inventory and compute every gateway's engine configuration
description:
  - Runs on the controller only (an action plugin). It reads the C(ipsec_*) inventory variables, contacts no
    host and changes nothing.
  - Checks them against C(schemas/inventory.schema.json) (with C(jsonschema) when it is installed, else a
    built-in validator) and against the rules a schema cannot express, and reports B(every) violation
    with its data path, for example
    C(ipsec_tunnels[2].children[0].left_ts[1]) with the message C('10.0.0.0/33' is not a valid network).
    Host variables are reported as C(hostvars.<host>.<variable>).
  - Rules beyond the schema - unknown IKE or ESP group, unknown host or group, proposal strings that are not
    valid strongSwan syntax, invalid networks and traffic selectors, overlapping selectors of different
    tunnels on one host, tunnels the engine could not tell apart, a tunnel with no managed end, a tunnel
    end without C(ipsec_public_address), duplicate tunnel names (generated ones included), pre-shared keys
    that cannot be decoded, topology fields that do not fit the topology type, misspelt C(ipsec_*)
    variables. Last, every generated engine configuration is loaded by the engine's own parser.
  - "Also refused: remote selectors that capture the gateway's own LAN, its own or the peer's public
    address (a child with C(default_route: true) gets those left out of its selectors instead; a route-based
    tunnel, with C(interface), is exempt, as are its overlaps with other tunnels: its policies take only
    what is routed into its interface); two route-based tunnels of a host with one interface name or
    C(if_id); interface addresses without a prefix length, or for an unmanaged peer; both ends
    on one address; two gateways with one C(ipsec_public_address) or C(ipsec_id); loopback and link-local
    addresses and networks; selectors with host bits; more than 255 selectors on one side of a child;
    overlapping children of one tunnel; rekey times under 60 s, volume lifetimes under 1,000,000 bytes or
    1,000 packets, a C(dpd_delay) not shorter than the IKE C(rekey_time); pre-shared keys shorter than
    20 octets or one character repeated unless C(allow_weak_psk: true). Warnings (shown as Ansible warnings): SHA-1,
    modp2048 as the only key exchange, C(%any) identities with a pre-shared key."
  - Without O(data) and O(hosts) it reads every inventory host's variables as that host sees them (all,
    group_vars, host_vars) and templates each value in that host's context; a global variable the gateways
    see differently is a problem naming the hosts on each side, and problems of one host's view name that
    host (C(hostvars.<host>.ipsec_tunnels[0]...)). Every value that cannot be templated is named with its
    full path; for secret fields the error is redacted.
  - "Tunnels with C(auth: pubkey) authenticate with X.509 certificates. Every managed end then needs
    C(ipsec_certificate), C(ipsec_private_key) and C(ipsec_ca_certificates), each the PEM text or a path on
    the controller (looked up like the copy module's C(src): in the role's and playbook's C(files/)). The
    check reads them and refuses a key that does not belong to its certificate, a certificate that does not
    carry the gateway's identity (C(ipsec_id), else C(ipsec_public_address)), and a certificate the peer at
    the other end would not accept (expired, not yet valid, no path to one of the peer's CA certificates),
    so these fail here rather than in IKE_AUTH."
  - Expands the topologies (C(ipsec_topologies)) into tunnels and computes, for every managed host, the
    configuration of the pyike engine (C(schemas/pyike-config.schema.json)) - one connection per tunnel the
    host takes part in, named after the tunnel.
  - "Variables: C(ipsec_ike_groups), C(ipsec_esp_groups), C(ipsec_tunnels), C(ipsec_topologies) describe the
    whole VPN (define them once, in C(group_vars/all)); C(ipsec_public_address), C(ipsec_id),
    C(ipsec_lan_subnets), C(ipsec_listen), C(ipsec_certificate), C(ipsec_private_key),
    C(ipsec_ca_certificates) describe one gateway (C(host_vars)). The schema documents every field."
  - Pre-shared keys and private keys never appear in problems, messages or RV(engine_configs). They appear
    in the result only in RV(engine_secrets) and RV(engine_private_keys), with O(include_secrets=true), and
    then the whole result is hidden from output and logs as with C(no_log) (the registered variable keeps
    it).
author:
  - pyike.ipsec developers (@pyike-ipsec)
version_added: 0.1.0
options:
  data:
    description:
      - The global variables, a dictionary with the keys C(ipsec_ike_groups), C(ipsec_esp_groups),
        C(ipsec_tunnels) and C(ipsec_topologies).
      - Default is these variables as every inventory host sees them (the gateways must all see the same),
        or with O(hosts) given as the task's host sees them; plus any other C(ipsec_*) variable that is not a
        gateway variable, so that a misspelt one is reported.
    type: dict
  hosts:
    description:
      - Inventory host name to its gateway variables (C(ipsec_public_address), C(ipsec_id),
        C(ipsec_lan_subnets), C(ipsec_listen), C(ipsec_certificate), C(ipsec_private_key),
        C(ipsec_ca_certificates)) and optionally C(group_names).
      - Default is every inventory host with its C(ipsec_*) variables from C(hostvars), each templated in
        its own context, and its C(group_names).
    type: dict
  groups:
    description:
      - Group name to list of host names, for C(spokes_group) and C(members_group).
      - Default is the inventory's C(groups); when O(hosts) is given, the groups come from each host's
        C(group_names).
    type: dict
  fail_on_error:
    description:
      - Fail the task when the inventory has problems. With V(false) the problems are returned and the task
        succeeds.
    type: bool
    default: true
  include_secrets:
    description:
      - V(true) also returns RV(engine_secrets), the pre-shared keys per host and connection, and
        RV(engine_private_keys), and marks
        the whole result C(no_log) so that it is hidden at every verbosity, in every callback and in the
        log file; the registered variable keeps everything.
      - A host's RV(engine_configs) entry and RV(engine_secrets) entry are the O(pyike.ipsec.config#module:config)
        and O(pyike.ipsec.config#module:secrets) options of M(pyike.ipsec.config), which keeps the keys
        C(no_log) on the target too.
      - A validation that fails never includes keys and is not hidden.
    type: bool
    default: false
  limit:
    description:
      - Return RV(engine_configs) only for these hosts (the check always covers the whole inventory).
    type: list
    elements: str
  require_tunnels:
    description:
      - Also fail when the inventory describes no tunnel (no gateway, no C(ipsec_tunnels) and no
        C(ipsec_topologies)), and say whether there was no host, no gateway or no tunnel.
        C(playbooks/validate.yml) sets it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Runs the same in check mode; it never changes anything.
    support: full
  diff_mode:
    description: No diff is produced.
    support: none
  action:
    description: Runs on the controller as an action plugin.
    support: full
notes:
  - Run it once per play, with O(limit) or without, for example with C(run_once=true) and
    C(delegate_to=localhost); it contacts no host either way.
seealso:
  - name: Inventory schema
    description: The data model, with a description of every variable and field.
    link: https://github.com/pyike-ipsec/pyike.ipsec/blob/main/schemas/inventory.schema.json
"""

EXAMPLES = r"""
- name: Check the VPN inventory before touching any host
  pyike.ipsec.validate:
  run_once: true
  delegate_to: localhost

- name: Report the problems without failing
  pyike.ipsec.validate:
    fail_on_error: false
  run_once: true
  delegate_to: localhost
  register: ipsec_check

- name: Compute the engine configurations with their keys (the whole result is hidden)
  pyike.ipsec.validate:
    include_secrets: true
  run_once: true
  delegate_to: localhost
  register: gateway_engine

- name: Write this gateway's engine configuration, keys passed separately
  pyike.ipsec.config:
    config: "{{ gateway_engine.engine_configs[inventory_hostname] }}"
    secrets: "{{ gateway_engine.engine_secrets[inventory_hostname] }}"
  when: inventory_hostname in gateway_engine.engine_configs

- name: Check explicit data
  pyike.ipsec.validate:
    data:
      ipsec_ike_groups: {ike: {proposals: [aes256gcm16-prfsha256-x25519]}}
      ipsec_esp_groups: {esp: {proposals: [aes256gcm16]}}
      ipsec_tunnels:
        - {name: hq, left: gw1, right: gw2, ike_group: ike, esp_group: esp, psk: "{{ vault_psk_hq }}"}
    hosts:
      gw1: {ipsec_public_address: 192.0.2.1, ipsec_lan_subnets: [10.1.0.0/24]}
      gw2: {ipsec_public_address: 198.51.100.1, ipsec_lan_subnets: [10.2.0.0/24]}
  delegate_to: localhost
"""

RETURN = r"""
problems:
  description: Every problem as C(<path>) followed by a colon and the message; empty when the inventory is valid.
  returned: always
  type: list
  elements: str
  sample:
    - "ipsec_tunnels[2].children[0].left_ts[1]: '10.0.0.0/33' is not a valid network"
    - "ipsec_tunnels[0].ike_group: unknown IKE group 'ikev2' (ipsec_ike_groups defines: modern)"
tunnels:
  description:
    - Every tunnel, topologies expanded, without secrets; empty when there are problems.
    - C(defined_at) is the data path of the tunnel or of the topology that generated it; C(psk_ref) the
      data path of its key (or C(psk_file)); C(interface) (route-based tunnels only) its interface's name and
      C(if_id).
  returned: always
  type: list
  elements: dict
  sample:
    - name: star-spoke1
      defined_at: ipsec_topologies[0]
      left: {host: spoke1, address: 198.51.100.1}
      right: {host: hub, address: 192.0.2.1, id: hub.example.com}
      ike_group: modern
      esp_group: pfs
      start_action: start
      children: [{name: lan, left_ts: [10.2.0.0/24], right_ts: [10.1.0.0/24, 10.3.0.0/24]}]
      auth: psk
      psk_ref: ipsec_topologies[0].psk
managed_hosts:
  description: The hosts that get an engine configuration (tunnel ends and hosts with C(ipsec_public_address)).
  returned: always
  type: list
  elements: str
  sample: [hub, spoke1, spoke2]
engine_configs:
  description:
    - Host name to its engine configuration (C(schemas/pyike-config.schema.json)), for the hosts in
      O(limit) or all managed hosts; empty when there are problems.
    - Connections carry no C(psk) (a C(psk_file) stays); the keys are in RV(engine_secrets) and where
      they come from in RV(psk_refs). The engine refuses a connection without a key, so a configuration
      cannot be used without its secrets by mistake.
  returned: always
  type: dict
  sample:
    spoke1:
      settings: {listen: [198.51.100.1]}
      connections:
        star-spoke1:
          local: {address: 198.51.100.1}
          remote: {address: 192.0.2.1, id: hub.example.com}
          auth: psk
          ike_proposals: [aes256gcm16-prfsha256-x25519]
          children:
            lan:
              local_ts: [10.2.0.0/24]
              remote_ts: [10.1.0.0/24, 10.3.0.0/24]
              esp_proposals: [aes256gcm16-x25519]
              start_action: start
psk_refs:
  description:
    - Host name to connection name to where its pre-shared key comes from - the data path of the key in
      the inventory, or C(psk_file:<path>). Same hosts as RV(engine_configs).
  returned: always
  type: dict
  sample:
    hub: {moon: "ipsec_tunnels[0].psk", star-spoke1: "ipsec_topologies[0].psk"}
    spoke1: {star-spoke1: "ipsec_topologies[0].psk"}
engine_secrets:
  description:
    - Host name to connection name to its pre-shared key (connections with C(psk_file) are not listed);
      the O(pyike.ipsec.config#module:secrets) of that host. Same hosts as RV(engine_configs).
    - The result that holds it is C(no_log).
  returned: when O(include_secrets=true) and the inventory is valid
  type: dict
  sample:
    spoke1: {star-spoke1: "<the key>"}
engine_private_keys:
  description:
    - Host name to the PEM private key of its certificate, for hosts with C(auth=pubkey) tunnels; the role
      writes it to the C(private_key) path of RV(credential_files) with mode 0600. The result that holds it is C(no_log).
  returned: when O(include_secrets=true) and the inventory is valid
  type: dict
  sample:
    gw1: "<the PEM private key>"
credentials:
  description:
    - Host name to its public certificate files, for hosts with C(auth=pubkey) tunnels - C(certificate),
      the gateway certificate and its chain, and C(ca_certificates), the CA certificates it trusts, both PEM
      text - to be written to RV(credential_files) relative to the engine configuration's directory.
  returned: always
  type: dict
  sample:
    gw1:
      certificate: "-----BEGIN CERTIFICATE-----..."
      ca_certificates: "-----BEGIN CERTIFICATE-----..."
credential_files:
  description:
    - Where the engine configurations expect each certificate file, relative to the directory of the
      engine configuration file (C(certificate), C(private_key), C(ca_certificates)).
  returned: always
  type: dict
  sample:
    certificate: x509/gateway.pem
    private_key: private/gateway.key
    ca_certificates: x509ca/trusted.pem
initiates:
  description:
    - Host name to the connections that host starts itself (a child with C(start_action=start)); the other
      end of each waits for it.
  returned: always
  type: dict
  sample: {spoke1: [star-spoke1], spoke2: [star-spoke2], hub: []}
secrets_included:
  description: Whether the result holds RV(engine_secrets) (then it is C(no_log)).
  returned: always
  type: bool
  sample: false
msg:
  description: A summary, or every problem, one per line.
  returned: always
  type: str
  sample: "The IPsec inventory is valid: 3 tunnels, 3 managed hosts"
"""
