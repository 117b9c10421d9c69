"""Interop matrix against strongSwan 5.9.8 with X.509 certificates, traffic through each tunnel.

{RSA, ECDSA} certificates x {aes256gcm16, aes256-sha256, chacha20poly1305} x {x25519, ecp256,
modp2048} x {pyike initiates, strongSwan initiates}: 36 rows. RSA rows: RSA-3072 CA chain, gw1
RSA-3072 and gw2 RSA-2048 leaves, so IKE_AUTH is fragmented (RFC 7383) both ways. ECDSA rows:
P-384 CAs, gw1 P-256 and gw2 P-384 leaves. Each end sends its leaf and the intermediate CA and
trusts only the root CAs.

One lab, one pyike daemon (gw1, the hosts' /usr/bin/python3 with Debian's cryptography 38) and one
charon (gw2) serve the whole module: per row both are reconfigured (pyikectl reload, swanctl
--load-conns), one side initiates, the LAN clients ping across, and pyike terminates the IKE SA.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from conftest import TWO_SITES
from lab_pki import LabPki, expired_validity, key_pem, pem
from pings import assert_swan_counted
from pyike_lab.lab import Lab, LabError
from pyike_lab.plan import build_plan
from pyike_lab.pyike import PyikeDaemon, site_to_site
from pyike_lab.strongswan import SiteToSite, StrongSwan
from test_interop_matrix import CIPHERS, GROUPS
from test_pyike_tunnels import LEFT, RIGHT, ping_across

pytestmark = pytest.mark.root

FAMILIES = ["rsa", "ecdsa"]
CERT_DIR = "/etc/pyike/certs"
KEY_DIR = "/etc/pyike/private"
# strongSwan's names for the signature it verified (charon log: "authentication of ... with X successful").
SWAN_SCHEME = {"rsa": "RSA_EMSA_PSS_SHA2_256", "ecdsa": "ECDSA_WITH_SHA256_DER"}
PYIKE_SCHEME = {"rsa": "DIGITAL_SIGNATURE rsa-pkcs1-sha256", "ecdsa": "DIGITAL_SIGNATURE ecdsa-sha384"}


class CertLab:
    """The module's lab: gw1 runs pyike, gw2 runs charon, both hold the credentials of both families."""

    def __init__(self):
        self.lab = Lab("t" + uuid.uuid4().hex[:8])
        self.pkis = {family: LabPki(family) for family in FAMILIES}
        self.loose_key = self.pkis["ecdsa"].leaf(LEFT["id"], self.pkis["ecdsa"].gw1_kind)[1]
        self.daemons = []

    def up(self):
        self.lab.up(build_plan(self.lab.name, TWO_SITES))
        self.pyike = PyikeDaemon(self.lab, "gw1")
        self.swan = StrongSwan(self.lab, "gw2")
        self.daemons = [self.pyike, self.swan]
        roots = []
        for family, pki in self.pkis.items():
            cert, key = pki.leaf(LEFT["id"], pki.gw1_kind)
            # Our certificate file carries the chain after the leaf; RSA key as PKCS#8, ECDSA as SEC1.
            self.pyike.write_file("%s/gw1-%s.pem" % (CERT_DIR, family), pem(cert) + pem(pki.inter), "0644")
            self.pyike.write_file("%s/gw1-%s.key" % (KEY_DIR, family), key_pem(key, family == "rsa"), "0600")
            self.pyike.write_file("%s/%s-root.pem" % (CERT_DIR, family), pem(pki.root), "0644")
            roots.append("%s/%s-root.pem" % (CERT_DIR, family))
            cert, key = pki.leaf(RIGHT["id"], pki.gw2_kind)
            # strongSwan: RSA key as PKCS#1, ECDSA as PKCS#8; the intermediate in x509ca so that it
            # sends it along with its certificate.
            self.swan.install_credentials(
                "gw2-%s" % family, pem(cert), key_pem(key, family == "ecdsa"), [pem(pki.root), pem(pki.inter)]
            )
        self.roots = roots
        self.swan.configure(self.swan_conf("rsa", "aes256gcm16-prfsha256-x25519", "aes256gcm16"))
        self.swan.start()
        self.pyike.start(self.pyike_conf("rsa", "aes256gcm16-prfsha256-x25519", "aes256gcm16"))

    def down(self):
        for daemon in self.daemons:
            daemon.stop()
        self.lab.down()

    def pyike_conf(self, family, ike, esp, **credentials):
        credentials = dict(
            {
                "cert": "%s/gw1-%s.pem" % (CERT_DIR, family),
                "private_key": "%s/gw1-%s.key" % (KEY_DIR, family),
                "ca_certs": list(self.roots),
            },
            **credentials,
        )
        return site_to_site(
            "s2s",
            LEFT["addr"],
            RIGHT["addr"],
            LEFT["id"],
            RIGHT["id"],
            "",
            [LEFT["net"]],
            [RIGHT["net"]],
            ike_proposals=[ike],
            esp_proposals=[esp],
            credentials=credentials,
        )

    def swan_conf(self, family, ike, esp, cert=None):
        return SiteToSite(
            "s2s",
            RIGHT["addr"],
            LEFT["addr"],
            RIGHT["id"],
            LEFT["id"],
            "",
            [RIGHT["net"]],
            [LEFT["net"]],
            proposals=ike,
            esp_proposals=esp,
            auth="pubkey",
            cert=cert or "gw2-%s.pem" % family,
        ).swanctl_conf()

    def reconfigure(self, family, ike, esp, swan_cert=None, **pyike_credentials):
        self.pyike.write_config(self.pyike_conf(family, ike, esp, **pyike_credentials))
        self.pyike.ctl("reload")
        self.swan.write_file("/etc/swanctl/swanctl.conf", self.swan_conf(family, ike, esp, swan_cert))
        self.swan.load("--load-conns")

    def clear(self):
        """No IKE SA on either side before the next row."""
        if self.pyike.sas():
            self.pyike.ctl("terminate", "s2s")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "s2s:" not in self.swan.list_sas() and not self.pyike.sas():
                return
            time.sleep(0.05)
        raise AssertionError("SAs left after terminate:\n%s\n%s" % (self.swan.list_sas(), self.pyike.sas()))

    def swan_auth_lines(self):
        return [line for line in self.swan.log().splitlines() if "authentication of" in line]


@pytest.fixture(scope="module")
def env():
    cert_lab = CertLab()
    try:
        cert_lab.up()
        yield cert_lab
    finally:
        cert_lab.down()


@pytest.mark.parametrize("initiator", ["pyike", "strongswan"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("cipher", sorted(CIPHERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_cert_matrix(env, family, cipher, group, initiator):
    ike_prefix, esp = CIPHERS[cipher]
    ike = "%s-%s" % (ike_prefix, group)
    env.reconfigure(family, ike, esp)
    before = len(env.swan_auth_lines())
    try:
        if initiator == "pyike":
            assert "initiate completed successfully" in env.pyike.ctl("initiate", "s2s")
        else:
            assert "initiate completed successfully" in env.swan.initiate("net")
        ping_across(env.lab, count=3)
        (ike_sa,) = env.pyike.sas()
        assert ike_sa["auth"] == "pubkey" and ike_sa["initiator"] is (initiator == "pyike")
        assert ike_sa["proposal"].replace("/", "-").startswith(ike_prefix.split("-")[0])
        # pyike verified strongSwan's RFC 7427 signature and its chain up to our root CA ...
        assert ike_sa["remote_auth"] == PYIKE_SCHEME[family]
        assert ike_sa["remote_cert"].startswith("CN=%s,O=pyike lab %s" % (RIGHT["id"], family))
        assert "CN=Intermediate CA" in ike_sa["remote_cert"] and "CN=Root CA" in ike_sa["remote_cert"]
        # ... and strongSwan verified ours (its log names the scheme) and carried the pings.
        new = env.swan_auth_lines()[before:]
        ours = [line for line in new if "authentication of '%s' with" % LEFT["id"] in line]
        assert ours and SWAN_SCHEME[family] in ours[-1] and "successful" in ours[-1], new
        assert_swan_counted(env.swan.list_sas(), 3)
    finally:
        env.clear()


def test_rsa_chains_were_fragmented_both_ways(env):
    """RSA-3072 chains exceed 1280 octets: every IKE_AUTH message is fragmented (RFC 7383), whoever
    initiates, and each end reassembles the other's fragments."""
    env.reconfigure("rsa", "aes256gcm16-prfsha256-x25519", "aes256gcm16")
    try:
        before = len(env.swan.log())
        assert "initiate completed successfully" in env.pyike.ctl("initiate", "s2s")
        log = env.swan.log()[before:]
        # Ours: IDi, CERT (RSA-3072 leaf), CERT (intermediate), CERTREQ, IDr, AUTH, SA, TSi, TSr.
        assert "received fragment #1 of 3" in log and "reassembled fragmented IKE message" in log, log
        assert (
            "parsed IKE_AUTH request 1 [ IDi CERT CERT N(INIT_CONTACT) CERTREQ IDr AUTH SA TSi TSr ]" in log
        ), log
        # Theirs: strongSwan splits its IKE_AUTH response, and pyike reassembled it (the SA is up).
        assert "generating IKE_AUTH response 1 [ IDr CERT CERT AUTH SA TSi TSr ]" in log, log
        assert "splitting IKE message" in log and "into 3 fragments" in log, log
        env.clear()

        before = len(env.swan.log())
        assert "initiate completed successfully" in env.swan.initiate("net")
        log = env.swan.log()[before:]
        assert "generating IKE_AUTH request 1 [ IDi CERT" in log and "splitting IKE message" in log, log
        # strongSwan's worker threads may take the fragments in any order; the last one reassembles.
        assert re.search(r"received fragment #[123] of 3, reassembled fragmented IKE message", log), log
        assert "parsed IKE_AUTH response 1 [ IDr CERT CERT AUTH SA TSi TSr ]" in log, log
        assert env.pyike.stats()["ike"].get("invalid_messages", 0) == 0
    finally:
        env.clear()


def install_swan_leaf(env, name, cert, key):
    env.swan.install_credentials(name, pem(cert), key_pem(key))
    env.swan.load("--load-creds")


def test_strongswan_presents_an_expired_certificate(env):
    pki = env.pkis["ecdsa"]
    cert, key = pki.leaf(RIGHT["id"], pki.gw2_kind, validity=expired_validity(), serial=77)
    install_swan_leaf(env, "gw2-expired", cert, key)
    env.reconfigure("ecdsa", "aes256gcm16-prfsha256-x25519", "aes256gcm16", swan_cert="gw2-expired.pem")
    try:
        with pytest.raises(LabError) as failed:
            env.pyike.ctl("initiate", "s2s")
        message = str(failed.value)
        assert "AUTHENTICATION_FAILED: certificate of peer %s rejected (expired)" % RIGHT["id"] in message
        assert "CN=%s" % RIGHT["id"] in message and "expired on" in message
        assert "N(AUTH_FAILED)" in env.swan.log()  # pyike told strongSwan (RFC 7296 §2.21.2)
        reasons = [f["reason"] for f in env.pyike.stats()["recent_failures"]]
        assert any("rejected (expired)" in reason for reason in reasons), reasons
    finally:
        env.clear()


def test_strongswan_presents_an_untrusted_certificate(env):
    stranger = LabPki("ecdsa", org="stranger")
    cert, key = stranger.leaf(RIGHT["id"], stranger.gw2_kind)
    # strongSwan needs the stranger's intermediate to send it; pyike trusts neither CA.
    env.swan.install_credentials(
        "stranger", pem(cert), key_pem(key), [pem(stranger.root), pem(stranger.inter)]
    )
    env.swan.load("--load-creds")
    env.reconfigure("ecdsa", "aes256gcm16-prfsha256-x25519", "aes256gcm16", swan_cert="stranger.pem")
    before = len(env.swan.log())
    try:
        with pytest.raises(LabError, match="establishing CHILD_SA 'net' failed"):
            env.swan.initiate("net")
        assert "received AUTHENTICATION_FAILED notify error" in env.swan.log()[before:]
        reasons = [f["reason"] for f in env.pyike.stats()["recent_failures"]]
        wanted = "AUTHENTICATION_FAILED: certificate of peer %s rejected (untrusted)" % RIGHT["id"]
        assert any(reason.startswith(wanted) for reason in reasons), reasons
        assert env.pyike.sas() == []
    finally:
        env.clear()


def test_an_old_peer_without_rfc7427(env):
    """strongSwan with signature_authentication = no announces no hash algorithms (RFC 7427 §4)
    and signs with the classic methods: ECDSA falls back to RFC 4754 on its own; RSA needs
    auth_method: classic (PKCS#1 v1.5 with SHA-1), and without it pyike says so."""
    ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
    env.swan.stop()
    env.swan.configure(env.swan_conf("ecdsa", ike, esp), charon_options=["signature_authentication = no"])
    env.swan.start()
    try:
        env.reconfigure("ecdsa", ike, esp)
        assert "initiate completed successfully" in env.pyike.ctl("initiate", "s2s")
        ping_across(env.lab, count=2)
        (ike_sa,) = env.pyike.sas()
        assert ike_sa["remote_auth"] == "ECDSA_SHA384_P384 ecdsa-sha384"
        assert "authentication of '%s' with ECDSA-256 signature successful" % LEFT["id"] in env.swan.log()
        env.clear()

        env.reconfigure("rsa", ike, esp)
        with pytest.raises(LabError) as failed:
            env.pyike.ctl("initiate", "s2s")
        assert "cannot sign with our RSA-3072 certificate" in str(failed.value)
        assert "set auth_method: classic" in str(failed.value)
        env.clear()

        env.reconfigure("rsa", ike, esp, auth_method="classic")
        assert "initiate completed successfully" in env.swan.initiate("net")
        ping_across(env.lab, count=2)
        (ike_sa,) = env.pyike.sas()
        assert ike_sa["remote_auth"] == "RSA_SIG rsa-pkcs1-sha1"
        assert "authentication of '%s' with RSA signature successful" % LEFT["id"] in env.swan.log()
    finally:
        env.clear()
        env.swan.stop()
        env.swan.configure(env.swan_conf("rsa", ike, esp))
        env.swan.start()


def test_a_broken_credential_on_reload_is_refused_and_the_tunnel_stays(env):
    ike, esp = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
    env.reconfigure("ecdsa", ike, esp)
    try:
        assert "initiate completed successfully" in env.pyike.ctl("initiate", "s2s")
        (before,) = env.pyike.sas()
        # The RSA family's key with the ECDSA certificate: it does not belong to it.
        env.pyike.write_config(env.pyike_conf("ecdsa", ike, esp, private_key="%s/gw1-rsa.key" % KEY_DIR))
        with pytest.raises(LabError) as refused:
            env.pyike.ctl("reload")
        message = str(refused.value)
        assert "reload refused, the running configuration stays" in message
        assert (
            "connections.s2s.private_key: %s/gw1-rsa.key: the private key does not belong to certificate"
            % (KEY_DIR)
            in message
        )
        # A key file that others may read is refused too, naming the file and the mode.
        env.pyike.write_file("%s/loose.key" % KEY_DIR, key_pem(env.loose_key), "0644")
        env.pyike.write_config(env.pyike_conf("ecdsa", ike, esp, private_key="%s/loose.key" % KEY_DIR))
        with pytest.raises(LabError, match=r"loose\.key is accessible by group or others \(mode 0644\)"):
            env.pyike.ctl("reload")
        (after,) = env.pyike.sas()
        assert after["ike_sa"] == before["ike_sa"] and after["state"] == "ESTABLISHED"
        ping_across(env.lab, count=2)
        body = "".join(key_pem(env.loose_key).decode().splitlines()[1:-1])
        assert body[:48] not in env.pyike.log() and body[-48:] not in env.pyike.log()
    finally:
        env.pyike.write_config(env.pyike_conf("ecdsa", ike, esp))
        env.pyike.ctl("reload")
        env.clear()
