"""IKE identities (RFC 7296 §3.5) from strongSwan's identity strings, and back to text.

The rules follow strongSwan's ``identification_create_from_string``:

* a type prefix forces the type: ``ipv4:``, ``ipv6:``, ``fqdn:``/``dns:``,
  ``email:``/``rfc822:``/``userfqdn:``, ``asn1dn:``, ``asn1gn:``, ``keyid:``, or a numeric
  ``{N}:``; ``#hex`` after a prefix gives binary data;
* a string with ``=`` is a distinguished name (``C=CH, O=Example, CN=gw1`` or
  ``/C=CH/O=Example/CN=gw1``), DER-encoded in the order written, the way strongSwan's
  ``atodn`` does it (PrintableString where the value allows it, else UTF8String; IA5String for
  e-mail attributes);
* without ``@``: an IPv4 or IPv6 address gives ID_IPV4_ADDR / ID_IPV6_ADDR, anything else
  ID_FQDN; ``%any`` (also ``*``, ``0.0.0.0``, ``::``) means any identity;
* with ``@``: ``@#hex`` is ID_KEY_ID, ``@@user@host`` and ``user@host`` are ID_RFC822_ADDR,
  ``@name`` is ID_FQDN ``name``.

Where strongSwan silently falls back to ID_KEY_ID (an unknown DN attribute, a string with a
colon that is no IPv6 address), this parser refuses the string instead, so typos surface.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ..ids import IdType
from ..text import printable

try:  # private, but present from cryptography 2.x to 50; without it the default string types apply
    from cryptography.x509.name import _ASN1Type
except ImportError:  # pragma: no cover
    _ASN1Type = None


class IdentityError(ValueError):
    """An identity string that cannot be used."""


ANY_IDENTITIES = ("%any", "%any6", "*", "0.0.0.0", "::", "0::0")  # noqa: S104 - identities, not binds

_PRINTABLE = "printable"  # PrintableString if the value allows, else UTF8String
_IA5 = "ia5"

# strongSwan's x501rdns table: keyword -> (OID, string type).
_RDN_TABLE: List[Tuple[str, str, str]] = [
    ("UID", "0.9.2342.19200300.100.1.1", _PRINTABLE),
    ("DC", "0.9.2342.19200300.100.1.25", _PRINTABLE),
    ("CN", "2.5.4.3", _PRINTABLE),
    ("S", "2.5.4.4", _PRINTABLE),
    ("SN", "2.5.4.5", _PRINTABLE),
    ("serialNumber", "2.5.4.5", _PRINTABLE),
    ("C", "2.5.4.6", _PRINTABLE),
    ("L", "2.5.4.7", _PRINTABLE),
    ("ST", "2.5.4.8", _PRINTABLE),
    ("O", "2.5.4.10", _PRINTABLE),
    ("OU", "2.5.4.11", _PRINTABLE),
    ("T", "2.5.4.12", _PRINTABLE),
    ("D", "2.5.4.13", _PRINTABLE),
    ("N", "2.5.4.41", _PRINTABLE),
    ("G", "2.5.4.42", _PRINTABLE),
    ("I", "2.5.4.43", _PRINTABLE),
    ("ID", "2.5.4.45", _PRINTABLE),
    ("dnQualifier", "2.5.4.46", _PRINTABLE),
    ("EN", "2.16.840.1.113730.3.1.3", _PRINTABLE),
    ("employeeNumber", "2.16.840.1.113730.3.1.3", _PRINTABLE),
    ("E", "1.2.840.113549.1.9.1", _IA5),
    ("Email", "1.2.840.113549.1.9.1", _IA5),
    ("emailAddress", "1.2.840.113549.1.9.1", _IA5),
    ("UN", "1.2.840.113549.1.9.2", _IA5),
    ("unstructuredName", "1.2.840.113549.1.9.2", _IA5),
    ("UA", "1.2.840.113549.1.9.8", _PRINTABLE),
    ("unstructuredAddress", "1.2.840.113549.1.9.8", _PRINTABLE),
]
_RDN_BY_KEY: Dict[str, Tuple[str, str]] = {key.lower(): (oid, kind) for key, oid, kind in _RDN_TABLE}


def _names_by_oid() -> Dict[str, str]:
    names: Dict[str, str] = {}
    for key, oid, _kind in _RDN_TABLE:
        names.setdefault(oid, key)  # the first, shortest keyword of each OID
    return names


_RDN_NAME_BY_OID = _names_by_oid()

_PRINTABLE_CHARS = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")

_PREFIXES: List[Tuple[str, IdType]] = [
    ("ipv4:", IdType.ID_IPV4_ADDR),
    ("ipv6:", IdType.ID_IPV6_ADDR),
    ("rfc822:", IdType.ID_RFC822_ADDR),
    ("email:", IdType.ID_RFC822_ADDR),
    ("userfqdn:", IdType.ID_RFC822_ADDR),
    ("fqdn:", IdType.ID_FQDN),
    ("dns:", IdType.ID_FQDN),
    ("asn1dn:", IdType.ID_DER_ASN1_DN),
    ("asn1gn:", IdType.ID_DER_ASN1_GN),
    ("keyid:", IdType.ID_KEY_ID),
]
_NUMERIC_PREFIX = re.compile(r"^\{(\d{1,3})\}:(.*)$", re.DOTALL)


class Identity(NamedTuple):
    """An IKE identity as sent in IDi/IDr: ``(IdType, identification data)``."""

    id_type: IdType
    data: bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse an identity string; ``%any`` is refused here (see :func:`parse_identity`)."""
        identity = parse_identity(text, allow_any=False)
        if identity is None:  # pragma: no cover - parse_identity raises instead
            raise IdentityError("%r matches any identity" % text)
        return identity

    @classmethod
    def from_address(cls, address: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> Identity:
        id_type = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, address.packed)

    def __str__(self) -> str:
        return identity_text(self.id_type, self.data)


def parse_identity(text: str, allow_any: bool = False) -> Optional[Identity]:
    """Parse an identity string (module docstring); None stands for %any when ``allow_any``."""
    if not isinstance(text, str):
        raise IdentityError("an identity must be a string, not %s" % type(text).__name__)
    value = text.strip()
    if not value or value in ANY_IDENTITIES:
        if allow_any:
            return None
        raise IdentityError("%r matches any identity; give this side's own identity" % text)
    lowered = value.lower()
    for prefix, id_type in _PREFIXES:
        if lowered.startswith(prefix):
            return _typed(id_type, value[len(prefix) :], text)
    numeric = _NUMERIC_PREFIX.match(value)
    if numeric:
        number = int(numeric.group(1))
        try:
            id_type = IdType(number)
        except ValueError:
            raise IdentityError("unknown identity type {%d} in %r" % (number, text)) from None
        return _typed(id_type, numeric.group(2), text)
    if "=" in value:
        return Identity(IdType.ID_DER_ASN1_DN, encode_dn(value))
    if "@" not in value:
        if ":" not in value:
            try:
                return Identity.from_address(ipaddress.IPv4Address(value))
            except ValueError:
                return Identity(IdType.ID_FQDN, _text_bytes(value, "FQDN", text))
        try:
            return Identity.from_address(ipaddress.IPv6Address(value))
        except ValueError:
            raise IdentityError(
                "%r is neither an IPv6 address nor a name; use a prefix such as keyid: or fqdn:" % text
            ) from None
    if value.startswith("@#"):
        return Identity(IdType.ID_KEY_ID, _hex(value[2:], text))
    if value.startswith("@@"):
        return Identity(IdType.ID_RFC822_ADDR, _text_bytes(value[2:], "e-mail address", text))
    if value.startswith("@"):
        return Identity(IdType.ID_FQDN, _text_bytes(value[1:], "FQDN", text))
    local, _at, domain = value.partition("@")
    if not local or not domain:
        raise IdentityError("%r is not a user@host identity" % text)
    return Identity(IdType.ID_RFC822_ADDR, _text_bytes(value, "e-mail address", text))


def _typed(id_type: IdType, rest: str, text: str) -> Identity:
    if rest.startswith("#"):
        data = _hex(rest[1:], text)
        sizes = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}
        if id_type in sizes and len(data) != sizes[id_type]:
            raise IdentityError("%r: %s needs %d bytes" % (text, id_type.name, sizes[id_type]))
        return Identity(id_type, data)
    if id_type == IdType.ID_IPV4_ADDR:
        try:
            return Identity.from_address(ipaddress.IPv4Address(rest.strip()))
        except ValueError:
            raise IdentityError("%r is not an IPv4 address" % text) from None
    if id_type == IdType.ID_IPV6_ADDR:
        try:
            return Identity.from_address(ipaddress.IPv6Address(rest.strip()))
        except ValueError:
            raise IdentityError("%r is not an IPv6 address" % text) from None
    if id_type == IdType.ID_DER_ASN1_DN:
        return Identity(id_type, encode_dn(rest))
    if id_type == IdType.ID_DER_ASN1_GN:
        raise IdentityError("%r: an ID_DER_ASN1_GN identity needs binary data ('asn1gn:#hex')" % text)
    if id_type == IdType.ID_FQDN:
        return Identity(id_type, _text_bytes(rest, "FQDN", text))
    if id_type == IdType.ID_RFC822_ADDR:
        return Identity(id_type, _text_bytes(rest, "e-mail address", text))
    if not rest:
        raise IdentityError("%r has no identification data" % text)
    return Identity(id_type, rest.encode("utf-8"))


def _hex(digits: str, text: str) -> bytes:
    digits = digits.strip()
    if digits.lower().startswith("0x"):
        digits = digits[2:]
    try:
        data = binascii.unhexlify(digits.replace(":", ""))
    except (binascii.Error, ValueError):
        raise IdentityError("%r: %r is not hexadecimal data" % (text, digits)) from None
    if not data:
        raise IdentityError("%r has no identification data" % text)
    return data


def _text_bytes(value: str, what: str, text: str) -> bytes:
    if not value:
        raise IdentityError("%r: the %s is empty" % (text, what))
    if any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise IdentityError("%r: a %s must be printable ASCII without spaces" % (text, what))
    return value.encode("ascii")


def encode_dn(text: str) -> bytes:
    """DER encoding of a distinguished name string, RDNs in the order written."""
    body = text.strip()
    separator = ","
    if body.startswith("/"):
        separator, body = "/", body[1:]
    attributes = []
    for part in body.split(separator):
        part = part.strip()
        if not part:
            raise IdentityError("%r: empty relative distinguished name" % text)
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise IdentityError("%r: %r is not of the form ATTRIBUTE=value" % (text, part))
        entry = _RDN_BY_KEY.get(key.lower())
        if entry is None:
            known = ", ".join(key for key, _oid, _kind in _RDN_TABLE)
            raise IdentityError("%r: unknown DN attribute %r (known: %s)" % (text, key, known))
        if not value:
            raise IdentityError("%r: attribute %s has an empty value" % (text, key))
        oid, kind = entry
        attributes.append(_attribute(ObjectIdentifier(oid), kind, key, value, text))
    if not attributes:
        raise IdentityError("%r: empty distinguished name" % text)
    return x509.Name(attributes).public_bytes()


def _attribute(oid: ObjectIdentifier, kind: str, key: str, value: str, text: str) -> x509.NameAttribute:
    asn1_type = None
    if kind == _IA5:
        if not value.isascii():
            raise IdentityError("%r: %s must be ASCII" % (text, key))
        asn1_type = _ASN1Type.IA5String if _ASN1Type is not None else None
    elif _ASN1Type is not None:
        printable = bool(_PRINTABLE_CHARS.match(value))
        asn1_type = _ASN1Type.PrintableString if printable else _ASN1Type.UTF8String
    if oid == NameOID.COUNTRY_NAME and not re.match(r"^[A-Za-z]{2}$", value):
        raise IdentityError("%r: C must be a two-letter country code" % text)
    try:
        if asn1_type is None:
            return x509.NameAttribute(oid, value)
        return x509.NameAttribute(oid, value, asn1_type)
    except ValueError as error:
        raise IdentityError("%r: bad value for %s: %s" % (text, key, error)) from None


# -- back to text ----------------------------------------------------------------------------


def _der_item(data: bytes, offset: int) -> Tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``offset``."""
    if offset + 2 > len(data):
        raise ValueError("truncated")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _oid_text(content: bytes) -> str:
    if not content:
        raise ValueError("empty OID")
    arcs: List[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def dn_text(data: bytes) -> str:
    """strongSwan-style text of a DER distinguished name: ``C=CH, O=Example, CN=gw1``."""
    tag, start, end = _der_item(data, 0)
    if tag != 0x30 or end != len(data):
        raise ValueError("not a DER SEQUENCE")
    parts = []
    offset = start
    while offset < end:
        set_tag, set_start, set_end = _der_item(data, offset)
        if set_tag != 0x31:
            raise ValueError("RDN is not a SET")
        inner = set_start
        while inner < set_end:
            seq_tag, seq_start, seq_end = _der_item(data, inner)
            oid_tag, oid_start, oid_end = _der_item(data, seq_start)
            if seq_tag != 0x30 or oid_tag != 0x06:
                raise ValueError("bad attribute")
            oid = _oid_text(data[oid_start:oid_end])
            _value_tag, value_start, value_end = _der_item(data, oid_end)
            value = data[value_start:value_end].decode("utf-8", "replace")
            parts.append("%s=%s" % (_RDN_NAME_BY_OID.get(oid, oid), value))
            inner = seq_end
        offset = set_end
    return ", ".join(parts)


def identity_text(id_type: int, data: bytes) -> str:
    """Readable text of an identity, as strongSwan prints it; names are escaped (a peer chose them)."""
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR) and len(data) in (4, 16):
        return str(ipaddress.ip_address(data))
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        return printable(data.decode("ascii", "backslashreplace"))
    if id_type == IdType.ID_DER_ASN1_DN:
        try:
            return printable(dn_text(data))
        except ValueError:
            return "#" + data.hex()
    if id_type == IdType.ID_KEY_ID and data and all(0x20 <= b <= 0x7E for b in data):
        return data.decode("ascii")
    return "#" + data.hex()
