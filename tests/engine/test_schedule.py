"""pauseSchedule: which event is due, and the reconciler carrying it out once."""

from __future__ import annotations

import datetime as dt

from app.engine.reconciler import latest_event

# 2030-01-02 is a Wednesday (day 3 when 0 = Sunday).
WEDNESDAY_NOON = dt.datetime(2030, 1, 2, 12, 0)


def schedule(pause_at="22:00", resume_at="07:30", days=()):
    return {"pause_at": pause_at, "resume_at": resume_at, "days": list(days)}


def test_the_latest_event_at_or_before_now():
    assert latest_event(schedule(), WEDNESDAY_NOON) == (dt.datetime(2030, 1, 2, 7, 30), "resume")
    assert latest_event(schedule(), dt.datetime(2030, 1, 2, 23, 0)) == (dt.datetime(2030, 1, 2, 22, 0), "pause")
    assert latest_event(schedule(), dt.datetime(2030, 1, 2, 22, 0)) == (dt.datetime(2030, 1, 2, 22, 0), "pause")
    assert latest_event(schedule(), dt.datetime(2030, 1, 2, 3, 0)) == (dt.datetime(2030, 1, 1, 22, 0), "pause")


def test_days_count_from_sunday():
    # Only Mondays (1): on Wednesday noon the latest event is Monday's pause.
    assert latest_event(schedule(days=[1]), WEDNESDAY_NOON) == (dt.datetime(2029, 12, 31, 22, 0), "pause")
    # Only Wednesdays (3).
    assert latest_event(schedule(days=[3]), WEDNESDAY_NOON) == (dt.datetime(2030, 1, 2, 7, 30), "resume")
    # Sundays (0): 2029-12-30.
    assert latest_event(schedule(days=[0]), WEDNESDAY_NOON) == (dt.datetime(2029, 12, 30, 22, 0), "pause")
