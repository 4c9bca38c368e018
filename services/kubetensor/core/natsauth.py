"""NATS credentials from a folder of files (a mounted Kubernetes Secret), handed to the NATS client when a
service connects.

The miner and the validator take ``KT_<SVC>_NATS_AUTH_DIR``: the operator mounts the Secret a Subnet
names in ``spec.natsAuth.secretName`` there, so the credentials never appear in a Subnet, a Deployment,
an environment variable, a URL or a log line. The folder holds one of:

* ``token``: a token (nats-server ``authorization { token: ... }``);
* ``user`` and ``password``: a user of nats-server's ``authorization { users: [...] }``.

``for_service`` checks the folder at start and returns a ``NatsAuthFolder`` for ``bus.connect_tasks``,
which gives the credentials to either NATS client as they are (not through the URL, which nats.py would
not percent-decode). The clients ask the folder again at every reconnect, so a rotated Secret (the
kubelet updates a mounted Secret's files in place) is used from the next reconnect on, without a
restart; a folder that cannot be read then keeps the credentials read before, with a warning. Surrounding
whitespace, a trailing newline from ``kubectl create secret --from-file`` included, is dropped. A URL
that carries credentials of its own as well is refused: two sources of one secret would leave which one
wins to chance.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_log = logging.getLogger(__name__)

TOKEN_KEY = "token"
USER_KEY = "user"
PASSWORD_KEY = "password"


class NatsAuthError(ValueError):
    """The credentials folder cannot be used; the message names the folder and what it lacks."""


def credentials_problem(values: Mapping[str, str | None], *, noun: str) -> str | None:
    """What keeps ``values`` (by ``TOKEN_KEY``, ``USER_KEY`` and ``PASSWORD_KEY``: None when absent,
    surrounding whitespace already dropped) from being one kind of credentials, naming each as a
    ``noun`` ("file" in a folder, "key" in a Secret), or None. The one rule for the services, which
    read a folder (``NatsCredentials.load``), and for the operator, which checks the Secret a Subnet
    names before it mounts it; never a value in the message."""
    token, user, password = values.get(TOKEN_KEY), values.get(USER_KEY), values.get(PASSWORD_KEY)
    if token is not None and (user is not None or password is not None):
        return f"holds both a {noun} {TOKEN_KEY!r} and {noun}s {USER_KEY!r}/{PASSWORD_KEY!r}; keep one kind"
    if token or (token is None and user and password is not None):
        return None
    return (
        f"needs a non-empty {noun} {TOKEN_KEY!r}, or a non-empty {noun} {USER_KEY!r} "
        f"and a {noun} {PASSWORD_KEY!r}"
    )


@dataclass(frozen=True)
class NatsCredentials:
    """A token, or a user and a password (the secret values are kept out of ``repr``)."""

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    @classmethod
    def load(cls, directory: Path) -> NatsCredentials:
        """The credentials in ``directory`` (NatsAuthError when it holds neither or both kinds)."""
        if not directory.is_dir():
            raise NatsAuthError(f"NATS credentials folder {directory}: not a readable folder")
        values = {key: _read(directory, key) for key in (TOKEN_KEY, USER_KEY, PASSWORD_KEY)}
        problem = credentials_problem(values, noun="file")
        if problem is not None:
            raise NatsAuthError(f"NATS credentials folder {directory}: {problem}")
        token = values[TOKEN_KEY]
        if token is not None:
            return cls(token=token)
        return cls(user=values[USER_KEY] or "", password=values[PASSWORD_KEY] or "")


def _read(directory: Path, key: str) -> str | None:
    path = directory / key
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise NatsAuthError(f"NATS credentials folder {directory}: cannot read {key!r}: {error}") from None


def has_credentials(url: str) -> bool:
    """Whether ``url`` (one server, or a comma-separated list) carries credentials of its own."""
    return any("@" in urllib.parse.urlsplit(_with_scheme(part)).netloc for part in url.split(","))


def _with_scheme(url: str) -> str:
    url = url.strip()
    return url if "://" in url else f"nats://{url}"


class NatsAuthFolder:
    """A credentials folder, read again each time it is called (at every connect and reconnect)."""

    def __init__(self, directory: Path, *, setting: str) -> None:
        self.directory = directory
        self.setting = setting
        try:
            self._last = NatsCredentials.load(directory)
        except NatsAuthError as error:
            raise NatsAuthError(f"{setting}: {error}") from None

    def __call__(self) -> NatsCredentials:
        """The folder's credentials now; those read before (and a warning) when it cannot be used now."""
        try:
            self._last = NatsCredentials.load(self.directory)
        except NatsAuthError as error:
            _log.warning("%s: %s; connecting with the credentials read before", self.setting, error)
        return self._last


def for_service(url: str, *, auth_dir: Path | None, setting: str) -> NatsAuthFolder | None:
    """The credentials folder ``auth_dir`` of a service that connects to ``url`` (None without one),
    checked now: NatsAuthError, naming ``setting`` (``KT_MINER_NATS_AUTH_DIR``), when it cannot be used.
    """
    if auth_dir is None:
        return None
    if has_credentials(url):
        raise NatsAuthError(
            f"{setting} is set and the NATS URL carries credentials too: keep them in the folder only"
        )
    return NatsAuthFolder(auth_dir, setting=setting)
