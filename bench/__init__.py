"""moodmic's desktop benchmark: the shipped edge path against the upstream TensorFlow/librosa stack.

`moodmic-bench` (bench/cli.py) measures every row of BENCHMARKS.md: the upstream stack (librosa +
Keras, bench/rows.py) and the seed model converted to float32 and int8 (the converter) on the desktop,
then the device rows through edge/bench.py, the same code `moodmic bench` runs on a device. This
package may import edge, trainer and converter; edge never imports it.
"""
