"""One answer at a time per session, and Stop as a flag the running answer reads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from minigpt4_ui.app.answer_slots import AnswerSlot, AnswerSlots


def test_a_session_holds_one_slot_until_it_is_freed():
    slots = AnswerSlots()
    first = slots.take("a")
    assert isinstance(first, AnswerSlot) and not first.stop.is_set()
    assert slots.take("a") is None  # a second question while the first is answered
    assert slots.current("a") is first
    slots.free("a", first)
    assert slots.current("a") is None
    second = slots.take("a")
    assert second is not None and second is not first and not second.stop.is_set()


def test_sessions_do_not_share_slots():
    slots = AnswerSlots()
    mine, theirs = slots.take("a"), slots.take("b")
    assert mine is not None and theirs is not None and mine is not theirs
    assert slots.stop("a")
    assert mine.stop.is_set() and not theirs.stop.is_set()  # my Stop never stops another session


def test_stop_without_an_answer_says_so_and_leaves_no_flag_behind():
    slots = AnswerSlots()
    assert slots.stop("a") is False
    slot = slots.take("a")
    assert not slot.stop.is_set()  # an earlier Stop does not stop the next answer


def test_freeing_an_old_slot_does_not_free_the_new_one():
    slots = AnswerSlots()
    old = slots.take("a")
    slots.free("a", old)
    new = slots.take("a")
    slots.free("a", old)  # a late clean-up of the earlier answer
    assert slots.current("a") is new
    assert slots.take("a") is None


def test_stop_reaches_a_waiting_answer():
    slots = AnswerSlots()
    slot = slots.take("a")
    noticed = threading.Event()
    waiter = threading.Thread(target=lambda: slot.stop.wait(10) and noticed.set())
    waiter.start()
    assert slots.stop("a")
    waiter.join(10)
    assert noticed.is_set()


def test_only_one_of_many_simultaneous_takes_wins():
    slots = AnswerSlots()
    start = threading.Barrier(16)

    def take(_):
        start.wait(10)
        return slots.take("same")

    with ThreadPoolExecutor(16) as pool:
        taken = [slot for slot in pool.map(take, range(16)) if slot is not None]
    assert len(taken) == 1 and slots.current("same") is taken[0]
