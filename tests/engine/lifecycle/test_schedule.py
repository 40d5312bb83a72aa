"""pauseSchedule: which event is due, and the reconciler carrying it out once."""

from __future__ import annotations

import datetime as dt
import time

from app.engine.reconciler import latest_event
from app.storage.database import db
from app.storage.models import Database
from tests.conftest import stored
from tests.engine.lifecycle.conftest import FAST, wait_until
from tests.engine.lifecycle.support import create_database, settled

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


def test_the_reconciler_pauses_and_resumes_on_schedule_once_per_event(client, shop, workers, act):
    workers.start()
    database = create_database(client, shop)
    act(database["id"], "provision")
    assert settled(client, database["id"])["status"] == "running"

    def due(action_at: str, other_at: str):
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        hhmm = {"soon_past": (now - dt.timedelta(minutes=1)).strftime("%H:%M"),
                "long_past": (now - dt.timedelta(hours=3)).strftime("%H:%M")}
        return hhmm[action_at], hhmm[other_at], now

    pause_at, resume_at, now = due("soon_past", "long_past")
    response = client.patch(f"/databases/{database['id']}",
                            {"pauseSchedule": {"pauseAt": pause_at, "resumeAt": resume_at, "days": []}})
    assert response.status_code == 200, response.text
    # A new schedule is armed, not fired: the pause that came due a minute ago was before it was set.
    wait_until(lambda: stored(Database, database["id"]).schedule_applied_at, what="the schedule to be armed")
    assert client.get(f"/databases/{database['id']}").json()["status"] == "running"

    # As if it had been armed half an hour ago: the pause a minute ago is due now.
    set_applied(database, now - dt.timedelta(minutes=30))
    body = settled(client, database["id"], statuses=("paused",))
    assert body["lastError"] is None
    consumed = stored(Database, database["id"]).schedule_applied_at
    assert consumed > now - dt.timedelta(minutes=1)

    # Carried out once: resumed by hand, it is not paused again by the same event.
    act(database["id"], "resume")
    assert settled(client, database["id"])["status"] == "running"
    time.sleep(4 * float(FAST["REFLEXDB_RECONCILE_SECONDS"]))
    assert client.get(f"/databases/{database['id']}").json()["status"] == "running"

    # The other way round: paused, and a resume came due.
    act(database["id"], "pause")
    assert settled(client, database["id"])["status"] == "paused"
    resume_at, pause_at, now = due("soon_past", "long_past")
    client.patch(f"/databases/{database['id']}",
                 {"pauseSchedule": {"pauseAt": pause_at, "resumeAt": resume_at, "days": []}})
    set_applied(database, now - dt.timedelta(minutes=30))
    assert settled(client, database["id"], statuses=("running",))["endpointUrl"]


def set_applied(database, when: dt.datetime) -> None:
    with db.connection_context():
        Database.update(schedule_applied_at=when).where(Database.id == database["id"]).execute()
