"""The project's errors and exit codes, in one place.

Every error a user can cause carries its exit code and a one-line message that names the
problem and the fix; the CLI prints the message and exits with the code (sysexits.h values).
"""

from __future__ import annotations

import reprlib
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2  # bad command line
EXIT_DATAERR = 65  # bad input data (audio that is empty, corrupt, silent, ...)
EXIT_NOINPUT = 66  # an input file that does not exist
EXIT_UNAVAILABLE = 69  # this platform cannot run the service (not Linux, no systemd, old Python)
EXIT_SOFTWARE = 70  # a tool we drive failed (the TFLite converter crashed, a parity gate failed)
EXIT_TEMPFAIL = 75  # a temporary fault worth retrying (e.g. a dead microphone)
EXIT_NOPERM = 77  # needs root
EXIT_CONFIG = 78  # bad configuration, credentials or model bundle


class MoodmicError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 1


class UsageError(MoodmicError):
    exit_code = EXIT_USAGE


class BadAudioError(MoodmicError):
    """Audio that cannot be used: empty, truncated, not audio, silent, NaN/inf, too long."""

    exit_code = EXIT_DATAERR


class MissingInputError(MoodmicError):
    exit_code = EXIT_NOINPUT


class UnsupportedPlatform(MoodmicError):
    """Not Linux, no systemd, or a Python too old for moodmic."""

    exit_code = EXIT_UNAVAILABLE


class NotRoot(MoodmicError):
    exit_code = EXIT_NOPERM


class TemporaryFault(MoodmicError):
    exit_code = EXIT_TEMPFAIL


class MissingExtra(UnsupportedPlatform):
    """A command whose pip extra is not installed here (moodmic-train on a device install, ...)."""


# What `moodmic-train` and `moodmic-convert` import: the `train` extra (pyproject.toml).
TRAIN_MODULES = ("tensorflow", "tf_keras", "keras_self_attention", "librosa", "sklearn", "matplotlib")


def require_extra(extra: str, modules: tuple[str, ...] = TRAIN_MODULES) -> None:
    """Raise MissingExtra (exit 69) naming the fix if any of `modules` cannot be imported. Imports nothing."""
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # blocked, or a None/half-imported entry in sys.modules
            return True

    missing = [m for m in modules if absent(m)]
    if missing:
        raise MissingExtra(f"{', '.join(missing)} not installed: this command needs the {extra} extra; "
                           f"in a moodmic checkout run: pip install '.[{extra}]'")


class ConversionError(MoodmicError):
    """The model could not be converted into a bundle worth shipping."""

    exit_code = EXIT_SOFTWARE


class ConfigError(MoodmicError):
    exit_code = EXIT_CONFIG


class BundleError(ConfigError):
    """A model bundle that is missing, corrupt or that this runtime cannot honour."""


class InternalFault(MoodmicError):
    """A thread of the daemon died: exit non-zero so that systemd restarts the service."""

    exit_code = EXIT_SOFTWARE


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 2


def shown(value: Any, limit: int = 60) -> str:
    """repr(value) cut to about `limit` characters: an error message never prints all of a hostile value
    (repr of a 340-byte alias bomb is gigabytes)."""
    try:
        text = _SHORT.repr(value)
    except ValueError:  # an int too long for str()
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[: limit - 3] + "..."
