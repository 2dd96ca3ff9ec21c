"""The embedded lake's daemons: which process runs which, and throttled wakes."""

import threading
import time

from escape_portal.embedded.daemons import CONVEYOR, ThrottledStop, WakeableStop, in_group


def test_every_daemon_runs_in_exactly_one_of_the_two_processes() -> None:
    names = [*CONVEYOR, "judge-evaluator", "hermes", "reaper", "abacus-collection-replica"]
    for name in names:
        assert in_group(name, "all")
        assert in_group(name, "core") != in_group(name, "conveyor"), name
    assert all(in_group(name, "conveyor") for name in CONVEYOR)
    assert not in_group("judge-evaluator", "conveyor")


def _wakes(stop: WakeableStop, seconds: float) -> int:
    """How many waits of ``stop`` a waker ending them every 0.05 s ends in ``seconds``."""
    ended = 0
    done = threading.Event()

    def waker() -> None:
        while not done.wait(0.05):
            WakeableStop.wake()

    thread = threading.Thread(target=waker, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop.wait(timeout=5)
        ended += 1
    done.set()
    thread.join()
    return ended


def test_a_wake_ends_a_wait_and_a_throttled_one_at_most_once_per_interval() -> None:
    assert _wakes(WakeableStop(), 0.6) >= 6
    assert _wakes(ThrottledStop(every=0.25), 0.6) <= 4
    stopped = ThrottledStop(every=100)
    stopped.set()
    assert stopped.wait(timeout=5) is True  # a stop is never throttled


def test_the_reapers_pause_of_an_empty_storage_lasts_one_cycle() -> None:
    from escape_portal.embedded.daemons import pause_one_cycle

    asked: list[tuple[str, float | None]] = []

    class Region:
        def get(self, key: str, expiration_time: float | None = None) -> str:
            asked.append((key, expiration_time))
            return "value"

    region = Region()
    pause_one_cycle(region, cycle=30)
    assert region.get("pause_deletion_abc", expiration_time=120) == "value"
    assert region.get("other", expiration_time=120) == "value"
    assert asked == [("pause_deletion_abc", 29), ("other", 120)]
