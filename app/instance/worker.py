"""The reader's gunicorn worker: gthread, with less work per keep-alive request.

gunicorn's `ThreadWorker` hands a kept-alive connection back to its main
thread after every response (a wake-up through a pipe, `setblocking`, an epoll
register, then an unregister and a hand-over to a pool thread when the next
request arrives) and sends each response in two writes (the headers, then the
body). Under the benchmark's load that machinery took half of a reader's busy
time (docs/instance.md, "Serving"). `ReaderWorker` changes only that:

- after a keep-alive response, the thread that served it waits a moment
  (`LINGER_SECONDS`) for the connection's next request and serves it itself;
  it gives the connection back to the poller when none comes, when another
  connection is waiting for a thread, or when the worker stops;
- headers and body leave in one `sendall`;
- sockets stay in blocking mode for their whole life; the kernel bounds every
  read and write instead (`SO_RCVTIMEO`, `SO_SNDTIMEO`), so a client that
  stops sending in the middle of a request, or stops reading its answer, is
  disconnected after `READ_TIMEOUT_SECONDS` / `WRITE_TIMEOUT_SECONDS` rather
  than holding a thread, and a request must have arrived whole
  `REQUEST_DEADLINE_SECONDS` after its first byte (one trickling in a byte at a
  time would otherwise restart the read timeout for ever);
- a body of known length (up to maxQueryBytes) or a chunked one (up to a
  byte past it) is read before the app runs, so a stalled body meets the read
  timeout here (the connection is closed, no answer), not inside the app
  (where it was a 500);
- the heartbeat file is touched at most once a second, not on every wake-up;
- a reader holding more connections than another lets it accept first
  (`LoadBoard`), so keep-alive connections spread over the readers.

Everything else is gunicorn's: accepting, the 5 s wait for a new
connection's first bytes on the poller, keep-alive timeouts, max requests,
graceful stop ("Connection: close" while draining), error pages.
"""

from __future__ import annotations

import errno
import io
import json
import mmap
import select
import selectors
import socket
import struct
import time
from datetime import timedelta
from functools import partial

from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers import gthread

from app.logs import redact

# How long a thread waits on its connection for the next request before it
# hands the connection back to the poller, and how often it looks meanwhile
# whether another connection waits for a thread.
LINGER_SECONDS = 0.05
LINGER_SLICE_MS = 1
# A read or a write that makes no progress for this long ends the connection.
READ_TIMEOUT_SECONDS = 5.0
WRITE_TIMEOUT_SECONDS = 30.0
# A request (its line, headers and the body read before the app) must have arrived whole this
# long after it began to: the read timeout restarts with every byte, so a client trickling
# one every few seconds would otherwise hold a thread for as long as it likes.
REQUEST_DEADLINE_SECONDS = 15.0
HEARTBEAT_SECONDS = 1.0
# How long a reader holding more connections than another waits before it
# accepts a new one itself (see ReaderWorker.accept).
ACCEPT_STEP_ASIDE_SECONDS = 0.002
# ... and how long it accepts at once after the others let a connection wait that long.
ACCEPT_STEP_ASIDE_PAUSE_SECONDS = 0.1
# The readers' connection counts, shared (LoadBoard): a slot nobody holds.
FREE_SLOT = 0x7FFFFFFF


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


_RCVTIMEO = _timeval(READ_TIMEOUT_SECONDS)
_SNDTIMEO = _timeval(WRITE_TIMEOUT_SECONDS)


class JoinedResponse(wsgi.Response):
    """gunicorn's response, sending the headers with the first body bytes (one `sendall`)."""

    _pending: bytes | None = None

    def send_headers(self):
        if self.headers_sent:
            return
        tosend = self.default_headers()
        tosend.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])
        self._pending = ("%s\r\n" % "".join(tosend)).encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data):
        pending, self._pending = self._pending, None
        if pending is not None:
            if self.chunked:
                data = b"%X\r\n%s\r\n" % (len(data), data)
            self.sock.sendall(pending + data)
        else:
            util.write(self.sock, data, self.chunked)

    def _flush(self):
        pending, self._pending = self._pending, None
        if pending is not None:
            self.sock.sendall(pending)

    def sendfile(self, respiter):
        # The instance never answers with a file; write() sends what is left.
        return False

    def close(self):
        if not self.headers_sent:
            self.send_headers()
        if self.chunked:
            self._emit_body(b"")  # the last chunk, after the headers if nothing was sent
            return
        self._flush()

    def default_headers(self):
        headers = super().default_headers()
        headers[2] = "Date: %s\r\n" % _http_date()
        return headers


_date_cache = (0, "")


def _http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = util.http_date(now)
        _date_cache = (now, text)
    return text


class LoadBoard:
    """How many connections each reader holds, in memory the master shares with its readers.

    The master gives each reader a slot before forking it and frees the slot
    when it reaps it; a reader writes its own count, and reads the others'
    when it is about to accept.
    """

    def __init__(self, slots: int = 64):
        self._memory = mmap.mmap(-1, 4 * slots)  # anonymous and shared: inherited by forks
        self.counts = memoryview(self._memory).cast("i")
        for slot in range(slots):
            self.counts[slot] = FREE_SLOT

    def assign(self, worker, workers) -> None:
        """Give `worker` (about to be forked) a slot no live reader holds."""
        taken = {w.load_slot for w in workers if w.load_board is not None}
        free = [slot for slot in range(len(self.counts)) if slot not in taken]
        if free:
            worker.load_board, worker.load_slot = self.counts, free[0]
            self.counts[free[0]] = 0

    def release(self, worker) -> None:
        if worker.load_board is not None:
            self.counts[worker.load_slot] = FREE_SLOT


class ReaderWorker(gthread.ThreadWorker):
    """gthread with keep-alive requests served on the same thread (see the module docstring)."""

    _last_notify = float("-inf")
    _resume_accept_at = 0.0
    _stepped_aside = False
    _step_aside_again_at = 0.0
    # Set by the master before the fork (LoadBoard.assign): the shared counts
    # and this reader's slot in them; None = no balancing.
    load_board = None
    load_slot = 0
    # Bodies up to this size are read before the app runs (the instance sets
    # it to maxQueryBytes after the fork: larger ones are refused unread).
    max_buffered_body = 64 * 1024
    request_deadline = REQUEST_DEADLINE_SECONDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # connection -> when its current request began to arrive (until it has been read)
        self._arriving: dict = {}

    def notify(self):
        now = time.monotonic()
        if now - self._last_notify >= HEARTBEAT_SECONDS:
            self._last_notify = now
            super().notify()
            self._end_overdue_requests(now)

    def _end_overdue_requests(self, now: float) -> None:
        """Shut the sockets of requests still arriving past the deadline: the thread reading
        one sees the end of its input and closes the connection, without an answer."""
        for conn, since in list(self._arriving.items()):
            if now - since > self.request_deadline and self._arriving.get(conn) == since:
                self._arriving.pop(conn, None)
                self.log.info("closed a connection from %s: its request was still arriving "
                              "after %.0f s", conn.client, self.request_deadline)
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass   # already gone

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._resume_accept_at:
            return  # accept() stepped aside for a moment (below)
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        wait = self._resume_accept_at - time.monotonic()
        if wait > 0 and self.alive:
            timeout = min(timeout, wait)  # wake up to accept again
        super().wait_for_and_dispatch_events(timeout)
        self._publish_load()

    def accept(self, listener):
        # Every reader sees the shared listening socket readable, and a
        # keep-alive connection stays with the reader that took it: a reader
        # holding more connections than another lets a moment pass first, so
        # the one holding the fewest takes the new connection. (Otherwise two
        # of wrk's four connections could land on one reader's two threads
        # while another reader idled.) When the others do not take it in that
        # moment (they are busy too: clients opening a connection per request
        # under load), the reader stops stepping aside for a while, so
        # accepting keeps its pace.
        now = time.monotonic()
        if (not self._stepped_aside and now >= self._step_aside_again_at
                and self._others_hold_fewer()):
            self._stepped_aside = True
            self._resume_accept_at = now + ACCEPT_STEP_ASIDE_SECONDS
            super().set_accept_enabled(False)
            return
        stepped_aside, self._stepped_aside = self._stepped_aside, False
        self._resume_accept_at = 0.0
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return  # another reader took it
        if stepped_aside:
            self._step_aside_again_at = now + ACCEPT_STEP_ASIDE_PAUSE_SECONDS
        self.nr_conns += 1
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _RCVTIMEO)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SNDTIMEO)
        self._publish_load()
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())
        self.enqueue_req(conn)

    def _others_hold_fewer(self) -> bool:
        board, mine = self.load_board, self.nr_conns
        if board is None or not mine:
            return False
        return any(held < mine for slot, held in enumerate(board) if slot != self.load_slot)

    def _publish_load(self) -> None:
        if self.load_board is not None:
            self.load_board[self.load_slot] = self.nr_conns

    def finish_request(self, conn, fs):
        """gunicorn's, without switching the socket to non-blocking for the poller.

        (epoll does not need it, and nothing reads the socket on the main thread.)
        """
        try:
            result = fs.result() if not fs.cancelled() else False
            if result is gthread._DEFER and self.alive:
                conn.timeout = time.monotonic() + self.cfg.keepalive
                self.pending_conns.append(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ,
                                     partial(self.on_pending_socket_readable, conn))
            elif result:
                if conn.parser.unreader.buf.getvalue():
                    self.enqueue_req(conn)  # the next request is already read
                    return
                conn.set_timeout()
                if not self.alive:
                    conn.timeout = min(conn.timeout,
                                       time.monotonic() + gthread.STOP_KEEPALIVE_LINGER)
                self.keepalived_conns.append(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ,
                                     partial(self.on_client_socket_readable, conn))
            else:
                self.nr_conns -= 1
                conn.close(graceful=True)
        except Exception:
            self.nr_conns -= 1
            conn.close()

    def handle(self, conn):
        """Serve the connection's requests while they keep coming; runs in a pool thread.

        Returns True to keep the connection on the poller, False to close it,
        gthread's `_DEFER` when a new connection sent nothing yet.
        """
        if conn.is_http2:
            return super().handle(conn)
        if not conn.initialized and not conn.data_ready and \
                not conn.wait_for_data(gthread.DEFAULT_WORKER_DATA_TIMEOUT):
            return gthread._DEFER  # nothing sent yet: gunicorn's poller waits for it
        req = None
        try:
            conn.init()  # blocking from here on; the kernel's timeouts bound each call
            if conn.is_http2:
                return super().handle(conn)
            while True:
                self._arriving[conn] = time.monotonic()
                req = next(conn.parser)
                if not req:
                    return False
                if not self._keepalive_after(conn, self.handle_request(req, conn)):
                    return False
                req = None
                if conn.parser.unreader.buf.getvalue():
                    continue  # the next request is already read (pipelined)
                if not self._linger(conn):
                    return True
        except http.errors.NoMoreData as exc:
            self.log.debug("Ignored premature client disconnection. %s", exc)
        except StopIteration as exc:
            self.log.debug("Closing connection. %s", exc)
        except (BlockingIOError, TimeoutError):
            # SO_RCVTIMEO / SO_SNDTIMEO: the client stalled mid-request or stopped reading.
            self.log.info("closed a stalled connection from %s (a read waited %.0f s or a "
                          "write %.0f s)", conn.client, READ_TIMEOUT_SECONDS,
                          WRITE_TIMEOUT_SECONDS)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.debug("Ignoring socket error %s", exc)
            else:
                self.log.exception("Socket error processing request.")
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
        finally:
            self._arriving.pop(conn, None)
        return False

    def handle_error(self, req, client, addr, exc):
        """gunicorn's status, log line and access log for a request it could not serve (a
        malformed request line, header or chunk; an error before the app answered), with the
        instance's `{error, message}` envelope instead of gunicorn's HTML page."""
        page = _ErrorPage()
        super().handle_error(req, page, addr, exc)
        status_line = page.data.split(b"\r\n", 1)[0].decode("latin-1")
        status = int(status_line.split()[1]) if status_line.startswith("HTTP/") else 500
        if status >= 500 and status != 501:
            body = {"error": "internal_error", "message": "internal error"}
        else:   # 4xx, and 501 for a transfer coding the client sent
            body = {"error": "invalid_request", "message": f"the request is not valid HTTP: {redact(str(exc))[:200]}"}
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            util.write_nonblock(client, (
                f"{status_line}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1") + data)
        except OSError:
            self.log.debug("Failed to send error message.")

    def _linger(self, conn) -> bool:
        """Wait briefly for the connection's next request: True when it came."""
        deadline = time.monotonic() + LINGER_SECONDS
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        queue = self.tpool._work_queue
        while self.alive and queue.empty():
            if poller.poll(LINGER_SLICE_MS):
                return True
            if time.monotonic() >= deadline:
                return False
        return False

    def _keepalive_after(self, conn, keepalive):
        if not keepalive:
            return False
        # The body was read to its end (the usual case): nothing to drain, and
        # no timeout to set and restore on the socket as gunicorn's drain does.
        mesg = conn.parser.mesg
        body = getattr(mesg, "body", None)
        reader = getattr(body, "reader", None)
        if (type(reader) is LengthReader and reader.length == 0 and not body.failed
                and not body.buf.tell()):
            return True
        return super()._keepalive_after(conn, keepalive)

    def _read_body(self, req, environ) -> bool:
        """Read a body of known length up to `max_buffered_body`, or a chunked one up to one
        byte past it, before the app runs.

        The app then reads it from memory, and a client that stalls in the
        middle of its body meets the read timeout here (the connection is
        closed) instead of inside the app. False: the client left mid-body.
        """
        reader = req.body.reader
        if type(reader) is ChunkedReader:
            # Up to one byte past the bound: the app answers a longer body 413 from what it
            # got, and the connection closes after that answer (the rest is never read).
            data = req.body.read(self.max_buffered_body + 1)
            if len(data) > self.max_buffered_body:
                req.must_close = True
            environ["wsgi.input"] = io.BytesIO(data)
            return True
        if type(reader) is not LengthReader or not reader.length or \
                reader.length > self.max_buffered_body:
            return True
        length = reader.length
        data = req.body.read(length)
        if len(data) < length:
            return False
        environ["wsgi.input"] = io.BytesIO(data)
        return True

    def handle_request(self, req, conn):
        # gunicorn's, with JoinedResponse for the response.
        environ = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = time.monotonic()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg,
                                        response_class=JoinedResponse)
            environ["wsgi.multithread"] = True
            read = self._read_body(req, environ)
            self._arriving.pop(conn, None)   # all of it that is read before the app
            if not read:
                return False
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            elif len(self.keepalived_conns) >= self.max_keepalived:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, _elapsed(request_start))
                if hasattr(respiter, "close"):
                    respiter.close()
            if resp.should_close():
                self.log.debug("Closing connection.")
                return False
        except OSError:
            raise
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return True


class _ErrorPage:
    """Takes the place of the client's socket while gunicorn's `handle_error` writes its HTML
    error page: keeps the bytes (their status line is used) instead of sending them."""

    def __init__(self):
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0   # gunicorn's write_nonblock then writes at once

    def sendall(self, data: bytes) -> None:
        self.data += data


def _elapsed(started: float) -> timedelta:
    return timedelta(seconds=time.monotonic() - started)


__all__ = ["JoinedResponse", "LoadBoard", "ReaderWorker"]
