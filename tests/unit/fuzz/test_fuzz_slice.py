"""A short seeded slice of the Engine.receive fuzzer (tests/fuzz; ``make fuzz`` runs a million inputs).

Mutants of real exchanges (PSK, RSA and ECDSA certificates, fragments, CREATE_CHILD_SA, INFORMATIONAL,
IKE_INTERMEDIATE / IKE_FOLLOWUP_KE where cryptography has ML-KEM) go through ``Engine.receive`` of both the
initiator's and the responder's engine.  Nothing may escape it, and no input may leave the engine wedged
(checked after each input that changed its state, with the clock run far past every timeout).  On failure
the assertion message is the fuzzer's report: each crash site and violation with its reproducer.
"""

from __future__ import annotations

import pytest
from fuzz import runner

SEED = 20250601  # fixed: the slice is the same inputs on every run
COUNT = 4000


def test_a_seeded_fuzz_slice_raises_nothing_and_wedges_nothing():
    stats = runner.fuzz(SEED, COUNT, processes=1)
    assert stats.inputs == COUNT
    assert not runner.failed(stats), runner.report(stats, SEED)


def test_the_harness_reports_an_exception_with_a_reproducer(monkeypatch):
    """A planted bug (an exception in the handler of INFORMATIONAL requests that carry a Notify payload,
    by the engine's `raise` impairment; the recorded requests have none) is found, attributed to where
    it was raised, and its reproducers raise again: the slice above cannot pass by swallowing exceptions."""
    runner.prepare(["psk"])
    monkeypatch.setattr(runner, "IMPAIR", ["raise exchange=INFORMATIONAL message=request name=NOTIFY"])
    stats = runner.fuzz(7, 2000, processes=1, scenarios=["psk"])
    (finding,) = [f for f in stats.crashes.values() if "ImpairedFailure" in f.key]
    assert "pyike/ike/impair.py" in finding.key and "maybe_raise" in finding.key
    assert runner.failed(stats) and "impaired: INFORMATIONAL request handler" in runner.report(stats, 7)
    assert finding.index >= 0 and finding.how.startswith("inner")
    again, _text = runner.reproduce(finding.seed, finding.index, ["psk"])
    assert [f.key for f in again.crashes.values()] == [finding.key]
    again, text = runner.replay_hex(finding.target, ",".join(finding.data))
    assert "impaired" in text and again.crashes


@pytest.mark.parametrize("index", [0, 1, 57, 3999])
def test_a_mutant_is_a_function_of_seed_and_index(index):
    runner.prepare()
    target = runner.target_of(SEED, index)
    assert runner.mutant_of(SEED, index, target) == runner.mutant_of(SEED, index, target)
