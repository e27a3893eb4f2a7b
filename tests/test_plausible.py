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
    assert ref.assess([Reading("liar", LIE)], complete=False)[0] == {"liar"}  # the liar answered first
    assert ref.window() is None
    assert ref.assess([Reading("liar", LIE), Reading("honest", 500)])[0] == {"liar"}
    assert ref.height == 500 and ref.window().ceiling == 600


def test_two_endpoints_that_agree_vouch_for_each_other():
    ref = HeightReference(margin=100, clock=Clock())
    bad, corroborated = ref.assess([Reading("a", 5000), Reading("b", 5003), Reading("liar", LIE)])
    assert bad == {"liar"} and corroborated == {"a", "b"} and ref.height == 5003


def test_a_liar_within_the_margin_is_plausible_but_not_corroborated():
    clock = Clock()
    ref = HeightReference(margin=100, clock=clock)
    ref.note_record(1000, at=clock())  # ctop receives the honest endpoint's frames
    bad, corroborated = ref.assess([Reading("honest", 1000), Reading("liar", 1050)])
    assert bad == set() and corroborated == {"honest"}


def test_ctop_own_record_vouches_for_the_time_that_passed_and_no_more():
    clock = Clock()
    ref = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref.note_record(1000, at=clock() - 1620)  # ctop was off for 27 minutes
    assert ref.assess([Reading("node", 1270)])[0] == set()  # 270 heights in 27 min: plausible
    ref2 = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref2.note_record(1000, at=clock() - 1620)
    assert ref2.assess([Reading("node", 1000 + 100 + 16200 + 1)])[0] == {"node"}  # faster than 10 blocks/s


def test_a_liar_creeps_no_faster_than_the_rate_however_often_it_is_asked():
    clock = Clock()
    ref = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref.assess([Reading("liar", 500)])
    for _ in range(600):  # ten times a second for a minute, always at the top of the window
        clock.t += 0.1
        ref.assess([Reading("liar", ref.window().ceiling)])
    assert ref.height <= 500 + 10 * 60
    assert ref.assess([Reading("liar", 10**6)])[0] == {"liar"}


def test_the_reference_returns_to_the_honest_readings_and_honest_frames_are_never_floored():
    clock = Clock()
    ref = HeightReference(margin=100, max_rate=10.0, clock=clock)
    ref.assess([Reading("honest", 1000), Reading("liar", 1040)])
    for _ in range(60):  # a minute: the honest chain makes a height a second, the liar claims ten
        clock.t += 1
        ref.note_record(ref.record[0] + 1 if ref.record else 1000, at=clock())
        ref.assess([Reading("honest", ref.record[0]), Reading("liar", ref.window().ceiling)])
    assert 1000 + 60 in ref.window()  # the honest tip (ctop's own record) stays inside
    ref.assess([Reading("honest", 1060)])  # the liar goes away
    assert ref.height == 1060


def test_a_poisoned_record_is_healed_by_the_first_honest_reading():
    ref = HeightReference(margin=100, clock=Clock())
    ref.note_record(LIE, at=0.0)
    assert ref.assess([Reading("node", 500)])[0] == set()
    assert ref.heal() is True and ref.record is None
    assert ref.window().floor == 400
