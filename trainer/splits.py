"""Who goes where: train / val / test sides of a corpus, decided on whole recordings before anything else.

- `actor` (default, speaker-independent): speakers are dealt into k folds, each sex dealt in turn so
  folds stay balanced by sex; fold K is the test side; validation speakers come from the rest,
  again alternating sexes. The same seed gives the same folds for every K, so the folds of one
  cross-validation can run in separate sessions.
- `actor` with `refit`: the same sides, but the validation speakers train too (no validation side).
  A fold's refit (trainer.refit): its recipe on every speaker outside the test side, for the epoch
  count the fold's validation speakers chose, as the final model is trained on every actor.
- `all`: every clip trains; no validation or test side. The final model of a recipe whose epoch
  count a cross-validation chose: nothing stops early and nothing is scored (see the CV for that).
- `stratified`: the seed project's clip-level split (stratified by label), kept for comparison
  only: the same speakers are on both sides, so its figures are not speaker-independent.

Augmented copies are made after this split from training clips only, and duplicates never enter
it (corpus.py keeps one clip per recording), so neither can cross sides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edge.errors import UsageError

from .corpus import Clip, Corpus

PARTS = ("train", "val", "test")
KINDS = ("actor", "stratified", "all")


@dataclass(frozen=True)
class SplitSettings:
    kind: str = "actor"  # "actor" or "stratified"
    folds: int = 5  # k: the test side is one fold of k (20% of speakers or clips at k=5)
    fold: int = 0  # which fold is the test side (0..k-1)
    val_actors: int = 2  # actor split: validation speakers from the training side
    val_fraction: float = 0.1  # stratified split: share of all clips used for validation
    test_actors: tuple[str, ...] = ()  # actor split: these test speakers instead of fold K
    refit: bool = False  # actor split: the validation speakers train too (trainer.refit)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"split {self.kind!r} is unknown; use one of {', '.join(KINDS)}")
        if self.folds < 2:
            raise UsageError(f"--folds {self.folds}: need at least 2")
        if not 0 <= self.fold < self.folds:
            raise UsageError(f"--fold {self.fold} is outside 0..{self.folds - 1}")
        if self.val_actors < 1 or not 0 < self.val_fraction < 0.5:
            raise UsageError("need at least one validation speaker and 0 < val_fraction < 0.5")
        if self.refit and self.kind != "actor":
            raise UsageError(f"a refit moves an actor split's validation speakers to training; split {self.kind!r} has none")


@dataclass(frozen=True)
class Split:
    settings: SplitSettings
    seed: int
    part_of: dict[str, str]  # clip name -> "train" | "val" | "test"
    refit_actors: tuple[str, ...] = ()  # refit: the validation speakers, now training

    def clips(self, corpus: Corpus, part: str) -> list[Clip]:
        return [c for c in corpus.usable if self.part_of.get(c.name) == part]

    def describe(self, corpus: Corpus) -> dict:
        """Split kind, fold and, per side, its speakers (with sex) and clip count."""
        out: dict = {"kind": self.settings.kind, "fold": self.settings.fold, "folds": self.settings.folds, "seed": self.seed}
        for part in PARTS:
            clips = self.clips(corpus, part)
            sexes = {c.speaker: c.sex for c in clips}
            out[part] = {
                "actors": sorted(sexes),
                "sex": dict(sorted(Counter(sexes.values()).items())),
                "clips": len(clips),
            }
        if self.settings.refit:  # the validation speakers that chose the epoch count, then trained
            out["refit_actors"] = list(self.refit_actors)
        return out


def speaker_sex(clips: tuple[Clip, ...] | list[Clip]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in clips:
        out.setdefault(c.speaker, c.sex)
    return dict(sorted(out.items()))


def deal_by_sex(speakers: dict[str, str], groups: int, rng: np.random.Generator) -> list[list[str]]:
    """Shuffle speakers within each sex, then deal them round the groups, one sex after the other."""
    out: list[list[str]] = [[] for _ in range(groups)]
    turn = 0
    for sex in sorted(set(speakers.values())):
        same = [s for s, x in speakers.items() if x == sex]
        for s in rng.permutation(same):
            out[turn % groups].append(str(s))
            turn += 1
    return [sorted(g) for g in out]


def alternate_sexes(speakers: dict[str, str], rng: np.random.Generator) -> list[str]:
    """Speakers shuffled within each sex, then taken from each sex in turn (F, M, F, M, ...)."""
    by_sex = [list(rng.permutation([s for s, x in speakers.items() if x == sex])) for sex in sorted(set(speakers.values()))]
    by_sex = [by_sex[i] for i in rng.permutation(len(by_sex))]  # which sex goes first is random too
    out = []
    while any(by_sex):
        out += [str(group.pop(0)) for group in by_sex if group]
    return out


def actor_folds(corpus: Corpus, folds: int, seed: int) -> list[list[str]]:
    speakers = speaker_sex(corpus.usable)
    if folds > len(speakers):
        raise UsageError(f"{folds} folds need at least {folds} speakers; the corpus has {len(speakers)}")
    return deal_by_sex(speakers, folds, np.random.default_rng(seed))


def make_split(corpus: Corpus, settings: SplitSettings, seed: int) -> Split:
    settings.check()
    if settings.kind == "actor":
        return _actor_split(corpus, settings, seed)
    if settings.kind == "all":
        return Split(settings, seed, {c.name: "train" for c in corpus.usable})
    return _stratified_split(corpus, settings, seed)


def _actor_split(corpus: Corpus, s: SplitSettings, seed: int) -> Split:
    speakers = speaker_sex(corpus.usable)
    if s.test_actors:
        unknown = sorted(set(s.test_actors) - set(speakers))
        if unknown:
            raise UsageError(f"--test-actors {','.join(unknown)}: not in the corpus (speakers: {','.join(speakers)})")
        test = set(s.test_actors)
    else:
        test = set(actor_folds(corpus, s.folds, seed)[s.fold])
    rest = {sp: sex for sp, sex in speakers.items() if sp not in test}
    if s.val_actors >= len(rest):
        raise UsageError(f"{s.val_actors} validation speakers leave none to train on ({len(rest)} outside the test side)")
    val = set(alternate_sexes(rest, np.random.default_rng([seed, s.fold]))[: s.val_actors])
    held = "train" if s.refit else "val"
    part_of = {}
    for c in corpus.usable:
        part_of[c.name] = "test" if c.speaker in test else held if c.speaker in val else "train"
    return Split(s, seed, part_of, tuple(sorted(val)) if s.refit else ())


def _stratified_split(corpus: Corpus, s: SplitSettings, seed: int) -> Split:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    clips = corpus.usable
    names = np.array([c.name for c in clips])
    labels = np.array([c.label for c in clips])
    folds = StratifiedKFold(n_splits=s.folds, shuffle=True, random_state=seed)
    rest_idx, test_idx = list(folds.split(names, labels))[s.fold]
    share = s.val_fraction * len(clips) / len(rest_idx)
    train_idx, val_idx = train_test_split(rest_idx, test_size=share, stratify=labels[rest_idx], random_state=seed)
    part_of = {}
    for part, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx)):
        part_of.update({str(n): part for n in names[idx]})
    return Split(s, seed, part_of)
