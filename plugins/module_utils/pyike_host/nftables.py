# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nftables for a pyike gateway: IKE and ESP from the peers, tunnelled traffic, TCP MSS clamping.

A packet that one nftables table accepts is still dropped by a base chain of another table at the same
hook (every base chain sees it; only drop is final). A table of our own cannot open anything in a ruleset
that drops by default, and a jump cannot cross tables. So, in every other table whose input or forward
base chain would drop (its policy is drop, or it reaches a drop or reject rule), we add a regular chain
``pyike_ipsec_input`` / ``pyike_ipsec_forward`` of ours and a jump to it at the top of that base chain.
Those chains accept UDP to the IKE ports and ESP from the peers only (from anyone when a peer is %any),
and the tunnelled traffic of each Child SA: into the TUN device from its local to its remote selectors,
out of it the other way. Our own table ``inet pyike_ipsec`` holds the MSS clamping (priority mangle,
before any filter). Tables of firewalld and of iptables-nft are never touched.

Every rule we write carries the comment ``pyike.ipsec <digest>``, the digest of the desired rules of
its chain: a chain whose rules carry the current digest is up to date, anything else is rewritten in one
``nft -f`` transaction. The spec (what to open) is plain JSON, so that the same code re-applies it at
boot (``python3 nftables.py apply SPEC``, after the distribution's ruleset is loaded).

Standard library only, Python 3.9+: this file is also installed on the host as a script.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

TABLE = "pyike_ipsec"
TABLE_FAMILY = "inet"
HELPER_CHAINS = {"input": "pyike_ipsec_input", "forward": "pyike_ipsec_forward"}
MSS_CHAIN = "mss_clamp"
MARK = "pyike.ipsec"
FAMILY_VERSIONS = {"inet": (4, 6), "ip": (4,), "ip6": (6,)}
IP_KEYWORD = {4: "ip", 6: "ip6"}
NFPROTO = {4: "ipv4", 6: "ipv6"}
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
IPTABLES_CHAINS = ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")
FIREWALLD_TABLE = "firewalld"
DROP_VERDICTS = ("drop", "reject")
NFT = "nft"


class NftError(Exception):
    pass


# --- reading the ruleset ---------------------------------------------------------------------------
def run_nft(args, script=None):
    """Run nft; NftError names the command and nft's message (which quotes the failing line)."""
    argv = [NFT, *args]
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise NftError("cannot run %s: %s" % (NFT, exc)) from None
    except subprocess.TimeoutExpired:
        raise NftError("%s timed out after 60 s" % " ".join(argv)) from None
    if done.returncode != 0:
        raise NftError("%s failed (rc=%d): %s" % (" ".join(argv), done.returncode, done.stderr.strip()))
    return done.stdout


class Ruleset:
    """The tables, chains and rules of ``nft -j list ruleset``, indexed by (family, table)."""

    def __init__(self, listing):
        self.tables = []
        self.chains = {}  # (family, table) -> {name: chain}
        self.rules = {}  # (family, table, chain) -> [rule]
        for item in listing.get("nftables", []):
            if "table" in item:
                key = (item["table"]["family"], item["table"]["name"])
                self.tables.append(key)
                self.chains.setdefault(key, {})
            elif "chain" in item:
                chain = item["chain"]
                self.chains.setdefault((chain["family"], chain["table"]), {})[chain["name"]] = chain
            elif "rule" in item:
                rule = item["rule"]
                self.rules.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)

    @classmethod
    def read(cls):
        return cls(json.loads(run_nft(["-j", "list", "ruleset"]) or "{}"))

    def chain_rules(self, family, table, chain):
        return self.rules.get((family, table, chain), [])

    def has_chain(self, family, table, chain):
        return chain in self.chains.get((family, table), {})

    def foreign_tables(self):
        """(family, table) of every table that is not ours (what counts as a firewall being active)."""
        return [key for key in self.tables if key != (TABLE_FAMILY, TABLE)]


def jump_target(rule):
    expr = rule.get("expr", [])
    if len(expr) == 1 and isinstance(expr[0], dict):
        for verdict in ("jump", "goto"):
            if verdict in expr[0]:
                return expr[0][verdict].get("target")
    return None


def _verdicts(rule):
    """The verdict keys (accept, drop, reject, jump, goto ...) a rule's expressions hold."""
    found = []
    for statement in rule.get("expr", []):
        if isinstance(statement, dict):
            for key, value in statement.items():
                if key in ("jump", "goto"):
                    found.append((key, value.get("target")))
                elif key in DROP_VERDICTS:
                    found.append((key, None))
    return found


def may_drop(ruleset, family, table, chain, seen=None):
    """Whether `chain` (a base chain: by policy; any chain: by a drop/reject rule, also in the chains it
    jumps to) can drop a packet."""
    seen = set() if seen is None else seen
    if chain in seen:
        return False
    seen.add(chain)
    if ruleset.chains.get((family, table), {}).get(chain, {}).get("policy") == "drop":
        return True
    for rule in ruleset.chain_rules(family, table, chain):
        if jump_target(rule) in HELPER_CHAINS.values():
            continue
        for verdict, target in _verdicts(rule):
            if verdict in DROP_VERDICTS:
                return True
            if target and may_drop(ruleset, family, table, target, seen):
                return True
    return False


def is_iptables_table(ruleset, family, table):
    """iptables-nft's layout: an iptables table name with the upper-case built-in chains."""
    if family not in ("ip", "ip6") or table not in IPTABLES_TABLES:
        return False
    return any(name in IPTABLES_CHAINS for name in ruleset.chains.get((family, table), {}))


def classify(ruleset):
    """(targets, skipped): base chains to open [(family, table, chain, hook)], and the tables left
    alone that could drop our traffic [(family, table, why)]."""
    targets, skipped = [], []
    for family, table in ruleset.foreign_tables():
        if family not in FAMILY_VERSIONS:
            continue
        droppers = [
            (name, chain["hook"])
            for name, chain in sorted(ruleset.chains[(family, table)].items())
            if chain.get("type") == "filter"
            and chain.get("hook") in HELPER_CHAINS
            and may_drop(ruleset, family, table, name)
        ]
        if not droppers:
            continue
        if table == FIREWALLD_TABLE:
            skipped.append((family, table, "managed by firewalld"))
        elif is_iptables_table(ruleset, family, table):
            skipped.append((family, table, "looks managed by iptables(-nft)"))
        else:
            targets.extend((family, table, name, hook) for name, hook in droppers)
    return targets, skipped


# --- the desired rules -----------------------------------------------------------------------------
def nft_set(items):
    """An anonymous set as nft lists it (a single element bare), so that the diff compares like with like."""
    items = [str(item) for item in items]
    return items[0] if len(items) == 1 else "{ %s }" % ", ".join(items)


def quoted(text):
    return '"%s"' % text


def helper_rules(spec, family, hook):
    """The rules (without comment) of our helper chain for `hook` in a table of `family`."""
    versions = FAMILY_VERSIONS[family]
    tun = quoted(spec["tun"])
    rules = []
    if hook == "input":
        peers = spec["peers"]
        ports = nft_set(spec["ike_ports"])
        if peers.get("any"):
            rules += ["udp dport %s accept" % ports, "meta l4proto esp accept"]
        else:
            for version in versions:
                addresses = peers.get(str(version)) or []
                if addresses:
                    match = "%s saddr %s" % (IP_KEYWORD[version], nft_set(addresses))
                    rules += ["%s udp dport %s accept" % (match, ports), "%s meta l4proto esp accept" % match]
    for tunnel in spec["tunnels"]:
        if tunnel["version"] not in versions:
            continue
        ip = IP_KEYWORD[tunnel["version"]]
        local, remote = nft_set(tunnel["local"]), nft_set(tunnel["remote"])
        device = (
            quoted(tunnel["interface"]) if "interface" in tunnel else tun
        )  # a route-based connection's own
        rules.append("iifname %s %s saddr %s %s daddr %s accept" % (device, ip, remote, ip, local))
        if hook == "forward":
            rules.append("oifname %s %s saddr %s %s daddr %s accept" % (device, ip, local, ip, remote))
        if "interface" not in tunnel:
            # the kernel dataplane: no TUN device; what it decrypted comes in on the wire with an IPsec
            # path, and what it will encrypt is forwarded along an IPsec route
            rules.append("meta ipsec exists %s saddr %s %s daddr %s accept" % (ip, remote, ip, local))
            if hook == "forward":
                rules.append("rt ipsec exists %s saddr %s %s daddr %s accept" % (ip, local, ip, remote))
    return rules


def mss_rules(spec):
    """MSS clamping on the TUN device and on each route-based connection's interface (its own MTU)."""
    if not spec.get("mss"):
        return []
    devices = [(spec["tun"], spec["mss"])] + [(i["name"], i["mss"]) for i in spec.get("interfaces") or []]
    rules = []
    for device, sizes in devices:
        for direction in ("oifname", "iifname"):
            for version in (4, 6):
                size = sizes.get(str(version))
                if size:
                    rules.append(
                        "%s %s meta nfproto %s tcp flags syn / syn,rst tcp option maxseg size > %d "
                        "tcp option maxseg size set %d"
                        % (direction, quoted(device), NFPROTO[version], size, size)
                    )
    return rules


def digest(rules):
    return hashlib.sha256("\n".join(rules).encode("utf-8")).hexdigest()[:12]


def comment_for(rules):
    return "%s %s" % (MARK, digest(rules))


def in_sync(ruleset, family, table, chain, rules):
    """Whether `chain` exists and holds exactly our `rules` (judged by the digest in their comments)."""
    if not ruleset.has_chain(family, table, chain):
        return False
    present = [rule.get("comment") for rule in ruleset.chain_rules(family, table, chain)]
    return present == [comment_for(rules)] * len(rules)


def is_our_jump(rule):
    return rule.get("comment") == MARK and jump_target(rule) in HELPER_CHAINS.values()


class Plan:
    """The nft script that brings the ruleset to the spec, what it changes, and the text before and after."""

    def __init__(self):
        self.commands = []
        self.changes = []
        self.before = []  # what of ours exists: (family, table, chain or None for our table), or a jump line
        self.after = {}  # block key -> text lines
        self.opened = []  # "family table chain" of the base chains that jump to our rules
        self.skipped = []

    @property
    def changed(self):
        return bool(self.commands)

    def script(self):
        return "\n".join(self.commands) + "\n" if self.commands else ""


def _chain_text(family, table, chain, rules, comment):
    lines = ["%s %s chain %s:" % (family, table, chain)]
    return {lines[0]: lines + ["    %s comment %s" % (rule, quoted(comment)) for rule in rules]}


def _jump_line(family, table, chain, helper):
    return "%s %s chain %s: jump %s" % (family, table, chain, helper)


def plan(spec, ruleset, present=True):
    """Compare `ruleset` with `spec` (or with nothing of ours when not `present`). The spec's "open": true
    opens the tables that drop, false removes our chains from them, null leaves them alone."""
    result = Plan()
    targets, skipped = classify(ruleset) if present and spec.get("open") else ([], [])
    result.skipped = ["%s %s (%s)" % item for item in skipped]
    wanted_chains = {}  # (family, table, helper) -> rules
    wanted_jumps = set()  # (family, table, base chain, helper)
    for family, table, chain, hook in targets:
        rules = helper_rules(spec, family, hook)
        if rules:
            wanted_chains[(family, table, HELPER_CHAINS[hook])] = rules
            wanted_jumps.add((family, table, chain, HELPER_CHAINS[hook]))
            result.opened.append("%s %s %s" % (family, table, chain))
    if present and spec.get("open") is None:
        _plan_own_table(result, spec, ruleset, present)  # other tables are left as they are, ours included
        return result
    _plan_stale(result, ruleset, wanted_chains, wanted_jumps)
    for (family, table, helper), rules in sorted(wanted_chains.items()):
        comment = comment_for(rules)
        result.after.update(_chain_text(family, table, helper, rules, comment))
        if not in_sync(ruleset, family, table, helper, rules):
            result.commands += [
                "add chain %s %s %s" % (family, table, helper),
                "flush chain %s %s %s" % (family, table, helper),
            ]
            result.commands += [
                "add rule %s %s %s %s comment %s" % (family, table, helper, rule, quoted(comment))
                for rule in rules
            ]
            result.changes.append("wrote chain %s in %s %s (%d rules)" % (helper, family, table, len(rules)))
    for family, table, chain, helper in sorted(wanted_jumps):
        line = _jump_line(family, table, chain, helper)
        result.after[line] = [line]
        if not any(
            is_our_jump(rule) and jump_target(rule) == helper
            for rule in ruleset.chain_rules(family, table, chain)
        ):
            result.commands.append(
                "insert rule %s %s %s jump %s comment %s" % (family, table, chain, helper, quoted(MARK))
            )
            result.changes.append(
                "inserted a jump to %s at the top of %s %s %s" % (helper, family, table, chain)
            )
    _plan_own_table(result, spec, ruleset, present)
    return result


def _plan_stale(result, ruleset, wanted_chains, wanted_jumps):
    """Record what of ours exists, and delete the jumps and helper chains that are no longer wanted."""
    for (family, table, chain), rules in sorted(ruleset.rules.items()):
        for rule in rules:
            if not is_our_jump(rule):
                continue
            helper = jump_target(rule)
            result.before.append(_jump_line(family, table, chain, helper))
            if (family, table, chain, helper) not in wanted_jumps:
                result.commands.append(
                    "delete rule %s %s %s handle %d" % (family, table, chain, rule["handle"])
                )
                result.changes.append("removed the jump to %s from %s %s %s" % (helper, family, table, chain))
    for family, table in ruleset.foreign_tables():
        for helper in HELPER_CHAINS.values():
            if not ruleset.has_chain(family, table, helper):
                continue
            result.before.append((family, table, helper))
            if (family, table, helper) not in wanted_chains:
                result.commands.append("delete chain %s %s %s" % (family, table, helper))
                result.changes.append("removed chain %s from %s %s" % (helper, family, table))


def _plan_own_table(result, spec, ruleset, present):
    rules = mss_rules(spec) if present else []
    exists = (TABLE_FAMILY, TABLE) in ruleset.tables
    if exists:
        result.before.append((TABLE_FAMILY, TABLE, None))
    if not rules:
        if exists:
            result.commands.append("delete table %s %s" % (TABLE_FAMILY, TABLE))
            result.changes.append("removed table %s %s" % (TABLE_FAMILY, TABLE))
        return
    comment = comment_for(rules)
    result.after.update(_chain_text(TABLE_FAMILY, TABLE, MSS_CHAIN, rules, comment))
    chains = ruleset.chains.get((TABLE_FAMILY, TABLE), {})
    if in_sync(ruleset, TABLE_FAMILY, TABLE, MSS_CHAIN, rules) and list(chains) == [MSS_CHAIN]:
        return
    result.commands += [
        "add table %s %s" % (TABLE_FAMILY, TABLE),
        "delete table %s %s" % (TABLE_FAMILY, TABLE),
        "table %s %s {" % (TABLE_FAMILY, TABLE),
        "  chain %s {" % MSS_CHAIN,
        "    type filter hook forward priority mangle; policy accept;",
    ]
    result.commands += ["    %s comment %s" % (rule, quoted(comment)) for rule in rules]
    result.commands += ["  }", "}"]
    result.changes.append(
        "wrote table %s %s (TCP MSS clamping, %d rules)" % (TABLE_FAMILY, TABLE, len(rules))
    )


def joined(blocks):
    return "".join(line + "\n" for key in sorted(blocks) for line in blocks[key])


def after_text(result):
    return joined(result.after)


def before_text(result):
    """What of ours exists now, as nft lists it, in the blocks of after_text (for the diff)."""
    blocks = {}
    for item in result.before:
        if isinstance(item, str):
            blocks[item] = [item]
            continue
        family, table, chain = item
        what = ["table", family, table] if chain is None else ["chain", family, table, chain]
        blocks.update(_listed_chains(family, table, run_nft(["list", *what])))
    return joined(blocks)


def _listed_chains(family, table, listing):
    """`nft list` output as {"family table chain NAME:": header and indented rules}."""
    blocks, lines = {}, None
    for raw in listing.splitlines():
        text = raw.strip()
        if text.startswith("chain ") and text.endswith("{"):
            lines = ["%s %s chain %s:" % (family, table, text.split()[1])]
            blocks[lines[0]] = lines
        elif lines is not None and text and not text.startswith(("table ", "type ", "}")):
            lines.append("    " + text)
    return blocks


def apply(result):
    if result.changed:
        run_nft(["-f", "-"], result.script())


# --- the boot-time command -------------------------------------------------------------------------
def load_spec(path):
    with open(path) as handle:
        return json.load(handle)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("apply", "remove", "check"):
        sys.stderr.write(
            "usage: pyike-nftables apply|remove|check SPEC.json\n"
            "  apply the gateway's nftables rules (after the distribution's ruleset is loaded),\n"
            "  remove every rule and chain of ours, or check (exit 1 when apply would change something)\n"
        )
        return 2
    try:
        spec = load_spec(argv[1])
        result = plan(spec, Ruleset.read(), present=argv[0] != "remove")
        if argv[0] == "check":
            for change in result.changes:
                sys.stdout.write("to apply: %s\n" % change)
            return 1 if result.changed else 0
        apply(result)
    except (OSError, ValueError, KeyError, NftError) as exc:
        sys.stderr.write("pyike-nftables: %s\n" % exc)
        return 1
    for change in result.changes:
        sys.stdout.write("%s\n" % change)
    for table in result.skipped:
        sys.stdout.write("not changed: %s\n" % table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
