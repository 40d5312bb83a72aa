"""Every mutating operation (POST, PUT, PATCH, DELETE) runs guarded: idempotency and audit in one transaction.

`MutationResolver` is Connexion's RelativeResolver with each mutating operation's handler
wrapped, so an operation added to the spec gets both without code of its own. For one request:

    BEGIN
      claim the Idempotency-Key (POST with a key)    -> a stored answer: replay it
      SAVEPOINT (with a key only); the handler (its service's db.transaction() joins this one)
      store the answer under the key (POST with a key; 2xx and 4xx)
      INSERT the audit entry                          (on PostgreSQL in the COMMIT's round trip)
    COMMIT

So the effect, its answer for retries and its audit entry commit together or not at all.
With a key, a 4xx rolls back to the savepoint: no effect, but the key keeps its answer.
Without one, nothing precedes the handler, so a 4xx rolls the whole transaction back and
its audit entry is written on its own, like a 5xx's (an unexpected error, the store down),
which rolls everything back, claim included, so a retry runs afresh.

A lifecycle action wakes the engine inside this transaction, before the commit: harmless,
because the action holds the database's row lock (the write lock on SQLite) until then, and
the engine's first step, taking its lease, waits for it and so sees the committed row.
"""

from __future__ import annotations

import datetime as dt
import functools

import flask
from connexion.resolver import RelativeResolver, Resolution

from app.api import idempotency as wire
from app.api.audit import MUTATING, RequestFacts, facts_of, request_id, resource_of, status_of, write
from app.domain import audit, idempotency
from app.domain.errors import DomainError
from app.domain.idempotency import Answer
from app.storage.database import db


class MutationResolver(RelativeResolver):
    """Resolves operationIds in `root_path` (like RelativeResolver) and guards every mutating handler."""

    def __init__(self, root_path: str, *, idempotency_ttl: dt.timedelta = idempotency.DEFAULT_TTL):
        super().__init__(root_path)
        self.idempotency_ttl = idempotency_ttl

    def resolve(self, operation):
        resolution = super().resolve(operation)
        method = operation.method.upper()
        if method not in MUTATING:
            return resolution
        guard = Guard(operation.operation_id, method, self.idempotency_ttl)
        return Resolution(guard.wrap(resolution.function), resolution.operation_id)


class Guard:
    """Runs one mutating operation's handler with idempotency (POST) and its audit entry."""

    def __init__(self, operation_id: str, method: str, idempotency_ttl: dt.timedelta):
        self.operation_id = operation_id
        self.method = method
        self.idempotency_ttl = idempotency_ttl

    def wrap(self, handler):
        @functools.wraps(handler)   # Connexion reads the handler's parameters through __wrapped__
        def guarded(*args, **kwargs):
            return self.run(lambda: handler(*args, **kwargs), kwargs.get("user"), kwargs.get("body"))

        return guarded

    def run(self, call, principal, body):
        if principal is None:   # an operation without authentication belongs to no account
            return call()
        request = flask.request
        facts = facts_of(request.environ.get("asgi.scope", {})) or RequestFacts(
            request_id(request.headers), request.remote_addr)
        facts.recorded = True   # from here on, this guard writes the entry
        key = wire.key_of(request.headers) if self.method == "POST" else None
        fingerprint = idempotency.fingerprint(self.method, _path_and_query(request), body) if key else None
        entry = functools.partial(self._entry, principal, facts, key)
        try:
            with db.atomic():
                outcome = self._replay_or_run(call, principal, key, fingerprint, entry)
        except Exception as exc:
            # Rolled back, claim and all: a 5xx, a 4xx without a key, or the store failing the commit.
            write(entry(status_of(exc)))
            raise
        if isinstance(outcome, DomainError):
            raise outcome   # after the commit; app/api/errors.py renders it
        return outcome

    def _replay_or_run(self, call, principal, key, fingerprint, entry):
        """In the transaction: the stored answer, the handler's result, or the 4xx to raise after the commit."""
        if key is None:
            # Nothing precedes the handler in this transaction: a refusal it raises rolls all of
            # it back and run() records the entry, so no savepoint (two round trips) is needed.
            result = call()
            answer = wire.answer_of(result)
            audit.record(entry(answer.status, answer.headers))
            return result
        try:
            stored = idempotency.claim(principal.customer_id, key, fingerprint, self.operation_id,
                                       self.idempotency_ttl)
        except DomainError as exc:   # the key was used for another request
            audit.record(entry(status_of(exc)))
            return exc
        if stored is not None:
            audit.record(entry(stored.status, stored.headers, replayed=True))
            return wire.replay(stored)
        result, refusal, answer = self._call(call)
        idempotency.complete(principal.customer_id, key, fingerprint, answer)
        audit.record(entry(answer.status, answer.headers))
        return refusal if refusal is not None else result

    @staticmethod
    def _call(call):
        """Run the handler under a savepoint: (its result, the 4xx domain error it raised or None, the answer)."""
        try:
            with db.atomic():
                result = call()
        except DomainError as exc:
            status = status_of(exc)
            if status >= 500:
                raise
            return None, exc, Answer(status, {}, {"error": exc.code, "message": exc.message})
        return result, None, wire.answer_of(result)

    def _entry(self, principal, facts: RequestFacts, key: str | None, status: int,
               headers: dict | None = None, *, replayed: bool = False) -> audit.Entry:
        request = flask.request
        resource_type, resource_id = resource_of(request.path, request.view_args or {},
                                                 (headers or {}).get("Location") if status == 201 else None)
        return audit.Entry(
            customer_id=principal.customer_id, key_id=principal.key_id, operation_id=self.operation_id,
            status=status, request_id=facts.request_id, resource_type=resource_type,
            resource_id=resource_id, source_ip=facts.source_ip, idempotency_key=key, replayed=replayed)


def _path_and_query(request) -> str:
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path
