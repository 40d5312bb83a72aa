"""The reader's worker class in parts (app/instance/worker.py); its behaviour over real
connections is tested in test_instance_http.py (TestConnections)."""

from __future__ import annotations

from types import SimpleNamespace

from gunicorn.config import Config

from app.instance.worker import FREE_SLOT, JoinedResponse, LoadBoard, ReaderWorker


class RecordingSocket:
    def __init__(self):
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))


def response(method: str = "POST") -> tuple[JoinedResponse, RecordingSocket]:
    sock = RecordingSocket()
    request = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    return JoinedResponse(request, sock, Config()), sock


def head_and_body(data: bytes) -> tuple[list[str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return [line for line in lines if not line.startswith(("Date:", "Server:"))], body


class TestJoinedResponse:
    def test_headers_and_body_leave_in_one_send(self):
        resp, sock = response()

        resp.start_response("200 OK", [("Content-Type", "application/json"),
                                       ("Content-Length", "9"), ("X-Request-Id", "abc")])
        resp.write(b'[{"id":1}')
        resp.write(b"]")   # past Content-Length: dropped, as gunicorn does
        resp.close()

        assert len(sock.sent) == 1
        assert head_and_body(sock.sent[0]) == ([
            "HTTP/1.1 200 OK", "Connection: keep-alive", "Content-Type: application/json",
            "Content-Length: 9", "X-Request-Id: abc"], b'[{"id":1}')

    def test_chunked_body_starts_with_the_headers(self):
        resp, sock = response()

        resp.start_response("200 OK", [("Content-Type", "application/json")])
        resp.write(b"[1,")
        resp.write(b"2]")
        resp.close()

        assert [head_and_body(sock.sent[0])[1], *sock.sent[1:]] == [
            b"3\r\n[1,\r\n", b"2\r\n2]\r\n", b"0\r\n\r\n"]
        assert "Transfer-Encoding: chunked" in head_and_body(sock.sent[0])[0]

    def test_a_response_without_body_sends_its_headers_at_close(self):
        resp, sock = response(method="HEAD")

        resp.start_response("200 OK", [("Content-Length", "5")])
        resp.write(b"hello")
        assert sock.sent == []
        resp.close()

        assert [head_and_body(data) for data in sock.sent] == [
            (["HTTP/1.1 200 OK", "Connection: keep-alive", "Content-Length: 5"], b"")]


class TestLoadBoard:
    def test_slots_are_given_out_and_taken_back(self):
        board = LoadBoard(slots=3)
        readers = [SimpleNamespace(load_board=None, load_slot=0) for _ in range(4)]

        for index, reader in enumerate(readers):
            board.assign(reader, readers[:index])
        board.release(readers[0])
        replacement = SimpleNamespace(load_board=None, load_slot=0)
        board.assign(replacement, readers[1:3])

        assert [r.load_slot for r in readers[:3]] == [0, 1, 2]
        assert readers[3].load_board is None   # no slot left: no balancing for it
        assert replacement.load_slot == 0
        assert list(board.counts) == [0, 0, 0]

    def test_a_reader_steps_aside_only_for_one_holding_fewer(self):
        board = LoadBoard(slots=4)
        worker = ReaderWorker.__new__(ReaderWorker)
        worker.load_board, worker.load_slot = board.counts, 1
        board.counts[0], board.counts[2] = 2, 3   # slot 3 is free

        held = {}
        for mine in (0, 1, 2, 3):
            worker.nr_conns = mine
            held[mine] = worker._others_hold_fewer()

        assert held == {0: False, 1: False, 2: False, 3: True}
        assert board.counts[3] == FREE_SLOT
