# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Certificates of the gateways whose tunnels use ``auth: pubkey``, checked on the controller.

Each credential variable (``ipsec_certificate``, ``ipsec_private_key``, each entry of
``ipsec_ca_certificates``) is PEM text or a path that ``read_file`` turns into bytes (the action
plugin looks paths up like the copy module does).  The checks are the ones a gateway would
otherwise fail at in IKE_AUTH, reported before anything is deployed: the key belongs to the
certificate, the certificate carries the gateway's identity, and the peer at the other end of
each tunnel trusts it (path validation with the engine's verifier, at the current time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._engine import (
    CertError,
    LocalCredential,
    format_path,
    identity_matches,
    parse_certificates,
    parse_identity,
    parse_private_key,
    subject_text,
    to_der,
    verify_peer,
)

PEM_MARK = "-----BEGIN"
VARIABLES = ("ipsec_certificate", "ipsec_private_key", "ipsec_ca_certificates")

ReadFile = Callable[[str], bytes]


def read_local_file(path: str) -> bytes:
    """The default ``read_file``: a path on this machine."""
    with open(path, "rb") as handle:
        return handle.read()


@dataclass
class HostCredential:
    """One gateway's certificate chain (PEM), private key (PEM, never shown) and CA bundle (PEM)."""

    certificate_pem: str
    ca_pem: str
    private_key_pem: str = field(repr=False)
    credential: Any = field(repr=False)  # LocalCredential
    trust_anchors: List[Any] = field(repr=False)  # x509.Certificate


class CredentialProblem(Exception):
    """A credential value that cannot be used; ``path`` is the element at fault."""

    def __init__(self, path: Tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _text(value: str, path: Tuple[Any, ...], read_file: ReadFile, what: str) -> Tuple[str, str]:
    """(PEM text, where it came from) of a credential variable."""
    if value.lstrip().startswith(PEM_MARK):
        return value, "the PEM text"
    try:
        data = read_file(value)
    except OSError as error:
        raise CredentialProblem(
            path, "cannot read the %s file %s: %s" % (what, value, error.strerror or error)
        ) from None
    try:
        return data.decode("ascii"), value
    except UnicodeDecodeError:
        raise CredentialProblem(path, "%s is not a PEM file (it is not ASCII text)" % value) from None


def load_host(values: Dict[str, Any], prefix: Tuple[Any, ...], read_file: ReadFile) -> HostCredential:
    """The checked credential of one gateway from its host variables; raises CredentialProblem."""
    cert_path = (*prefix, "ipsec_certificate")
    key_path = (*prefix, "ipsec_private_key")
    cert_text, cert_source = _text(values["ipsec_certificate"], cert_path, read_file, "certificate")
    key_text, key_source = _text(values["ipsec_private_key"], key_path, read_file, "private key")
    try:
        chain = parse_certificates(cert_text.encode("ascii"), cert_source)
    except CertError as error:
        raise CredentialProblem(cert_path, str(error)) from None
    try:
        key = parse_private_key(key_text.encode("ascii"), key_source)
    except CertError as error:
        raise CredentialProblem(key_path, str(error)) from None
    try:
        credential = LocalCredential(chain[0], key, chain[1:], cert_source)
    except CertError as error:
        raise CredentialProblem(key_path, str(error)) from None
    anchors = []
    ca_texts = []
    for index, value in enumerate(values["ipsec_ca_certificates"]):
        ca_path = (*prefix, "ipsec_ca_certificates", index)
        text, source = _text(value, ca_path, read_file, "CA certificate")
        try:
            anchors.extend(parse_certificates(text.encode("ascii"), source))
        except CertError as error:
            raise CredentialProblem(ca_path, str(error)) from None
        ca_texts.append(text.strip() + "\n")
    return HostCredential(cert_text.strip() + "\n", "".join(ca_texts), key_text, credential, anchors)


def identity_problem(credential: HostCredential, identity_text: str) -> Optional[str]:
    """Why the gateway's certificate does not carry its identity (ipsec_id or its address), if so."""
    identity = parse_identity(identity_text)
    certificate = credential.credential.certificate
    if identity is None or identity_matches(certificate, identity):
        return None
    return (
        "the certificate %s does not carry the gateway's identity %s (its ipsec_id, or its "
        "ipsec_public_address when unset): add it to the subjectAltName or set ipsec_id to a name it has"
        % (subject_text(certificate), identity_text)
    )


def trust_problem(
    subject: HostCredential, identity_text: str, verifier: HostCredential, now: Optional[float] = None
) -> Optional[str]:
    """Why ``verifier``'s CA certificates do not accept ``subject``'s certificate, if they don't."""
    identity = parse_identity(identity_text)
    if identity is None:
        return None
    credential = subject.credential
    try:
        verify_peer(
            to_der(credential.certificate),
            [to_der(cert) for cert in credential.intermediates],
            verifier.trust_anchors,
            time.time() if now is None else now,
            identity,
        )
    except CertError as error:
        return str(error)
    return None


def check_credentials(inv: Any) -> None:
    """Every gateway of a pubkey tunnel has a usable certificate, and each peer trusts it
    (``inv`` is the :class:`~.resolve.Inventory` being checked)."""
    users: Dict[str, Any] = {}
    for tunnel in inv.tunnels:
        for end in (tunnel.left, tunnel.right):
            if tunnel.auth == "pubkey" and end.managed and end.host in inv.gateways:
                users.setdefault(end.host or "", tunnel)
    for host, tunnel in users.items():
        values = inv.raw_hosts.get(host, {})
        prefix: Tuple[Any, ...] = ("hostvars", host)
        missing = [name for name in VARIABLES if name not in values]
        if missing:
            inv.add(
                prefix,
                "%s %s required: tunnel %r (%s) uses auth: pubkey"
                % (
                    " and ".join(missing),
                    "is" if len(missing) == 1 else "are",
                    tunnel.name,
                    format_path(tunnel.path),
                ),
            )
            continue
        authorities = values["ipsec_ca_certificates"]
        if not (
            isinstance(values["ipsec_certificate"], str)
            and isinstance(values["ipsec_private_key"], str)
            and isinstance(authorities, list)
            and authorities
            and all(isinstance(item, str) and item for item in authorities)
        ):
            continue  # the schema has said what is wrong
        try:
            credential = load_host(values, prefix, inv.read_file)
        except CredentialProblem as problem:
            inv.add(problem.path, problem.message)
            continue
        inv.secrets.append(credential.private_key_pem)
        gateway = inv.gateways[host]
        identity = gateway.id or gateway.address
        problem_text = identity_problem(credential, identity) if identity else None
        if problem_text:
            inv.add((*prefix, "ipsec_certificate"), problem_text)
            continue
        inv.credentials[host] = credential
    for tunnel in inv.tunnels:
        for _side, mine, other in tunnel.ends() if tunnel.auth == "pubkey" else ():
            subject, verifier = inv.credentials.get(mine.host or ""), inv.credentials.get(other.host or "")
            identity = mine.id or mine.address
            if subject is None or verifier is None or not identity:
                continue
            problem_text = trust_problem(subject, identity, verifier, inv.now)
            if problem_text:
                inv.add(
                    tunnel.path,
                    "%s would refuse the certificate of %s: %s" % (other.host, mine.host, problem_text),
                )
