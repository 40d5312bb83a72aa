"""Connexion's request validators with messages that name the field and say what to send,
and the strict, bounded JSON parser every request body goes through."""

from __future__ import annotations

import json
import logging
import math
import re

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.utils import is_null, is_nullable
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from app.contracts.messages import JSON_TERMS, describe_schema_error, line_column, sentence

# JSON bodies get the same bounds as reflexdb.yaml.
from app.contracts.schema_config import MAX_DEPTH, MAX_INTEGER_DIGITS


def describe(error: ValidationError, name: str = "") -> str:
    """One sentence: `<field>: <what is wrong>` (`name`: a parameter's name)."""
    return sentence(*describe_schema_error(error, JSON_TERMS, root=name))


class BodyProblem(Exception):
    """A JSON body that parses but breaks a rule of ours (a repeated key, a number out of range)."""


# Tokens that matter for the bounds: whole strings (skipped: they may hold brackets or
# digits), brackets, and digit runs longer than any accepted number.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|\d{%d,}' % (MAX_INTEGER_DIGITS + 1))
_LONG_NUMBER = re.compile(r"\d{%d}" % (MAX_INTEGER_DIGITS + 1))
# Bodies above this size are parsed on a worker thread, not on the event loop.
_PARSE_INLINE_BYTES = 64 * 1024


def parse_json(text: str):
    """Strict JSON within the bounds: at most MAX_DEPTH levels of nesting, integers of at
    most MAX_INTEGER_DIGITS digits (checked before parsing, so neither the parser's recursion
    nor Python's integer conversion limit is ever reached), keys unique in each object, no
    NaN or Infinity. Raises BadRequestProblem naming the key or the line and column."""
    _check_bounds(text)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except BodyProblem as exc:
        raise BadRequestProblem(detail=f"the request body {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequestProblem(detail=f"the request body is not valid JSON: {exc}") from None


def _check_bounds(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_DEPTH and not _LONG_NUMBER.search(text):
        return   # the usual body: nothing to count
    depth = 0
    for match in _STRUCTURE.finditer(text):
        first = text[match.start()]
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise BadRequestProblem(detail=f"the request body is nested deeper than {MAX_DEPTH} "
                                               f"levels at {_where(text, match.start())}")
        elif first in "]}":
            depth -= 1
        elif first != '"':
            raise BadRequestProblem(detail=f"the request body holds a number of more than "
                                           f"{MAX_INTEGER_DIGITS} digits at {_where(text, match.start())}")


def _where(text: str, position: int) -> str:
    line, column = line_column(text, position)
    return f"line {line} column {column} (char {position})"


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyProblem(f"repeats the key {json.dumps(key)} in one object; send each key once")
            seen.add(key)
    return obj


def _no_constant(name: str):
    raise BodyProblem(f"is not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyProblem(f"holds a number out of range: {text[:40]}")
    return value


# A validator per schema, built once: building one builds its reference registry, which cost
# more than validating a path parameter or a small body with it (Connexion builds one per
# request). The spec's schemas live as long as the app; the bound only guards against a
# caller that passes a new schema object every time.
_VALIDATORS: dict[tuple[type, int], tuple[dict, Draft4Validator]] = {}
_MAX_VALIDATORS = 1024


def cached_validator(cls: type, schema: dict) -> Draft4Validator:
    """The `cls` validator (with the format checker) of `schema`, built at its first use."""
    key = (cls, id(schema))
    entry = _VALIDATORS.get(key)
    if entry is None or entry[0] is not schema:
        if len(_VALIDATORS) >= _MAX_VALIDATORS:
            _VALIDATORS.clear()
        entry = (schema, cls(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _VALIDATORS[key] = entry
    return entry[1]


class RequestBodyValidator(JSONRequestBodyValidator):
    async def wrap_receive(self, receive, *, scope):
        headers = Headers(scope=scope)
        if "content-type" not in headers and int(headers.get("content-length") or 0):
            # Connexion would guess JSON, and Flask then hand the handler raw bytes.
            raise UnsupportedMediaTypeProblem(
                detail="send the body as application/json: the Content-Type header is missing")
        return await super().wrap_receive(receive, scope=scope)

    def _validate(self, body):
        if not self._nullable and body is None:
            raise BadRequestProblem(detail="the request body must be a JSON object")
        try:
            return cached_validator(Draft4RequestValidator, self._schema).validate(body)
        except ValidationError as exception:
            raise BadRequestProblem(detail=describe(exception)) from None

    async def _parse(self, stream, scope):
        raw = b"".join([chunk async for chunk in stream])
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail=f"the request body is not valid {self._encoding} text") from None
        except LookupError:
            raise UnsupportedMediaTypeProblem(detail=f"unknown charset {self._encoding!r}: "
                                                     f"send UTF-8") from None
        if not text:
            return None
        if len(raw) > _PARSE_INLINE_BYTES:
            return await run_in_threadpool(parse_json, text)
        return parse_json(text)


class RequestParameterValidator(ParameterValidator):
    def validate_query_parameter_list(self, request, security_params=None):
        # Without a query string there is no unknown parameter, and nothing to parse (Connexion
        # parses it for every request).
        if not request.scope.get("query_string"):
            return set()
        return super().validate_query_parameter_list(request, security_params)

    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            return f"{param['name']}: is required" if param.get("required") else None
        try:
            cached_validator(Draft4Validator, param.get("schema", param)).validate(value)
        except ValidationError as exception:
            return describe(exception, param_name or param.get("name", ""))
        return None


class ResponseBodyValidator(JSONResponseBodyValidator):
    """Connexion's response check (on in tests), minus HEAD answers: they carry no body."""

    def wrap_send(self, send):
        return send if self._scope.get("method") == "HEAD" else super().wrap_send(send)


class _MediaTypesNotice(logging.Filter):
    """Drops Connexion's warning that an operation "accepts multiple content types": it logs it
    up to three times per request to such an operation (`PUT /databases/{id}/config` takes JSON
    and YAML, on purpose), naming JSON even for a YAML body."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("this operation accepts multiple content types")


MEDIA_TYPES_NOTICE = _MediaTypesNotice()   # one instance: addFilter() adds it once however many apps


def quiet_media_types_notice() -> None:
    logging.getLogger("connexion.operations.openapi3").addFilter(MEDIA_TYPES_NOTICE)


class PreparedValidationOperation(RequestValidationOperation):
    """Connexion's request validation of one operation, with what depends only on the
    operation built once: Connexion builds two URI parsers, a parameter validator and the
    body's definition (a media-type table) for every request. The checks and their order are
    Connexion's: parameters, then the media type, then the body.
    """

    def __init__(self, next_app, **kwargs):
        super().__init__(next_app, **kwargs)
        operation = self._operation
        self._uri_parser = operation.uri_parser_class(operation.parameters, operation.body_definition())
        self._parameter_validator = self._validator_map["parameter"](
            operation.parameters, uri_parser=self._uri_parser, strict_validation=self.strict_validation,
            security_query_params=self.security_query_params)
        self._bodies: dict[str, tuple | None] = {}   # media type -> what the body's validator takes

    def _body(self, mime_type: str) -> tuple | None:
        """(validator class, schema, required, nullable) of a body of `mime_type`, or None
        when it is not validated."""
        if mime_type not in self._bodies:
            body = None
            definition = self._operation.body_definition(mime_type)
            schema = definition.get("schema", {})
            validator = self._validator_map["body"].get(mime_type) if schema else None
            if validator is not None:
                body = (validator, schema, self._operation.request_body.get("required", False),
                        is_nullable(definition))
            if len(self._bodies) < 16:     # a client picks the media type: keep the table small
                self._bodies[mime_type] = body
            return body
        return self._bodies[mime_type]

    async def __call__(self, scope, receive, send):
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        body = self._body(mime_type)
        if body is not None:
            validator, schema, required, nullable = body
            receive, scope = await validator(
                schema=schema, required=required, nullable=nullable, encoding=encoding,
                strict_validation=self.strict_validation, uri_parser=self._uri_parser,
            ).wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


class PreparedValidationAPI(RequestValidationAPI):
    def make_operation(self, operation) -> PreparedValidationOperation:
        return PreparedValidationOperation(self.next_app, operation=operation,
                                           strict_validation=self.strict_validation,
                                           validator_map=self.validator_map)


class PreparedValidationMiddleware(RequestValidationMiddleware):
    """Connexion's request validation middleware with operations that prepare once."""

    api_cls = PreparedValidationAPI


def validator_map() -> dict:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = RequestBodyValidator
    response = MediaTypeDict(dict(VALIDATOR_MAP["response"]))
    response["*/*json"] = ResponseBodyValidator
    return {**VALIDATOR_MAP, "parameter": RequestParameterValidator, "body": body, "response": response}
