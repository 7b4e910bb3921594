"""The saga's backoff between attempts."""

from __future__ import annotations

from schemasaga.services.sagas.runner import RetryPolicy


def test_backoff_doubles_then_stays_at_its_cap_however_long_it_goes_on() -> None:
    policy = RetryPolicy(max_attempts=7, base_delay=1.0, max_delay=30.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # Compensation is retried without limit: a BYODB gone for hours must not overflow the backoff
    # (2.0 ** 1024 does), which would end the job and lose the backoff for good.
    assert policy.delay(1025) == 30.0
    assert policy.delay(10**6) == 30.0
