"""API errors and the metav1.Status bodies the real API server sends.

Wording follows k8s.io/apimachinery/pkg/api/errors (NewNotFound, NewAlreadyExists,
NewConflict, NewInvalid, NewResourceExpired, ...) and field.Error.Error() from
k8s.io/apimachinery/pkg/util/validation/field, because clients and people match on it.
"""

import json


class ApiError(Exception):
    """An error with the HTTP code, reason and message of a metav1.Status."""

    code = 500
    reason = "InternalError"

    def __init__(self, message, code=None, reason=None, details=None, headers=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.details = details
        self.headers = headers or {}

    @property
    def status(self):
        return status_body(self.code, self.reason, self.message, self.details)

    def __str__(self):
        return self.message


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


def status_body(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def success_status(details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


def _qualified(resource, group):
    return f"{resource}.{group}" if group else resource


def not_found(resource, group, name):
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return NotFound(f'{_qualified(resource, group)} "{name}" not found', details=details)


def already_exists(resource, group, name):
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return AlreadyExists(f'{_qualified(resource, group)} "{name}" already exists', details=details)


def conflict(resource, group, name, why=None):
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return Conflict(f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                    details=details)


def too_old(requested, oldest):
    # apiserver watch cache: errors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", ...))
    return Gone(f"too old resource version: {requested} ({oldest})")


def too_large_resource_version(wanted, current):
    """storage.NewTooLargeResourceVersionError: errors.NewTimeoutError (504, "Timeout: ...",
    retryAfterSeconds) with a ResourceVersionTooLarge cause."""
    return ApiError(f"Timeout: Too large resource version: {wanted}, current: {current}", code=504,
                    reason="Timeout",
                    details={"causes": [{"reason": "ResourceVersionTooLarge",
                                         "message": "Too large resource version"}],
                             "retryAfterSeconds": 1},
                    headers={"Retry-After": "1"})


def internal_error(why):
    return ApiError(f"Internal error occurred: {why}", code=500, reason="InternalError",
                    details={"causes": [{"message": why}]})


def too_many_requests(retry_after):
    return ApiError("Too many requests, please try again later.", code=429,
                    reason="TooManyRequests", details={"retryAfterSeconds": retry_after},
                    headers={"Retry-After": str(retry_after)})


def unauthorized():
    return ApiError("Unauthorized", code=401, reason="Unauthorized")


# ---- field errors (k8s.io/apimachinery/pkg/util/validation/field) ----

def go_value(value):
    """Render a value the way field.Error does: strings quoted, numbers plain."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class FieldError:
    """One field.Error: type is Required, Invalid, NotSupported, Forbidden, Duplicate, TooLong."""

    _reasons = {"Required": "FieldValueRequired", "Invalid": "FieldValueInvalid",
                "NotSupported": "FieldValueNotSupported", "Forbidden": "FieldValueForbidden",
                "Duplicate": "FieldValueDuplicate", "TooLong": "FieldValueTooLong",
                "TooMany": "FieldValueTooMany"}
    _labels = {"Required": "Required value", "Invalid": "Invalid value",
               "NotSupported": "Unsupported value", "Forbidden": "Forbidden",
               "Duplicate": "Duplicate value", "TooLong": "Too long", "TooMany": "Too many"}

    def __init__(self, kind, field, value=None, detail="", raw_value=None):
        self.kind = kind
        self.field = field
        self.value = value
        self.detail = detail
        self.raw_value = raw_value  # preformatted Go rendering of value, if any

    def body(self):
        s = self._labels[self.kind]
        if self.kind in ("Invalid", "NotSupported", "Duplicate"):
            s += ": " + (self.raw_value if self.raw_value is not None else go_value(self.value))
        if self.detail:
            s += ": " + self.detail
        return s

    def __str__(self):
        return f"{self.field}: {self.body()}"

    def cause(self):
        return {"reason": self._reasons[self.kind], "message": self.body(), "field": self.field}


def required(field, detail=""):
    return FieldError("Required", field, detail=detail)


def invalid(field, value, detail):
    return FieldError("Invalid", field, value, detail)


def forbidden(field, detail):
    return FieldError("Forbidden", field, detail=detail)


def not_supported(field, value, supported, raw_value=None):
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError("NotSupported", field, value, detail, raw_value=raw_value)


def invalid_error(kind, group, name, errs):
    """errors.NewInvalid: 'Kind.group "name" is invalid: <aggregate>'."""
    qkind = f"{kind}.{group}" if group else kind
    if len(errs) == 1:
        agg = str(errs[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errs) + "]"
    details = {"name": name, "kind": kind, "causes": [e.cause() for e in errs]}
    if group:
        details["group"] = group
    return Invalid(f'{qkind} "{name}" is invalid: {agg}', details=details)
