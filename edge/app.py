"""moodmic's web page: upload or record speech, see the emotion.

Run it with `moodmic app [--model DIR] [--port N]` (or `streamlit run edge/app.py -- --model DIR`).
It serves the edge runtime only: the model bundle, its log-mel frontend, the interpreter wrapper and
the whole-file prediction of `moodmic predict` (edge/app_core.py), so a file's result here is the
JSON `moodmic predict --windows` prints for it. The model loads once per process; results are
cached per file hash.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

# `streamlit run` puts this file's folder (edge/) first on sys.path, where edge's own modules
# (config, audio, schema, ...) would shadow top-level modules of the same name: use the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]
try:
    import edge  # noqa: F401
except ImportError:  # a checkout that is not installed
    sys.path.insert(0, str(_HERE.parent))

# (E402 is allowed for this file in pyproject: these imports must follow the sys.path fix above)
import altair as alt  # streamlit depends on altair and pandas
import pandas as pd
import streamlit as st

from edge import __version__, app_core
from edge.bundle import DEFAULT_BUNDLE
from edge.config import GateSettings, Settings, load_settings
from edge.errors import MoodmicError
from edge.model import EmotionModel

log = logging.getLogger("edge.app")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edge/app.py", add_help=False, allow_abbrev=False)
    parser.add_argument("--model", default=None)
    parser.add_argument("--config", default=None)
    return parser.parse_known_args(sys.argv[1:])[0]


@st.cache_resource(show_spinner="Loading the model…")
def get_model(path: str | None, threads: int) -> EmotionModel:
    """One model per process (per bundle path), shared by every session."""
    return EmotionModel.load(path or None, threads=threads)


@st.cache_data(max_entries=32, show_spinner=False)
def cached_analysis(sha256: str, name: str, model_sha: str, max_seconds: float, max_mb: int, gate_key: str,
                    _data: bytes, _model: EmotionModel, _gate: GateSettings) -> tuple[app_core.Analysis | None, str | None]:
    """(analysis, None) or (None, one-line error) for an upload; keyed on the bytes' sha256, the
    name shown, the model, the limits and the gate settings (errors are cached too)."""
    try:
        return app_core.analyse(_data, name, _model, max_seconds, max_mb * 1024 * 1024, _gate), None
    except MoodmicError as exc:
        return None, str(exc)
    except Exception as exc:  # never a traceback in the page; the log keeps it
        log.exception("analysing %s failed", name)
        return None, f"{name}: could not be analysed ({type(exc).__name__}: {exc})"


def _mark(source: str) -> None:
    st.session_state["moodmic_source"] = source


def sidebar(model: EmotionModel, max_seconds: float, max_mb: int) -> None:
    b = model.bundle
    sb = st.sidebar
    sb.header("Model")
    sb.markdown(f"**{b.name}** · conversion `{app_core.conversion_mode(b)}`")
    head = app_core.headline_metric(b)
    if head is not None:
        where = "cross-validated" if head.split == "cv" else f"{head.split} actors"
        sb.metric(f"Unweighted accuracy, {where}", f"{head.unweighted_accuracy:.1%}",
                  help="Mean of the per-class recalls, whole-file prediction, on speakers the model never heard "
                       "in training")
    rows = app_core.model_metrics(b)
    if rows:
        def pct(v: float | None) -> str:
            return "–" if v is None else f"{v:.1%}"
        for split in dict.fromkeys(r.split for r in rows):
            part = [r for r in rows if r.split == split]
            actors = f" {' '.join(part[0].actors)}" if part[0].actors else ""
            title = f"cross-validated over actors{actors}" if split == "cv" else f"{split} actors{actors}"
            sb.markdown(f"**{title}**")
            table = ["| clips | n | UA | F1 |", "|:--|--:|--:|--:|"]
            table += [f"| {r.subset} | {r.clips if r.clips is not None else '–'} | "
                      f"{pct(r.unweighted_accuracy)} | {pct(r.macro_f1)} |" for r in part]
            sb.markdown("\n".join(table), help="UA: unweighted accuracy (mean per-class recall); F1: macro-F1; "
                                                 "whole-file prediction, as `moodmic predict`. Accuracy: "
                                                 + ", ".join(f"{r.subset} {pct(r.accuracy)}" for r in part))
    else:
        sb.caption("This bundle carries no accuracy figures.")
    sb.markdown("**Labels** (output order): " + ", ".join(f"`{label}`" for label in b.labels))
    sb.markdown(f"**tflite sha256** `{b.tflite_sha256[:16]}…`", help=b.tflite_sha256)
    p = b.features
    sb.caption(f"{p.n_mels} log-mel bands, windows of {p.window_seconds:.2f} s every {b.eval_hop_s:g} s, "
               f"{p.sample_rate // 1000} kHz. Bundle: "
               + ("the model shipped with moodmic" if b.path.resolve() == DEFAULT_BUNDLE.resolve() else str(b.path)))
    if b.info.get("license"):
        sb.caption(f"Model license: {b.info['license']}")
    sb.divider()
    sb.caption(f"Limits: {max_mb} MB per upload, {max_seconds:g} s of audio "
               f"(audio.max_file_seconds). moodmic {__version__}.")


AnyChart = alt.Chart | alt.LayerChart | alt.FacetChart  # what altair's builders return


def _svg(chart: AnyChart) -> AnyChart:
    """Render as SVG (text and marks stay in the page's DOM, where the browser test checks them)."""
    return chart.properties(usermeta={"embedOptions": {"renderer": "svg"}})


def probability_chart(result, labels: tuple[str, ...]) -> AnyChart:
    """One horizontal bar per emotion, in the model's label order, each in its emotion's colour and
    labelled with its probability: at any width every bar keeps its name (vertical bars lose theirs
    to a phone's width). The predicted emotion is in bold."""
    df = pd.DataFrame({"emotion": list(labels), "probability": [result.probabilities[x] for x in labels]})
    df["predicted"] = df["emotion"] == result.label
    y = alt.Y("emotion:N", sort=list(labels), title=None,
              axis=alt.Axis(labelFontSize=13, labelLimit=0, ticks=False, domain=False,
                            labelFontWeight=alt.expr(f"datum.value == {json.dumps(result.label)} ? 'bold' : 'normal'")))
    base = alt.Chart(df, height=alt.Step(26)).encode(
        y=y,
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title=None,
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1.0], grid=True)),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    )
    bars = base.mark_bar(cornerRadiusEnd=2).encode(
        color=alt.Color("emotion:N", scale=alt.Scale(domain=list(labels), range=app_core.emotion_colours(labels)),
                        legend=None))
    values = base.mark_text(align="left", dx=4, fontSize=12).encode(
        text=alt.Text("probability:Q", format=".0%"),
        # the label of a bar reaching past 85 % goes inside it, so it is never cut at the chart's edge
        x=alt.X("shown:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.condition("datum.probability > 0.85", alt.value("white"), alt.value("#31333f")),
    ).transform_calculate(shown="datum.probability > 0.85 ? datum.probability - 0.12 : datum.probability")
    return _svg(alt.layer(bars, values))


def timeline_chart(result, labels: tuple[str, ...], hop_s: float, duration_s: float) -> AnyChart:
    """Per-window emotions along the clip: every label's probability at the windows' centres, under
    a strip with each window's label (one hop wide, centred on the window)."""
    colour = alt.Color("emotion:N", scale=alt.Scale(domain=list(labels), range=app_core.emotion_colours(labels)),
                       sort=list(labels),
                       # 2 rows of 4 that fit a phone's width (390 px) as well as a desktop's
                       legend=alt.Legend(orient="top", title=None, symbolType="square", symbolSize=70, columns=4,
                                         labelFontSize=11, labelLimit=0, columnPadding=8, rowPadding=2))
    x_scale = alt.Scale(domain=[0, round(duration_s, 2)], nice=False)
    y_scale = alt.Scale(domain=[0, 1.16], nice=False)
    rows, strip = [], []
    for w in result.per_window:
        centre = (w.start_s + w.end_s) / 2
        strip.append({"from": max(0.0, centre - hop_s / 2), "to": min(duration_s, centre + hop_s / 2),
                      "y": 1.06, "y2": 1.16, "emotion": w.label, "confidence": w.confidence,
                      "window": f"{w.start_s:.1f}–{w.end_s:.1f} s", "rms_dbfs": w.rms_dbfs})
        rows += [{"time": centre, "emotion": label, "probability": w.probabilities[label]} for label in labels]
    lines = (
        alt.Chart(pd.DataFrame(rows), height=240)
        .mark_line(point=True)
        .encode(x=alt.X("time:Q", scale=x_scale, title="seconds (window centres)"),
                y=alt.Y("probability:Q", scale=y_scale, title=None,  # the heading says it; a phone needs the room
                        axis=alt.Axis(format="%", values=[0, 0.2, 0.4, 0.6, 0.8, 1.0])),
                color=colour,
                tooltip=["emotion", alt.Tooltip("time:Q", format=".2f"), alt.Tooltip("probability:Q", format=".1%")])
    )
    top = (
        alt.Chart(pd.DataFrame(strip), height=240)
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(x=alt.X("from:Q", scale=x_scale), x2="to:Q", y=alt.Y("y:Q", scale=y_scale), y2="y2:Q", color=colour,
                tooltip=["window", "emotion", alt.Tooltip("confidence:Q", format=".1%"),
                         alt.Tooltip("rms_dbfs:Q", title="dBFS", format=".1f")])
    )
    return _svg(alt.layer(lines, top))


def show(analysis: app_core.Analysis, model: EmotionModel, settings: Settings) -> None:
    r, b = analysis.result, model.bundle
    st.subheader(analysis.name, anchor=False)
    st.caption(f"{analysis.duration_s:.2f} s · {r.windows} window{'s' if r.windows != 1 else ''} · "
               f"{r.speech_windows} with speech (the daemon's gate) · loudest window {r.max_rms_dbfs:.1f} dBFS · "
               f"{analysis.size_bytes / 1024:.0f} KB · sha256 {analysis.sha256[:12]}")
    warning = app_core.nothing_there(r, settings.gate)
    if warning:
        st.warning(warning, icon="🔇")
    if r.uncertain and not warning:  # with no speech there, that is the one thing to say
        st.warning(app_core.uncertain_text(r, b.abstain_below), icon="❔")
    c1, c2, c3 = st.columns([2, 1, 1])
    c1.metric("Emotion", r.label, icon=app_core.EMOJI.get(r.label))
    c2.metric("Confidence", f"{r.to_dict()['confidence']:.0%}")  # of the JSON's value, as predict prints it
    runner_up = sorted(r.probabilities.items(), key=lambda kv: -kv[1])[1] if len(r.probabilities) > 1 else None
    if runner_up:
        c3.metric("Runner-up", runner_up[0], f"{runner_up[1]:.0%}", delta_color="off", delta_arrow="off")
    st.audio(analysis.playback_wav, format="audio/wav")
    st.markdown("**Probability of every emotion** (mean over the windows)")
    st.altair_chart(probability_chart(r, model.labels), width="stretch")
    lo, hi = analysis.spectrogram_db
    st.markdown("**Log-mel spectrogram** of the analysed audio")
    st.image(analysis.spectrogram, width="stretch", output_format="PNG",
             caption=f"0–{max(analysis.duration_s, b.features.window_seconds):.1f} s left to right; "
                     f"{b.features.n_mels} mel bands, {b.features.fmin:g}–{b.features.fmax:g} Hz, bottom to top; "
                     f"{lo:.0f} dB (dark) to {hi:.0f} dB (bright)")
    if r.windows > 1:
        st.markdown(app_core.timeline_text(r, b.features.window_seconds, b.eval_hop_s, settings.windows.hop_seconds))
        st.altair_chart(timeline_chart(r, model.labels, b.eval_hop_s, analysis.duration_s), width="stretch",
                        height=300)
    else:
        st.caption(f"One window: the clip is no longer than {b.features.window_seconds:.2f} s "
                   "(shorter clips are padded with silence, as `moodmic predict` does).")
    with st.expander("Result as JSON (what `moodmic predict --windows` prints for this file)"):
        st.json(r.to_dict(with_windows=True), expanded=False)


def main() -> None:
    st.set_page_config(page_title="moodmic", page_icon="🎙️", layout="centered")
    args = _args()
    try:
        settings = load_settings(args.config)
        model = get_model(args.model or settings.model.path or None, settings.model.threads)
    except MoodmicError as exc:
        st.error(f"moodmic cannot start: {exc}")
        st.stop()
    max_seconds, max_mb = settings.audio.max_file_seconds, app_core.upload_limit_mb(settings)
    sidebar(model, max_seconds, max_mb)

    st.title(":material/graphic_eq: moodmic", anchor=False)
    st.caption("How does this speech sound? Upload a recording or record one: it is analysed here, by the "
               "model a moodmic device runs, with the same whole-file prediction as `moodmic predict`.")
    left, right = st.columns([3, 2])
    extensions = app_core.accepted_extensions()
    upload = left.file_uploader("Upload speech", type=extensions, key="moodmic_upload",
                                max_upload_size=max_mb, on_change=_mark, args=("upload",),
                                help=f"{', '.join(extensions)}: up to {max_mb} MB and {max_seconds:g} s, "
                                     "any sample rate and channel count")
    recording = right.audio_input("Record from the microphone", key="moodmic_record",
                                  sample_rate=model.bundle.features.sample_rate, on_change=_mark,
                                  args=("record",))
    chosen = {"upload": upload, "record": recording}
    source = st.session_state.get("moodmic_source")
    item = chosen.get(source) if source else None
    item = item or upload or recording  # the latest one changed, else whichever there is
    if item is None:
        st.info("Upload a file or record a few seconds of speech to see its emotion.")
        return

    data = item.getvalue()
    sha = app_core.sha256_bytes(data)
    with st.spinner("Listening…"):
        analysis, error = cached_analysis(sha, app_core.display_name(item.name), model.bundle.tflite_sha256,
                                          max_seconds, max_mb, repr(settings.gate), data, model, settings.gate)
    if error or analysis is None:
        st.error(error or "no result", icon="🚫")
        return
    show(analysis, model, settings)


if __name__ == "__main__":  # streamlit runs the page as __main__; importing it runs nothing
    main()
