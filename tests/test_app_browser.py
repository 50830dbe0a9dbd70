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
import json
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

from conftest import RAVDESS, REPO, ravdess_clips, write

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


PHONE_WIDTH = 390  # CSS pixels of a current phone's viewport (iPhone 12-15)


def screenshot(out: Path, clip: Path = SAMPLE, max_kb: int = 300, width: int = 1100) -> int:
    """A PNG of the page after analysing `clip`: the sidebar, the result, every chart."""
    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp) / "app.log") as url, open_browser() as browser:
        page = open_page(browser, url, width=width)
        upload(page, clip)
        emotion(page)
        return save_page(page, out, width, max_kb)


def save_page(page, out: Path, width: int, max_kb: int = 300) -> int:
    """The whole analysed page as a small palette PNG: the viewport grown to the page's length."""
    from PIL import Image

    page.get_by_test_id("stVegaLiteChart").nth(1).locator("svg.marks, canvas").first.wait_for()
    page.get_by_test_id("stImage").locator("img").wait_for()
    bottom = page.get_by_test_id("stExpander").bounding_box()
    height = int(bottom["y"] + bottom["height"] + 48)
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(800)  # charts re-layout to the new viewport
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        page.screenshot(path=str(raw))
        out.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(raw).convert("RGB")
        for colours in (256, 128, 64):  # a palette PNG: the page is flat colours, the spectrogram smooth
            palette_png(image, colours).save(out, optimize=True)
            if out.stat().st_size <= max_kb * 1024:
                break
    return out.stat().st_size


def palette_png(image, colours: int):
    """`image` with `colours` colours, every emotion's colour among them: median cut alone merges the
    small legend swatches into their neighbours (angry came out as happy's orange)."""
    from PIL import Image

    from edge.app_core import EMOTION_COLOURS

    fixed = [int(c[i:i + 2], 16) for c in EMOTION_COLOURS.values() for i in (1, 3, 5)]
    rest = colours - len(EMOTION_COLOURS)
    cut = image.quantize(colors=rest, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = Image.new("P", (1, 1))
    palette.putpalette((cut.getpalette()[: 3 * rest] + fixed + [0] * 768)[:768])
    return image.quantize(palette=palette, dither=Image.Dither.NONE)


# ---- the tests ------------------------------------------------------------------------------------

pytestmark = [pytest.mark.browser,  # not in the default run: -m browser
              pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))]


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
    """A real RAVDESS clip where the corpus is present, else the bundled sample (one RAVDESS clip too)."""
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
        assert (page.get_by_text("Uncertain:").count() == 1) == expected.uncertain  # the bundle's threshold
    finally:
        page.close()


def test_a_result_under_the_bundles_abstention_threshold_is_shown_uncertain(browser, workdir):
    """A bundle whose threshold no result reaches: the page says `uncertain`, naming the confidence and the
    threshold, and still shows the top emotion (as predict keeps it as the label)."""
    from edge.bundle import META_FILE
    from edge.model import EmotionModel
    from edge.predict import predict_file

    from conftest import TINY_INT8

    unsure = workdir / "unsure"
    shutil.copytree(TINY_INT8, unsure, dirs_exist_ok=True)
    meta = json.loads((unsure / META_FILE).read_text())
    meta["output"]["abstain_below"] = 0.999  # the tiny model is never that sure
    (unsure / META_FILE).write_text(json.dumps(meta))
    expected = predict_file(EmotionModel.load(unsure), SAMPLE, 600.0)
    assert expected.uncertain
    with serve_app(workdir / "app-unsure.log", "--model", str(unsure)) as url:
        page = open_page(browser, url)
        try:
            upload(page, SAMPLE)
            label, confidence = emotion(page)
            assert (label, confidence) == (expected.label, f"{expected.to_dict()['confidence']:.0%}")
            warning = page.get_by_text("Uncertain:")
            warning.wait_for()
            text = warning.inner_text()
            assert f"{confidence}, is below the model's abstention threshold of 100%" in text, text
            assert "say `uncertain`" in text or "say uncertain" in text, text
        finally:
            page.close()


def test_at_phone_width_every_bar_has_its_label_and_the_legend_fits(app_url, browser, default_model, workdir):
    """390 px: the probability chart names every bar and the timeline's legend is whole, inside its chart
    and the screen (the charts render as SVG, so their text is in the DOM)."""
    labels = sorted(default_model.labels)
    page = open_page(browser, app_url, width=PHONE_WIDTH)
    try:
        upload(page, SAMPLE)
        emotion(page)
        charts = page.get_by_test_id("stVegaLiteChart")
        charts.nth(1).locator("svg.marks").first.wait_for()
        page.wait_for_timeout(500)

        def inside(box, outer) -> bool:
            return outer["x"] - 0.5 <= box["x"] and box["x"] + box["width"] <= min(outer["x"] + outer["width"],
                                                                                   PHONE_WIDTH) + 0.5

        for index, role in ((0, "axis-label"), (1, "legend-label")):  # bar names; the timeline's legend
            chart = charts.nth(index)
            outer = chart.bounding_box()
            texts = chart.locator(f"g.role-{role} text")
            # Vega hides overlapping labels with opacity 0 and keeps them in the DOM: count only the visible
            shown = {texts.nth(i).text_content(): texts.nth(i).bounding_box() for i in range(texts.count())
                     if texts.nth(i).evaluate("e => getComputedStyle(e).opacity !== '0' && "
                                              "e.getAttribute('opacity') !== '0'")}
            names = {name: box for name, box in shown.items() if name in labels}
            assert sorted(names) == labels, (index, sorted(shown))
            cut = [name for name, box in names.items() if not inside(box, outer)]
            assert not cut, f"chart {index}: {cut} outside the chart or the screen ({outer})"
        bars = charts.nth(0).locator("g.mark-rect path")
        assert bars.count() == len(labels)  # one bar per emotion, each next to its name
        save_page(page, workdir / "phone.png", PHONE_WIDTH)  # kept with the test's files, to look at
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
    parser.add_argument("--width", type=int, default=1100,
                        help=f"viewport width in CSS pixels (default: 1100; {PHONE_WIDTH}: a phone)")
    args = parser.parse_args(argv)
    problem = missing_requirement()
    if problem:
        print(f"cannot take the screenshot: {problem}", file=sys.stderr)
        return 69
    size = screenshot(args.screenshot, args.clip, width=args.width)
    print(f"wrote {args.screenshot} ({size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
