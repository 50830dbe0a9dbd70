"""moodmic-train with research/architectures.py's architectures too (`--arch cnn_wide`, `cnn_stats`, `cnn2d`).

    python research/train.py cv --arch cnn_wide ...     (any moodmic-train command and option)

The product trainer keeps only the shipped recipe's architectures; a research variant that needs one
of the others runs through this script (research/variants.sh does). Its runs are ordinary run
directories: `moodmic-train members`, `refit` and `final` read them through this script as well.
"""

import sys

from trainer.cli import main

if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]) and len(sys.argv) == 2:
        print(__doc__.strip() + "\n")
    else:
        from architectures import register  # research/, first on sys.path when run as a script (imports TensorFlow)

        register()
    sys.exit(main())
