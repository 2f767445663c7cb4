"""The FastAPI application: the pages, their JSON API and the live WebSocket.

Every asset is served from ppfr/web/static (no CDN; the Content-Security-Policy lets a page load or
connect to this origin only). Every error reaches the page as {"error": "one readable sentence"}; a
traceback goes to the server's log, never to the browser. Photos arrive as base64 data URLs in JSON
bodies of bounded size, are decoded in memory and never written anywhere.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .client import WebClient, WebError

STATIC = Path(__file__).resolve().parent / "static"
PAGES = ("gallery", "identify", "live", "model")
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
       "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'")
log = logging.getLogger("ppfr.web")


def readable_errors() -> tuple:
    """Errors whose message is meant for a person: bad input, a missing model, an MPC refusal."""
    from ppfr.mpc import MPCError

    return (WebError, MPCError, ValueError, OSError)


def error_response(e: Exception) -> JSONResponse:
    if isinstance(e, readable_errors()):
        return JSONResponse({"error": str(e)}, status_code=getattr(e, "status", 400))
    log.exception("unexpected error")
    return JSONResponse({"error": f"the app failed ({type(e).__name__}: {e}); details are in its log"},
                        status_code=500)


async def read_json(request: Request, limit: int) -> dict:
    """The request's JSON body, refused as soon as it grows past `limit` bytes (it is held in memory).
    Only application/json is taken: another site's page cannot send that without the browser asking this
    app first (a CORS preflight, which it does not grant), so it cannot enrol or query through a form."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise WebError("send the request as application/json", 415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebError(f"the upload is {int(declared) / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebError(f"the upload is over the limit of {limit / 2**20:g} MB", 413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        raise WebError("the request is not valid JSON") from None
    if not isinstance(body, dict):
        raise WebError("the request is not a JSON object")
    return body


def photos_of(body: dict) -> list[tuple[str, bytes]]:
    """[(file name, bytes)] from {"photos": [{"name", "data": "data:image/...;base64,..."}]}."""
    photos = body.get("photos")
    if not isinstance(photos, list) or not photos:
        raise WebError("choose at least one photo")
    out = []
    for i, p in enumerate(photos):
        label = str(p.get("name") or f"photo {i + 1}")[:200] if isinstance(p, dict) else f"photo {i + 1}"
        data = p.get("data") if isinstance(p, dict) else None
        if not isinstance(data, str) or "," not in data:
            raise WebError(f"{label}: not an uploaded file")
        try:
            out.append((label, base64.b64decode(data.split(",", 1)[1], validate=True)))
        except (binascii.Error, ValueError):
            raise WebError(f"{label}: the upload is damaged (not base64)") from None
    return out


def same_origin(ws: WebSocket) -> bool:
    """Whether a WebSocket comes from one of this app's own pages (browsers send Origin; other sites'
    pages may open sockets to localhost too, and no preflight stops them)."""
    origin = ws.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == ws.headers.get("host")


def base_app(home: str, hosts=()) -> FastAPI:
    """An app with the static assets, the security headers and readable errors, and / leading to `home`;
    it answers requests addressed to loopback or to one of `hosts` (the address it was told to listen on)."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app = FastAPI(title="ppfr", docs_url=None, redoc_url=None, openapi_url=None)
    # requests must name this machine: a page of another site that rebinds its own name to 127.0.0.1
    # reaches the app with that name in Host, and is refused
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", *hosts])

    @app.middleware("http")
    async def guard(request: Request, call_next):
        try:
            response = await call_next(request)
        except Exception as e:  # noqa: BLE001 - every error becomes a message for the page
            response = error_response(e)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(404)
    async def not_found(request, exc):
        return JSONResponse({"error": f"nothing at {request.url.path}"}, status_code=404)

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/")
    async def index():
        return RedirectResponse(home)

    @app.get("/static/{name}")
    async def static(name: str):
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise WebError(f"no asset {name}", 404)
        return FileResponse(path)

    return app


def create_app(client: WebClient, hosts=()) -> FastAPI:
    """The app around one WebClient: its pages, their JSON API and the live WebSocket."""
    from .training import TrainingJob

    app = base_app("/gallery", hosts)
    app.state.client, app.state.training = client, TrainingJob(client)
    body_limit = client.limits.upload_bytes * 4 // 3 * client.limits.images + 2**16   # base64 of the photos
    for page in PAGES:
        app.add_api_route(f"/{page}", page_route(page), methods=["GET"], include_in_schema=False)

    async def run(fn, *args):
        return await run_in_threadpool(fn, *args)

    @app.get("/api/people")
    async def people():
        return {"people": await run(client.people)}

    @app.post("/api/enroll")
    async def enroll(request: Request):
        body = await read_json(request, body_limit)
        return await run(client.enroll, str(body.get("name", "")), photos_of(body))

    @app.delete("/api/people/{name}")
    async def remove(name: str):
        return await run(client.remove, name)

    @app.post("/api/identify")
    async def identify(request: Request):
        body = await read_json(request, body_limit)
        return await run(client.identify, photos_of(body), str(body.get("reveal", "nearest")))

    @app.get("/api/train")
    async def training_status():
        return app.state.training.status()

    @app.post("/api/train")
    async def train(request: Request):
        body = await read_json(request, 2**16)
        epochs = body.get("epochs")
        if epochs not in (None, ""):
            try:
                epochs = int(epochs)
            except (TypeError, ValueError):
                raise WebError("epochs must be a whole number") from None
        return await run(app.state.training.start, str(body.get("source", "enrolled")), str(body.get("path", "")),
                         epochs or None, bool(body.get("plaintext", True)))

    @app.websocket("/ws/live")
    async def live(ws: WebSocket):
        await live_session(ws, client)

    return app


def page_route(name: str):
    """The handler of the page ppfr/web/static/NAME.html."""
    async def page():
        return FileResponse(STATIC / f"{name}.html", media_type="text/html")
    return page


async def live_session(ws: WebSocket, client: WebClient) -> None:
    """One Live page: the browser sends a JPEG frame, waits for the answer, then sends the next, so at
    most one frame is ever in flight (the camera's frames in between are dropped, never queued). Each
    answer holds the named boxes, the stage times in ms and the frame's number."""
    if not same_origin(ws):
        await ws.close(code=1008)
        return
    await ws.accept()
    query = ws.query_params
    try:
        pipeline = await run_in_threadpool(client.live, query.get("mode", "identify"),
                                           query.get("track", "1") != "0")
    except Exception as e:  # noqa: BLE001 - told to the page, which shows it
        await ws.send_json({"error": json.loads(error_response(e).body)["error"]})
        await ws.close()
        return
    try:
        while True:
            data = await ws.receive_bytes()
            try:
                reply = await run_in_threadpool(_live_frame, client, pipeline, data)
            except Exception as e:  # noqa: BLE001
                reply = {"error": json.loads(error_response(e).body)["error"]}
            await ws.send_json(reply)
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        pass


def _live_frame(client: WebClient, pipeline, data: bytes) -> dict:
    from .client import decode_image

    t = time.perf_counter()
    rgb = decode_image(data, "frame", client.limits)
    decode_ms = 1000 * (time.perf_counter() - t)
    with client.lock:
        faces, stages = pipeline.process(rgb)
    stages["decode"] = round(decode_ms, 3)
    return {"frame": pipeline.timings.frames - 1, "faces": [f.as_dict() for f in faces], "stages": stages,
            "size": [int(rgb.shape[1]), int(rgb.shape[0])], "embedded": pipeline.timings.embedded,
            "refresh": pipeline.tracker.refresh if pipeline.tracker is not None else 1}
