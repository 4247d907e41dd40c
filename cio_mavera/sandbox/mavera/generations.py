"""/generation-apps and /generations: Generate's apps, one piece of copy per generation, and the history."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .clock import now_iso
from .errors import invalid, missing, not_found
from .params import page, read_body
from .prose import generation_output
from .resource import Resource
from .text import canonical, count_tokens, snippet
from .workspaces import workspace_of

# The documented request body (§8.2). Anything else (an OpenAI-style `n`, a `variations` count)
# is refused with 400: the real service may ignore it, and a client that counts on getting
# several variations back from one call must fail here rather than live.
REQUEST_FIELDS = frozenset({"app_id", "input_data", "brand_voice_id", "persona_id", "workspace_id",
                            "title", "stream"})
# Generation apps: the list endpoint's schema is NOT FOUND (§8.1); fields follow the feature page
# (`id`, `name`, `description`, `input_fields`). None takes a variation count: one generation is
# one piece of copy. input_data keys an app does not declare are refused (the reference says they
# "should match the app's input_fields").
GENERATION_APPS: tuple[dict[str, Any], ...] = (
    {"id": "email-subject-lines", "name": "Email Subject Lines", "category": "email",
     "description": "Subject-line variations for an email campaign.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True, "description": "What the email is about"},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "tone", "type": "string", "required": False}]},
    {"id": "email-copy", "name": "Email Copy", "category": "email",
     "description": "Short email bodies with a headline and a call to action.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "key_points", "type": "array", "required": False},
         {"name": "tone", "type": "string", "required": False}]},
    {"id": "ad-headlines", "name": "Ad Headlines", "category": "ad_copy",
     "description": "Headline variations for paid social and search ads.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "platform", "type": "string", "required": False}]},
    {"id": "blog-post-generator", "name": "Blog Post Generator", "category": "blog",
     "description": "A blog post outline and draft on a topic.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "target_audience", "type": "string", "required": False},
         {"name": "tone", "type": "string", "required": False},
         {"name": "length", "type": "string", "required": False},
         {"name": "key_points", "type": "array", "required": False}]},
    {"id": "social-post", "name": "Social Post", "category": "social",
     "description": "Posts for a social platform.",
     "input_fields": [
         {"name": "topic", "type": "string", "required": True},
         {"name": "platform", "type": "string", "required": False}]},
)
APPS_BY_ID = {app["id"]: app for app in GENERATION_APPS}


class GenerationApps(Resource):
    name = "/generation-apps"

    async def get(self, request: Request) -> Response:
        apps = [{"object": "generation_app", **app} for app in GENERATION_APPS]
        return JSONResponse({"object": "list", "data": apps, "has_more": False, "next_cursor": None})


class Generations(Resource):
    name = "/generations"

    async def get(self, request: Request) -> Response:
        app_id = request.query_params.get("app_id")
        workspace = request.query_params.get("workspace_id")
        search = (request.query_params.get("search") or "").lower()
        with self.account.lock:
            records = list(reversed(self.account.generations.values()))
        items = [{k: v for k, v in r.items() if k != "content"} for r in records
                 if (not app_id or r["app"]["id"] == app_id)
                 and (not workspace or r["workspace_id"] == workspace)
                 and (not search or search in r["title"].lower())]
        return JSONResponse(page(request, items))

    async def post(self, request: Request) -> Response:
        body = await read_body(request)
        unknown = sorted(set(body) - REQUEST_FIELDS)
        if unknown:
            raise invalid(unknown[0], f"not a field of POST /generations (documented: "
                                      f"{', '.join(sorted(REQUEST_FIELDS))})")
        app_id = body.get("app_id")
        if app_id is None:
            raise missing("app_id")
        app = APPS_BY_ID.get(app_id)
        if app is None:
            raise invalid("app_id", f"unknown app; GET /generation-apps lists {sorted(APPS_BY_ID)}")
        inputs = body.get("input_data")
        if inputs is None:
            raise missing("input_data")
        if not isinstance(inputs, dict):
            raise invalid("input_data", "must be an object keyed by the app's input_fields")
        declared = {spec["name"] for spec in app["input_fields"]}
        for spec in app["input_fields"]:
            if spec.get("required") and inputs.get(spec["name"]) in (None, ""):
                raise missing(f"input_data.{spec['name']}")
        extra = sorted(set(inputs) - declared)
        if extra:
            raise invalid(f"input_data.{extra[0]}",
                          f"{app_id} takes {', '.join(sorted(declared))}")
        persona = self.persona_for(body, required=False)
        account = self.account
        workspace_id = workspace_of(account, body, required=False)
        output = generation_output(app_id, inputs, persona)
        prompt_tokens = count_tokens(canonical(inputs))
        completion_tokens = count_tokens(output)
        cost = min(30, 10 + completion_tokens // 40)  # 10-30 credits (§1.5)
        now = now_iso()
        brand_voice_id = body.get("brand_voice_id")
        with account.lock:
            self.charge(self.name, cost)
            ident = account.new_id("gen_", 16)
            record = {
                "id": ident, "object": "generation",
                "title": body.get("title") or f"{app['name']}: {snippet(str(inputs.get('topic', app_id)), 50)}",
                "app": {"id": app["id"], "name": app["name"], "category": app["category"]},
                "brand_voice": {"id": brand_voice_id, "label": "Sandbox brand voice"} if brand_voice_id else None,
                "persona": {"id": persona.id, "name": persona.name} if persona else None,
                "input_data": inputs, "output": output, "content": output, "content_type": "markdown",
                "workspace_id": workspace_id,
                "credits_used": cost, "created_at": now, "updated_at": now, "sandbox": True,
            }
            account.generations[ident] = record
        account.add_tokens(self.name, prompt_tokens, completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens, "credits_used": cost}
        return JSONResponse({**record, "usage": usage}, status_code=201)


class GenerationById(Resource):
    name = "/generations/{id}"

    def _record(self, request: Request) -> dict[str, Any]:
        ident = request.path_params["generation_id"]
        record = self.account.generations.get(ident)
        if record is None:
            raise not_found("generation", ident)
        return record

    async def get(self, request: Request) -> Response:
        with self.account.lock:
            return JSONResponse(dict(self._record(request)))

    async def patch(self, request: Request) -> Response:
        body = await read_body(request)
        title = body.get("title")
        if title is None:
            raise missing("title")
        if not isinstance(title, str) or not 1 <= len(title) <= 100:
            raise invalid("title", "must be a string of 1 to 100 characters")
        with self.account.lock:
            record = self._record(request)
            record.update(title=title, updated_at=now_iso())
            return JSONResponse(dict(record))

    async def delete(self, request: Request) -> Response:
        with self.account.lock:
            record = self._record(request)
            del self.account.generations[record["id"]]
        return JSONResponse({"id": record["id"], "object": "generation", "deleted": True})

