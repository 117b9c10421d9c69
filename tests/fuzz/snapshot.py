"""Copies of an engine in a given state, cheaper than replaying its history.

``copy.deepcopy`` cannot do it: the engine keeps callbacks (``Pending.on_response`` lambdas, queued sends,
the injected random source) whose closures would still point into the original, and ``cryptography``'s
objects refuse to be copied.  :func:`clone` copies the object graph itself: closures get new cells holding
copies, bound methods are rebound to the copies, and immutable or stateless objects (``cryptography``
objects, SK ciphers, policies, derived keys, selected proposals, the KE result cache) are shared.

The runner checks every clone against the state fingerprint of the original, and the original against its
fingerprint after each use of a clone, so a leak between them would show up as a harness problem.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import random
import types
from typing import Any, Dict

from pyike.crypto.certs import LocalCredential
from pyike.crypto.keys import IkeKeys
from pyike.crypto.selection import SelectedProposal
from pyike.ike.policy import ChildPolicy, IkePolicy
from pyike.selectors import TrafficSelector

from .scenarios import KeCache, Side

ATOMS = (type(None), bool, int, float, complex, str, bytes, range, type, types.BuiltinFunctionType,
         types.ModuleType, enum.Enum, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
         ipaddress.IPv6Network)  # fmt: skip
SHARED = (IkePolicy, ChildPolicy, IkeKeys, SelectedProposal, LocalCredential, KeCache, Side,
          logging.Logger, TrafficSelector)  # fmt: skip
_shared_types: Dict[type, bool] = {}


def _is_shared(cls: type) -> bool:
    known = _shared_types.get(cls)
    if known is None:
        known = issubclass(cls, ATOMS + SHARED) or (cls.__module__ or "").startswith("cryptography")
        _shared_types[cls] = known
    return known


def clone(obj: Any, memo: Dict[int, Any]) -> Any:
    """A copy of ``obj`` that shares nothing mutable with it (see the module docstring)."""
    found = memo.get(id(obj))
    if found is not None:
        return found
    cls = type(obj)
    if _is_shared(cls):
        return obj
    if cls is list:
        out = []
        memo[id(obj)] = out
        out.extend(clone(item, memo) for item in obj)
        return out
    if cls is dict:
        out = {}
        memo[id(obj)] = out
        for key, value in obj.items():
            out[clone(key, memo)] = clone(value, memo)
        return out
    if cls is tuple:
        out = tuple(clone(item, memo) for item in obj)
        memo[id(obj)] = out
        return out
    if isinstance(obj, tuple):  # a NamedTuple
        out = cls._make(clone(item, memo) for item in obj)
        memo[id(obj)] = out
        return out
    if cls in (set, frozenset):
        out = cls(clone(item, memo) for item in obj)
        memo[id(obj)] = out
        return out
    if cls is types.FunctionType:
        if obj.__closure__ is None and not obj.__defaults__:
            return obj
        cells = None
        if obj.__closure__ is not None:
            cells = tuple(_clone_cell(cell, memo) for cell in obj.__closure__)
        out = types.FunctionType(obj.__code__, obj.__globals__, obj.__name__, None, cells)
        memo[id(obj)] = out
        out.__defaults__ = clone(obj.__defaults__, memo)
        out.__kwdefaults__ = clone(obj.__kwdefaults__, memo)
        return out
    if cls is types.MethodType:
        out = types.MethodType(clone(obj.__func__, memo), clone(obj.__self__, memo))
        memo[id(obj)] = out
        return out
    if cls is types.CellType:
        return _clone_cell(obj, memo)
    if isinstance(obj, random.Random):
        out = cls.__new__(cls)
        out.setstate(obj.getstate())
        memo[id(obj)] = out
        return out
    out = cls.__new__(cls)
    memo[id(obj)] = out
    state = getattr(obj, "__dict__", None)
    if state is not None:
        out.__dict__.update({key: clone(value, memo) for key, value in state.items()})
    for klass in cls.__mro__:
        for slot in klass.__dict__.get("__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(obj, slot):
                setattr(out, slot, clone(getattr(obj, slot), memo))
    return out


def _clone_cell(cell, memo):
    found = memo.get(id(cell))
    if found is not None:
        return found
    try:
        contents = cell.cell_contents
    except ValueError:  # an empty cell
        out = types.CellType()
        memo[id(cell)] = out
        return out
    out = types.CellType()
    memo[id(cell)] = out
    out.cell_contents = clone(contents, memo)
    return out
