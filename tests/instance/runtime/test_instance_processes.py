"""The instance across processes: generation files, readers, the writer, their deaths, caches."""

from __future__ import annotations

import glob
import json
import os
import signal
import sqlite3
import threading
import time

import psutil
import pytest
from rt_support import (
    N_COMMENTS,
    N_POSTS,
    N_USERS,
    NESTED_QUERY,
    blog_artifact,
    expected_nested_answer,
    instance_processes,
)

from app.instance.reader import AnswerCache, GenerationReader
from app.instance.snapshot import NoSnapshot
from app.instance.store import (
    STALE_AFTER_SECONDS,
    SnapshotStore,
    hold_store_directory,
    make_store_directory,
    read_pointer,
    sweep_stale_store_directories,
)
from app.sources import open_source

ROW_COUNTS = {"users": N_USERS, "posts": N_POSTS, "comments": N_COMMENTS}


def _store_dir(instance) -> str:
    # /dev/shm/reflexdb-<databaseId>-<random>/ (app/instance/store.py); the ids are random here.
    [directory] = glob.glob(f"/dev/shm/reflexdb-{instance.handle.database_id}-*")
    return directory


class TestStore:
    @pytest.fixture
    def generations(self, mysql_blog, tmp_path):
        store = SnapshotStore(make_store_directory("db-1", base=str(tmp_path)), grace_seconds=0)
        artifact = blog_artifact("mysql", mysql_blog.schema)
        with open_source(mysql_blog.credentials()) as source:
            store.publish(store.load(artifact, source))
        yield store
        store.close()

    def test_a_load_is_a_published_wal_generation(self, generations):
        store = generations
        pointer = read_pointer(store.directory)

        assert (pointer.number, pointer.file, pointer.data_version, pointer.row_counts) == (
            1, "gen-1.sqlite", 0, ROW_COUNTS)
        connection = sqlite3.connect(store.path_of(pointer))
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.close()

    def test_readers_see_a_write_whole_with_a_new_data_version(self, generations):
        store = generations
        reader = GenerationReader(store.directory)
        with reader.reading() as (connection, version):
            assert version == (1, 0)
            before = connection.execute("SELECT count(*) FROM users").fetchone()
            with store.write() as writer:
                writer.execute("DELETE FROM comments WHERE user_id IN (SELECT id FROM users "
                               "WHERE id <= 10)")
                writer.execute("DELETE FROM users WHERE id <= 10")
            # Inside one read transaction: still the state it began with.
            assert connection.execute("SELECT count(*) FROM users").fetchone() == before

        with reader.reading() as (connection, version):
            assert version == (1, 1)
            assert connection.execute("SELECT count(*) FROM users").fetchone() == (N_USERS - 10,)
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                connection.execute("DELETE FROM users")
        reader.close()

    def test_a_failed_write_rolls_back_and_keeps_the_version(self, generations):
        store = generations
        with pytest.raises(RuntimeError):
            with store.write() as writer:
                writer.execute("DELETE FROM users")
                raise RuntimeError("the change could not be applied")

        reader = GenerationReader(store.directory)
        with reader.reading() as (connection, version):
            assert version == (1, 0)
            assert connection.execute("SELECT count(*) FROM users").fetchone() == (N_USERS,)
        reader.close()

    def test_a_reload_swaps_generations_and_retires_the_old_file(self, generations, mysql_blog):
        store = generations
        reader = GenerationReader(store.directory)
        with reader.reading() as (connection, version):
            assert version == (1, 0)
            # The read transaction has begun (and holds its WAL snapshot).
            assert connection.execute("SELECT count(*) FROM users").fetchone() == (N_USERS,)
            with open_source(mysql_blog.credentials()) as source:
                store.publish(store.load(blog_artifact("mysql", mysql_blog.schema), source))
            # Deleted (grace 0), and still readable by the reader that has it open.
            assert sorted(f for f in os.listdir(store.directory) if f.startswith("gen-")) == [
                "gen-2.sqlite", "gen-2.sqlite-shm", "gen-2.sqlite-wal"]
            assert connection.execute("SELECT count(*) FROM posts").fetchone() == (N_POSTS,)

        with reader.reading() as (connection, version):
            assert version == (2, 0)
        assert store.swap_count == 1
        reader.close()

    def test_no_generation_yet(self, tmp_path):
        store = SnapshotStore(make_store_directory("db-2", base=str(tmp_path)))
        reader = GenerationReader(store.directory)
        with pytest.raises(NoSnapshot):
            with reader.reading():
                pass
        with pytest.raises(LookupError):
            with store.write():
                pass


class TestStaleDirectories:
    """Store directories of killed instances: removed when their lock is free and they are old."""

    @staticmethod
    def _age(directory: str, seconds: float = STALE_AFTER_SECONDS + 5) -> None:
        then = time.time() - seconds
        os.utime(directory, (then, then))

    def test_old_unlocked_ones_go(self, tmp_path):
        base = str(tmp_path)
        held = make_store_directory("held", base=base)
        lock = hold_store_directory(held)
        released = make_store_directory("gone", base=base)
        os.close(hold_store_directory(released))
        young = make_store_directory("new", base=base)
        os.close(hold_store_directory(young))
        unlocked = make_store_directory("old", base=base)   # no lock file
        other = tmp_path / "not-ours"
        other.mkdir()
        for directory in (held, released, unlocked, str(other)):
            self._age(directory)

        try:
            assert sweep_stale_store_directories(base) == [released]
            assert sorted(os.listdir(base)) == sorted(
                os.path.basename(d) for d in (held, young, unlocked, str(other)))
        finally:
            os.close(lock)
        self._age(held)
        assert sweep_stale_store_directories(base) == [held]

    def test_forks_hold_the_lock(self, tmp_path):
        directory = make_store_directory("fork", base=str(tmp_path))
        lock = hold_store_directory(directory)
        child = os.fork()
        if child == 0:   # holds the inherited lock until killed, like a writer
            time.sleep(60)
            os._exit(0)
        try:
            os.close(lock)   # the master is gone; its child still runs
            self._age(directory)
            assert sweep_stale_store_directories(str(tmp_path)) == []
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        assert sweep_stale_store_directories(str(tmp_path)) == [directory]


class TestAnswerCache:
    def test_bounded_in_bytes_least_recently_used_first(self):
        cache = AnswerCache(800)
        assert cache.get("q", (1, 0)) is None
        for n in range(10):
            cache.put(f"q{n}", (1, 0), b"x" * 98)          # 100 bytes with the key
        assert cache.size_bytes == 800 and len(cache) == 8
        assert cache.get("q0", (1, 0)) is None and cache.get("q9", (1, 0)) == b"x" * 98

    def test_a_newer_version_empties_it_an_older_one_does_not(self):
        cache = AnswerCache(800)
        cache.get("q", (1, 0))
        cache.put("q", (1, 0), b"old")
        assert cache.get("q", (1, 1)) is None              # CDC applied a change
        cache.put("q", (1, 1), b"new")
        assert cache.get("q", (1, 0)) is None               # a thread that looked before it
        cache.put("q", (1, 0), b"old")
        assert cache.get("q", (1, 1)) == b"new"
        assert cache.get("q", (2, 0)) is None and len(cache) == 0   # a swap

    def test_big_answers_are_not_kept(self):
        cache = AnswerCache(800)
        cache.get("q", (1, 0))
        cache.put("q", (1, 0), b"x" * 200)
        assert len(cache) == 0


class TestProcesses:
    def test_readers_and_writer(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, workers=2)

        readers, writer = instance_processes(instance.handle.pid)

        assert len(readers) == 2 and writer is not None
        health = instance.health()
        assert (health["workers"], health["generation"], health["loadCount"]) == (2, 1, 1)
        directory = _store_dir(instance)
        assert directory.startswith("/dev/shm/reflexdb-") and sorted(os.listdir(directory)) == [
            "control.sock", "current", "gen-1.sqlite", "gen-1.sqlite-shm", "gen-1.sqlite-wal", "lock",
            "settings.json", "state.json"]
        assert oct(os.stat(directory).st_mode & 0o777) == "0o700"

        instance.runtime.stop(instance.handle)
        assert not os.path.exists(directory)

    def test_a_killed_reader_is_replaced_without_a_reload(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, workers=2)
        readers, writer = instance_processes(instance.handle.pid)
        before = instance.health()

        os.kill(readers[0], signal.SIGKILL)   # gunicorn's master forks a new reader

        instance.wait_health(lambda h: len(instance_processes(instance.handle.pid)[0]) == 2
                             and readers[0] not in instance_processes(instance.handle.pid)[0],
                             20, "a new reader")
        for _ in range(6):   # over both readers
            response = instance.query(NESTED_QUERY)
            assert (response.status_code, response.json()) == (200, expected_nested_answer())
        health = instance.health()
        assert instance_processes(instance.handle.pid)[1] == writer
        assert {k: health[k] for k in ("loadCount", "swapCount", "generation", "lastSyncAt")} == {
            k: before[k] for k in ("loadCount", "swapCount", "generation", "lastSyncAt")}
        assert health["loadCount"] == 1

    def test_a_killed_writer_is_restarted_and_keeps_the_snapshot(self, start_instance,
                                                                 mysql_blog, runtime):
        instance = start_instance(mysql_blog, workers=2, sync_interval_seconds=3600)
        readers, writer = instance_processes(instance.handle.pid)
        before = instance.health()
        state_path = os.path.join(_store_dir(instance), "state.json")
        answers, stop = [], threading.Event()

        def read():
            while not stop.is_set():
                answers.append(instance.query("users(id = 3) { id }").status_code)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            os.kill(writer, signal.SIGKILL)
            # The new writer has published its state (it listens by then).
            instance.wait_health(
                lambda h: json.load(open(state_path))["writerPid"] not in (None, writer)
                and h.get("status") == "ok", 20, "a new writer")
        finally:
            stop.set()
            reader.join()

        assert set(answers) == {200}   # the readers never stopped serving
        health = instance.health()
        assert {k: health[k] for k in ("loadCount", "swapCount", "generation", "lastSyncAt")} == {
            k: before[k] for k in ("loadCount", "swapCount", "generation", "lastSyncAt")}
        assert instance_processes(instance.handle.pid)[0] == readers
        # The new writer takes commands.
        assert runtime.reload(instance.handle) == {"status": "reloading", "swapCount": 0}
        health = instance.wait_health(lambda h: h["swapCount"] == 1, 20, "the reload")
        assert (health["loadCount"], health["generation"]) == (2, 2)

    def test_a_killed_master_leaves_no_store_behind(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, workers=1)
        directory = _store_dir(instance)
        family = [psutil.Process(instance.handle.pid),
                  *psutil.Process(instance.handle.pid).children()]

        os.kill(instance.handle.pid, signal.SIGKILL)   # no on_exit hook runs

        _gone, alive = psutil.wait_procs(family, timeout=20)
        assert alive == []   # the writer and the reader follow their master
        assert not os.path.exists(directory)

    def test_a_store_left_by_a_killed_instance_is_removed_by_the_next(self, start_instance,
                                                                      mysql_blog):
        instance = start_instance(mysql_blog, workers=1)
        directory = _store_dir(instance)
        family = [psutil.Process(instance.handle.pid),
                  *psutil.Process(instance.handle.pid).children()]
        # Master, writer and readers killed together, so nobody cleans up: stopped first,
        # or the writer would remove the directory on seeing its master die.
        for process in family:
            process.suspend()
        for process in family:
            process.kill()
        psutil.wait_procs(family, timeout=20)
        assert os.path.exists(os.path.join(directory, "current"))
        TestStaleDirectories._age(directory)

        start_instance(mysql_blog, workers=1)

        assert not os.path.exists(directory)
