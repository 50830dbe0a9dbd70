"""research/VARIANTS.md quotes the committed results of every variant and probe (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESEARCH = REPO / "research"

VARIANTS = (RESEARCH / "VARIANTS.md").read_text(encoding="utf-8")
RESULTS = RESEARCH / "results"
SHIPPED = REPO / "trainer" / "recipe" / "results"


def _ua(stats: dict) -> str:
    return f"{stats['mean']:.3f} +- {stats['std']:.3f}"


def test_every_variants_cross_validation_is_written_up():
    variants = sorted(RESULTS.glob("*/cv_summary.json"))
    assert {"seed", "one-model", "five-models", "wide", "speaker-adversary"} <= {p.parent.name for p in variants}
    for path in [SHIPPED / "members" / "cv_summary.json", *variants]:  # the shipped recipe's row, and every variant
        summary = json.loads(path.read_text(encoding="utf-8"))
        assert _ua(summary["summary"]["all"]["unweighted_accuracy"]) in VARIANTS, path.parent.name
        assert summary["folds_done"] == list(range(5)), path.parent.name


def test_the_embedding_probes_are_written_up():
    for probe_dir in sorted(RESULTS.glob("embedding-probe*")):
        probe = json.loads((probe_dir / "embedding_probe.json").read_text(encoding="utf-8"))
        for ua in (probe["chosen_on_validation_all"]["test"]["all"], probe["refit"]["fused"]["all"]):
            assert _ua(ua) in VARIANTS, probe_dir.name
        for level in probe.get("gain", {}).values():  # the same setting with the clips at another level
            for what in ("probe", "fused"):
                assert f"{level[what]['val']['all']['mean']:.3f}" in VARIANTS, (probe_dir.name, what)


def test_the_teacher_search_and_its_device_cost_are_written_up():
    cost = {r["mode"]: r for r in json.loads((RESULTS / "whisper-cost" / "whisper_cost.json").read_text())["rows"]}
    assert f"it is {cost['dynamic']['bytes'] / 1e6:.1f} MB and takes {cost['dynamic']['wall_ms']['median']:.0f} ms" in VARIANTS
    for name in ("yamnet-probe/yamnet_probe.json", "whisper-probe/whisper_probe.json"):
        probe = json.loads((RESULTS / name).read_text(encoding="utf-8"))
        for group in ("all", "speech", "song"):  # the best layer on validation, as the test actors read it
            assert _ua(probe["chosen_on_validation_all"]["test"][group]) in VARIANTS, (name, group)


def test_the_model_card_links_the_variants_and_quotes_none_of_their_rows():
    card = (REPO / "edge" / "models" / "default" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "research/VARIANTS.md" in card and "## Variants tried" not in card
