"""The model bundle: a directory with `model.tflite` and `model.json`.

`model.json` carries every fact serving needs, so training and serving cannot drift: labels in
output order, the frontend's parameters and version, the evaluation hop, the input's shape,
orientation, dtype and quantization, the output's kind, the sha256 of the .tflite, and what the
model was trained and measured on. The converter writes it (`write_bundle`); the daemon, `predict`
and the web page read it (`load_bundle`). Format, version 1:

    format_version   1
    name             short model name
    labels           class names in the order of the model's outputs
    features         FeatureParams (edge.features), including feature_version
    eval_hop_s       hop of whole-file prediction in seconds (the reported numbers use it)
    input            {shape [1, n_frames, n_mels], layout "time_mel", dtype, scale, zero_point}
    output           {shape [1, n_labels], kind "probabilities"|"logits", temperature, dtype, scale, zero_point,
                      abstain_below: the smoothed top probability under which the daemon says "uncertain"
                      (chosen on validation actors in rooms and noise; 0 or absent: never);
                      smoothing_windows: the EMA span the threshold was chosen with, which the daemon
                      uses unless smoothing.windows says otherwise (0 or absent: the daemon's own)}
    tflite_sha256    hex sha256 of model.tflite
    created_utc, moodmic_version, license
    conversion       free-form: mode, parity figures (converter)
    training         free-form: data, split with actor lists, seed, metrics (trainer)

Tensor specs (TensorSpec) are the interpreter wrapper's (edge/interpreter.py), which reads them from
the model; the bundle records them. The dependency points one way: bundle -> interpreter.

Every value of model.json is checked before use: types (a JSON NaN or Infinity is not a number here), the
ranges below and edge.features.LIMITS (issue [11]). A bundle outside them is a one-line BundleError naming
the key (exit 78), never a traceback or a NaN result.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import BundleError, shown
from .features import FeatureParams
from .interpreter import TensorSpec, TFLiteModel

FORMAT_VERSION = 1
MODEL_FILE = "model.tflite"
META_FILE = "model.json"
INPUT_LAYOUT = "time_mel"  # (batch, time, mel): Conv1D runs over time
OUTPUT_KINDS = ("probabilities", "logits")
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "models" / "default"
MAX_META_BYTES = 4 << 20  # the shipped model.json is 16 kB, training history included
TENSOR_DTYPES = ("float32", "int8", "uint8", "int16")  # what the interpreter wrapper quantizes to and from
MAX_LABEL = 64  # characters: a label is an MQTT state and a Home Assistant option
MAX_NAME = 128

# The range this runtime supports for every number of model.json outside `features` (edge.features.LIMITS holds
# those), inclusive. A temperature of 1e-320 made every probability NaN: `predict` printed `"confidence": NaN`
# (not JSON) and the daemon published it.
LIMITS: dict[str, tuple[float, float]] = {
    "eval_hop_s": (0.01, 60.0),  # and a whole number of frames; 60 s as windows.hop_seconds
    "input.scale": (0.0, 1e6),  # 0 for a float tensor, > 0 for a quantized one
    "output.scale": (0.0, 1e6),
    "output.temperature": (0.01, 100.0),  # probabilities = softmax(logits / temperature)
    "output.abstain_below": (0.0, 0.999),  # a probability: at 1 every result would be uncertain
    "output.smoothing_windows": (0, 100),  # as smoothing.windows allows
}


@dataclass(frozen=True)
class Bundle:
    path: Path
    name: str
    labels: tuple[str, ...]
    features: FeatureParams
    eval_hop_s: float
    input: TensorSpec
    output: TensorSpec
    output_kind: str
    temperature: float
    tflite_sha256: str
    abstain_below: float = 0.0  # below this top probability a result is "uncertain" (0: never)
    smoothing_windows: int = 0  # the EMA span abstain_below was chosen with (0: none named)
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # created, license, conversion, training

    @property
    def tflite_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def eval_hop_frames(self) -> int:
        return self.features.hop_frames(self.eval_hop_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "labels": list(self.labels),
            "features": self.features.to_dict(),
            "eval_hop_s": self.eval_hop_s,
            "input": {**self.input.to_dict(), "layout": INPUT_LAYOUT},
            "output": {**self.output.to_dict(), "kind": self.output_kind, "temperature": self.temperature,
                       **({"abstain_below": self.abstain_below} if self.abstain_below else {}),
                       **({"smoothing_windows": self.smoothing_windows} if self.smoothing_windows else {})},
            "tflite_sha256": self.tflite_sha256,
            **self.info,
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Read and verify a bundle directory (default: the model shipped with moodmic)."""
    path = Path(path) if path else DEFAULT_BUNDLE
    where = f"model bundle {path}"
    if not path.is_dir():
        hint = "pass --model DIR with a directory written by moodmic-convert"
        raise BundleError(f"{where}: no such directory; {hint}")
    meta_path, tflite_path = path / META_FILE, path / MODEL_FILE
    for needed in (meta_path, tflite_path):
        if not needed.is_file():
            raise BundleError(f"{where}: {needed.name} is missing; re-copy the bundle or re-run moodmic-convert")
    try:
        with open(meta_path, "rb") as f:
            raw = f.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise BundleError(f"{where}: {META_FILE} is over {MAX_META_BYTES >> 20} MiB; re-copy the bundle")
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{where}: {META_FILE} is not valid JSON ({shown(str(exc), 120)}); re-copy the bundle") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: {META_FILE} is not a JSON object; re-copy the bundle")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{where}: format_version {shown(version)} is not supported (this moodmic reads {FORMAT_VERSION}); "
            "upgrade moodmic or re-convert the model"
        )
    try:
        features = FeatureParams.from_dict(_typed("features", meta["features"], dict))
        labels = tuple(_typed("labels", x, str) for x in _typed("labels", meta["labels"], list))
        inp, out = _typed("input", meta["input"], dict), _typed("output", meta["output"], dict)
        bundle = Bundle(
            path=path,
            name=_typed("name", meta.get("name", path.name), str),
            labels=labels,
            features=features,
            eval_hop_s=_typed("eval_hop_s", meta["eval_hop_s"], float),
            input=_tensor("input", inp),
            output=_tensor("output", out),
            output_kind=_typed("output.kind", out.get("kind", "probabilities"), str),
            temperature=_typed("output.temperature", out.get("temperature", 1.0), float),
            tflite_sha256=_typed("tflite_sha256", meta["tflite_sha256"], str),
            abstain_below=_typed("output.abstain_below", out.get("abstain_below", 0.0), float),
            smoothing_windows=_typed("output.smoothing_windows", out.get("smoothing_windows", 0), int),
            info={k: v for k, v in meta.items() if k not in _CORE_KEYS},
        )
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from exc
    except KeyError as exc:
        raise BundleError(f"{where}: {META_FILE} lacks {shown(exc.args[0])}; re-copy the bundle or re-run "
                          "moodmic-convert") from exc
    except (TypeError, ValueError) as exc:  # a check above is missing: still one line, not a traceback
        raise BundleError(f"{where}: {META_FILE} mangles a value ({shown(str(exc), 120)}); re-copy the bundle or "
                          "re-run moodmic-convert") from exc
    _check_consistent(bundle, inp.get("layout"), where)
    actual = sha256_file(tflite_path)
    if actual != bundle.tflite_sha256:
        raise BundleError(
            f"{where}: {MODEL_FILE} does not match its sha256 in {META_FILE} (corrupt or swapped file); "
            "re-copy the bundle"
        )
    return bundle


_CORE_KEYS = {"format_version", "name", "labels", "features", "eval_hop_s", "input", "output", "tflite_sha256"}
_KINDS = {int: "an integer", float: "a finite number", str: "a string", list: "a list", dict: "an object"}


def _typed(key: str, value: Any, kind: type) -> Any:
    """`value` if it is a JSON `kind` (for float: any finite number); else BundleError naming `key`."""
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise BundleError(f"{META_FILE}: {key} {shown(value)} is not {_KINDS[kind]}; re-copy the bundle or "
                          "re-run moodmic-convert")
    return float(value) if kind is float else value


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond any float
        return False


def _tensor(key: str, data: dict[str, Any]) -> TensorSpec:
    shape = tuple(_typed(f"{key}.shape", n, int) for n in _typed(f"{key}.shape", data.get("shape"), list))
    return TensorSpec(shape, _typed(f"{key}.dtype", data.get("dtype"), str), _typed(f"{key}.scale", data.get("scale"), float),
                      _typed(f"{key}.zero_point", data.get("zero_point"), int))


def _check_consistent(b: Bundle, layout: Any, where: str) -> None:
    p = b.features
    problems = []
    numbers = {"eval_hop_s": b.eval_hop_s, "input.scale": b.input.scale, "output.scale": b.output.scale,
               "output.temperature": b.temperature, "output.abstain_below": b.abstain_below,
               "output.smoothing_windows": b.smoothing_windows}
    for key, (lo, hi) in LIMITS.items():
        if not (_finite(numbers[key]) and lo <= numbers[key] <= hi):
            problems.append(f"{key} {shown(numbers[key])} (supported: {lo:g}..{hi:g})")
    if layout != INPUT_LAYOUT:
        problems.append(f"input layout {shown(layout)} (expected {INPUT_LAYOUT!r})")
    if b.input.shape != (1, p.n_frames, p.n_mels):
        problems.append(f"input shape {shown(list(b.input.shape))} != [1, {p.n_frames}, {p.n_mels}] from the features")
    for what, spec in (("input", b.input), ("output", b.output)):
        if spec.dtype not in TENSOR_DTYPES:
            problems.append(f"{what}.dtype {shown(spec.dtype)} (supported: {', '.join(TENSOR_DTYPES)})")
        elif spec.quantized:
            info = np.iinfo(spec.dtype)
            if not info.min <= spec.zero_point <= info.max or spec.scale <= 0:
                problems.append(f"{what}.zero_point/scale {shown(spec.zero_point)}/{shown(spec.scale)} (need "
                                f"{info.min}..{info.max} and a scale > 0 for {spec.dtype})")
        elif spec.zero_point != 0:
            problems.append(f"{what}.zero_point {shown(spec.zero_point)} (0 for {spec.dtype})")
    if len(b.labels) < 2 or len(set(b.labels)) != len(b.labels) or not all(0 < len(x) <= MAX_LABEL for x in b.labels):
        problems.append(f"labels {shown(list(b.labels))} (need >= 2 distinct, of 1..{MAX_LABEL} characters)")
    if b.output.shape != (1, len(b.labels)):
        problems.append(f"{len(b.labels)} labels but output shape {shown(list(b.output.shape))}")
    if b.output_kind not in OUTPUT_KINDS:
        problems.append(f"output kind {shown(b.output_kind)} (expected one of {OUTPUT_KINDS})")
    if len(b.name) > MAX_NAME:
        problems.append(f"name {shown(b.name)} (at most {MAX_NAME} characters)")
    if not re.fullmatch(r"[0-9a-f]{64}", b.tflite_sha256):
        problems.append(f"tflite_sha256 {shown(b.tflite_sha256)} (need 64 hex digits)")
    if not any(x.startswith("eval_hop_s") for x in problems):  # the frame count needs a sane hop
        try:
            _ = b.eval_hop_frames  # the property checks the hop is a whole number of frames
        except ValueError as exc:
            problems.append(f"eval_hop_s: {exc}")
    if problems:
        raise BundleError(f"{where}: inconsistent {META_FILE}: " + "; ".join(problems))


def write_bundle(
    out_dir: str | Path,
    tflite: bytes,
    *,
    name: str,
    labels: list[str] | tuple[str, ...],
    features: FeatureParams,
    eval_hop_s: float = 1.0,
    output_kind: str = "probabilities",
    temperature: float = 1.0,
    abstain_below: float = 0.0,
    smoothing_windows: int = 0,
    license: str = "",
    conversion: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Bundle:
    """Write model.tflite + model.json; tensor specs are read from the model itself (by the interpreter
    wrapper the daemon uses), then verified.

    Writes into a temporary sibling directory and renames it into place, so a crash never leaves
    a half-written bundle where the daemon looks.
    """
    out_dir = Path(out_dir)
    model = TFLiteModel(tflite)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / MODEL_FILE).write_bytes(tflite)
    bundle = Bundle(
        path=out_dir,
        name=name,
        labels=tuple(labels),
        features=features,
        eval_hop_s=eval_hop_s,
        input=model.input_spec,
        output=model.output_spec,
        output_kind=output_kind,
        temperature=temperature,
        tflite_sha256=hashlib.sha256(tflite).hexdigest(),
        abstain_below=abstain_below,
        smoothing_windows=smoothing_windows,
        info={
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "moodmic_version": __version__,
            "license": license,
            "conversion": conversion or {},
            "training": training or {},
        },
    )
    _check_consistent(bundle, INPUT_LAYOUT, f"model bundle {out_dir}")
    (tmp / META_FILE).write_text(json.dumps(bundle.to_json(), indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        old = out_dir.with_name(out_dir.name + ".old")
        if old.exists():
            _rmtree(old)
        out_dir.rename(old)
        tmp.rename(out_dir)
        _rmtree(old)
    else:
        tmp.rename(out_dir)
    return load_bundle(out_dir)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
