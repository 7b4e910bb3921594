"""The worker's own check for jobs the queue says it holds but it does not run."""

from __future__ import annotations

from schemasaga.jobs.watchdog import JobsInHand


def test_a_job_held_but_not_run_is_lost_only_at_the_second_check() -> None:
    hand = JobsInHand()
    # A job fetched a moment ago can be in the queue before the worker has it: not lost yet.
    assert hand.lost([7]) == []
    assert hand.lost([7]) == [7]
    # Given back: the queue no longer gives it to this worker.
    assert hand.lost([]) == []


def test_a_job_being_run_is_never_lost() -> None:
    hand = JobsInHand()
    with hand.holding(7):
        assert hand.lost([7]) == []
        assert hand.lost([7]) == []
    # Its run is over and its end is being reported: one check of grace, as for a fetch.
    assert hand.lost([7]) == []
    assert hand.lost([7]) == [7]


def test_a_job_seen_idle_then_run_starts_its_grace_again() -> None:
    hand = JobsInHand()
    assert hand.lost([7, 8]) == []
    with hand.holding(7):
        assert hand.lost([7, 8]) == [8]
    assert hand.lost([7]) == []
