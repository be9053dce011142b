import pytest

from minigpt4_ui.guard import Guard, LimitError


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_one_running_answer_per_session():
    guard = Guard(per_hour=0)
    with guard.slot("s1", None):
        with pytest.raises(LimitError, match="already have an answer in progress"):
            with guard.slot("s1", None):
                pass
        with guard.slot("s2", None):
            pass
    with guard.slot("s1", None):
        pass


def test_the_slot_is_released_when_the_answer_fails():
    guard = Guard(per_hour=0)
    with pytest.raises(RuntimeError):
        with guard.slot("s1", None):
            raise RuntimeError("backend down")
    with guard.slot("s1", None):
        pass


def test_host_paid_predictions_are_limited_per_visitor_per_hour():
    clock = Clock()
    guard = Guard(per_hour=2, clock=clock)
    for _ in range(2):
        with guard.slot("s1", "1.2.3.4"):
            pass
    with pytest.raises(LimitError, match="2 questions per hour .* about 60 min"):
        with guard.slot("s2", "1.2.3.4"):
            pass
    with guard.slot("s3", "5.6.7.8"):  # another visitor
        pass
    with guard.slot("s1", None):  # the visitor's own token: not counted
        pass
    clock.now += 3600
    with guard.slot("s1", "1.2.3.4"):
        pass
