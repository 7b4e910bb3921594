"""Kill points for the fault-injection suite.

``SCHEMASAGA_KILL_AT=<point>[,<point>...]`` makes the process kill itself with SIGKILL the first time
it reaches one of those points, as a crash would, so tests can prove recovery at each saga step
boundary. Unset (always, in production) it costs one dictionary lookup. Points are named
``<saga step>:<where>``, for example ``create_table:after_action`` or ``verify:before_action``; see
``POINTS`` below for the places that exist.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

ENV = "SCHEMASAGA_KILL_AT"
POINTS = (
    "before_action",  # the step's DDL is about to run
    "after_action",  # the DDL ran; the step's completion is not recorded yet
    "after_record",  # the step's completion (or the outcome) is committed
    "before_compensation",  # compensation is recorded as started; the undo DDL is about to run
    "after_compensation",  # the undo DDL ran; the rejection is not recorded yet
    # `projections rebuild` (step "rebuild"):
    "after_batch",  # a batch of the new read models is committed
    "before_swap",  # caught up under the live read models' lock; the swap is not done yet
)


def kill_point(step: str, where: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name = f"{step}:{where}"
    if name in wanted.split(","):
        log.warning("fault injection: killing process %d at %s", os.getpid(), name)
        os.kill(os.getpid(), signal.SIGKILL)
