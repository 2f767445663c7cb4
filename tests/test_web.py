"""`ppfr web` in a real browser: the distribution's Chromium, driven by Playwright, against `ppfr web` started
as a real process on loopback, with real dlib on real LFW photos and the real protocol.

Three LFW people are enrolled by upload, a held-out photo of each is identified, a model is trained on
shares from them on the Model page, and the Live page names a person in a clip built from an LFW photo
that Chromium plays as its fake camera, once with the gallery and once with the classifier. Screenshots
of each page are written to benchmarks/out/web/ (and the test's tmp folder). Skipped, with the reason,
where Chromium or Playwright is not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import web_util

from ppfr.recognition.clip import still_clip, write_y4m

CHROMIUM = os.environ.get("PPFR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "benchmarks" / "out" / "web"
PEOPLE = {"Colin Powell": "Colin_Powell", "Tony Blair": "Tony_Blair", "Gloria Macapagal Arroyo": "Gloria_Macapagal_Arroyo"}
ENROL = (1, 2, 3)       # photos enrolled of each person
HELD_OUT = 10           # the photo identified
LIVE = ("Tony Blair", 12)
WAIT_MS = 30_000        # the longest any one step may take in the browser

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def app(tmp_path_factory, lfw_dir):
    """`ppfr web --port 0` as a subprocess with a fresh gallery and model folder; its URL."""
    root = tmp_path_factory.mktemp("web")
    proc, url = web_util.start(["web", "--port", "0", "--model", root / "weights"],
                               {"PPFR_GALLERY": str(root / "gallery")}, cwd=root)
    yield {"url": url, "root": root}
    web_util.stop(proc)


def _launch(p, *args):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", *args], timeout=WAIT_MS)


@pytest.fixture(scope="module")
def playwright():
    with playwright_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = _launch(playwright)
    yield b
    b.close()


@pytest.fixture
def page(browser, app):
    """A page that records every request it makes, to check that none leaves this machine's loopback."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    pg.requests = []
    pg.on("request", lambda r: pg.requests.append(r.url))
    yield pg
    outside = [u for u in pg.requests if urlparse(u).scheme not in ("data", "blob")
               and urlparse(u).hostname != "127.0.0.1"]
    context.close()
    assert outside == [], f"the page asked other hosts: {outside}"


def screenshot(pg, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    print(f"screenshot: {ARTIFACTS / path.name}")
    return path


def photo(lfw_images, folder: str, n: int) -> Path:
    return lfw_images / folder / f"{folder}_{n:04d}.jpg"


def test_enrol_identify_and_errors(page, app, lfw_images, tmp_path):
    page.goto(app["url"] + "gallery")
    for name, folder in PEOPLE.items():
        page.fill("#name", name)
        page.set_input_files("#files", [str(photo(lfw_images, folder, n)) for n in ENROL])
        page.click("#enroll")
        page.wait_for_selector(f"#people tr[data-name='{name}']")
        assert page.get_attribute(f"#people tr[data-name='{name}']", "data-photos") == str(len(ENROL))
        assert page.locator("#report tbody tr").count() == len(ENROL)
    assert page.locator("#people tbody tr").count() == len(PEOPLE)
    screenshot(page, "gallery", tmp_path)

    # a file that is not an image: a per-photo reason, and no traceback anywhere
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image at all")
    page.fill("#name", "Nobody")
    page.set_input_files("#files", [str(junk)])
    page.click("#enroll")
    page.wait_for_selector("#enroll-error:not(:empty)")
    message = page.inner_text("#enroll-error")
    assert "not a JPEG or PNG" in message and "Traceback" not in page.content()
    assert page.locator("#people tbody tr").count() == len(PEOPLE)

    page.goto(app["url"] + "identify")
    for name, folder in PEOPLE.items():
        page.set_input_files("#photo-a", str(photo(lfw_images, folder, HELD_OUT)))
        page.click("#go")
        page.wait_for_function("document.querySelector('#answer').dataset.name === %s" % json.dumps(name))
        server0 = page.locator("#parties tr[data-party=server0] td").all_inner_texts()
        assert server0[0] == "server 0" and "kB" in server0[2] and int(server0[3]) > 0
        page.set_input_files("#photo-a", [])
    screenshot(page, "identify", tmp_path)

    # verify: two photos of two different people
    page.set_input_files("#photo-a", str(photo(lfw_images, "Colin_Powell", HELD_OUT)))
    page.set_input_files("#photo-b", str(photo(lfw_images, "Tony_Blair", HELD_OUT)))
    page.click("#go")
    page.wait_for_function("document.querySelector('#answer').dataset.name === 'different'")


def test_model_page_trains_on_shares(page, app):
    page.goto(app["url"] + "model")
    page.fill("#epochs", "20")
    page.click("#train")
    page.wait_for_function("document.querySelector('#result').dataset.state === 'done'", timeout=90_000)
    rows = dict(r.split("\t", 1) for r in page.locator("#summary tr").all_inner_texts())
    assert rows["classes"] == str(len(PEOPLE))
    assert "accuracy on shares (MPC)" in rows and "accuracy in plaintext" in rows
    screenshot(page, "model", Path(app["root"]))


@pytest.mark.parametrize("mode", ["identify", "recognize"])
def test_live_page_names_the_fake_camera(mode, app, playwright, lfw_images, tmp_path_factory):
    """Chromium's fake camera plays a clip of a held-out photo; the page's exposed labels must name it."""
    clip_dir = tmp_path_factory.mktemp("clip")
    name, n = LIVE
    clip = write_y4m(clip_dir / "clip.y4m", still_clip([photo(lfw_images, PEOPLE[name], n)], 60, face_px=360))
    if mode == "recognize" and not (Path(app["root"]) / "weights" / "client").exists():
        pytest.skip("no model: test_model_page_trains_on_shares did not run")
    b = _launch(playwright, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}")
    try:
        context = b.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
        context.grant_permissions(["camera"], origin=app["url"].rstrip("/"))
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(app["url"] + "live")
        pg.select_option("#mode", mode)
        pg.click("#start")
        pg.wait_for_function("JSON.parse(document.querySelector('#overlay').dataset.labels).includes(%s)"
                             % json.dumps(name))
        pg.wait_for_function("Number(document.querySelector('#overlay').dataset.frames) >= 20")
        assert pg.inner_text("#error") == ""
        fps = float(pg.get_attribute("#fps", "data-fps"))
        assert fps > 0
        screenshot(pg, f"live-{mode}", clip_dir)
        pg.click("#stop")
        if mode == "identify":
            enrol_from_snapshots_and_remove(pg, app)
    finally:
        b.close()


def enrol_from_snapshots_and_remove(pg, app):
    """The Gallery page's webcam (the same fake camera): two snapshots enrol a person, who is then removed."""
    pg.goto(app["url"] + "gallery")
    pg.click("#camera")
    pg.wait_for_selector("#snap:not([disabled])")
    pg.fill("#count", "2")
    pg.click("#snap")
    pg.wait_for_function("document.querySelectorAll('#snaps img').length === 2")
    pg.fill("#name", "Camera Person")
    pg.click("#enroll")
    row = "#people tr[data-name='Camera Person']"
    pg.wait_for_selector(row)
    assert pg.get_attribute(row, "data-photos") == "2"
    assert pg.locator("#report tbody tr td.ok").count() == 2
    pg.click(f"{row} button.remove")
    pg.wait_for_selector(row, state="detached")
    assert pg.locator("#people tbody tr").count() == len(PEOPLE)


def test_recognize_show_serves_the_frames_to_a_browser(page, app, lfw_images):
    """Without a GUI build of OpenCV, `ppfr recognize --show` serves the annotated images to a page; Next steps
    through them as a key does in the window, and the run ends when the last is passed."""
    weights = Path(app["root"]) / "weights"
    if not (weights / "client").exists():
        pytest.skip("no model: test_model_page_trains_on_shares did not run")
    names = ["Colin Powell", "Tony Blair"]
    images = [str(photo(lfw_images, PEOPLE[n], HELD_OUT + 1)) for n in names]
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    proc, url = web_util.start(["recognize", "-m", weights, *images, "--show", "--quiet"], env,
                               pattern=r"open (http://127\.0\.0\.1:\d+/show)", stdout=subprocess.PIPE)
    try:
        page.goto(url)
        for shown in (1, 2):
            page.wait_for_function("Number(document.querySelector('#status').dataset.frames) >= %d" % shown)
            page.wait_for_selector("#next:not([disabled])")
            if shown == 1:
                screenshot(page, "show", Path(app["root"]))
            page.click("#next")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert [line.split(",")[1] for line in out.splitlines()] == names
