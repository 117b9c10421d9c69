"""auth: pubkey in the configuration: our certificate, its chain and private key, the CAs for the peer."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from cryptography import x509

from ..crypto.certs import (
    CertLoadError,
    LocalCredential,
    is_ca,
    load_ca_bundle,
    load_certificates,
    parse_private_key,
    subject_text,
)
from ..crypto.certs_verify import identity_matches, san_text
from ..ids import IdType
from . import schema as defaults
from .build_base import BuilderBase
from .errors import Path
from .identity import Identity
from .model import Endpoint


class CredentialParts(BuilderBase):
    """The builder's pubkey part."""

    def credentials(self, path: Path, raw: Dict[str, Any]) -> Optional[_Credentials]:
        """``auth: pubkey``: our certificate (and chain), its private key and the CA certificates.

        Every file is read now, so a broken one refuses the configuration (at start and on
        reload) with the file and the field named; no message carries key material.
        """
        get = self._get
        cert_path = self.file_path(get(raw, "cert", path, "str"))
        chain_text = get(raw, "cert_chain", path, "str", None)
        key_text = get(raw, "private_key", path, "str")
        if "-----BEGIN" in key_text or "\n" in key_text:
            self.secret_texts.append(key_text)
            self.add(
                (*path, "private_key"),
                "must be the path of the key file, not the key itself (keep the key out of the configuration)",
            )
            return None
        key_path = self.file_path(key_text)
        ca_texts = get(raw, "ca_certs", path, "list")
        method = get(raw, "auth_method", path, "str", defaults.DEFAULT_SIGNATURE_METHOD)
        chain_path = None if chain_text is None else self.file_path(chain_text)
        ok = True
        certificate, intermediates = None, []
        try:
            certificate, *intermediates = load_certificates(cert_path)
        except CertLoadError as error:
            self.add((*path, "cert"), str(error))
            ok = False
        if chain_path is not None:
            try:
                intermediates += load_certificates(chain_path)
            except CertLoadError as error:
                self.add((*path, "cert_chain"), str(error))
                ok = False
        key = None
        key_data = self.read_protected((*path, "private_key"), key_path)
        if key_data is None:
            ok = False
        else:
            try:
                key = parse_private_key(key_data, key_path)
            except CertLoadError as error:
                message = str(error)
                if "the private key is encrypted" in message:
                    message = "%s: the private key is encrypted; store it unencrypted (chmod 600)" % key_path
                self.add((*path, "private_key"), message)
                ok = False
        ca_certs: List[Any] = []
        ca_files: List[str] = []
        for index, text in enumerate(ca_texts):
            ca_path = self.file_path(text)
            ca_files.append(ca_path)
            try:
                found = load_ca_bundle(ca_path)
            except CertLoadError as error:
                self.add((*path, "ca_certs", index), str(error))
                ok = False
                continue
            for anchor in found:
                problem = _not_a_ca(anchor)
                if problem:
                    self.add((*path, "ca_certs", index), "%s: %s" % (ca_path, problem))
                    ok = False
                elif anchor not in ca_certs:
                    ca_certs.append(anchor)
        if not ok or certificate is None or key is None:
            return None
        try:
            credential = LocalCredential(certificate, key, intermediates, source=key_path)
        except CertLoadError as error:
            self.add((*path, "private_key"), str(error))
            return None
        return _Credentials(
            credential, tuple(ca_certs), cert_path, chain_path, key_path, tuple(ca_files), method
        )

    def local_identity(
        self, path: Path, raw: Dict[str, Any], local: Endpoint, certificate: Any
    ) -> Optional[Endpoint]:
        """With a certificate the local id must be one of its identities (RFC 4945 §3.1), or the peer
        rejects it; without ``local.id`` it is the certificate's subject DN, as strongSwan does."""
        explicit = isinstance(raw.get("local"), dict) and "id" in raw["local"]
        if not explicit:
            return dataclasses.replace(
                local, id=Identity(IdType.ID_DER_ASN1_DN, certificate.subject.public_bytes())
            )
        if local.id is not None and not identity_matches(certificate, local.id):
            self.add(
                (*path, "local", "id"),
                "%s is not an identity of the certificate %s (subjectAltName: %s); the peer would reject it"
                % (local.id, subject_text(certificate), san_text(certificate)),
            )
            return None
        return local


_PUBKEY_KEYS = ("cert", "cert_chain", "private_key", "ca_certs", "auth_method")


class _Credentials:
    """What ``auth: pubkey`` loaded, with the paths it came from."""

    def __init__(
        self,
        credential: LocalCredential,
        ca_certs: Tuple[Any, ...],
        cert: str,
        cert_chain: Optional[str],
        private_key: str,
        ca_files: Tuple[str, ...],
        auth_method: str,
    ) -> None:
        self.credential = credential
        self.ca_certs = ca_certs
        self.paths = (cert, cert_chain, private_key, ca_files)
        self.auth_method = auth_method

    def fields(self) -> Dict[str, Any]:
        cert, cert_chain, private_key, ca_files = self.paths
        return {
            "credential": self.credential,
            "ca_certs": self.ca_certs,
            "cert": cert,
            "cert_chain": cert_chain,
            "private_key": private_key,
            "ca_cert_files": ca_files,
            "auth_method": self.auth_method,
        }

    def __repr__(self) -> str:
        return "_Credentials(%r, %d CA certificate(s))" % (self.credential, len(self.ca_certs))


def _not_a_ca(certificate: Any) -> str:
    """Why ``certificate`` cannot be a trust anchor for peer certificates ("" if it can)."""
    if not is_ca(certificate):
        return (
            "certificate %s is not a CA certificate (its basicConstraints do not say cA); ca_certs lists "
            "the CAs that issue peer certificates, not the peer's own certificate" % subject_text(certificate)
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    if not usage.key_cert_sign:
        return "CA certificate %s has a keyUsage without keyCertSign" % subject_text(certificate)
    return ""
