"""moodmic edge runtime: everything a device installs (no TensorFlow, no librosa)."""

__version__ = "0.1.0"
