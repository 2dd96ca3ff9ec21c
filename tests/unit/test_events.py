import datetime as dt

from escape_portal.config import LakeConfig
from escape_portal.events import Watch, estimate_seconds_left
from escape_portal.lake import Rule, RuleProgress


def _progress(state: str, files: int, done: int, reason: str | None = None) -> RuleProgress:
    rule = Rule(
        id="r1",
        scope="s",
        name="n",
        account="a",
        rse_expression="CERN-DISK",
        copies=1,
        state=state,
        locks_ok=files,
        locks_replicating=4 - files,
        locks_stuck=0,
        expires_at=None,
        created_at=dt.datetime.now(dt.UTC),
        error=reason,
    )
    return RuleProgress(rule, files, 4, done, 400, stuck_reason=reason)


class _ScriptedLake:
    """Stands in for the lake's rule_progress only: the sequence Rucio would report."""

    def __init__(self, answers: list[RuleProgress], broker: str | None = None) -> None:
        self.answers = answers
        self.calls = 0
        self.config = LakeConfig(name="t", rucio_host="http://127.0.0.1:1", broker=broker)

    def resolve_rses(self, expression: str) -> list[str]:
        return [expression]

    def rule_progress(self, rule_id: str) -> RuleProgress:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def test_eta_from_rate() -> None:
    assert estimate_seconds_left([(0.0, 0)], 100) is None
    assert estimate_seconds_left([(0.0, 0), (10.0, 50)], 100) == 10.0
    assert estimate_seconds_left([(0.0, 50), (10.0, 50)], 100) is None


def test_callbacks_on_change_and_once_when_available() -> None:
    lake = _ScriptedLake(
        [
            _progress("REPLICATING", 0, 0),
            _progress("REPLICATING", 0, 0),
            _progress("REPLICATING", 2, 200),
            _progress("OK", 4, 400),
        ]
    )
    seen: list[str] = []
    ready: list[str] = []
    watch = Watch(
        lake,
        ["r1"],
        on_progress=lambda e: seen.append(e.state),  # type: ignore[arg-type]
        on_available=lambda e: ready.append(e.rule_id),
    )
    for _ in range(6):
        watch.poll_once()
    assert seen == ["replicating", "replicating", "available"]
    assert ready == ["r1"]
    assert lake.calls == 4  # nothing polled once it is done


def test_stuck_is_reported_with_reason_and_a_failing_callback_is_contained() -> None:
    lake = _ScriptedLake([_progress("STUCK", 3, 300, "checksum mismatch copying x")])
    reasons: list[str | None] = []

    def broken(_: object) -> None:
        raise RuntimeError("user code")

    watch = Watch(
        lake,
        ["r1"],
        on_progress=broken,  # type: ignore[arg-type]
        on_stuck=lambda e: reasons.append(e.progress.stuck_reason),
    )
    watch.start()
    assert watch.wait(5)
    assert reasons == ["checksum mismatch copying x"]
