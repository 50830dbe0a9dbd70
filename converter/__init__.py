"""moodmic converter: a trainer run directory -> a verified TFLite model bundle (desktop, TensorFlow)."""
