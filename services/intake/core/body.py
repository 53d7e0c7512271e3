"""Request bodies decoded once, strictly: msgspec's JSON decoder with the contract's exact types.

Litestar's own conversion of a ``data`` argument is lenient (``"34.0"`` becomes 34.0, ``"true"`` True, a
number a datetime). ``StrictBody``, the app's data DTO, replaces it: the raw bytes go straight to
``msgspec.json.decode(..., type=<the handler's data annotation>)``, so handlers receive the strict Struct
and nothing decodes the body a second time. The OpenAPI document describes the annotation as before.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any, ClassVar

import msgspec
from litestar.dto import AbstractDTO, DTOConfig, DTOFieldDefinition
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from services.intake.core.fields import refusal
from services.intake.core.problems import Problem, invalid_body, malformed_body

__all__ = ["JSON_MEDIA_TYPES", "StrictBody", "check_media_type"]


_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@functools.cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


def _well_formed(value: bytes) -> Any:
    """The body as plain JSON values, or the 400 for one that is not well-formed JSON (only asked once a
    typed decode refused it)."""
    try:
        return _ANY.decode(value)
    except msgspec.DecodeError as exc:  # a number beyond range is a ValidationError here: still not JSON
        raise malformed_body(exc) from None
    except RecursionError:
        raise Problem(400, "The request body is nested too deeply.", slug="malformed-json") from None


# The media types a JSON body may come as; a handler may name others with opt={"media_types": (...)}
# (the FHIR routes: application/fhir+json).
JSON_MEDIA_TYPES: tuple[str, ...] = ("application/json",)


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None, allowed: tuple[str, ...] = JSON_MEDIA_TYPES) -> None:
    """415 unless the body's Content-Type (parameters such as charset aside) is one of ``allowed``."""
    media = _media_type(content_type)
    if media not in allowed:
        got = f"{media!r}" if media else "no Content-Type"
        raise Problem(
            415,
            f"The request body must be sent as {' or '.join(allowed)} (got {got}).",
            headers={"Accept-Post": ", ".join(allowed)},
        )


class StrictBody(AbstractDTO[Any]):
    """The data DTO of every handler: decode the body into the handler's ``data`` annotation, strictly."""

    config: ClassVar[DTOConfig] = DTOConfig()

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        # No transfer model: the body decodes into the annotated Struct itself.
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def is_supported_model_type_field(cls, field_definition: FieldDefinition) -> bool:
        # Never used for responses: those are encoded as Litestar always does.
        return False

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: Any = None,
    ) -> None:
        _decoder(field_definition.annotation)  # build the decoder once, at start-up

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        # The same schema Litestar documents for a plain ``data`` annotation.
        schema: Reference | Schema = schema_creator.for_field_definition(field_definition)
        return schema

    def decode_bytes(self, value: bytes) -> Any:
        connection = self.asgi_connection
        field = connection.route_handler.parsed_data_field
        assert field is not None  # Litestar asks the data DTO only for handlers that take ``data``
        if value.strip():
            # An empty body is the 400 "body required" below, whatever its (missing) Content-Type.
            allowed = tuple(connection.route_handler.opt.get("media_types", JSON_MEDIA_TYPES))
            check_media_type(connection.headers.get("content-type"), allowed)
        try:
            return _decoder(field.annotation).decode(value)
        except msgspec.ValidationError as exc:
            # The typed decoder stops at the first error: a walk of the plain JSON finds them all. A
            # body that is not JSON at all (malformed further on, a number beyond range, nested too
            # deeply) is still the 400 it always was.
            raise refusal(_well_formed(value), field.annotation, exc) from None
        except msgspec.DecodeError as exc:
            raise invalid_body(exc) from None

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        field = self.asgi_connection.route_handler.parsed_data_field
        assert field is not None
        try:
            return msgspec.convert(value, field.annotation)
        except msgspec.ValidationError as exc:
            raise refusal(value, field.annotation, exc) from None
