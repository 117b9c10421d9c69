"""A test tool: an ESP tunnel with manually keyed SAs, no IKE (not for production use).

    PYTHONPATH=plugins/module_utils python3 -m pyike.runtime.static_tunnel CONFIG.json [--profile FILE]

It brings up the TUN device, the routes to the remote selectors and the NAT-T socket, installs
the Child SAs given in CONFIG.json and pumps packets until SIGTERM/SIGINT, then removes routes,
the TUN device and the sockets. SIGUSR1 writes the dataplane statistics to ``stats_file``. It
exists to test and benchmark the dataplane before IKE exists; static keys never change, so the
sequence numbers must not run out and the keys must not be reused across runs.

CONFIG.json (keys in hex; "key" is the ESP KEYMAT of that direction: AES key + 4-octet salt for
GCM and ChaCha20-Poly1305, the AES key for CBC, whose HMAC key goes in "integ_key_in/out")::

    {
      "local_address": "192.0.2.1",              # our WAN address (socket and raw ESP bind)
      "port": 4500,                              # NAT-T port (default 4500)
      "tun": {"name": "pyike0", "mtu": 1400, "vnet_hdr": true},
      "route_source": "10.1.0.1",                # preferred source of the routes (our LAN address)
      "route_table": 220,                        # default 220, with rule priority 220
      "batch": 64,
      "stats_file": "/run/pyike-static.json",
      "children": [
        {"name": "net", "cipher": "aes256gcm16",
         "spi_in": "0xc1000001", "spi_out": "0xc2000001", "key_in": "...", "key_out": "...",
         "local_ts": ["10.1.0.0/24"], "remote_ts": ["10.2.0.0/24"],
         "peer": "198.51.100.1", "peer_port": 4500, "encap": true}
      ]
    }

Ciphers: aes128gcm16, aes192gcm16, aes256gcm16, chacha20poly1305, and AES-CBC with HMAC in
strongSwan's spelling: aes128-sha256, aes256-sha256, aes256-sha384, aes256-sha512, aes128-sha1.
On start it prints one JSON line ``{"ready": true, ...}`` to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..esp import InboundSA, OutboundSA, encr_key_length, integ_key_length, make_cipher
from ..ids import EncrId, IntegId
from .dataplane import Dataplane
from .routes import RouteManager
from .tun import Tun
from .udp import NAT_T_PORT, RawEspEndpoint, UdpEndpoint

_INTEG = {
    "sha1": IntegId.HMAC_SHA1_96,
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
}


class ConfigError(ValueError):
    """The static tunnel configuration is wrong; the message names the field."""


def parse_cipher(name: str) -> Tuple[EncrId, Optional[int], IntegId]:
    """(ENCR id, key bits or None, INTEG id) of a strongSwan-style ESP cipher name."""
    name = name.lower()
    if name == "chacha20poly1305":
        return EncrId.CHACHA20_POLY1305, None, IntegId.NONE
    match = re.fullmatch(r"aes(128|192|256)gcm16", name)
    if match:
        return EncrId.AES_GCM_16, int(match.group(1)), IntegId.NONE
    match = re.fullmatch(r"aes(128|192|256)-(sha1|sha256|sha384|sha512)", name)
    if match:
        return EncrId.AES_CBC, int(match.group(1)), _INTEG[match.group(2)]
    raise ConfigError(
        "cipher %r: use aes128gcm16, aes256gcm16, chacha20poly1305 or aes256-sha256 and the like" % name
    )


def _hex(child: Dict[str, Any], field: str, required: bool = True) -> bytes:
    value = child.get(field)
    if value is None and not required:
        return b""
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise ConfigError("child %r: %s must be hex" % (child.get("name"), field)) from None


def _spi(child: Dict[str, Any], field: str) -> int:
    value = child.get(field)
    try:
        spi = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            "child %r: %s must be an integer or hex string" % (child.get("name"), field)
        ) from None
    if not 256 <= spi <= 0xFFFFFFFF:
        raise ConfigError(
            "child %r: %s must be 256..2^32-1 (RFC 4303 §2.1), got %d" % (child.get("name"), field, spi)
        )
    return spi


def build_sas(child: Dict[str, Any]) -> Tuple[OutboundSA, InboundSA]:
    encr, _bits, integ = parse_cipher(str(child.get("cipher", "aes256gcm16")))
    esn = bool(child.get("esn", False))
    try:
        out_cipher = make_cipher(encr, _hex(child, "key_out"), integ, _hex(child, "integ_key_out", False))
        in_cipher = make_cipher(encr, _hex(child, "key_in"), integ, _hex(child, "integ_key_in", False))
    except ValueError as exc:
        raise ConfigError("child %r: %s" % (child.get("name"), exc)) from None
    outbound = OutboundSA(_spi(child, "spi_out"), out_cipher, esn)
    inbound = InboundSA(_spi(child, "spi_in"), in_cipher, esn, int(child.get("replay_window", 4096)))
    return outbound, inbound


def make_pair(
    left: Dict[str, str],
    right: Dict[str, str],
    cipher: str = "aes256gcm16",
    mtu: int = 1400,
    **common: Any,
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Matching configurations for two gateways with fresh random keys and SPIs.

    ``left``/``right``: {"address": WAN address, "lan": LAN address, "ts": local selector CIDR}.
    ``common`` goes into both (e.g. ``stats_file``, ``batch``, ``tun``).
    """
    encr, key_bits, integ = parse_cipher(cipher)
    key_len = encr_key_length(encr, key_bits)
    integ_len = integ_key_length(integ)
    keys = [os.urandom(key_len).hex() for _i in range(2)]
    integ_keys = [os.urandom(integ_len).hex() for _i in range(2)]
    spis = ["%#010x" % (0xC0000000 | int.from_bytes(os.urandom(3), "big") << 4 | i) for i in range(2)]

    def one(me: Dict[str, str], peer: Dict[str, str], mine: int) -> Dict[str, Any]:
        theirs = 1 - mine
        child = {
            "name": "net",
            "cipher": cipher,
            "spi_in": spis[mine],
            "spi_out": spis[theirs],
            "key_in": keys[mine],
            "key_out": keys[theirs],
            "local_ts": [me["ts"]],
            "remote_ts": [peer["ts"]],
            "peer": peer["address"],
        }
        if integ_len:
            child["integ_key_in"] = integ_keys[mine]
            child["integ_key_out"] = integ_keys[theirs]
        config: Dict[str, Any] = {
            "local_address": me["address"],
            "route_source": me["lan"],
            "tun": {"name": "pyike0", "mtu": mtu, "vnet_hdr": True},
            "children": [child],
        }
        config.update(common)
        return config

    return one(left, right, 0), one(right, left, 1)


class StaticTunnel:
    """TUN + routes + sockets + Dataplane with the configured Child SAs."""

    def __init__(self, config: Dict[str, Any]):
        self.config = config
        self.tun: Optional[Tun] = None
        self.routes: Optional[RouteManager] = None
        self.endpoints: List[Any] = []
        self.dataplane: Optional[Dataplane] = None

    def open(self) -> Dataplane:
        config = self.config
        local = config.get("local_address")
        if not local:
            raise ConfigError("local_address (our WAN address) is required")
        tun_conf = config.get("tun", {})
        try:
            self.tun = Tun(
                tun_conf.get("name", "pyike%d"),
                mtu=int(tun_conf.get("mtu", 1400)),
                vnet_hdr=bool(tun_conf.get("vnet_hdr", True)),
                multi_queue=bool(tun_conf.get("multi_queue", False)),
            )
            port = int(config.get("port", NAT_T_PORT))
            self.endpoints.append(
                UdpEndpoint(local, port, gro=bool(config.get("gro", True)), gso=bool(config.get("gso", True)))
            )
            if config.get("raw_esp"):
                self.endpoints.append(RawEspEndpoint(local))
            self.routes = RouteManager(self.tun.name, table=int(config.get("route_table", 220)))
            self.dataplane = Dataplane(
                self.tun,
                self.endpoints,
                routes=self.routes,
                route_source=config.get("route_source"),
                batch=int(config.get("batch", 64)),
                gro=bool(tun_conf.get("gro", True)),
            )
            for child in config.get("children", []):
                outbound, inbound = build_sas(child)
                self.dataplane.install_child(
                    str(child["name"]),
                    outbound,
                    inbound,
                    child["local_ts"],
                    child["remote_ts"],
                    (child["peer"], int(child.get("peer_port", NAT_T_PORT))),
                    encap=bool(child.get("encap", True)),
                )
        except Exception:
            self.close()
            raise
        return self.dataplane

    def close(self) -> None:
        if self.dataplane is not None:
            self.dataplane.close()
        if self.routes is not None:
            self.routes.cleanup()
            self.routes.close()
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints = []
        if self.tun is not None:
            self.tun.close()

    def write_stats(self, generation: int) -> None:
        path = self.config.get("stats_file")
        if not path or self.dataplane is None:
            return
        stats = self.dataplane.stats()
        stats["generation"] = generation
        if self.dataplane._coalescer is not None:
            coalescer = self.dataplane._coalescer
            stats["gro"] = {
                "packets_in": coalescer.packets_in,
                "frames_out": coalescer.frames_out,
                "coalesced": coalescer.coalesced,
            }
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(stats, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)


async def _serve(tunnel: StaticTunnel) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    generation = [0]

    def dump() -> None:
        generation[0] += 1
        tunnel.write_stats(generation[0])

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(signal.SIGUSR1, dump)
    dataplane = tunnel.open()
    dataplane.start(loop)
    dump()
    ready = {"ready": True, "tun": dataplane.tun.name, "children": list(dataplane.children)}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    try:
        await done.wait()
    finally:
        dataplane.stop()
        dump()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m pyike.runtime.static_tunnel",
        description="Test tool: an ESP tunnel with manually keyed SAs (no IKE).",
    )
    parser.add_argument("config", help="JSON file (see the module docstring)")
    parser.add_argument("--profile", help="write cProfile statistics of the run to this file")
    args = parser.parse_args(argv)
    try:
        with open(args.config) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.stderr.write("static_tunnel: cannot read %s: %s\n" % (args.config, exc))
        return 2
    tunnel = StaticTunnel(config)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        asyncio.run(_serve(tunnel))
    except (ConfigError, OSError, KeyError) as exc:
        sys.stderr.write("static_tunnel: %s\n" % (exc,))
        return 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        tunnel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
