"""The Mavera API of the sandbox as a Starlette app: its routes, the gate and the error envelope."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..state import SandboxState
from .chat import ChatCompletions
from .errors import MaveraHTTPError, handle_error
from .focus_groups import FocusGroupById, FocusGroups
from .gate import MaveraGate
from .generations import GenerationApps, GenerationById, Generations
from .mave import MaveChat, MaveThreadById, MaveThreads
from .personas import PersonaById, Personas
from .responses import Responses
from .usage import Usage
from .workspaces import WorkspaceById, Workspaces

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def no_route(request: Request) -> Response:
    raise MaveraHTTPError(404, "resource_not_found",
                          f"No route {request.method} {request.url.path} in the Mavera sandbox.")


ROUTES: list[BaseRoute] = [
    Route("/chat/completions", ChatCompletions, name=ChatCompletions.name),
    Route("/responses", Responses, name=Responses.name),
    Route("/personas", Personas, name=Personas.name),
    Route("/personas/{persona_id}", PersonaById, name=PersonaById.name),
    Route("/mave/chat", MaveChat, name=MaveChat.name),
    Route("/mave/threads", MaveThreads, name=MaveThreads.name),
    Route("/mave/threads/{thread_id}", MaveThreadById, name=MaveThreadById.name),
    Route("/generation-apps", GenerationApps, name=GenerationApps.name),
    Route("/generations", Generations, name=Generations.name),
    Route("/generations/{generation_id}", GenerationById, name=GenerationById.name),
    Route("/focus-groups", FocusGroups, name=FocusGroups.name),
    Route("/focus-groups/{focus_group_id}", FocusGroupById, name=FocusGroupById.name),
    Route("/usage", Usage, name=Usage.name),
    Route("/workspaces", Workspaces, name=Workspaces.name),
    Route("/workspaces/{workspace_id}", WorkspaceById, name=WorkspaceById.name),
    Route("/{rest:path}", no_route, name="unknown", methods=ALL_METHODS),
]


def mavera_api(state: SandboxState) -> Starlette:
    """The Mavera app for `state`, to mount at MAVERA_PREFIX."""
    app = Starlette(routes=ROUTES,
                    middleware=[Middleware(MaveraGate, state=state, routes=ROUTES)],
                    exception_handlers={MaveraHTTPError: handle_error})
    app.state.sandbox = state
    return app
