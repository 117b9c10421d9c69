"""strongSwan (charon with kernel-libipsec, or kernel-netlink where the kernel has ESP) as a real IKEv2 peer in a lab host.

The lab host's private /run and copy-on-write /etc (see holder.py) give each charon its own pid file,
VICI socket and configuration, so several run side by side. charon is driven with swanctl inside the
host; every swanctl call has a timeout because charon can hang (LAB.md).

Certificates: :meth:`StrongSwan.install_credentials` writes a certificate to /etc/swanctl/x509,
its private key to /etc/swanctl/private (0600; PEM, PKCS#1/SEC1 or PKCS#8, read by the pem,
pkcs1, pkcs8 and openssl plugins) and CA certificates to /etc/swanctl/x509ca inside the host; a
:class:`SiteToSite` with ``auth="pubkey"`` and ``cert`` uses them (swanctl.conf ``auth = pubkey``,
``certs = ...``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from .lab import Lab, LabError, stop_by_pid_file

CHARON = "/usr/lib/ipsec/charon"
VICI_SOCKET = "/run/charon.vici"
PID_FILE = "/run/charon.pid"
LOG_FILE = "/var/log/charon.log"
PLUGINS = (
    "random nonce openssl aes sha1 sha2 hmac gcm curve25519 kdf pem pkcs1 pkcs8 pubkey x509 constraints "
    "kernel-libipsec kernel-netlink socket-default vici"
)
# Kernel ESP (XFRM states and policies installed by charon): only where the kernel has ESP, e.g. the
# VM lab (make vm-test); this machine's kernel has none (LAB.md).
KERNEL_NETLINK_PLUGINS = PLUGINS.replace("kernel-libipsec ", "")
# What swanctl itself needs to load PSKs, certificates and private keys. Without a list it loads every
# installed plugin (75 on Debian 12): `swanctl --version` took 23-44 s in the VM lab the first time, 1-2 s
# after, and under a second on the host.
SWANCTL_PLUGINS = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints"
STRONGSWAN_CONF = """\
charon {
  load_modular = no
  load = %(plugins)s
  install_routes = yes
  retransmit_tries = 3
  plugins {
    vici {
      socket = unix://%(vici)s
    }
  }
  filelog {
    charon {
      path = %(log)s
      time_format = %%H:%%M:%%S
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      knl = 1
    }
  }
}
"""


@dataclass
class SiteToSite:
    """One swanctl connection with one child, in the terms of swanctl.conf(5).

    ``auth`` is ``psk`` (with ``psk``) or ``pubkey``: then ``cert`` names our certificate in
    /etc/swanctl/x509 (see :meth:`StrongSwan.install_credentials`) and ``cacerts`` optionally
    restricts the peer's CAs (files in /etc/swanctl/x509ca; default: any loaded CA).
    """

    name: str
    local_addr: str
    remote_addr: str
    local_id: str
    remote_id: str
    psk: str
    local_ts: List[str]
    remote_ts: List[str]
    proposals: str = "aes256gcm16-prfsha256-x25519"
    esp_proposals: str = "aes256gcm16"
    child: str = "net"
    start_action: str = "none"
    extra: List[str] = field(default_factory=list)
    auth: str = "psk"
    cert: str = ""
    cacerts: List[str] = field(default_factory=list)

    def swanctl_conf(self) -> str:
        if self.auth == "pubkey":
            if not self.cert:
                raise ValueError("SiteToSite %s: auth pubkey needs cert" % self.name)
            local_auth = "      auth = pubkey\n      certs = %s\n" % self.cert
            remote_auth = "      auth = pubkey\n"
            if self.cacerts:
                remote_auth += "      cacerts = %s\n" % ",".join(self.cacerts)
            secrets = ""
        else:
            local_auth = remote_auth = "      auth = psk\n"
            secrets = (
                "secrets {\n"
                "  ike-%(name)s {\n    id-1 = %(local_id)s\n    id-2 = %(remote_id)s\n    secret = %(psk_quoted)s\n  }\n"
                "}\n"
            )
        return (
            "connections {\n"
            "  %(name)s {\n"
            "    version = 2\n"
            "    local_addrs = %(local_addr)s\n"
            "    remote_addrs = %(remote_addr)s\n"
            "    proposals = %(proposals)s\n"
            "%(extra)s"
            "    local {\n%(local_auth)s      id = %(local_id)s\n    }\n"
            "    remote {\n%(remote_auth)s      id = %(remote_id)s\n    }\n"
            "    children {\n"
            "      %(child)s {\n"
            "        local_ts = %(local_ts)s\n"
            "        remote_ts = %(remote_ts)s\n"
            "        esp_proposals = %(esp_proposals)s\n"
            "        start_action = %(start_action)s\n"
            "      }\n"
            "    }\n"
            "  }\n"
            "}\n" + secrets
        ) % dict(
            vars(self),
            local_ts=",".join(self.local_ts),
            remote_ts=",".join(self.remote_ts),
            extra="".join("    %s\n" % line for line in self.extra),
            local_auth=local_auth,
            remote_auth=remote_auth,
            psk_quoted='"%s"' % self.psk.replace("\\", "\\\\").replace('"', '\\"'),
        )


class StrongSwan:
    """charon in one lab host; ``plugins`` is its load list (userspace ESP with kernel-libipsec by
    default, :data:`KERNEL_NETLINK_PLUGINS` for kernel ESP).

    ``swanctl_plugins``: swanctl's own load list (default: every installed plugin, which is slow to
    start where CPU is scarce, e.g. the VM lab: see :data:`SWANCTL_PLUGINS`). ``timeout_scale``
    multiplies how long the lab waits for charon and for each swanctl call (not the IKE timeouts
    given to swanctl): the VM lab emulates its CPU and is an order of magnitude slower.
    """

    def __init__(
        self,
        lab: Lab,
        host: str,
        plugins: str = PLUGINS,
        swanctl_plugins: Optional[str] = None,
        timeout_scale: float = 1.0,
    ):
        self.lab = lab
        self.host = host
        self.plugins = plugins
        self.swanctl_plugins = swanctl_plugins
        self.timeout_scale = timeout_scale

    def _sh(self, script: str, input_data: Optional[bytes] = None, timeout: float = 30.0) -> str:
        return self.lab.run_in(self.host, ["/bin/sh", "-c", script], input_data=input_data, timeout=timeout)

    def write_file(self, path: str, content: str, mode: str = "0600") -> None:
        self.lab.write_file(self.host, path, content.encode(), mode)

    def configure(self, swanctl_conf: str, charon_options: Sequence[str] = ()) -> None:
        """strongswan.conf (``charon_options``: extra ``key = value`` lines in the charon section,
        e.g. ``signature_authentication = no`` for a peer without RFC 7427) and swanctl.conf."""
        conf = STRONGSWAN_CONF % {"plugins": self.plugins, "vici": VICI_SOCKET, "log": LOG_FILE}
        options = "".join("  %s\n" % line for line in charon_options)
        conf = conf.replace("  retransmit_tries = 3\n", "  retransmit_tries = 3\n" + options, 1)
        if self.swanctl_plugins is not None:
            conf += "swanctl {\n  load = %s\n}\n" % self.swanctl_plugins
        self.write_file("/etc/strongswan.conf", conf, "0644")
        self.write_file("/etc/swanctl/swanctl.conf", swanctl_conf)

    def install_credentials(
        self, name: str, cert_pem: bytes, key_pem: bytes, ca_pems: Sequence[bytes] = ()
    ) -> str:
        """Our certificate as x509/<name>.pem, its key as private/<name>.pem (0600) and CA
        certificates as x509ca/<name>-ca<N>.pem; returns the name for ``SiteToSite.cert``.
        Load them with ``swanctl --load-creds`` (``start`` loads everything)."""
        self.write_file("/etc/swanctl/x509/%s.pem" % name, cert_pem.decode("ascii"), "0644")
        self.write_file("/etc/swanctl/private/%s.pem" % name, key_pem.decode("ascii"), "0600")
        for index, ca_pem in enumerate(ca_pems):
            self.write_file("/etc/swanctl/x509ca/%s-ca%d.pem" % (name, index), ca_pem.decode("ascii"), "0644")
        return "%s.pem" % name

    def load(self, what: str = "--load-all") -> str:
        """Reload swanctl.conf and credentials into the running charon (``--load-conns`` etc.)."""
        return self.swanctl(what, *(("--noprompt",) if what in ("--load-all", "--load-creds") else ()))

    def start(self, timeout: float = 15.0) -> None:
        """Start charon and load swanctl.conf once its VICI socket accepts connections.

        charon leaves its VICI socket behind when it stops, so the file alone says nothing: a stale
        one is removed first, and readiness is a VICI request that succeeds (a connection between
        charon's bind and listen is refused too)."""
        timeout *= self.timeout_scale
        self._sh("rm -f %s; setsid %s </dev/null >/dev/null 2>&1 &" % (VICI_SOCKET, CHARON))
        deadline = time.monotonic() + timeout
        ready = "test -S %s && swanctl --stats >/dev/null 2>&1 && echo yes || true" % VICI_SOCKET
        pause = 0.02
        while time.monotonic() < deadline:
            # swanctl loads its plugins first: tens of seconds where the CPU is emulated (timeout_scale)
            if self._sh(ready, timeout=30.0 * self.timeout_scale).strip() == "yes":
                self.swanctl("--load-all", "--noprompt")
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.2)  # each poll is a swanctl, which competes with charon for the CPU
        raise LabError(
            "lab host %s: charon did not answer on %s within %ss; log:\n%s"
            % (self.host, VICI_SOCKET, timeout, self.log())
        )

    def swanctl(self, *args: str, timeout: float = 20.0) -> str:
        return self.lab.run_in(self.host, ["swanctl", *args], timeout=timeout * self.timeout_scale + 5)

    def initiate(self, child: str, timeout: int = 10) -> str:
        return self.swanctl("--initiate", "--child", child, "--timeout", str(timeout), timeout=timeout)

    def list_sas(self) -> str:
        return self.swanctl("--list-sas")

    def log(self) -> str:
        return self._sh("cat %s 2>/dev/null || true" % LOG_FILE)

    def kill(self) -> None:
        """Kill charon without a chance to send DELETEs: a dead peer, for DPD tests."""
        self._sh("kill -9 $(cat %s) 2>/dev/null; rm -f %s %s; true" % (PID_FILE, PID_FILE, VICI_SOCKET))

    def stop(self) -> None:
        """Stop charon if it runs; a lab host that is already gone counts as stopped."""
        stop_by_pid_file(self.lab, self.host, PID_FILE)
        try:
            self._sh("rm -f %s %s" % (VICI_SOCKET, PID_FILE))  # what charon leaves (or a SIGKILL did)
        except LabError:
            pass
