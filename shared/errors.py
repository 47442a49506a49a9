"""One line for the user from an exception: what the command-line tools print after ``error:``.

MONAI wraps the error a transform or a bundle component raised (``applying transform ...``,
``Failed to instantiate component ...``); the message that names the file and the problem is
the wrapped one. Our own errors wrap library errors the other way round (a ``VolumeError``
naming the file, caused by ITK's or zlib's message), and those must be kept. So the chain is
unwrapped only through MONAI's wrappers, and the message is folded onto one line.
"""

from __future__ import annotations

#: how MONAI's wrapper exceptions begin (monai.transforms.Compose, monai.bundle.ConfigItem)
WRAPPER_PREFIXES = ("applying transform", "Failed to instantiate component", "Failed to evaluate", "Failed to run")


def unwrap(err: BaseException) -> BaseException:
    """The error a MONAI wrapper carries (through any number of wrappers); ``err`` itself otherwise."""
    while err.__cause__ is not None and str(err).lstrip().startswith(WRAPPER_PREFIXES):
        err = err.__cause__
    return err


def one_line(err: BaseException, limit: int = 600) -> str:
    """The unwrapped message on one line (whitespace folded), at most ``limit`` characters."""
    inner = unwrap(err)
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
