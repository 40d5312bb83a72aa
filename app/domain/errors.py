"""Domain errors. Each carries a stable `code`; the HTTP edge picks the status."""


class DomainError(Exception):
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    code = "invalid_request"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class PlanRequired(Forbidden):
    code = "plan_required"


class BuildCreditsExhausted(Forbidden):
    code = "build_credits_exhausted"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """409; `code` names which conflict (schema_in_use, name_taken, invalid_state...)."""

    code = "conflict"


class PreconditionFailed(DomainError):
    """412: an `If-Match` that no longer matches the resource's ETag; nothing was changed."""

    code = "precondition_failed"


class Unavailable(DomainError):
    """503: a dependency (the store) does not answer."""

    code = "unavailable"
