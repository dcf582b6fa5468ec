"""API credentials that never show up in logs, reprs, tracebacks or pickles.

Keys come from environment variables the user names or from a TOML/JSON file the user names
(issue 4: "Keys come from environment variables or a file the user names; they are never
logged"). A :class:`Secret` holds the string; its ``repr``/``str``/``format`` are masked, so an
``ApiCredentials`` can be logged or put in an f-string by mistake without leaking anything. Only
the signing code calls :meth:`Secret.reveal`.

Loading errors name the variable, file and field, never a value (and drop the parser's exception
chain, whose message could quote the document).

Source of the rule: ``shared/STYLE.md`` §2 Logging ("Never log keys, signatures, signed queries
or auth headers; keys sit in a ``Secret`` whose ``repr`` is masked").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["ApiCredentials", "CredentialsError", "Secret"]

log = logging.getLogger(__name__)

_MASK = "********"


class CredentialsError(ValueError):
    """Credentials could not be loaded; the message names the source and field, never a value."""


class Secret:
    """A string that is masked everywhere except :meth:`reveal`.

    ``repr`` -> ``Secret('********')``; ``str``/``format`` -> ``********``. Equality is
    constant-time; pickling is refused (a pickle would write the value to disk).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret value must be str, got {type(value).__name__}")
        if not value:
            raise ValueError("Secret value must be non-empty")
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it straight to a signer, never to a logger."""
        return self._value

    def fingerprint(self) -> str:
        """First 8 hex digits of SHA-256 of the value: safe to log to tell two keys apart."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return format(_MASK, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self.fingerprint()))

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Secret cannot be pickled")


class ApiCredentials:
    """An API key and secret (plus Gate's user id, which futures private channels need).

    Both ``key`` and ``secret`` are :class:`Secret`; ``source`` says where they were loaded from
    (``"env:MEXC_KEY,MEXC_SECRET"``, ``"file:/path#section"``) for error messages and logs.

    Build with :meth:`from_env`, :meth:`from_file` or :meth:`load`.
    """

    __slots__ = ("key", "secret", "source", "uid")

    key: Secret
    secret: Secret
    uid: str | None
    source: str

    def __init__(self, key: str | Secret, secret: str | Secret, *, uid: str | None = None, source: str = "") -> None:
        self.key = key if isinstance(key, Secret) else Secret(key)
        self.secret = secret if isinstance(secret, Secret) else Secret(secret)
        self.uid = uid
        self.source = source

    def __repr__(self) -> str:
        return (
            f"ApiCredentials(key={self.key!r}, secret={self.secret!r}, uid={self.uid!r}, "
            f"source={self.source!r}, fingerprint={self.key.fingerprint()!r})"
        )

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("ApiCredentials cannot be pickled")

    @classmethod
    def from_env(
        cls,
        key_var: str,
        secret_var: str,
        *,
        uid_var: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ApiCredentials:
        """Read the key and secret from the environment variables the user named.

        Raises:
            CredentialsError: a variable is unset or empty (names the variable, not a value).
        """
        env = os.environ if environ is None else environ

        def need(var: str) -> str:
            value = env.get(var, "")
            if not value.strip():
                raise CredentialsError(f"environment variable {var} is unset or empty")
            return value.strip()

        uid = need(uid_var) if uid_var else None
        return cls(need(key_var), need(secret_var), uid=uid, source=f"env:{key_var},{secret_var}")

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        section: str | None = None,
        key_field: str = "key",
        secret_field: str = "secret",
        uid_field: str = "uid",
    ) -> ApiCredentials:
        """Read credentials from a TOML (``.toml``) or JSON (any other suffix) file.

        The table ``section`` (e.g. ``"mexc"`` for ``[mexc]``) holds ``key``, ``secret`` and an
        optional ``uid``; without ``section`` they are top-level. A file readable by group or
        others gets a warning (path and mode only).

        Raises:
            CredentialsError: missing or unreadable file, bad syntax (line/column only), missing
                section or field, or a non-string value.
        """
        p = Path(path).expanduser()
        where = f"{p}" + (f"#{section}" if section else "")
        try:
            mode = p.stat().st_mode
            raw = p.read_bytes()
        except OSError as exc:
            raise CredentialsError(f"credentials file {p}: cannot read ({exc.strerror})") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("credentials file %s is readable by group/others (mode %o); chmod 600 it", p, mode & 0o777)
        doc: Any
        if p.suffix.lower() == ".toml":
            try:
                doc = tomllib.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CredentialsError(f"credentials file {p}: not UTF-8") from None
            except tomllib.TOMLDecodeError as exc:
                # the message carries line/column only; keep nothing else
                raise CredentialsError(f"credentials file {p}: invalid TOML ({_position(str(exc))})") from None
        else:
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CredentialsError(
                    f"credentials file {p}: invalid JSON (line {exc.lineno}, column {exc.colno})"
                ) from None
            except UnicodeDecodeError:
                raise CredentialsError(f"credentials file {p}: not UTF-8") from None
        if section is not None:
            if not isinstance(doc, dict) or not isinstance(doc.get(section), dict):
                raise CredentialsError(f"credentials file {p}: no table/object named {section!r}")
            doc = doc[section]
        if not isinstance(doc, dict):
            raise CredentialsError(f"credentials file {p}: top level must be a table/object")

        def need(field: str) -> str:
            value = doc.get(field)
            if not isinstance(value, str) or not value.strip():
                kind = "missing" if value is None else "not a non-empty string"
                raise CredentialsError(f"credentials {where}: field {field!r} is {kind}")
            return value.strip()

        uid_value = doc.get(uid_field)
        uid = None if uid_value is None else str(uid_value)
        return cls(need(key_field), need(secret_field), uid=uid, source=f"file:{where}")

    @classmethod
    def load(cls, spec: str, *, environ: Mapping[str, str] | None = None) -> ApiCredentials:
        """Load from a one-string spec, as a CLI or config file would give it.

        * ``env:KEY_VAR,SECRET_VAR[,UID_VAR]`` -- environment variables;
        * ``file:PATH[#SECTION]`` (or a bare path) -- a TOML/JSON file, optionally one table.

        A spec that is neither (a bare value naming no file) is never repeated in the error: it
        may be a key pasted where a spec belongs.

        Raises:
            CredentialsError: malformed spec or any error of :meth:`from_env` / :meth:`from_file`.
        """
        if spec.startswith("env:"):
            names = [n.strip() for n in spec[4:].split(",")]
            if len(names) not in (2, 3) or not all(names):
                raise CredentialsError(
                    f"credentials spec env:...: expected env:KEY_VAR,SECRET_VAR[,UID_VAR], got {len(names)} name(s)"
                    + (" (one empty)" if not all(names) else "")
                )
            return cls.from_env(names[0], names[1], uid_var=names[2] if len(names) == 3 else None, environ=environ)
        explicit = spec.startswith("file:")
        path, _, section = spec.removeprefix("file:").partition("#")
        if not path:
            raise CredentialsError("credentials spec: expected file:PATH[#SECTION] or env:KEY_VAR,SECRET_VAR (no path given)")
        if not explicit and not Path(path).is_file():
            raise CredentialsError(
                f"credentials spec ({len(spec)} characters, not shown: it may be a key): expected "
                "env:KEY_VAR,SECRET_VAR[,UID_VAR] or file:PATH[#SECTION], and it names no file"
            )
        return cls.from_file(path, section=section or None)


def _position(message: str) -> str:
    """``line N, column M`` out of a TOMLDecodeError message, or ``unknown position``."""
    start = message.rfind("(at ")
    if start >= 0 and message.endswith(")"):
        return message[start + 4 : -1]
    return "unknown position"
