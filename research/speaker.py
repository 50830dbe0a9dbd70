"""Speaker normalisation: a voice's long-term mean log-mel spectrum, subtracted from every frame.

A model trained with it (variant `speaker-mean`, the trainer's `--speaker-mean` when it ran) sees
each frame relative to the average spectrum of the voice that spoke it, so a deep or bright voice, a
microphone's tilt and the room's level are removed while what differs from that voice's average
(louder, brighter, tenser speech) stays. The trainer took a speaker's mean over the speech frames of
all their recordings (labels unused). A device could only learn a running mean over whoever it
hears, so the edge frontend does not apply it and the converter refuses such a run; it was
cross-validated and not kept (research/VARIANTS.md), and the option left the trainer
(research/README.md). The spectrum itself is kept here, for a device-side running mean to build on.

Speech frames are those whose mean mel power is at least SPEECH_FRAME_DB: pauses and the floor do
not pull the mean down, so it does not depend on how much silence a recording holds.
"""

from __future__ import annotations

import numpy as np

SPEECH_FRAME_DB = -50.0  # mean mel power (dB, the frontend's scale) of a frame that counts as speech


def frame_level_db(mels: np.ndarray) -> np.ndarray:
    """(T, n_mels) log-mel frames -> (T,) mean mel power of each frame in dB."""
    return 10.0 * np.log10(np.mean(np.power(10.0, mels.astype(np.float64) / 10.0), axis=-1))


def speech_frames(mels: np.ndarray, threshold_db: float = SPEECH_FRAME_DB) -> np.ndarray:
    """The frames of `mels` that count as speech."""
    return mels[frame_level_db(mels) >= threshold_db]


class LongTermSpectrum:
    """The mean log-mel frame over the speech frames of everything added so far."""

    def __init__(self, n_mels: int, threshold_db: float = SPEECH_FRAME_DB):
        self.threshold_db = threshold_db
        self._sum = np.zeros(n_mels, np.float64)
        self.frames = 0

    def add(self, mels: np.ndarray) -> None:
        speech = speech_frames(mels, self.threshold_db)
        self._sum += speech.sum(axis=0)
        self.frames += len(speech)

    def mean(self) -> np.ndarray:
        if not self.frames:
            raise ValueError("no speech frames yet: the long-term spectrum is undefined")
        return (self._sum / self.frames).astype(np.float32)


def speaker_means(frames_by_speaker: dict[str, list[np.ndarray]], n_mels: int) -> dict[str, np.ndarray]:
    """Each speaker's long-term spectrum over all their recordings' frames."""
    out = {}
    for speaker, clips in frames_by_speaker.items():
        spectrum = LongTermSpectrum(n_mels)
        for mels in clips:
            spectrum.add(mels)
        out[speaker] = spectrum.mean()
    return out


def speaker_spectra(clips, cache) -> dict[str, np.ndarray]:
    """Each speaker's long-term spectrum over all their clips in `clips` (trainer.corpus.Clip; labels
    unused), from the feature cache (trainer.cache.FeatureCache)."""
    from trainer.progress import progress

    by_speaker: dict[str, list[np.ndarray]] = {}
    for c in progress(clips, "speaker spectra"):
        by_speaker.setdefault(c.speaker, []).append(cache.frames(c))
    return speaker_means(by_speaker, cache.frontend.params.n_mels)
