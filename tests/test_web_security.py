"""What `ppfr web` lets in: loopback by default, JSON only (no cross-site form posts), size and type limits
on photos, its own host name only, WebSockets from its own pages only, and readable errors, never a
traceback. Against the app started as a real process; no browser needed."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
import web_util
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("websec")
    proc, url = web_util.start(["web", "--port", "0", "--model", root / "weights"],   # no --host: the default
                               {"PPFR_GALLERY": str(root / "gallery")}, cwd=root)
    yield url
    web_util.stop(proc)


def call(url, path, body=None, headers=None, method=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def data_url(payload: bytes, kind="image/jpeg") -> str:
    return f"data:{kind};base64," + base64.b64encode(payload).decode()


def test_listens_on_loopback_by_default(url):
    assert url.startswith("http://127.0.0.1:")


def test_errors_are_readable_sentences(url):
    cases = [
        ("/api/enroll", {"name": "Ada", "photos": [{"name": "a.txt", "data": data_url(b"hello")}]}, 422,
         "a.txt: not a JPEG or PNG image"),
        ("/api/enroll", {"name": "Ada", "photos": [{"name": "big.jpg", "data": data_url(b"\xff\xd8\xff" + bytes(9 * 2**20))}]},
         422, "over the limit of 8 MB per photo"),
        ("/api/enroll", {"name": "Ada", "photos": [{"name": "cut.jpg", "data": data_url(b"\xff\xd8\xff\xe0" + bytes(64))}]},
         422, "cut.jpg: a damaged image"),
        ("/api/enroll", {"name": " ", "photos": [{"name": "x.jpg", "data": data_url(b"\xff\xd8\xff")}]}, 400,
         "give the person a name"),
        ("/api/enroll", {"name": "Ada", "photos": [{"name": "x.jpg", "data": "data:image/jpeg;base64,@@@"}]}, 400,
         "not base64"),
        ("/api/identify", {"photos": [{"name": "q.jpg", "data": data_url(b"\xff\xd8\xff")}]}, 400,
         "enrol someone first"),
        ("/api/train", {"source": "enrolled"}, 400, "at least two people"),
        ("/api/nothing", None, 404, "nothing at /api/nothing"),
    ]
    for path, body, status, message in cases:
        code, reply, headers = call(url, path, body)
        assert (code, message in reply["error"]) == (status, True), (path, code, reply)
        assert "Traceback" not in reply["error"] and "File \"" not in reply["error"]
        assert "default-src 'self'" in headers["content-security-policy"]
    code, reply, _ = call(url, "/api/people/Nobody", method="DELETE")
    assert code == 404 and "enrol someone first" in reply["error"]


def test_only_json_is_taken(url):
    # what a form on another site could post without the browser asking this app first
    code, reply, _ = call(url, "/api/enroll", b'{"name": "x", "photos": []}', {"Content-Type": "text/plain"})
    assert code == 415 and "application/json" in reply["error"]


def test_requests_for_another_host_name_are_refused(url):
    req = urllib.request.Request(url + "api/people", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400


def test_a_websocket_from_another_site_is_refused(url):
    ws_url = url.replace("http:", "ws:") + "ws/live?mode=identify"
    with pytest.raises(InvalidStatus):
        with connect(ws_url, origin="http://evil.example", open_timeout=10):
            pass
    with connect(ws_url, origin=url.rstrip("/"), open_timeout=10) as ws:     # its own page: let in, and told why not
        assert "enrol someone first" in json.loads(ws.recv(timeout=30))["error"]
