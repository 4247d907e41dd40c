"""The sandbox's file host for exports: serves a file to a valid signed URL, as a storage bucket does.

Mounted at `/cio-files`, apart from the App API: no Bearer key (a request that brings an
`Authorization` header is refused, as pre-signed storage URLs refuse a second credential), no App
rate limit. Refusals are a bucket's XML errors: 403 for a bad signature or an expired URL, 404
for a file that does not exist. `state.cio.exports.damage_next` serves the next downloads damaged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from ..state import SandboxState, sandbox_of
from .data import cio_data

FILES_PREFIX = "/cio-files"
GZIP_TYPE = "application/gzip"
_BLOCK = 1 << 20


def _xml_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>")
    return Response(body, status_code=status, media_type="application/xml")


async def export_file(request: Request) -> Response:
    state = sandbox_of(request)
    store = state.cio.exports
    if "authorization" in request.headers:
        return _xml_error(400, "InvalidArgument", "Only one auth mechanism allowed")
    raw_id, name = request.path_params["export_id"], request.path_params["name"]
    query = request.query_params
    if not raw_id.isdigit() or not store.check_signature(int(raw_id), name, query.get("expires", ""),
                                                         query.get("signature", "")):
        return _xml_error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided.")
    if store.now(cio_data(state).generated_at) > int(query["expires"]):
        return _xml_error(403, "AccessDenied", "Request has expired")
    export = store.get(int(raw_id))
    if export is None or export.path is None or not export.path.is_file():
        return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
    export.downloads += 1
    damage = store.take_damage()
    if damage is not None:
        return _damaged(export.path, damage)
    return FileResponse(export.path, media_type=GZIP_TYPE, filename=name)


def _damaged(path: Path, damage: str) -> Response:
    """The file served truncated (a complete answer), garbled, or cut off mid-body."""
    size = path.stat().st_size
    half = size // 2
    if damage == "truncate":
        return StreamingResponse(_blocks(path, half), media_type=GZIP_TYPE,
                                 headers={"content-length": str(half)})
    if damage == "garble":
        data = bytearray(path.read_bytes())
        for i in range(half, min(size, half + 64)):
            data[i] ^= 0x5A
        return Response(bytes(data), media_type=GZIP_TYPE)
    # "cut": the full length announced, half sent, then the connection is dropped.
    return StreamingResponse(_blocks(path, half, then_fail=True), media_type=GZIP_TYPE,
                             headers={"content-length": str(size)})


class _ConnectionDropped(Exception):
    """Raised mid-body so that the server drops the connection (the sandbox's `cut` damage)."""


async def _blocks(path: Path, limit: int, then_fail: bool = False) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        left = limit
        while left > 0:
            block = handle.read(min(_BLOCK, left))
            if not block:
                break
            left -= len(block)
            yield block
    if then_fail:
        raise _ConnectionDropped("sandbox damage: connection dropped mid-body")


def export_files_app(state: SandboxState) -> Starlette:
    """The file host app for `state`, to mount at `FILES_PREFIX`."""
    app = Starlette(routes=[Route("/exports/{export_id}/{name}", export_file, methods=["GET"])])
    app.state.sandbox = state
    return app
