"""The web page's logic, without Streamlit: analyse an upload, describe the model, launch the page.

`analyse` is the whole analysis behind the page (edge/app.py): the uploaded bytes, decoded in memory
and never written to disk, go through the same `load_audio` checks and the same whole-file prediction
(`edge.predict.predict_audio`) as `moodmic predict`, so the page shows exactly the JSON
`predict --windows` prints for the same file.
Everything here is plain Python and numpy (the edge runtime: no TensorFlow, no librosa), so the
tests call it directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import soundfile as sf

from .audio import load_audio
from .config import AppSettings, GateSettings, Settings
from .errors import BadAudioError, UnsupportedPlatform, UsageError
from .features import clip_frames
from .predict import predict_audio
from .schema import FileResult

APP_SCRIPT = Path(__file__).resolve().parent / "app.py"
# Upload limits are config: app.max_upload_mb (size) and audio.max_file_seconds (duration).
DEFAULT_UPLOAD_MB = AppSettings().max_upload_mb
# One TFLite interpreter serves every browser session (Streamlit runs each in its own thread) and an
# interpreter must not be invoked from two threads at once.
_INFERENCE_LOCK = threading.Lock()
SPECTROGRAM_MAX_COLUMNS = 1600  # longer clips are averaged down to this many columns
SPECTROGRAM_MIN_WIDTH = 640  # shorter clips are widened (nearest neighbour) to at least this many pixels
SPECTROGRAM_ROW_SCALE = 2  # pixels per mel band

# File name extensions the page offers, for the formats soundfile (libsndfile) reads on this machine.
_EXTENSIONS = {
    "WAV": ("wav", "wave"), "WAVEX": ("wav",), "FLAC": ("flac",), "OGG": ("ogg", "oga", "opus"),
    "MP3": ("mp3",), "AIFF": ("aif", "aiff", "aifc"), "AU": ("au", "snd"), "CAF": ("caf",),
    "W64": ("w64",), "RF64": ("rf64",),
}

# Viridis, sampled at 9 points (perceptually uniform; readable in grey and by colour-blind readers).
_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_VIRIDIS)), _VIRIDIS[:, c])
                 for c in range(3)], axis=1).round().astype(np.uint8)

EMOJI = {"neutral": "😐", "calm": "😌", "happy": "😄", "sad": "😢", "angry": "😠",
         "fearful": "😨", "disgust": "🤢", "surprised": "😲"}

# One colour per emotion, on every chart of the page: the Okabe-Ito colours (told apart with the common
# colour-vision deficiencies) plus a purple, chosen to suit the emotion where one suits it.
EMOTION_COLOURS = {
    "neutral": "#999999", "calm": "#56b4e9", "happy": "#e69f00", "sad": "#0072b2",
    "angry": "#d55e00", "fearful": "#7b3294", "disgust": "#009e73", "surprised": "#cc79a7",
}
_SPARE_COLOURS = ("#8c564b", "#bcbd22", "#17becf", "#f0e442", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def emotion_colours(labels: tuple[str, ...]) -> list[str]:
    """The colour of each label, in the labels' order: EMOTION_COLOURS, and spare colours for labels a
    bundle may have beyond the eight (never one already in use)."""
    spare = iter(c for c in _SPARE_COLOURS if c not in EMOTION_COLOURS.values())
    return [EMOTION_COLOURS.get(label) or next(spare, "#444444") for label in labels]


def accepted_extensions() -> list[str]:
    """File name extensions for the uploader: the audio formats soundfile reads here."""
    available = sf.available_formats()
    return sorted({ext for fmt, exts in _EXTENSIONS.items() if fmt in available for ext in exts})


@dataclass(frozen=True)
class Analysis:
    """What the page shows for one upload."""

    name: str  # the upload's file name
    sha256: str  # of the uploaded bytes: the cache key
    size_bytes: int
    duration_s: float  # of the audio, at the model's rate
    result: FileResult  # == `moodmic predict --windows` for the same file (path = name)
    spectrogram: np.ndarray  # (H, W, 3) uint8: log-mel, time left to right, low mel bands at the bottom
    spectrogram_db: tuple[float, float]  # dB of the darkest and brightest colour
    playback_wav: bytes  # the analysed audio (mono, the model's rate) as 16-bit WAV


def upload_limit_mb(settings: Settings) -> int:
    """The upload size limit in MB (app.max_upload_mb)."""
    return settings.app.max_upload_mb


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def display_name(name: str | None) -> str:
    """The upload's base name, for messages and results (browsers send no directories, but be sure)."""
    base = Path(str(name or "")).name.strip()
    return base or "upload"


def analyse(data: bytes, name: str, model: Any, max_seconds: float | None,
            max_bytes: int = DEFAULT_UPLOAD_MB << 20, gate: GateSettings | None = None) -> Analysis:
    """Uploaded bytes -> the page's analysis, decoded in memory. Raises BadAudioError with the one-line
    message `moodmic predict` gives for the same file, naming the upload.
    `gate`: the config's gate settings, which count the result's speech windows as `predict` does."""
    name = display_name(name)
    if len(data) > max_bytes:
        raise BadAudioError(
            f"{name}: is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:g} MB upload limit; "
            "upload a shorter clip, or compress it as FLAC"
        )
    rate = model.bundle.features.sample_rate
    audio = load_audio(io.BytesIO(data), rate, max_seconds, name)  # from memory: an upload never touches the disk
    with _INFERENCE_LOCK:
        result = predict_audio(audio, model.frontend, model.bundle.eval_hop_frames, model.probabilities,
                               model.labels, name, gate, model.bundle.abstain_below)
    mels, _ = clip_frames(model.frontend, audio)
    image, db_range = spectrogram_image(mels, model.bundle.features.floor_db)
    return Analysis(name=name, sha256=sha256_bytes(data), size_bytes=len(data), duration_s=len(audio) / rate,
                    result=result, spectrogram=image, spectrogram_db=db_range,
                    playback_wav=wav_bytes(audio, rate))


def timeline_text(result: FileResult, window_s: float, eval_hop_s: float, daemon_hop_s: float) -> str:
    """What the timeline shows, with both hops from where they live: the page (and `predict`) take a
    window every eval_hop_s (the bundle's), the daemon every windows.hop_seconds (the config's)."""
    daemon = ("as the daemon takes them (windows.hop_seconds)" if abs(daemon_hop_s - eval_hop_s) < 1e-9 else
              f"as `moodmic predict` takes them; the daemon decides every {daemon_hop_s:g} s (windows.hop_seconds)")
    return (f"**Timeline**: the {result.windows} windows of {window_s:.2f} s, one every {eval_hop_s:g} s "
            f"(the model's evaluation hop), {daemon}. Lines: each emotion's probability; top strip: each "
            "window's emotion")


def nothing_there(result: FileResult, gate: GateSettings) -> str | None:
    """A warning when no window would pass the daemon's gate: the emotion is then the model's guess for
    silence or noise (it names one for anything), not something heard in speech. None otherwise."""
    if result.speech_windows:
        return None
    quiet = result.max_rms_dbfs < gate.min_rms_dbfs
    why = (f"even its loudest window is {result.max_rms_dbfs:.0f} dBFS, under the gate's {gate.min_rms_dbfs:g} dBFS"
           if quiet else "no window sounds like a voice")
    return (f"No speech found: none of the {result.windows} windows would pass the daemon's gate ({why}). The "
            "emotion below is what the model says for silence or noise; a device would not classify it.")


def uncertain_text(result: FileResult, abstain_below: float) -> str:
    """Why the result is shown as uncertain: the daemon would publish `uncertain`, not this emotion."""
    return (f"Uncertain: the top emotion's probability, {result.confidence:.0%}, is below the model's abstention "
            f"threshold of {abstain_below:.0%} (chosen on unheard speakers in rooms and noise). A device would "
            "say `uncertain` here rather than this emotion.")


def spectrogram_image(mels: np.ndarray, floor_db: float) -> tuple[np.ndarray, tuple[float, float]]:
    """(T, n_mels) log-mel frames -> an RGB image (time left to right, low bands at the bottom) and
    the dB range its colours span (the frontend's floor to the loudest value)."""
    mels = np.asarray(mels, np.float32)
    if len(mels) > SPECTROGRAM_MAX_COLUMNS:  # average blocks of frames so the image stays small
        step = int(np.ceil(len(mels) / SPECTROGRAM_MAX_COLUMNS))
        cut = len(mels) // step * step
        blocks = [mels[:cut].reshape(-1, step, mels.shape[1]).mean(axis=1)]
        if cut < len(mels):
            blocks.append(mels[cut:].mean(axis=0, keepdims=True))
        mels = np.concatenate(blocks)
    lo = float(floor_db)
    hi = max(float(mels.max()) if mels.size else lo, lo + 1.0)
    scaled = np.clip((mels - lo) / (hi - lo), 0.0, 1.0)
    index = (scaled.T[::-1] * 255).round().astype(np.uint8)  # (mel, time), low bands at the bottom
    widen = max(1, int(np.ceil(SPECTROGRAM_MIN_WIDTH / max(1, index.shape[1]))))
    index = np.repeat(np.repeat(index, SPECTROGRAM_ROW_SCALE, axis=0), widen, axis=1)
    return _LUT[index], (lo, hi)


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    """Mono float audio -> a 16-bit PCM WAV file in memory (for playback in the browser)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ---- the model, for the sidebar -------------------------------------------------------------------

@dataclass(frozen=True)
class MetricRow:
    split: str  # "test", "val", "cv", ...
    subset: str  # "all", "speech", "song"
    clips: int | None
    accuracy: float | None
    unweighted_accuracy: float | None
    macro_f1: float | None
    actors: tuple[str, ...]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def model_metrics(bundle: Any) -> list[MetricRow]:
    """The accuracy figures the bundle carries (training.metrics.<split>.<subset>), test first.
    A bundle without them (or with another layout) gives what it has, never an error."""
    training = bundle.info.get("training") or {}
    metrics = training.get("metrics") if isinstance(training, dict) else None
    if not isinstance(metrics, dict):
        return []
    declared = training.get("split")
    split_info: dict[str, Any] = declared if isinstance(declared, dict) else {}
    order = {"cv": 0, "test": 1, "val": 2}
    rows = []
    for split in sorted(metrics, key=lambda s: (order.get(s, 9), s)):
        subsets = metrics[split]
        if not isinstance(subsets, dict):
            continue
        if "accuracy" in subsets or "unweighted_accuracy" in subsets:  # one flat block
            subsets = {"all": subsets}
        for subset, m in subsets.items():
            if not isinstance(m, dict):
                continue
            actors = m.get("actors") or (split_info.get(split) or {}).get("actors") or ()
            clips = _num(m.get("clips"))
            rows.append(MetricRow(split, str(subset), int(clips) if clips is not None else None,
                                  _num(m.get("accuracy")), _num(m.get("unweighted_accuracy")),
                                  _num(m.get("macro_f1")), tuple(str(a) for a in actors)))
    return rows


def headline_metric(bundle: Any) -> MetricRow | None:
    """The one figure to show first: cross-validated if the bundle has it, else the test actors', over all clips."""
    rows = [r for r in model_metrics(bundle) if r.subset == "all" and r.unweighted_accuracy is not None]
    return rows[0] if rows else None


def conversion_mode(bundle: Any) -> str:
    conversion = bundle.info.get("conversion")
    return str(conversion.get("mode", "unknown")) if isinstance(conversion, dict) else "unknown"


# ---- `moodmic app` --------------------------------------------------------------------------------

def streamlit_command(model: str | None, port: int, address: str, config: str | None = None,
                      max_upload_mb: int = DEFAULT_UPLOAD_MB) -> list[str]:
    """The `streamlit run` command line that serves the page."""
    script_args = []
    if model:
        script_args += ["--model", str(Path(model).resolve())]
    if config:
        script_args += ["--config", str(Path(config).resolve())]
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.address", address, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(max_upload_mb),
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",  # a served page, not a dev session
        *(["--", *script_args] if script_args else []),
    ]


def launch(model: str | None, port: int, address: str, config: str | None = None) -> NoReturn:
    """`moodmic app`: check what can be checked here (streamlit, config, bundle), then become
    `streamlit run edge/app.py` (exec: signals and the exit status are streamlit's)."""
    from .bundle import load_bundle
    from .config import load_settings

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range 1..65535")
    if importlib.util.find_spec("streamlit") is None:
        raise UnsupportedPlatform("the web page needs streamlit, which is not installed; "
                                  "in a moodmic checkout run: pip install '.[app]'")
    settings = load_settings(config)  # a bad config or bundle: one line and exit 78 here, not in the page
    load_bundle(model or settings.model.path or None)
    command = streamlit_command(model, port, address, config, upload_limit_mb(settings))
    print(f"moodmic: serving the page at http://{address}:{port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    os.execv(command[0], command)
