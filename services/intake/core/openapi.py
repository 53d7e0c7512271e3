"""Make the generated OpenAPI tell the truth: problem+json errors and closed request bodies."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from services.intake.core.schemas import Input

__all__ = ["refine_openapi"]

_ERRORS = {
    "400": "Malformed request (e.g. invalid JSON)",
    "401": "Missing or invalid credentials",
    "403": "Authenticated, but this role may not do this",
    "404": "No such resource (or not yours: existence is never revealed)",
    "409": "Conflict with the resource's current state",
    "413": "Request body over 64 KiB",
    "422": "Validation failed; `errors` lists the offending fields",
    "429": "Rate limit exceeded; see Retry-After",
    "503": "Temporarily unavailable; see Retry-After",
}

_PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    description="RFC 9457 problem details",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "instance": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "field": Schema(type=OpenAPIType.STRING),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
)


def _input_names() -> set[str]:
    seen: set[str] = set()
    stack: list[type] = [Input]
    while stack:
        cls = stack.pop()
        subclasses: list[type] = cls.__subclasses__()
        for sub in subclasses:
            seen.add(sub.__name__)
            stack.append(sub)
    return seen


def refine_openapi(app: Litestar) -> None:
    """Patch the (cached) schema once at start-up; Litestar serves this same object."""
    doc = app.openapi_schema
    if doc.components.schemas is None:
        doc.components.schemas = {}
    doc.components.schemas["Problem"] = _PROBLEM
    # Every request body struct refuses unknown fields (422), so the document must say so.
    inputs = _input_names()
    for name, schema in doc.components.schemas.items():
        if isinstance(schema, Schema) and name.rsplit(".", 1)[-1].rsplit("_", 1)[-1] in inputs:
            schema.additional_properties = False
    problem = {
        "application/problem+json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))
    }
    for item in (doc.paths or {}).values():
        for op in (item.get, item.put, item.post, item.delete, item.patch):
            if op is None:
                continue
            responses = op.responses if op.responses is not None else {}
            for status, description in _ERRORS.items():
                responses[status] = OpenAPIResponse(description=description, content=problem)
            op.responses = responses
