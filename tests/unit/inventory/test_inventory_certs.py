"""Tunnels with auth: pubkey: certificate variables read, checked against each other, and deployed.

A real PKI (tests/unit/certs/certs_pki.py): one CA, gw1 with an RSA certificate, gw2 with an ECDSA
one.  Checks run at the PKI's fixed clock (``now``), so validity windows are deterministic.
"""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyike_inventory import (
    CREDENTIAL_FILES,
    Inventory,
    build_configs,
    build_credentials,
    build_private_keys,
    build_secrets,
    check,
    psk_refs,
)
from unit.certs.certs_pki import NOW, PAST, key, make_cert, name, pem

TIMESTAMP = NOW.timestamp()


def _key_pem(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _san(fqdn: str, address: str):
    return [x509.DNSName(fqdn), x509.IPAddress(ipaddress.ip_address(address))]


class Site:
    """A CA and two gateway certificates; ``vpn()`` the inventory that uses them."""

    def __init__(self, ca_kind: str = "p256") -> None:
        self.ca_key = key(ca_kind, 11)
        self.ca = make_cert(name("VPN Root CA"), self.ca_key, ca=True, serial=11)
        self.gw1_key = key("rsa2048", 12)
        self.gw1 = self.issue("gw1.example.org", "192.0.2.1", self.gw1_key)
        self.gw2_key = key("p256", 13)
        self.gw2 = self.issue("gw2.example.org", "198.51.100.1", self.gw2_key)

    def issue(self, fqdn: str, address: str, subject_key, **options) -> x509.Certificate:
        return make_cert(name(fqdn), subject_key, self.ca, self.ca_key, san=_san(fqdn, address), **options)

    def host(self, address: str, fqdn: str, certificate, private_key, subnet: str, **extra):
        values = {
            "ipsec_public_address": address,
            "ipsec_id": fqdn,
            "ipsec_lan_subnets": [subnet],
            "ipsec_certificate": pem(certificate).decode(),
            "ipsec_private_key": _key_pem(private_key),
            "ipsec_ca_certificates": [pem(self.ca).decode()],
        }
        values.update(extra)
        return values

    def vpn(self, tunnel=None, gw1=None, gw2=None):
        data = {
            "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
            "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
            "ipsec_tunnels": [
                dict(
                    {"name": "t1", "left": "gw1", "right": "gw2", "ike_group": "ike", "esp_group": "esp"},
                    auth="pubkey",
                    **(tunnel or {}),
                )
            ],
        }
        hosts = {
            "gw1": self.host(
                "192.0.2.1", "gw1.example.org", self.gw1, self.gw1_key, "10.1.0.0/24", **(gw1 or {})
            ),
            "gw2": self.host(
                "198.51.100.1", "gw2.example.org", self.gw2, self.gw2_key, "10.2.0.0/24", **(gw2 or {})
            ),
        }
        return data, hosts


@pytest.fixture(scope="module")
def site():
    return Site()


def problems_of(data, hosts, **options):
    return [str(p) for p in Inventory(data, hosts, now=TIMESTAMP, **options).problems]


def test_a_pubkey_tunnel_gets_certificate_paths_and_no_psk(site):
    inventory = Inventory(*site.vpn(), now=TIMESTAMP)
    assert inventory.problems == []
    configs = build_configs(inventory, include_secrets=True)
    for host in ("gw1", "gw2"):
        conn = configs[host]["connections"]["t1"]
        assert conn["auth"] == "pubkey"
        assert conn["cert"] == CREDENTIAL_FILES["certificate"]
        assert conn["private_key"] == CREDENTIAL_FILES["private_key"]
        assert conn["ca_certs"] == [CREDENTIAL_FILES["ca_certificates"]]
        assert "psk" not in conn and "psk_file" not in conn
    credentials = build_credentials(inventory)
    assert credentials["gw1"]["certificate"] == pem(site.gw1).decode()
    assert credentials["gw2"]["ca_certificates"] == pem(site.ca).decode()
    keys = build_private_keys(inventory)
    assert keys["gw1"] == _key_pem(site.gw1_key) and keys["gw2"] == _key_pem(site.gw2_key)
    assert build_secrets(inventory) == {"gw1": {}, "gw2": {}}
    assert psk_refs(inventory) == {"gw1": {}, "gw2": {}}
    assert inventory.tunnels[0].summary()["auth"] == "pubkey"
    assert "PRIVATE KEY" not in repr(inventory.credentials)


def test_the_engine_loads_the_generated_pubkey_configurations(site):
    assert check(Inventory(*site.vpn(), now=TIMESTAMP)) == []


def test_certificate_variables_are_required(site):
    data, hosts = site.vpn()
    del hosts["gw1"]["ipsec_private_key"]
    del hosts["gw2"]["ipsec_ca_certificates"]
    del hosts["gw2"]["ipsec_certificate"]
    assert problems_of(data, hosts) == [
        "hostvars.gw1: ipsec_private_key is required: tunnel 't1' (ipsec_tunnels[0]) uses auth: pubkey",
        "hostvars.gw2: ipsec_certificate and ipsec_ca_certificates are required: tunnel 't1' "
        "(ipsec_tunnels[0]) uses auth: pubkey",
    ]


def test_a_psk_with_pubkey_is_refused_and_psk_tunnels_still_need_one(site):
    data, hosts = site.vpn(tunnel={"psk": "not-used-here"})
    data["ipsec_tunnels"].append(
        {
            "name": "t2",
            "left": "gw1",
            "right": {"address": "203.0.113.9", "subnets": ["10.9.0.0/24"]},
            "ike_group": "ike",
            "esp_group": "esp",
        }
    )
    assert problems_of(data, hosts) == [
        "ipsec_tunnels[0].psk: a pre-shared key is not used with auth: pubkey (remove it or set auth: psk)",
        "ipsec_tunnels[1]: one of psk or psk_file is required",
    ]


def test_a_key_of_another_certificate_is_refused(site):
    data, hosts = site.vpn(gw1={"ipsec_private_key": _key_pem(site.gw2_key)})
    (problem,) = problems_of(data, hosts)
    assert problem.startswith("hostvars.gw1.ipsec_private_key: the PEM text: the private key does not belong")
    assert "gw1.example.org" in problem


def test_a_certificate_without_the_gateway_identity_is_refused(site):
    data, hosts = site.vpn(gw1={"ipsec_id": "vpn1.example.org"})
    assert problems_of(data, hosts) == [
        "hostvars.gw1.ipsec_certificate: the certificate CN=gw1.example.org,O=pyike test,C=CH does not carry "
        "the gateway's identity vpn1.example.org (its ipsec_id, or its ipsec_public_address when unset): add "
        "it to the subjectAltName or set ipsec_id to a name it has"
    ]


def test_a_peer_that_does_not_trust_the_ca_is_reported_per_tunnel(site):
    other_key = key("p256", 14)
    other_ca = make_cert(name("Other CA"), other_key, ca=True, serial=14)
    data, hosts = site.vpn(gw2={"ipsec_ca_certificates": [pem(other_ca).decode()]})
    (problem,) = problems_of(data, hosts)
    assert problem.startswith("ipsec_tunnels[0]: gw2 would refuse the certificate of gw1: ")
    assert "CN=gw1.example.org" in problem


def test_an_expired_certificate_is_reported_before_deployment(site):
    expired = site.issue("gw2.example.org", "198.51.100.1", site.gw2_key, validity=PAST, serial=99)
    data, hosts = site.vpn(gw2={"ipsec_certificate": pem(expired).decode()})
    (problem,) = problems_of(data, hosts)
    assert problem.startswith("ipsec_tunnels[0]: gw1 would refuse the certificate of gw2: ")
    assert "expired" in problem


def test_paths_are_read_with_read_file_and_a_missing_file_is_named(site, tmp_path):
    (tmp_path / "gw1.pem").write_bytes(pem(site.gw1))
    (tmp_path / "ca.pem").write_bytes(pem(site.ca))
    reads = []

    def read_file(path):
        reads.append(path)
        with open(tmp_path / path, "rb") as handle:
            return handle.read()

    data, hosts = site.vpn(gw1={"ipsec_certificate": "gw1.pem", "ipsec_ca_certificates": ["ca.pem"]})
    inventory = Inventory(data, hosts, now=TIMESTAMP, read_file=read_file)
    assert inventory.problems == [] and sorted(reads) == ["ca.pem", "gw1.pem"]
    assert build_credentials(inventory)["gw1"]["certificate"] == pem(site.gw1).decode()

    data, hosts = site.vpn(gw1={"ipsec_ca_certificates": ["ca.pem", "missing.pem"]})
    (problem,) = problems_of(data, hosts, read_file=read_file)
    assert problem.startswith(
        "hostvars.gw1.ipsec_ca_certificates[1]: cannot read the CA certificate file missing.pem: "
    )


def test_private_key_text_never_reaches_a_problem(site):
    bad_key = _key_pem(site.gw1_key).replace("-----END PRIVATE KEY-----", "")
    data, hosts = site.vpn(gw1={"ipsec_private_key": bad_key})
    problems = problems_of(data, hosts)
    assert problems and all("MII" not in p and bad_key[40:80] not in p for p in problems)
    assert problems == [
        "hostvars.gw1.ipsec_private_key: the PEM text: no private key block found (PEM blocks: none readable)"
    ]
