"""moodmic trainer: RAVDESS (or any manifest corpus) -> Keras model + honest report (`moodmic-train`).

Runs on a desktop with the `train` extra. Features come from edge.features only, so the model is
trained on exactly what the device computes; whole-file scores come from edge.predict.predict_audio.

Modules, in the order data flows through them: corpus (what clips exist), splits (who goes where),
augment + room_copies + cache (waveform augmentation, multi-condition copies, feature cache), teacher
(soft labels for distillation), data (training windows, oversampling),
model + losses (architectures, focal loss), train (fit, resume), evaluate (metrics), report
(plots, model card), rundir (the run directory format), run (one run), crossval, refit, members,
ensemble and final (runs of runs; graphs averages their models), calibrate, rescore, cli.

The shipped model's recipe and results are in trainer/recipe/; variants and probes that did not
ship are in research/, which may import the trainer and is never imported by it.
"""

import os

# Keras 2 (tf-keras) is the only Keras this code and keras-self-attention 0.51 work with; the
# variable must be set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
