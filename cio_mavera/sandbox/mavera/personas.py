"""/personas: base personas to read, custom personas to create, update and delete (§5)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .base_personas import Persona, custom_traits
from .clock import now_unix
from .errors import MaveraHTTPError, invalid, missing, not_found
from .params import bool_param, page, read_body
from .resource import Resource
from .text import canonical, keywords

PERSONA_CREATE_CREDITS = 300
# Duplicate custom-persona name: 422 per integration pages only (§1.3); the code name is NOT FOUND.
DUPLICATE_NAME_STATUS = 422
DUPLICATE_NAME_CODE = "duplicate_name"
# Custom persona pipelines (§5.2). Per-pipeline required fields are NOT FOUND; north_star needs
# name + description ([2ND]), the guided pipelines need name + type.
PIPELINES = {"north_star": ("name", "description"), "intermediate": ("name", "type"),
             "advanced": ("name", "type")}
PERSONA_TYPES = ("B2B", "B2C")


class Personas(Resource):
    name = "/personas"

    async def get(self, request: Request) -> Response:
        people = self.account.all_personas()
        name = request.query_params.get("name")
        search = (request.query_params.get("search") or "").strip().lower()
        category = request.query_params.get("category")
        is_custom = bool_param(request, "is_custom")
        if name:
            people = [p for p in people if p.name.lower() == name.strip().lower()]
        if search:
            people = [p for p in people if search in p.name.lower() or search in p.description.lower()]
        if category:
            people = [p for p in people if p.category.lower() == category.lower()]
        if is_custom is not None:
            people = [p for p in people if p.is_custom == is_custom]
        return JSONResponse(page(request, [p.summary() for p in people]))

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        pipeline = body.get("pipeline_type", "north_star")
        if pipeline not in PIPELINES:
            raise invalid("pipeline_type", f"must be one of {list(PIPELINES)}")
        for field_name in PIPELINES[pipeline]:
            if body.get(field_name) in (None, ""):
                raise missing(field_name)
        _validate_fields(body, creating=True)
        name = body["name"].strip()
        description = body.get("description") or f"Custom {body.get('type', 'B2C')} persona '{name}'."
        account = self.account
        with account.lock:
            if account.custom_by_name(name) is not None:
                raise MaveraHTTPError(DUPLICATE_NAME_STATUS, DUPLICATE_NAME_CODE,
                                      f"A custom persona named '{name}' already exists; update it with "
                                      "PATCH /personas/{id} instead.", "name")
            self.charge(self.name, PERSONA_CREATE_CREDITS)
            ident = account.new_id("clx", 22)
            now = now_unix()
            persona = Persona(
                id=ident, name=name, category="Custom", description=description,
                traits=custom_traits(canonical([name, description, body.get("attributes"),
                                                _details(body, pipeline)])),
                is_custom=True, created_at=now, interests=tuple(keywords(description, 4)),
                extra={"pipeline_type": pipeline, "type": body.get("type", "B2C"),
                       "details": _details(body, pipeline), "attributes": body.get("attributes"),
                       "updated_at": now})
            account.custom_personas[ident] = persona
        out = {**_custom_object(persona), "credits_charged": PERSONA_CREATE_CREDITS,
               "usage": {"credits_used": PERSONA_CREATE_CREDITS}}
        return JSONResponse(out, status_code=201)


class PersonaById(Resource):
    name = "/personas/{id}"

    async def get(self, request: Request) -> Response:
        ident = request.path_params["persona_id"]
        persona = self.account.persona(ident)
        if persona is None:
            raise not_found("persona", ident)
        return JSONResponse(_custom_object(persona) if persona.is_custom else persona.summary())

    async def patch(self, request: Request) -> Response:
        ident = request.path_params["persona_id"]
        body = await read_body(request)
        account = self.account
        with account.lock:
            persona = account.persona(ident)
            if persona is None:
                raise not_found("persona", ident)
            if not persona.is_custom:
                # §5.3: base personas are read-only; the status for trying is NOT FOUND ([INFER] 403).
                raise MaveraHTTPError(403, "forbidden",
                                      f"API key {self.key} may not modify base persona {ident}: "
                                      "base personas are read-only; only custom ones can be.")
            _validate_fields(body, creating=False)
            name = body.get("name", persona.name).strip()
            other = account.custom_by_name(name)
            if other is not None and other.id != ident:
                raise MaveraHTTPError(DUPLICATE_NAME_STATUS, DUPLICATE_NAME_CODE,
                                      f"A custom persona named '{name}' already exists.", "name")
            description = body.get("description", persona.description)
            attributes = body.get("attributes", persona.extra.get("attributes"))
            details = _details(body, body.get("pipeline_type", persona.extra["pipeline_type"]),
                               persona.extra["details"])
            updated = Persona(
                id=ident, name=name, category=persona.category, description=description,
                traits=custom_traits(canonical([name, description, attributes, details])),
                is_custom=True, created_at=persona.created_at,
                interests=tuple(keywords(description, 4)),
                extra={**persona.extra, "details": details, "attributes": attributes,
                       "type": body.get("type", persona.extra["type"]),
                       "pipeline_type": details["pipeline_type"], "updated_at": now_unix()})
            account.custom_personas[ident] = updated
        return JSONResponse(_custom_object(updated))

    async def delete(self, request: Request) -> Response:
        """Not documented (§5.4); lets tests reproduce the integration pages' 404-after-delete."""
        ident = request.path_params["persona_id"]
        account = self.account
        with account.lock:
            persona = account.persona(ident)
            if persona is None:
                raise not_found("persona", ident)
            if not persona.is_custom:
                raise MaveraHTTPError(403, "forbidden", "Base personas cannot be deleted.")
            del account.custom_personas[ident]
        return JSONResponse({"id": ident, "object": "custom_persona", "deleted": True})


def _custom_object(persona: Persona) -> dict[str, Any]:
    extra = persona.extra
    return {**persona.summary(), "object": "custom_persona",
            "pipeline_type": extra["pipeline_type"], "type": extra["type"],
            "details": extra["details"], "attributes": extra.get("attributes"),
            "updated_at": extra.get("updated_at", persona.created_at), "sandbox": True}


def _validate_fields(body: dict[str, Any], creating: bool) -> None:
    if "name" in body or creating:
        name = body.get("name")
        if not isinstance(name, str) or not 2 <= len(name.strip()) <= 100:
            raise invalid("name", "must be a string of 2 to 100 characters")
    if "description" in body and not isinstance(body["description"], str):
        raise invalid("description", "must be a string")
    if "type" in body and body["type"] not in PERSONA_TYPES:
        raise invalid("type", f"must be one of {list(PERSONA_TYPES)}")


def _details(body: dict[str, Any], pipeline: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    skip = {"name", "description", "attributes", "workspace_id"}
    details = dict(previous or {})
    details.update({k: v for k, v in body.items() if k not in skip})
    details["pipeline_type"] = pipeline
    details.setdefault("persona_type", body.get("type", details.get("type", "B2C")))
    return details
