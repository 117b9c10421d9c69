"""Narrowing of selector lists (RFC 7296 §2.9), the one function the engine and the inventory share."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pyike import esp
from pyike.ids import PayloadType
from pyike.selectors import NO_PORT, TrafficSelector, address_ranges, describe, is_subset, narrow
from pyike.wire import RawSelector, TsiPayload
from pyike.wire.codec import Cursor
from selector_strategies import packets, point, selectors

TS = TrafficSelector.parse
SECLABEL = RawSelector(10, 0, b"sys\x00")  # TS_SECLABEL (RFC 9478)


def test_opaque_ports_survive_narrowing():
    """Regression: the engine's narrowing turned OPAQUE (65535-0) into an empty port range."""
    opaque = TS("10.1.0.0/24[udp/opaque]")
    assert narrow([opaque], [TS("10.1.0.0/16")]) == [opaque]
    assert narrow([TS("10.1.0.0/16")], [opaque]) == [opaque]
    assert narrow([opaque], [opaque]) == [opaque]
    assert narrow([opaque], [TS("10.1.0.0/24[udp/53]")]) == []  # only packets without ports
    assert narrow([TS("10.1.0.0/24[/opaque]")], [TS("10.1.0.0/24[udp]")]) == [opaque]
    assert is_subset([opaque], [TS("10.1.0.0/16")]) and is_subset([opaque], [opaque])
    assert not is_subset([TS("10.1.0.0/24[udp]")], [opaque])


def test_narrowing_keeps_the_proposed_order_without_duplicates():
    proposed = [TS("10.1.0.0/24"), TS("10.3.0.0/24"), TS("10.1.0.0/25")]
    allowed = [TS("10.1.0.128/25"), TS("10.1.0.0/16")]
    assert narrow(proposed, allowed) == [TS("10.1.0.128/25"), TS("10.1.0.0/24"), TS("10.1.0.0/25")]
    assert narrow(proposed, [TS("192.168.0.0/16")]) == []
    assert narrow(proposed, [TS("2001:db8::/32")]) == []


def test_selectors_of_other_types_are_ignored():
    """RFC 7296 §3.13.1: a TS type we do not know (TS_SECLABEL, 10) takes no part in narrowing."""
    lan = TS("10.1.0.0/24")
    assert narrow([SECLABEL, lan], [lan, SECLABEL]) == [lan]
    assert narrow([SECLABEL], [lan]) == [] and narrow([lan], [SECLABEL]) == []
    assert is_subset([lan, SECLABEL], [SECLABEL, TS("10.0.0.0/8")])
    assert not is_subset([SECLABEL], [lan])  # an answer without one usable selector
    assert not is_subset([], [lan])
    assert address_ranges([SECLABEL, lan]) == [lan]
    assert describe([lan, SECLABEL, TS("10.1.0.0/24[tcp/443]")]) == [
        "10.1.0.0/24",
        "TS_TYPE_10(4 bytes)",
        "10.1.0.0/24[tcp/443]",
    ]


def test_a_decoded_ts_payload_with_a_seclabel_narrows_without_it():
    body = TsiPayload([SECLABEL, TS("10.1.0.0/24[udp/opaque]"), TS("2001:db8::/64[tcp/80-81]")]).encode_body()
    payload, _values = TsiPayload.decode_from(Cursor(body, where="TSi", payload_type=PayloadType.TSi))
    assert payload.selectors[0] == SECLABEL
    assert payload.selectors[1:] == [TS("10.1.0.0/24[udp/opaque]"), TS("2001:db8::/64[tcp/80-81]")]
    assert narrow(payload.selectors, [TS("0.0.0.0/0"), TS("::/0")]) == payload.selectors[1:]
    assert "TS_TYPE_10(4 bytes) 10.1.0.0/24[udp/opaque] 2001:db8::/64[tcp/80-81]" in payload.describe()


def test_the_dataplane_and_the_selectors_mean_the_same_no_port():
    assert esp.NO_PORT == NO_PORT
    assert esp.TrafficSelector is TrafficSelector


# -- properties -----------------------------------------------------------------------------------------


selector_lists = st.lists(selectors(), min_size=1, max_size=4)


@given(selectors(), selectors())
def test_narrowing_two_selectors_is_their_intersection(a, b):
    common = a.intersect(b)
    assert narrow([a], [b]) == ([] if common is None else [common])
    assert is_subset([b], [a]) == a.contains(b)


@given(selector_lists, selector_lists)
def test_the_narrowed_list_lies_within_both_lists(proposed, allowed):
    narrowed = narrow(proposed, allowed)
    if narrowed:
        assert is_subset(narrowed, proposed) and is_subset(narrowed, allowed)


@given(selector_lists, selector_lists, st.lists(packets(), min_size=1, max_size=20))
def test_the_narrowed_list_covers_exactly_the_common_packets(proposed, allowed, probes):
    narrowed = narrow(proposed, allowed)
    for version, address, protocol, port in probes:
        where = point(version, address)

        def matched(items, where=where, protocol=protocol, port=port):
            return any(ts.matches(where, protocol, port) for ts in items)

        assert matched(narrowed) == (matched(proposed) and matched(allowed))
