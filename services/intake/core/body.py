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

from services.intake.core.problems import Problem, invalid_body, malformed_body

__all__ = ["StrictBody"]


_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@functools.cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


def _well_formed(value: bytes) -> None:
    """Raise the 400 for a body that is not well-formed JSON (only asked once a typed decode refused it)."""
    try:
        _ANY.decode(value)
    except msgspec.DecodeError as exc:  # a number beyond range is a ValidationError here: still not JSON
        raise malformed_body(exc) from None
    except RecursionError:
        raise Problem(400, "The request body is nested too deeply.", slug="malformed-json") from None


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
        field = self.asgi_connection.route_handler.parsed_data_field
        assert field is not None  # Litestar asks the data DTO only for handlers that take ``data``
        try:
            return _decoder(field.annotation).decode(value)
        except msgspec.ValidationError as exc:
            # The typed decoder stops at the first wrong type; a body that is not JSON at all (malformed
            # further on, a number beyond range, nested too deeply) is still the 400 it always was.
            _well_formed(value)
            raise invalid_body(exc) from None
        except msgspec.DecodeError as exc:
            raise invalid_body(exc) from None

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        field = self.asgi_connection.route_handler.parsed_data_field
        assert field is not None
        try:
            return msgspec.convert(value, field.annotation)
        except msgspec.ValidationError as exc:
            raise invalid_body(exc) from None
