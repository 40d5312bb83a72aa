"""Snapshot refresh on a real instance: swaps under load, failures, freeze, memory limits."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from rt_support import (
    N_COMMENTS,
    N_POSTS,
    N_USERS,
    NESTED_QUERY,
    expected_nested_answer,
    instance_processes,
)

from app.instance.memory import RUNTIME_RESERVE_MB

VERSIONED_QUERY = "users(id <= 40) { id version posts { id version comments { id version } } }"


@pytest.fixture
def reset_source(mysql_blog):
    """Puts the shared MariaDB blog back as it was after a test that changes it."""
    yield mysql_blog
    mysql_blog.set_version(1)
    mysql_blog.execute(f"UPDATE {mysql_blog.qualified('users')} SET name = 'user 1' "
                       f"WHERE id = 1")


class TestSwap:
    def test_queries_during_reloads_never_mix_snapshots(self, start_instance, reset_source):
        source = reset_source
        instance = start_instance(source)
        expected_shape = _shape(instance.query(VERSIONED_QUERY).json())
        stop = threading.Event()
        seen_versions, problems = set(), []

        def read():
            session = requests.Session()
            while not stop.is_set():
                response = session.post(f"{instance.url}/query", data=VERSIONED_QUERY,
                                        headers={"Authorization": f"Bearer {instance.key}",
                                                 "Content-Type": "text/plain"}, timeout=30)
                if response.status_code != 200:
                    problems.append(f"status {response.status_code}: {response.text}")
                    continue
                rows = response.json()
                versions = _versions(rows)
                if len(versions) != 1:
                    problems.append(f"mixed versions {sorted(versions)} in one answer")
                if _shape(rows) != expected_shape:
                    problems.append("an incomplete answer")
                seen_versions.update(versions)

        readers = [threading.Thread(target=read) for _ in range(6)]
        for reader in readers:
            reader.start()
        try:
            for version in range(2, 7):
                # Change the source between loads (never during one), then reload.
                source.set_version(version)
                response = requests.post(f"{instance.url}/admin/reload", headers={
                    "Authorization": f"Bearer {instance.handle.admin_token}"})
                assert response.status_code == 202
                instance.wait_health(lambda h, n=version - 1: h["swapCount"] == n, 30,
                                     f"swap {version - 1}")
        finally:
            stop.set()
            for reader in readers:
                reader.join()

        assert problems == []
        assert seen_versions >= {1, 6} and len(seen_versions) >= 3
        assert instance.health()["swapCount"] == 5
        assert _versions(instance.query(VERSIONED_QUERY).json()) == {6}


class TestSyncFailures:
    def test_failed_reload_keeps_serving_then_recovers(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, sync_interval_seconds=1)
        accounts = [f"'{mysql_blog.user}'@'{host}'" for host in ("localhost", "127.0.0.1")]
        for account in accounts:
            mysql_blog.execute(f"ALTER USER {account} IDENTIFIED BY 'not-the-password'")
        try:
            health = instance.wait_health(lambda h: h["status"] == "degraded", 15, "degraded")

            assert health["lastSyncErrorCode"] == "auth_failed"
            assert health["lastSyncError"] == (
                f"the MySQL server at 127.0.0.1:3306 rejected user '{mysql_blog.user}': check "
                f"the user name and password, and that the user may connect from this "
                f"service's address")
            assert mysql_blog.password not in str(health)
            assert health["serving"] is True
            response = instance.query(NESTED_QUERY)
            assert (response.status_code, response.json()) == (200, expected_nested_answer())
        finally:
            for account in accounts:
                mysql_blog.execute(f"ALTER USER {account} IDENTIFIED BY '{mysql_blog.password}'")
        swaps = instance.health()["swapCount"]
        health = instance.wait_health(lambda h: h["status"] == "ok" and h["swapCount"] > swaps,
                                      15, "recovery")
        assert (health["lastSyncError"], health["lastSyncErrorCode"]) == (None, None)
        log = open(instance.handle.log_path, encoding="utf-8").read()
        assert mysql_blog.password not in log and instance.key not in log


class TestReplicationPause:
    def test_frozen_snapshot_ignores_source_changes_until_resumed(self, start_instance,
                                                                  reset_source, runtime):
        source = reset_source
        instance = start_instance(source, sync_interval_seconds=1)
        assert runtime.pause_replication(instance.handle) == {"replication_paused": True}
        swaps = instance.health()["swapCount"]
        source.execute(f"UPDATE {source.qualified('users')} SET name = 'renamed' WHERE id = 1")

        time.sleep(2.5)   # more than two sync intervals
        health = instance.health()
        assert (health["replicationPaused"], health["swapCount"]) == (True, swaps)
        assert instance.query("users(id = 1) { name }").json() == [{"name": "user 1"}]

        assert runtime.resume_replication(instance.handle) == {"replication_paused": False}
        instance.wait_health(lambda h: h["swapCount"] > swaps, 10, "a reload after resume")
        assert instance.query("users(id = 1) { name }").json() == [{"name": "renamed"}]
        assert instance.health()["replicationPaused"] is False

    def test_reload_while_frozen_refreshes_once(self, start_instance, reset_source, runtime):
        source = reset_source
        instance = start_instance(source, replication_paused=True, sync_interval_seconds=1)
        assert instance.health()["replicationPaused"] is True
        source.execute(f"UPDATE {source.qualified('users')} SET name = 'reloaded' WHERE id = 1")

        assert runtime.reload(instance.handle) == {"status": "reloading", "swapCount": 0}
        instance.wait_health(lambda h: h["swapCount"] == 1, 10, "the forced reload")

        assert instance.query("users(id = 1) { name }").json() == [{"name": "reloaded"}]
        time.sleep(1.5)
        health = instance.health()
        assert (health["swapCount"], health["replicationPaused"]) == (1, True)


    def test_restarted_worker_stays_frozen(self, start_instance, mysql_blog, runtime):
        instance = start_instance(mysql_blog, sync_interval_seconds=1)
        runtime.pause_replication(instance.handle)
        worker = _worker_pid(instance.handle.pid)

        os.kill(worker, signal.SIGKILL)   # gunicorn's master forks a new worker

        health = instance.wait_health(
            lambda h: h["serving"] and _worker_pid(instance.handle.pid) not in (None, worker),
            20, "a new worker with a snapshot")
        assert (health["replicationPaused"], health["swapCount"], health["status"]) == (
            True, 0, "ok")


class TestMemoryLimit:
    def test_snapshot_over_the_limit_reports_cap_exceeded(self, start_instance, mysql_blog,
                                                          runtime):
        instance = start_instance(mysql_blog, wait=False, memory_limit_mb=RUNTIME_RESERVE_MB + 1)

        health = instance.wait_health(lambda h: h["status"] == "cap_exceeded", 20,
                                      "cap_exceeded")

        assert health["lastSyncError"] == (
            f"the snapshot needs more than 1 MiB (the instance has {RUNTIME_RESERVE_MB + 1} "
            f"MiB in all); choose a larger instanceSize")
        assert (health["serving"], health["rowCounts"], health["lastSyncErrorCode"]) == (
            False, {}, "cap_exceeded")
        response = instance.query("users { id }")
        assert response.status_code == 503
        assert response.json() == {"error": "cap_exceeded",
                                   "message": f"no snapshot is loaded: {health['lastSyncError']}"}
        time.sleep(0.5)
        assert runtime.is_alive(instance.handle)
        assert instance.health()["status"] == "cap_exceeded"

    def test_reload_that_does_not_fit_keeps_the_old_snapshot(self, start_instance, mysql_blog,
                                                             runtime):
        probe = start_instance(mysql_blog)
        size_mib = probe.health()["snapshotBytes"] / 2**20
        runtime.stop(probe.handle)
        # Room for one snapshot, not for the second copy a reload builds.
        limit = RUNTIME_RESERVE_MB + int(size_mib * 1.5) + 1
        assert size_mib * 2 > limit - RUNTIME_RESERVE_MB
        instance = start_instance(mysql_blog, memory_limit_mb=limit)

        runtime.reload(instance.handle)
        health = instance.wait_health(lambda h: h["status"] == "cap_exceeded", 20,
                                      "the reload to fail")

        assert health["serving"] is True and health["swapCount"] == 0
        assert "choose a larger instanceSize" in health["lastSyncError"]
        assert "a reload holds the new snapshot next to the" in health["lastSyncError"]
        assert health["rowCounts"] == {"users": N_USERS, "posts": N_POSTS,
                                       "comments": N_COMMENTS}
        response = instance.query(NESTED_QUERY)
        assert (response.status_code, response.json()) == (200, expected_nested_answer())


class TestRuntime:
    def test_stop_ends_the_process(self, start_instance, mysql_blog, runtime):
        instance = start_instance(mysql_blog, wait=False)

        runtime.stop(instance.handle)

        assert not runtime.is_alive(instance.handle)
        assert runtime.health(instance.handle) == {
            "status": "unreachable", "reason": "the instance process is not running"}


def _worker_pid(master: int) -> int | None:
    """One reader worker of the instance (not its writer)."""
    readers, _writer = instance_processes(master)
    return readers[0] if readers else None


def _versions(rows) -> set[int]:
    versions = set()
    for user in rows:
        versions.add(user["version"])
        for post in user["posts"]:
            versions.add(post["version"])
            versions.update(c["version"] for c in post["comments"])
    return versions


def _shape(rows):
    return [(u["id"], [(p["id"], [c["id"] for c in p["comments"]]) for p in u["posts"]])
            for u in rows]
