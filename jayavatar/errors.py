"""The one exception tree of JayAvatar.

::

    JayAvatarError
    ├── UserError            safe to show to the person who asked; never retried
    │   ├── NotFound         unknown voice, avatar or request
    │   ├── Forbidden        not allowed (consent, admin, quota, deny list)
    │   └── BadInput         text, file or option that cannot be used
    │       └── Misconfigured  a setting that cannot work (the deployment's, not the user's)
    ├── TransientError       a passing fault (Redis down, worker busy); retried
    └── EngineError          an engine failed on valid input; not shown verbatim
        └── ModelMissing     weights absent or corrupt; names the file and the fix

Every front end (CLI, bot, API) maps this tree to messages in one place.
"""

from __future__ import annotations


class JayAvatarError(Exception):
    """Base of every error JayAvatar raises on purpose."""


class UserError(JayAvatarError):
    """A problem with what the user asked; the message is safe to show."""


class NotFound(UserError):
    """An unknown voice, avatar or request."""


class Forbidden(UserError):
    """The user may not do this."""


class BadInput(UserError):
    """Text, a file or an option that cannot be used."""


class Misconfigured(BadInput):
    """A setting (a JAYAVATAR_* variable) that cannot work; the CLI exits 2 for it."""


class TransientError(JayAvatarError):
    """A passing fault; the operation is retried."""


class EngineError(JayAvatarError):
    """An engine failed on valid input."""


class ModelMissing(EngineError):
    """Model weights are absent or corrupt."""


def one_line(exc: BaseException) -> str:
    """Return a single-line message for an error, never exposing internals of non-user errors."""
    if isinstance(exc, UserError | ModelMissing):
        text = str(exc)
    elif isinstance(exc, TransientError):
        text = f"temporarily unavailable: {exc}"
    elif isinstance(exc, EngineError):
        text = "the engine failed on this request; an admin can see the details in the worker log"
    else:
        text = "internal error; an admin can see the details in the log"
    return " ".join(text.split()) or exc.__class__.__name__
