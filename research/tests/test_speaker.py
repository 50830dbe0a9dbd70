"""Speaker normalisation (research/speaker.py): the long-term spectrum counts speech frames only."""

from __future__ import annotations

import numpy as np
import pytest
from speaker import SPEECH_FRAME_DB, LongTermSpectrum, frame_level_db, speaker_means, speech_frames


def test_frame_level_is_the_mean_mel_power_in_db():
    mels = np.array([[-10.0, -10.0], [-80.0, -80.0], [0.0, -80.0]], np.float32)
    assert np.allclose(frame_level_db(mels), [-10.0, -80.0, 10 * np.log10((1 + 1e-8) / 2)], atol=1e-4)


def test_pauses_and_the_floor_do_not_move_the_long_term_spectrum():
    rng = np.random.default_rng(0)
    speech = rng.uniform(-40, -5, size=(50, 8)).astype(np.float32)
    silence = np.full((200, 8), -80.0, np.float32)
    hum = np.full((30, 8), SPEECH_FRAME_DB - 5, np.float32)  # quiet noise just under the speech level
    short, padded = LongTermSpectrum(8), LongTermSpectrum(8)
    short.add(speech)
    padded.add(np.concatenate([silence, speech[:20], hum, speech[20:]]))
    assert short.frames == padded.frames == 50
    assert np.allclose(short.mean(), speech.mean(axis=0)) and np.allclose(padded.mean(), short.mean())
    assert len(speech_frames(hum)) == 0


def test_a_speaker_is_the_mean_over_all_their_recordings_and_silence_alone_is_refused():
    a, b = np.full((10, 4), -20.0, np.float32), np.full((30, 4), -30.0, np.float32)
    means = speaker_means({"01": [a, b], "02": [b]}, 4)
    assert np.allclose(means["01"], -27.5) and np.allclose(means["02"], -30.0)  # weighted by speech frames
    with pytest.raises(ValueError, match="no speech frames"):
        LongTermSpectrum(4).mean()
