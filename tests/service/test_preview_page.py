"""The preview page in headless Chromium (Debian's chromium + chromedriver, via selenium) against
a real `serve` process: the MJPEG stream shows, the live stats fill in, a screenshot is taken.

Set TRT_POSE_TD_SCREENSHOT=/path/preview.png to keep the screenshot for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from tests.service.helpers import Serve, http_get, http_json, wait_for

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
webdriver = pytest.importorskip("selenium.webdriver")

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,720")


def chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    if not browser or not driver:
        pytest.skip("chromium / chromedriver not installed (scripts/test.sh apt-installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="trt-pose-td-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(driver), options=options), profile


@pytest.mark.slow
@pytest.mark.parametrize("token", ["", "tok-4711"], ids=["open", "token"])
def test_preview_page_renders_stream_and_live_stats(service_clip, tmp_path, procs, token):
    extra = []
    if token:  # the page opened as /?token=... passes it on to the stream and the stats
        (tmp_path / "token").write_text(token)
        extra = ["--set", f"http.token_file={json.dumps(str(tmp_path / 'token'))}"]
    serve = Serve(tmp_path, str(service_clip), "--loop", "--camera", "lobby", "--jsonl", "",
                  *extra)
    procs.append(serve)
    wait_for(lambda: serve.serving() and http_json(serve.url + "/healthz")[0] == 200, 60,
             "the service to be healthy")
    browser, profile = chromium()
    try:
        if token:
            assert http_get(serve.url + "/")[0] == 401
        browser.get(serve.url + (f"/?token={token}" if token else "/"))
        body = browser.find_element("tag name", "body")
        wait_for(lambda: int(body.get_attribute("data-stream-width") or 0) > 0, 30,
                 "the MJPEG image to load in the page")
        wait_for(lambda: int(body.get_attribute("data-frames") or 0) > 0, 30,
                 "the stats to fill in")
        text = {i: browser.find_element("id", i).text for i in
                ("health", "camera", "fps", "persons", "frames", "mqtt", "latency")}
        natural = browser.execute_script(
            "const i = document.getElementById('stream'); return [i.naturalWidth, "
            "i.naturalHeight, i.complete];")
        png = browser.get_screenshot_as_png()
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
        assert serve.terminate() == 0
    (tmp_path / "preview.png").write_bytes(png)
    keep = os.environ.get("TRT_POSE_TD_SCREENSHOT")
    if keep:
        with open(keep, "wb") as f:
            f.write(png)
    assert natural[:2] == [320, 240]  # the service clip, shown at its own size
    assert text["health"] == "healthy" and text["camera"] == "lobby"
    assert float(text["fps"]) > 0 and int(text["persons"]) >= 1 and int(text["frames"]) > 0
    assert text["mqtt"] == "off" and "pose_infer" in text["latency"]
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert shot.shape[1] == 1280 and shot.shape[0] >= 400
    view = shot[80:300, 40:340]  # where the video sits: a photo, not a flat background
    assert float(view.std()) > 20
