"""The web page in a real browser: `moodmic app` on 127.0.0.1, Debian's chromium driven by Playwright.

Playwright's own browser download is not used (../shared/SYSTEMS.md): chromium comes from apt
(`apt-get install -y chromium`) and Playwright from pip, launched with executable_path. The
microphone is Chromium's fake capture device playing a WAV file. Skipped, with the reason, where
chromium, playwright or streamlit is missing.

The README's screenshot is made by this file:
    .venv/bin/python tests/test_app_browser.py --screenshot docs/app.png
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from conftest import REPO, RAVDESS, ravdess_clips, write

CHROMIUM = os.environ.get("MOODMIC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SAMPLE = REPO / "edge" / "samples" / "speech.flac"
START_TIMEOUT_S = 30  # the page server answering /_stcore/health
PAGE_TIMEOUT_MS = 20_000  # any one thing appearing in the page
RECORD_MS = 3_000  # how long the fake microphone records


def missing_requirement() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    for module, install in (("playwright", "pip install playwright"), ("streamlit", "pip install '.[app]'")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(log_path: Path, *extra: str) -> Iterator[str]:
    """`moodmic app` on a free port of 127.0.0.1; yields its URL once /_stcore/health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "app", "--port", str(port), *extra],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moodmic app exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moodmic app not healthy within {START_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def open_browser(fake_mic_wav: Path | None = None):
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if fake_mic_wav is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_mic_wav}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, width: int = 1100, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url)
    page.get_by_text("Upload a file or record").wait_for()
    return page


def emotion(page) -> tuple[str, str]:
    """Wait for the result; (label, confidence) as the page shows them."""
    page.locator("[data-testid=stMetric]").filter(has_text="Emotion").get_by_test_id("stMetricValue").wait_for()
    values = {}
    for name in ("Emotion", "Confidence"):
        values[name] = page.locator("[data-testid=stMetric]").filter(has_text=name) \
            .get_by_test_id("stMetricValue").inner_text().strip()
    return values["Emotion"], values["Confidence"]


def upload(page, path: Path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))


def screenshot(out: Path, clip: Path = SAMPLE, max_kb: int = 300) -> int:
    """A PNG of the page after analysing `clip`: the sidebar, the result, every chart."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp) / "app.log") as url, open_browser() as browser:
        page = open_page(browser, url)
        upload(page, clip)
        emotion(page)
        page.get_by_test_id("stVegaLiteChart").nth(1).locator("svg.marks, canvas").first.wait_for()
        page.get_by_test_id("stImage").locator("img").wait_for()
        bottom = page.get_by_test_id("stExpander").bounding_box()
        height = int(bottom["y"] + bottom["height"] + 48)
        page.set_viewport_size({"width": 1100, "height": height})
        page.wait_for_timeout(800)  # charts re-layout to the new viewport
        raw = Path(tmp) / "raw.png"
        page.screenshot(path=str(raw))
        out.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(raw).convert("RGB")
        for colours in (256, 128, 64):  # a palette PNG: the page is flat colours, the spectrogram smooth
            image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
                .save(out, optimize=True)
            if out.stat().st_size <= max_kb * 1024:
                break
    return out.stat().st_size


# ---- the tests ------------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app_browser")


@pytest.fixture(scope="module")
def app_url(workdir) -> Iterator[str]:
    with serve_app(workdir / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def mic_wav(workdir) -> Path:
    """What the fake microphone plays: the bundled speech sample as 16-bit PCM WAV."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    return write(workdir / "mic.wav", audio, rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def browser(mic_wav):
    with open_browser(mic_wav) as b:
        yield b


@pytest.fixture(scope="module")
def default_model():
    from edge.model import EmotionModel

    return EmotionModel.load(None)


def _clip() -> Path:
    """A real RAVDESS clip where the corpus is present, else the bundled (synthetic) speech sample."""
    if (RAVDESS / "manifest.csv").is_file():
        return ravdess_clips(RAVDESS, 1, seed=3)[0]
    return SAMPLE


def test_upload_shows_the_predicted_label(app_url, browser, default_model):
    from edge.predict import predict_file

    clip = _clip()
    expected = predict_file(default_model, clip, 600.0)
    page = open_page(browser, app_url)
    try:
        upload(page, clip)
        label, confidence = emotion(page)
        assert label == expected.label
        assert confidence == f"{expected.to_dict()['confidence']:.0%}"
        assert page.get_by_test_id("stMain").get_by_text(clip.name, exact=True).first.is_visible()
        page.get_by_test_id("stImage").locator("img").wait_for()  # the spectrogram
        charts = 2 if expected.windows > 1 else 1  # probabilities (+ the timeline)
        page.get_by_test_id("stVegaLiteChart").nth(charts - 1).locator("svg.marks, canvas").first.wait_for()
        assert page.get_by_test_id("stAudio").count() == 1
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
    finally:
        page.close()


def test_a_broken_upload_shows_its_message(app_url, browser, workdir):
    bad = workdir / "notes.wav"
    bad.write_text("these are meeting notes, not a recording\n")
    page = open_page(browser, app_url)
    try:
        upload(page, bad)
        error = page.get_by_test_id("stAlertContentError")
        error.wait_for()
        assert "notes.wav: not an audio file soundfile can read" in error.inner_text()
        assert page.locator("[data-testid=stMetric]").filter(has_text="Emotion").count() == 0  # no result
    finally:
        page.close()


def test_recording_from_the_microphone_gives_a_result(app_url, browser, default_model):
    page = open_page(browser, app_url)
    try:
        page.get_by_role("button", name="Record", exact=True).click()
        page.get_by_role("button", name="Stop recording").wait_for()
        page.wait_for_timeout(RECORD_MS)
        page.get_by_role("button", name="Stop recording").click()
        label, confidence = emotion(page)
        assert label in default_model.labels
        assert confidence.endswith("%") and 0 < int(confidence[:-1]) <= 100
        heading = page.get_by_test_id("stMain").locator("h3").first.inner_text()
        assert heading.endswith(".wav")  # the recording, as st.audio_input names it
        caption = page.get_by_test_id("stMain").get_by_text(re.compile(r"^\d+\.\d+ s · \d+ windows? · ")).inner_text()
        seconds = float(caption.split(" s ·")[0])
        assert 1.5 <= seconds <= RECORD_MS / 1000 + 2, caption  # what was recorded, not silence or nothing
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Browser checks of the web page; --screenshot writes the "
                                                 "README's PNG of the page after analysing the bundled sample.")
    parser.add_argument("--screenshot", metavar="PNG", type=Path, required=True)
    parser.add_argument("--clip", type=Path, default=SAMPLE, help=f"audio to analyse (default: {SAMPLE.name})")
    args = parser.parse_args(argv)
    problem = missing_requirement()
    if problem:
        print(f"cannot take the screenshot: {problem}", file=sys.stderr)
        return 69
    size = screenshot(args.screenshot, args.clip)
    print(f"wrote {args.screenshot} ({size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
