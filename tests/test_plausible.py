"""The plausible-height rules (consensus.plausible) on their own, with a fake clock."""

from __future__ import annotations

from consensus.plausible import HeightReference, Reading

LIE = 2**63 - 1


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_first_reference_is_the_lowest_reading_once_every_endpoint_answered():
    ref = HeightReference(margin=100, clock=Clock())
    assert ref.assess([Reading("liar", LIE)], complete=False) == {"liar"}  # the liar answered first
    assert ref.window() is None
    assert ref.assess([Reading("liar", LIE), Reading("honest", 500)]) == {"liar"}
    assert ref.height == 500 and ref.window().ceiling == 600


def test_two_endpoints_that_agree_vouch_for_each_other():
    ref = HeightReference(margin=100, clock=Clock())
    readings = [Reading("a", 5000), Reading("b", 5003), Reading("liar", LIE)]
    assert ref.assess(readings) == {"liar"} and ref.height == 5003


def test_ctop_own_record_vouches_for_the_time_that_passed_and_no_more():
    clock = Clock()
    ref = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref.note_record(1000, at=clock() - 1620)  # ctop was off for 27 minutes
    assert ref.assess([Reading("node", 1270)]) == set()  # 270 heights in 27 min: plausible
    ref2 = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref2.note_record(1000, at=clock() - 1620)
    assert ref2.assess([Reading("node", 1000 + 100 + 16200 + 1)]) == {"node"}  # faster than 10 blocks/s


def test_the_ceiling_grows_with_time_and_a_liar_creeps_no_faster_than_the_rate():
    clock = Clock()
    ref = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref.assess([Reading("node", 500)])
    clock.t += 10
    assert ref.window().ceiling == 500 + 100 + 100
    assert ref.assess([Reading("node", 700)]) == set()  # within ten seconds' worth
    assert ref.assess([Reading("node", 10**6)]) == {"node"}
    assert ref.height == 700


def test_a_poisoned_record_is_healed_by_the_first_honest_reading():
    ref = HeightReference(margin=100, clock=Clock())
    ref.note_record(LIE, at=0.0)
    assert ref.assess([Reading("node", 500)]) == set()
    assert ref.heal() is True and ref.record is None
    assert ref.window().floor == 400
