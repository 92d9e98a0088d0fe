"""Every exception and warning class of encore, in one place.

Each error's message is one line a person can act on: it names the file (and row or column where it
applies) and what to do. The CLI prints it as ``error: <message>`` and exits with the class's
``exit_code``; ``--debug`` shows the traceback instead. ``docs/troubleshooting.md`` lists the messages.
"""

from __future__ import annotations


class EncoreError(Exception):
    """Base class: a failure encore explains in one line (exit status 1 unless a subclass says otherwise)."""

    exit_code = 1


class ConfigError(EncoreError, ValueError):
    """A setting is missing or invalid; the message is one line naming the field."""

    exit_code = 2


class InputError(EncoreError, ValueError):
    """An input file or folder cannot be read as encore input; the message names it and the fix."""


class RejectRatioError(EncoreError, RuntimeError):
    """Too many input rows were rejected: the run stops before publishing."""


class ClusterError(EncoreError, RuntimeError):
    """The cluster cannot be reached or built; the message says what to do."""


class ExtractError(EncoreError, ValueError):
    """The extract cannot run: the message is one line, safe to print (no password)."""


class PublishError(EncoreError, OSError):
    """Writing a run failed (storage unreachable, denied, full); the previously published run stays readable."""


class NoPublishedRun(EncoreError, FileNotFoundError):
    """The output root has no LATEST pointer yet."""


class EmptyRunError(EncoreError, RuntimeError):
    """``--strict``: the run would serve nothing (or far less than the run before); it was written, not published."""

    exit_code = 3


class GuardError(EncoreError, RuntimeError):
    """The publish guard held the run back: it was written in full, ``LATEST`` did not move
    (``encore publish RUN_ID --force`` publishes it after a look)."""

    exit_code = 4


__all__ = ["ClusterError", "ConfigError", "EmptyRunError", "EncoreError", "ExtractError",
           "GuardError", "InputError", "NoPublishedRun", "PublishError", "RejectRatioError"]
