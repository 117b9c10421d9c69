"""A repeatable mutation fuzzer for ``Engine.receive`` (issue 10): real exchanges, mutated, replayed.

``python -m fuzz --help`` (with ``tests/`` on ``sys.path``; ``make fuzz`` runs it) for the command line.

* ``scenarios``: in-process exchanges between two engines (PSK, RSA and ECDSA certificates, fragments,
  CREATE_CHILD_SA, INFORMATIONAL, IKE_INTERMEDIATE / IKE_FOLLOWUP_KE with ML-KEM), recorded so that either
  engine can be rebuilt to the state in which it received any one message.
* ``chain``: raw payload chains and SK/SKF protection with the sender's real keys, so that payload-level
  mutants pass the integrity check and reach the exchange logic.
* ``certs``: broken certificates (DER surgery) for CERT payload mutants.
* ``mutators``: outer (datagram) and inner (payload chain) mutations.
* ``checks``: the state fingerprint and the invariants checked after each input.
* ``runner``: the loop, the worker processes, the report, and reproduction of one input.
"""

from __future__ import annotations

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ROOT = os.path.dirname(_TESTS)
# The engine package, and the in-process harness helpers the fuzzer builds on.
for _path in (
    os.path.join(_ROOT, "plugins", "module_utils"),
    os.path.join(_TESTS, "unit", "ike"),
    os.path.join(_TESTS, "unit", "certs"),
):
    if _path not in sys.path:
        sys.path.append(_path)
