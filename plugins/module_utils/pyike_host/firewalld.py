# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""firewalld for a pyike gateway, through firewall-cmd, in both its runtime and permanent configuration.

Objects of our own (``pyike-ipsec-*``):

* ipsets ``pyike-ipsec-peers4/6`` (the peers; %any is ``0.0.0.0/1 128.0.0.0/1`` and ``::/1 8000::/1``,
  since firewalld refuses a /0), ``pyike-ipsec-local4/6`` and ``pyike-ipsec-remote4/6`` (the union of the
  Child SAs' local and remote selectors), all ``hash:net``;
* rich rules admitting UDP to the IKE ports and ESP from ``pyike-ipsec-peers*`` in the zone of the
  interface that routes to each peer (or the zone given);
* zone ``pyike-ipsec`` holding the TUN device, which admits traffic from the remote to the local
  selectors to the host itself; policies ``pyike-ipsec-in`` (ingress that zone, egress ANY) and
  ``pyike-ipsec-out`` (ingress ANY, egress that zone) forwarding remote -> local and local -> remote.

Zones, policies and ipsets can only be created in the permanent configuration; creating them reloads
firewalld once (which, like ``firewall-cmd --reload``, drops runtime-only changes). Everything else is
changed in both configurations without a reload. With firewalld the selectors are checked per
direction against their union, not pair by pair; the engine's SPD checks the pairs.
"""

from __future__ import annotations

import shutil

PREFIX = "pyike-ipsec"
ZONE = PREFIX
# firewalld allows policy names of at most 18 characters
POLICY_IN = PREFIX + "-in"
POLICY_OUT = PREFIX + "-out"
POLICIES = {POLICY_IN: ([ZONE], ["ANY"]), POLICY_OUT: (["ANY"], [ZONE])}
ANY_NETWORKS = {4: ["0.0.0.0/1", "128.0.0.0/1"], 6: ["::/1", "8000::/1"]}
IPSET_FAMILY = {4: "inet", 6: "inet6"}
LAYERS = (("permanent", ["--permanent"]), ("runtime", []))


class FirewalldError(Exception):
    pass


def firewall_cmd():
    return shutil.which("firewall-cmd", path="/usr/bin:/bin:/usr/sbin:/sbin")


def is_running(run):
    command = firewall_cmd()
    if command is None:
        return False
    rc, out, _err = run([command, "--state"])
    return rc == 0 and out.strip() == "running"


def ipset_name(kind, version):
    return "%s-%s%d" % (PREFIX, kind, version)


def _call(run, args):
    rc, out, err = run([firewall_cmd() or "firewall-cmd", *args])
    if rc != 0:
        raise FirewalldError(
            "firewall-cmd %s failed (rc=%d): %s" % (" ".join(args), rc, (err or out).strip())
        )
    return out


def parse_listing(text):
    """``--list-all-zones`` / ``--list-all-policies`` output as {name: {field: [words], "rich rules": [..]}}."""
    found, current, in_rules = {}, None, False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            current = found.setdefault(line.split(" (")[0].strip(), {"rich rules": []})
            in_rules = False
        elif current is not None and line.startswith("\t"):
            if in_rules:
                current["rich rules"].append(line.strip())
        elif current is not None:
            key, _sep, value = line.strip().partition(":")
            in_rules = key == "rich rules"
            if in_rules and value.strip():
                current["rich rules"].append(value.strip())
            elif not in_rules:
                current[key] = value.split()
    return found


# --- the desired state -----------------------------------------------------------------------------
def peer_rules(host):
    rules = []
    for version in (4, 6):
        if not (host["peers"]["any"] or host["peers"][str(version)]):
            continue
        source = 'rule family="ipv%d" source ipset="%s"' % (version, ipset_name("peers", version))
        rules += ['%s port port="%d" protocol="udp" accept' % (source, port) for port in host["ike_ports"]]
        rules.append('%s protocol value="esp" accept' % source)
    return rules


def tunnel_rule(version, source_kind, destination_kind):
    return 'rule family="ipv%d" source ipset="%s" destination ipset="%s" accept' % (
        version,
        ipset_name(source_kind, version),
        ipset_name(destination_kind, version),
    )


def needed_versions(host):
    """The address families with peers or tunnels (both for a %any peer)."""
    peers = {v for v in (4, 6) if host["peers"]["any"] or host["peers"][str(v)]}
    return sorted(peers | set(host["versions"]))


def desired(host, peer_zones):
    """{ipsets: {name: (family, [entries])}, zone_interfaces, rich: {(kind, name): [rules]}, policies}."""
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host.traffic import collapsed

    ipsets = {}
    for version in needed_versions(host):
        peers = ANY_NETWORKS[version] if host["peers"]["any"] else host["peers"][str(version)]
        local = collapsed(
            net for t in host["tunnels"] if t["version"] == version for net in _networks(t["local"])
        )
        remote = collapsed(
            net for t in host["tunnels"] if t["version"] == version for net in _networks(t["remote"])
        )
        for kind, entries in (("peers", peers), ("local", local), ("remote", remote)):
            ipsets[ipset_name(kind, version)] = (IPSET_FAMILY[version], sorted(_without_zero_prefix(entries)))
    rich = {("zone", zone): peer_rules(host) for zone in peer_zones}
    versions = host["versions"]
    rich[("zone", ZONE)] = [tunnel_rule(v, "remote", "local") for v in versions]
    rich[("policy", POLICY_IN)] = [tunnel_rule(v, "remote", "local") for v in versions]
    rich[("policy", POLICY_OUT)] = [tunnel_rule(v, "local", "remote") for v in versions]
    interfaces = [host["tun"]] + [interface["name"] for interface in host.get("interfaces", [])]
    return {"ipsets": ipsets, "zone_interfaces": interfaces, "rich": rich, "policies": POLICIES}


def _without_zero_prefix(prefixes):
    """hash:net ipsets refuse a /0 (a route-based connection's 0.0.0.0/0 or ::/0): its two /1 halves."""
    out = []
    for prefix in prefixes:
        if prefix in ("0.0.0.0/0", "::/0"):
            out += ["0.0.0.0/1", "128.0.0.0/1"] if prefix == "0.0.0.0/0" else ["::/1", "8000::/1"]
        else:
            out.append(prefix)
    return out


def _networks(prefixes):
    import ipaddress

    return [ipaddress.ip_network(prefix) for prefix in prefixes]


def peer_zones(run, host, zone):
    """The zones that receive the peers' packets: `zone`, else the zone of each interface that routes
    to a peer (to the default route for %any), else the default zone."""
    if zone:
        return [zone]
    default = _call(run, ["--get-default-zone"]).strip()
    devices = set()
    targets = [("-4", a) for a in host["peers"]["4"]] + [("-6", a) for a in host["peers"]["6"]]
    if host["peers"]["any"]:
        for family in ("-4", "-6"):
            rc, out, _err = run(["ip", family, "route", "show", "default"])
            devices.update(_words_after(out, "dev")[:1] if rc == 0 else [])
    for family, address in targets:
        rc, out, _err = run(["ip", family, "route", "get", address])
        devices.update(_words_after(out, "dev")[:1] if rc == 0 else [])
    zones = set()
    for device in sorted(devices):
        rc, out, _err = run([firewall_cmd(), "--get-zone-of-interface=%s" % device])
        zones.add(out.strip() if rc == 0 and out.strip() else default)
    return sorted(zones) or [default]


def _words_after(text, keyword):
    words = text.split()
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == keyword]


# --- the current state and the plan ------------------------------------------------------------------
def current(run, flags):
    zones = parse_listing(_call(run, [*flags, "--list-all-zones"]))
    policies = parse_listing(_call(run, [*flags, "--list-all-policies"]))
    ipsets = {}
    for name in _call(run, [*flags, "--get-ipsets"]).split():
        if name.startswith(PREFIX + "-"):
            entries = _call(run, [*flags, "--ipset=%s" % name, "--get-entries"]).split()
            ipsets[name] = sorted(entries)
    return {"zones": zones, "policies": policies, "ipsets": ipsets}


def is_ours(rule):
    return 'ipset="%s-' % PREFIX in rule


class Plan:
    def __init__(self):
        self.create = []  # permanent-only commands (new objects); a reload follows
        self.reload = False  # our objects exist in the permanent configuration only
        self.commands = {"permanent": [], "runtime": []}
        self.changes = []
        self.before = ""
        self.after = ""

    @property
    def changed(self):
        return bool(self.create or self.reload or self.commands["permanent"] or self.commands["runtime"])

    def apply(self, run):
        for args in self.create:
            _call(run, ["--permanent", *args])
        for args in self.commands["permanent"]:
            _call(run, ["--permanent", *args])
        if self.create or self.reload:
            _call(run, ["--reload"])  # new objects reach the runtime only this way; it now equals permanent
            return
        for args in self.commands["runtime"]:
            _call(run, args)


def describe(want_or_have):
    lines = []
    for name, (_family, entries) in sorted(want_or_have["ipsets"].items()):
        lines.append("ipset %s: %s" % (name, " ".join(entries)))
    lines.append("zone %s interfaces: %s" % (ZONE, " ".join(want_or_have["zone_interfaces"])))
    for (kind, name), rules in sorted(want_or_have["rich"].items()):
        lines += ["%s %s: %s" % (kind, name, rule) for rule in sorted(rules)]
    for name, (ingress, egress) in sorted(want_or_have["policies"].items()):
        lines.append("policy %s: ingress %s, egress %s" % (name, " ".join(ingress), " ".join(egress)))
    return "".join(line + "\n" for line in lines)


def _as_model(state):
    """The part of a current state (one layer) that we manage, in the shape of desired()."""
    ipsets = {name: ("", entries) for name, entries in state["ipsets"].items()}
    rich = {}
    for kind, objects in (("zone", state["zones"]), ("policy", state["policies"])):
        for name, fields in objects.items():
            ours = [rule for rule in fields["rich rules"] if is_ours(rule)]
            if ours or (kind == "zone" and name == ZONE) or (kind == "policy" and name in POLICIES):
                rich[(kind, name)] = ours
    zone = state["zones"].get(ZONE)
    policies = {
        name: (
            state["policies"][name].get("ingress-zones", []),
            state["policies"][name].get("egress-zones", []),
        )
        for name in POLICIES
        if name in state["policies"]
    }
    return {
        "ipsets": ipsets,
        "zone_interfaces": zone.get("interfaces", []) if zone else [],
        "rich": rich,
        "policies": policies,
    }


def plan(run, host, zone=None):
    want = desired(host, peer_zones(run, host, zone))
    result = Plan()
    have = {name: current(run, flags) for name, flags in LAYERS}
    permanent = have["permanent"]
    for name, (family, _entries) in sorted(want["ipsets"].items()):
        if name not in permanent["ipsets"]:
            result.create.append(["--new-ipset=%s" % name, "--type=hash:net", "--option=family=%s" % family])
            result.changes.append("created firewalld ipset %s" % name)
    if ZONE not in permanent["zones"]:
        result.create.append(["--new-zone=%s" % ZONE])
        result.changes.append("created firewalld zone %s" % ZONE)
    for name, (ingress, egress) in sorted(POLICIES.items()):
        if name not in permanent["policies"]:
            result.create.append(["--new-policy=%s" % name])
            result.changes.append("created firewalld policy %s" % name)
            permanent["policies"][name] = {"rich rules": []}
        fields = permanent["policies"][name]
        # ingress/egress are set in the permanent configuration only: a reload or a restart brings them in
        for option, wanted_zones, key in (
            ("ingress", ingress, "ingress-zones"),
            ("egress", egress, "egress-zones"),
        ):
            if sorted(fields.get(key, [])) != sorted(wanted_zones):
                result.create += [
                    ["--policy=%s" % name, "--add-%s-zone=%s" % (option, z)] for z in wanted_zones
                ]
                result.changes.append("set the %s zones of firewalld policy %s" % (option, name))
    runtime = have["runtime"]
    missing = [
        name for name in want["ipsets"] if name in permanent["ipsets"] and name not in runtime["ipsets"]
    ]
    missing += [
        name for name in POLICIES if name in permanent["policies"] and name not in runtime["policies"]
    ]
    missing += [ZONE] if ZONE in permanent["zones"] and ZONE not in runtime["zones"] else []
    if missing:
        result.reload = True
        result.changes.append(
            "reloaded firewalld: %s existed in its permanent configuration only" % ", ".join(missing)
        )
    _plan_layer(result, "permanent", want, permanent)
    if not (result.create or result.reload):
        _plan_layer(result, "runtime", want, runtime)
    result.before = describe(_as_model(have["permanent"]))
    result.after = describe(want)
    return result


def _plan_layer(result, layer, want, state):
    commands = result.commands[layer]
    model = _as_model(state)
    for name, (_family, entries) in sorted(want["ipsets"].items()):
        present = model["ipsets"].get(name, ("", []))[1]
        for entry in sorted(set(present) - set(entries)):
            commands.append(["--ipset=%s" % name, "--remove-entry=%s" % entry])
        added = sorted(set(entries) - set(present))
        if added:
            commands.append(["--ipset=%s" % name, *("--add-entry=%s" % entry for entry in added)])
        if added or set(present) - set(entries):
            result.changes.append("updated the entries of firewalld ipset %s (%s)" % (name, layer))
    interfaces = model["zone_interfaces"]
    for interface in want["zone_interfaces"]:
        if interface not in interfaces:
            commands.append(["--zone=%s" % ZONE, "--add-interface=%s" % interface])
            result.changes.append("put %s into firewalld zone %s (%s)" % (interface, ZONE, layer))
    for key in sorted(set(want["rich"]) | set(model["rich"])):
        kind, name = key
        wanted = set(want["rich"].get(key, []))
        present = set(model["rich"].get(key, []))
        target = "--%s=%s" % (kind, name)
        for rule in sorted(present - wanted):
            commands.append([target, "--remove-rich-rule=%s" % rule])
        for rule in sorted(wanted - present):
            commands.append([target, "--add-rich-rule=%s" % rule])
        if wanted != present:
            result.changes.append(
                "updated the pyike rich rules of firewalld %s %s (%s)" % (kind, name, layer)
            )
