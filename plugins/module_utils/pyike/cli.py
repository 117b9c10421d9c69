"""Command line: `daemon` runs the engine; `ctl` talks to a running daemon over its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from .runtime.control import ControlError, call

DEFAULT_CONTROL_SOCKET = "/run/pyike/pyike.ctl"  # config.schema's default (importing it needs cryptography)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyike", description="pure-Python IKEv2/IPsec engine")
    commands = parser.add_subparsers(dest="program", required=True)

    daemon = commands.add_parser("daemon", help="run the IKE daemon and ESP dataplane")
    daemon.add_argument("--config", required=True, help="engine configuration file (YAML or JSON)")
    daemon.add_argument(
        "--log-level", default=None, help="override settings.log_level (debug, info, warning)"
    )
    daemon.add_argument(
        "--allow-impair",
        action="store_true",
        help="lab tests only: accept settings.impair (fault injection); refused without this flag",
    )

    ctl = commands.add_parser("ctl", help="control a running daemon (pyikectl)")
    ctl.add_argument(
        "--socket",
        default=os.environ.get("PYIKE_CONTROL_SOCKET", DEFAULT_CONTROL_SOCKET),
        help="control socket (default %(default)s, or $PYIKE_CONTROL_SOCKET)",
    )
    ctl.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon")
    actions = ctl.add_subparsers(dest="action", required=True)
    list_conns = actions.add_parser("list-conns", help="configured connections")
    list_conns.add_argument("--json", action="store_true", help="machine-readable output")
    list_sas = actions.add_parser("list-sas", help="IKE and Child SAs (and the traps, in text)")
    list_sas.add_argument("--json", action="store_true", help="machine-readable output (SAs only)")
    list_traps = actions.add_parser("list-traps", help="traps: Child SAs that traffic brings up")
    list_traps.add_argument("--json", action="store_true", help="machine-readable output")
    initiate = actions.add_parser("initiate", help="bring a connection (or one of its children) up")
    initiate.add_argument("target", metavar="CONN[/CHILD]")
    initiate.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the Child SA (above 0, at most 600)"
    )
    terminate = actions.add_parser("terminate", help="delete a connection's IKE SA and its Child SAs")
    terminate.add_argument("conn", metavar="CONN")
    rekey = actions.add_parser("rekey", help="rekey a connection's Child SAs (or its IKE SA with --ike)")
    rekey.add_argument("target", metavar="CONN[/CHILD]")
    rekey_what = rekey.add_mutually_exclusive_group()
    rekey_what.add_argument("--ike", action="store_true", help="rekey the IKE SA instead")
    rekey_what.add_argument(
        "--reauth",
        action="store_true",
        help="reauthenticate: a new IKE SA and Child SAs replace the old ones, make-before-break",
    )
    actions.add_parser("reload", help="re-read the configuration file; an invalid file is refused")
    stats = actions.add_parser("stats", help="daemon counters")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _format_child(child: Dict[str, Any]) -> List[str]:
    return [
        "  %s: %s, %s" % (child["name"], child["state"], child.get("proposal", "")),
        "    in  %s, %10d bytes, %8d packets"
        % (child.get("spi_in", ""), child.get("bytes_in", 0), child.get("packets_in", 0)),
        "    out %s, %10d bytes, %8d packets"
        % (child.get("spi_out", ""), child.get("bytes_out", 0), child.get("packets_out", 0)),
        "    local  %s" % ", ".join(child.get("local_ts", [])),
        "    remote %s" % ", ".join(child.get("remote_ts", [])),
    ]


def format_sas(sas: List[Dict[str, Any]]) -> str:
    lines: List[str] = []
    for ike in sas:
        lines.append(
            "%s: %s, %s_i %s_r" % (ike["name"], ike["state"], ike.get("spi_i", ""), ike.get("spi_r", ""))
        )
        lines.append("  local  '%s' @ %s" % (ike.get("local_id", ""), ike.get("local_address", "")))
        lines.append("  remote '%s' @ %s" % (ike.get("remote_id", ""), ike.get("remote_address", "")))
        if ike.get("remote_auth"):
            lines.append("  remote authenticated with %s" % ike["remote_auth"])
        if ike.get("remote_cert"):
            lines.append("  remote certificate %s" % ike["remote_cert"])
        if ike.get("proposal"):
            lines.append("  %s" % ike["proposal"])
        for child in ike.get("children", []):
            lines.extend(_format_child(child))
    return "\n".join(lines) if lines else "no SAs"


def format_traps(traps: List[Dict[str, Any]]) -> str:
    lines = []
    for trap in traps:
        state = trap.get("state", "")
        if state == "backoff":
            state = "backoff %ss after: %s" % (trap.get("backoff_seconds"), trap.get("last_failure", ""))
        lines.append(
            "trap %s/%s (%s): %s === %s, %s; %d acquire(s), %d packet(s) held, %d dropped"
            % (trap["conn"], trap["child"], trap.get("origin", ""), ", ".join(trap.get("local_ts", [])),
               ", ".join(trap.get("remote_ts", [])), state, trap.get("acquires", 0), trap.get("held", 0),
               trap.get("dropped", 0))
        )  # fmt: skip
    return "\n".join(lines)


def format_conns(conns: List[Dict[str, Any]]) -> str:
    lines = []
    for conn in conns:
        remote = conn["remote_address"]
        if conn.get("remote_host"):
            remote += " (%s)" % (", ".join(conn.get("peer_addresses") or []) or "not resolved yet")
        actions = conn.get("child_actions") or {}
        children = []
        for name in conn.get("children", []):
            extra = [
                "%s %s" % (key, actions.get(name, {}).get(key))
                for key in ("start_action", "close_action")
                if actions.get(name, {}).get(key) not in (None, "none")
            ]
            if actions.get(name, {}).get("trap"):
                extra.append("trap %s" % actions[name]["trap"])
            children.append("%s%s" % (name, " (%s)" % ", ".join(extra) if extra else ""))
        lines.append(
            "%s: %s -> %s, children: %s" % (conn["name"], conn["local_address"], remote, ", ".join(children))
        )
    return "\n".join(lines)


def _ctl(args: argparse.Namespace) -> int:
    try:
        if args.action == "list-conns":
            conns = call(args.socket, "list-conns", timeout=args.timeout)
            _out(json.dumps(conns, indent=2, sort_keys=True) if args.json else format_conns(conns))
        elif args.action == "list-sas":
            sas = call(args.socket, "list-sas", timeout=args.timeout)
            if args.json:
                _out(json.dumps(sas, indent=2, sort_keys=True))
            else:
                traps = format_traps(call(args.socket, "list-traps", timeout=args.timeout))
                _out(format_sas(sas) + ("\n" + traps if traps else ""))
        elif args.action == "list-traps":
            traps = call(args.socket, "list-traps", timeout=args.timeout)
            _out(
                json.dumps(traps, indent=2, sort_keys=True)
                if args.json
                else format_traps(traps) or "no traps"
            )
        elif args.action == "initiate":
            conn, _sep, child = args.target.partition("/")
            result = call(
                args.socket,
                "initiate",
                {"conn": conn, "child": child or None, "wait": args.wait},
                timeout=args.wait + 5,
            )
            _out(result.get("message", "initiated %s" % args.target))
        elif args.action == "terminate":
            _out(
                call(args.socket, "terminate", {"conn": args.conn}, timeout=args.timeout).get(
                    "message", "terminated"
                )
            )
        elif args.action == "rekey":
            conn, _sep, child = args.target.partition("/")
            result = call(
                args.socket,
                "rekey",
                {"conn": conn, "child": child or None, "ike": args.ike, "reauth": args.reauth},
                timeout=args.timeout,
            )
            _out(result.get("message", "rekeying"))
        elif args.action == "reload":
            result = call(args.socket, "reload", timeout=args.timeout)
            _out(result.get("message", "reloaded"))
        elif args.action == "stats":
            result = call(args.socket, "stats", timeout=args.timeout)
            if args.json:
                _out(json.dumps(result, indent=2, sort_keys=True))
            else:
                for key in sorted(result):
                    value = result[key]
                    if key == "dataplane" and isinstance(value, dict) and "mode" in value:
                        # "dataplane: kernel (auto: kernel ESP available: ...)", then its counters
                        _out("dataplane: %s (%s)" % (value["mode"], value.get("reason", "")))
                        value = {k: v for k, v in value.items() if k not in ("mode", "setting", "reason")}
                        key = "dataplane_counters"
                    _out("%s: %s" % (key, value))
    except ControlError as exc:
        _err("pyikectl: %s" % exc)
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.program == "ctl":
        return _ctl(args)
    from .runtime.daemon import run_daemon  # needs cryptography and pyroute2; ctl does not

    return run_daemon(args.config, args.log_level, args.allow_impair)
