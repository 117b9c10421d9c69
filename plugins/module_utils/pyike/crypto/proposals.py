"""Proposals: strongSwan proposal strings to :class:`ProposalSpec` and back.

A proposal (RFC 7296 §3.3) lists, per transform type, the acceptable transforms in order of
preference; several algorithms of one type are alternatives.  Strings follow strongSwan's
syntax: algorithm keywords joined by ``-``, several proposals separated by ``,``, e.g.
``aes256gcm16-prfsha256-x25519`` or ``aes128-sha256-sha384-ecp256-x25519``.  Additional key
exchanges (RFC 9370) use strongSwan 6's ``ke1_mlkem768`` … ``ke7_…`` keywords.

Rules enforced (after strongSwan's ``check_proposal``, stricter where it would silently drop a
keyword the user wrote):

* IKE needs ENCR, PRF and a key exchange method, and INTEG unless the cipher is an AEAD.
  Without a ``prf…`` keyword the PRFs follow the integrity keywords (``sha256`` → ``prfsha256``).
* ESP needs ENCR and INTEG unless AEAD; a key exchange method in ESP means PFS; ``noesn`` is
  added when neither ``esn`` nor ``noesn`` is given.
* AEAD and non-AEAD ciphers cannot share a proposal; an AEAD proposal carries no INTEG.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..ids import DhId, EncrId, EsnId, IntegId, ProtocolId, TransformType
from .errors import ProposalError
from .transforms import (
    ADDITIONAL_KE_TYPES,
    ENCR_TRANSFORMS,
    ESN_NAMES,
    INTEG_TRANSFORMS,
    KE_TRANSFORMS,
    PRF_TRANSFORMS,
    transform_name,
)

Transform = Tuple[int, Optional[int]]
"""(transform id, Key Length attribute in bits or None)."""

# Canonical order of transform types in a proposal string (strongSwan prints ENCR, INTEG, PRF, KE).
_STRING_ORDER: Tuple[TransformType, ...] = (
    TransformType.ENCR,
    TransformType.INTEG,
    TransformType.PRF,
    TransformType.DH,
    *ADDITIONAL_KE_TYPES,
    TransformType.ESN,
)

_PROTOCOL_NAMES = {ProtocolId.IKE: "IKE", ProtocolId.ESP: "ESP", ProtocolId.AH: "AH"}


def _is_aead_encr(encr_id: int, key_length: Optional[int]) -> Optional[bool]:
    """True/False for known ENCR transforms, None for ids this implementation does not know."""
    entry = ENCR_TRANSFORMS.get((encr_id, key_length))
    if entry is not None:
        return entry.aead
    if encr_id in (EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305):
        return True
    return None


class ProposalSpec:
    """One proposal: protocol plus, per transform type, the ordered alternatives.

    Transform types and ids are plain ints (IntEnum members where known), so a proposal
    received from a peer with unknown transforms can be represented as well.
    """

    __slots__ = ("_transforms", "protocol")

    def __init__(self, protocol: int, transforms: Mapping[int, Iterable[Transform]]) -> None:
        try:
            self.protocol: int = ProtocolId(protocol)
        except ValueError:
            self.protocol = int(protocol)
        normalized: Dict[int, Tuple[Transform, ...]] = {}
        for ttype, entries in transforms.items():
            seen: List[Transform] = []
            for transform_id, key_length in entries:
                item = (int(transform_id), None if key_length is None else int(key_length))
                if item not in seen:
                    seen.append(item)
            if seen:
                normalized[int(ttype)] = tuple(seen)
        self._transforms = dict(sorted(normalized.items()))

    def get(self, transform_type: int) -> Tuple[Transform, ...]:
        """Alternatives offered for one transform type, most preferred first (empty if none)."""
        return self._transforms.get(int(transform_type), ())

    @property
    def transforms(self) -> Dict[int, Tuple[Transform, ...]]:
        """A copy of the transform type -> alternatives mapping, types in ascending order."""
        return dict(self._transforms)

    def types(self) -> Tuple[int, ...]:
        return tuple(self._transforms)

    def items(self) -> Tuple[Tuple[int, Tuple[Transform, ...]], ...]:
        return tuple(self._transforms.items())

    @property
    def is_aead(self) -> bool:
        return any(_is_aead_encr(i, k) for i, k in self.get(TransformType.ENCR))

    def validate(self) -> None:
        """Check the structural rules of the module docstring; raise :class:`ProposalError`."""
        text = str(self)
        protocol_name = _PROTOCOL_NAMES.get(self.protocol, str(self.protocol))
        if self.protocol not in (ProtocolId.IKE, ProtocolId.ESP):
            raise ProposalError(f"unsupported protocol {protocol_name}", proposal=text)
        allowed = set(_STRING_ORDER)
        if self.protocol == ProtocolId.IKE:
            allowed.discard(TransformType.ESN)
        else:
            allowed.discard(TransformType.PRF)
        for ttype in self.types():
            if ttype not in allowed:
                token = transform_name(ttype, *self.get(ttype)[0])
                raise ProposalError(f"transform not allowed in {protocol_name} proposals", token, text)

        encrs = self.get(TransformType.ENCR)
        if not encrs:
            raise ProposalError(f"{protocol_name} proposals need an encryption algorithm", proposal=text)
        kinds = [(_is_aead_encr(i, k), transform_name(TransformType.ENCR, i, k)) for i, k in encrs]
        aead_flags = {flag for flag, _length in kinds if flag is not None}
        if len(aead_flags) > 1:
            first = kinds[0][0]
            token = next(name for flag, name in kinds if flag is not None and flag != first)
            raise ProposalError(
                "AEAD and non-AEAD encryption algorithms cannot share a proposal", token, text
            )
        aead = aead_flags == {True}

        integs = [i for i, _length in self.get(TransformType.INTEG) if i != IntegId.NONE]
        if aead and integs:
            token = transform_name(TransformType.INTEG, integs[0])
            raise ProposalError("an AEAD proposal takes no integrity algorithm", token, text)
        if not aead and not integs:
            raise ProposalError(
                f"{protocol_name} proposals with a non-AEAD cipher need an integrity algorithm", proposal=text
            )

        methods = [i for i, _length in self.get(TransformType.DH)]
        if self.protocol == ProtocolId.IKE:
            if not self.get(TransformType.PRF):
                raise ProposalError("IKE proposals need a PRF", proposal=text)
            if not methods:
                raise ProposalError("IKE proposals need a key exchange method", proposal=text)
            if DhId.NONE in methods:
                raise ProposalError(
                    "IKE proposals cannot make the key exchange optional",
                    transform_name(TransformType.DH, DhId.NONE),
                    text,
                )
        has_additional = any(self.get(t) for t in ADDITIONAL_KE_TYPES)
        if has_additional and not [m for m in methods if m != DhId.NONE]:
            raise ProposalError("additional key exchanges need a key exchange method", proposal=text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProposalSpec):
            return NotImplemented
        return self.protocol == other.protocol and self._transforms == other._transforms

    def __hash__(self) -> int:
        return hash((self.protocol, tuple(self._transforms.items())))

    def __str__(self) -> str:
        tokens = []
        for ttype in (*_STRING_ORDER, *[t for t in self.types() if t not in _STRING_ORDER]):
            for transform_id, key_length in self.get(ttype):
                tokens.append(transform_name(ttype, transform_id, key_length))
        return "-".join(tokens)

    def __repr__(self) -> str:
        protocol_name = _PROTOCOL_NAMES.get(self.protocol, str(self.protocol))
        return f"ProposalSpec({protocol_name}: {self})"


def _keyword_table() -> Dict[str, Tuple[TransformType, int, Optional[int]]]:
    table: Dict[str, Tuple[TransformType, int, Optional[int]]] = {}
    for (encr_id, key_length), entry in ENCR_TRANSFORMS.items():
        table[entry.name] = (TransformType.ENCR, encr_id, key_length)
    # strongSwan aliases (proposal_keywords_static.txt)
    table["aes"] = (TransformType.ENCR, EncrId.AES_CBC, 128)
    for bits in (128, 192, 256):
        for alias in (f"aes{bits}gcm128", f"aes{bits}gcm"):
            table[alias] = (TransformType.ENCR, EncrId.AES_GCM_16, bits)
    for prf_id, prf in PRF_TRANSFORMS.items():
        table[prf.name] = (TransformType.PRF, prf_id, None)
    for integ_id, integ in INTEG_TRANSFORMS.items():
        table[integ.name] = (TransformType.INTEG, integ_id, None)
    table["sha"] = (TransformType.INTEG, IntegId.HMAC_SHA1_96, None)
    for bits in (256, 384, 512):
        table[f"sha2_{bits}"] = table[f"sha{bits}"]
    for ke_id, ke in KE_TRANSFORMS.items():
        table[ke.name] = (TransformType.DH, ke_id, None)
    table["curve25519"] = (TransformType.DH, DhId.CURVE25519, None)
    table["curve448"] = (TransformType.DH, DhId.CURVE448, None)
    table["none"] = (TransformType.DH, DhId.NONE, None)
    table["modpnone"] = (TransformType.DH, DhId.NONE, None)
    for esn_id, name in ESN_NAMES.items():
        table[name] = (TransformType.ESN, esn_id, None)
    return table


_KEYWORDS = _keyword_table()


def _lookup(token: str, text: str) -> Tuple[TransformType, int, Optional[int]]:
    if token.startswith("ke") and "_" in token:
        prefix, _sep, method = token.partition("_")
        number = prefix[2:]
        if not number.isdigit() or not 1 <= int(number) <= len(ADDITIONAL_KE_TYPES):
            raise ProposalError("additional key exchanges are numbered ke1_ to ke7_", token, text)
        found = _KEYWORDS.get(method)
        if found is None or found[0] != TransformType.DH:
            raise ProposalError("unknown key exchange method", token, text)
        return ADDITIONAL_KE_TYPES[int(number) - 1], found[1], None
    found = _KEYWORDS.get(token)
    if found is None:
        raise ProposalError("unknown or unsupported algorithm", token, text)
    return found


def parse_proposal(text: str, protocol: int) -> ProposalSpec:
    """Parse one strongSwan proposal string (no commas) for IKE or ESP."""
    if not isinstance(text, str):
        raise ProposalError(f"a proposal must be a string, not {type(text).__name__}")
    protocol_name = _PROTOCOL_NAMES.get(protocol, str(protocol))
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP):
        raise ProposalError(f"unsupported protocol {protocol_name}", proposal=text)
    tokens = [token.strip().lower() for token in text.split("-")]
    if not text.strip():
        raise ProposalError("empty proposal", proposal=text)
    collected: Dict[int, List[Transform]] = {}
    for token in tokens:
        if not token:
            raise ProposalError("empty algorithm keyword", token, text)
        ttype, transform_id, key_length = _lookup(token, text)
        if protocol == ProtocolId.IKE and ttype == TransformType.ESN:
            raise ProposalError("ESN keywords belong in ESP proposals, not IKE", token, text)
        if protocol == ProtocolId.ESP and ttype == TransformType.PRF:
            raise ProposalError("PRF keywords belong in IKE proposals, not ESP", token, text)
        collected.setdefault(ttype, []).append((transform_id, key_length))

    if protocol == ProtocolId.IKE and TransformType.PRF not in collected:
        # strongSwan: the PRFs follow the integrity algorithms when none is named.
        for integ_id, _length in collected.get(TransformType.INTEG, []):
            collected.setdefault(TransformType.PRF, []).append((INTEG_TRANSFORMS[integ_id].prf, None))
    encrs = collected.get(TransformType.ENCR, [])
    if encrs and all(_is_aead_encr(i, k) for i, k in encrs):
        # strongSwan: with an AEAD cipher an integrity keyword only names the PRF, so that
        # configurations such as "aes256gcm16-sha256-modp2048" copied from it work unchanged.
        collected.pop(TransformType.INTEG, None)
    if protocol == ProtocolId.ESP and TransformType.ESN not in collected:
        collected[TransformType.ESN] = [(EsnId.NO_ESN, None)]

    spec = ProposalSpec(protocol, collected)
    try:
        spec.validate()
    except ProposalError as error:
        # Report the user's own string, not the canonical rendering.
        raise ProposalError(error.reason, error.token, text) from None
    return spec


def parse_proposals(text: Union[str, Sequence[str]], protocol: int) -> List[ProposalSpec]:
    """Parse a comma-separated list (or a sequence) of proposal strings, keeping their order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = [parse_proposal(item.strip() if isinstance(item, str) else item, protocol) for item in items]
    if not specs:
        raise ProposalError("no proposals given")
    return specs
