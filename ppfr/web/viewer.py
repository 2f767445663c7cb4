"""The --show window of `ppfr recognize` as a browser page, for installs without a GUI build of OpenCV.

    viewer = FrameViewer()            # serves http://127.0.0.1:PORT/show from a thread of this process
    viewer.show(bgr, wait_ms=1)       # publish a frame; False once the page's Stop was pressed
    viewer.close()

The page asks for a frame, gets the newest one published since the last it saw (frames published in
between are dropped, never queued), and asks again. With wait_ms=0 (images) `show` waits until the
page's Next or Stop is pressed, as the GUI window waits for a key.
"""
from __future__ import annotations

import threading

from fastapi import WebSocket, WebSocketDisconnect   # module level: FastAPI reads the handler's annotations here
from starlette.concurrency import run_in_threadpool

from .app import base_app, page_route, same_origin


class FrameViewer:
    """Annotated frames served to a local browser page; the interface of ppfr.capture.window.Window."""

    def __init__(self, host: str | None = None, port: int | None = None):
        import uvicorn

        from ppfr.config import section

        from .cli import bind

        cfg = section("web")
        self._cond = threading.Condition()
        self._jpeg, self._version, self._pressed, self._closed, self._waiting = None, 0, None, False, False
        host = host or cfg.get("host", "127.0.0.1")
        app = base_app("/show", [host])
        app.add_api_route("/show", page_route("show"), methods=["GET"])

        @app.websocket("/ws/show")
        async def frames(ws: WebSocket):
            if not same_origin(ws):
                await ws.close(code=1008)
                return
            await ws.accept()
            seen = 0
            try:
                while True:
                    ask = await ws.receive_text()
                    if ask in ("next", "stop"):
                        self._press(ask)
                        continue
                    jpeg, seen, state = await run_in_threadpool(self._newer_than, seen, 0.5)
                    if jpeg is not None:
                        await ws.send_bytes(jpeg)
                    else:
                        await ws.send_json({"state": state, "frames": seen})
            except (WebSocketDisconnect, RuntimeError):
                pass

        try:
            sock = bind(host, int(cfg.get("port", 8000)) if port is None else port)
        except Exception:  # noqa: BLE001 - the usual port is taken (often by `ppfr web`): any free one will do
            sock = bind(host, 0)
        self.url = f"http://{host}:{sock.getsockname()[1]}/show"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="ppfr-viewer")
        self._thread.start()

    # -- the page's side ---------------------------------------------------------------------------------
    def _newer_than(self, seen: int, timeout: float):
        """(JPEG, its number, state) of the newest frame after `seen`, waiting up to `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > seen or self._closed, timeout=timeout)
            state = "ended" if self._closed else "waiting" if self._waiting else "running"
            if self._version > seen:
                return self._jpeg, self._version, state
            return None, seen, state

    def _press(self, button: str):
        with self._cond:
            self._pressed = button
            self._cond.notify_all()

    # -- the recogniser's side ---------------------------------------------------------------------------
    def show(self, bgr, wait_ms: int = 1) -> bool:
        """Publish a frame. wait_ms=0: wait for Next (True) or Stop (False); otherwise return at once,
        False once Stop has been pressed."""
        import cv2

        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
        with self._cond:
            if ok:
                self._jpeg, self._version = data.tobytes(), self._version + 1
            if wait_ms == 0:
                self._pressed, self._waiting = None, True
                self._cond.notify_all()
                while self._pressed is None:
                    self._cond.wait(timeout=0.5)      # wakes for Ctrl-C too
                self._waiting = False
            else:
                self._cond.notify_all()
            return self._pressed != "stop"

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.should_exit = True
        self._thread.join(timeout=5)
