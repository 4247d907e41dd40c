"""The /__sandbox__ admin routes: env, stats, recent requests, planted truth, reset, scripted faults."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .state import Fault, sandbox_of


async def env(request: Request) -> JSONResponse:
    """The environment variables a client needs, with the keys this sandbox accepts."""
    return JSONResponse(sandbox_of(request).env(str(request.base_url).rstrip("/")))


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(sandbox_of(request).stats.as_json())


async def requests(request: Request) -> JSONResponse:
    return JSONResponse({"requests": list(sandbox_of(request).request_log)})


async def truth(request: Request) -> JSONResponse:
    return JSONResponse(sandbox_of(request).truth())


async def reset(request: Request) -> JSONResponse:
    sandbox_of(request).reset()
    return JSONResponse({"reset": True})


async def faults(request: Request) -> JSONResponse:
    """Script faults: {"prefix": "/cio/app", "status": 503, "count": 5, "retry_after": 1,
    "method": "POST"} (method optional)."""
    spec = await request.json()
    fault = Fault(prefix=spec.get("prefix", "/"), status=int(spec["status"]),
                  count=int(spec.get("count", 1)), retry_after=spec.get("retry_after"),
                  method=spec.get("method"))
    state = sandbox_of(request)
    with state.lock:
        state.faults.append(fault)
    return JSONResponse({"scheduled": fault.__dict__})


routes = [
    Route("/env", env),
    Route("/stats", stats),
    Route("/requests", requests),
    Route("/truth", truth),
    Route("/reset", reset, methods=["POST"]),
    Route("/faults", faults, methods=["POST"]),
]
