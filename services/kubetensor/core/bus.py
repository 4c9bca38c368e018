"""Connecting to NATS the same way in every process (the miner, the validator, the devnet, the tests).

``connect`` returns a nats.py client that reconnects forever with a short wait and logs every
disconnect, reconnect and asynchronous error under the caller's name, so a NATS restart shows up in
the logs and heals itself instead of killing the service. ``connect_lite`` returns the lean client of
the core protocol (``kubetensor.core.natslite``), which does the same; ``connect_tasks`` is what the
miner and the validator use for their tasks: the lean client, or nats.py where the lean one cannot go
(a ``tls://`` URL, a server that requires TLS). Credentials from a service's folder
(``kubetensor.core.natsauth``) are given to each as they are.
``subscribe`` gives either client's subscription a plain callback. Subjects and headers are in
``kubetensor.core.subjects``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kubetensor.core import natslite
from kubetensor.core.natsauth import NatsCredentials

Credentials = NatsCredentials | Callable[[], NatsCredentials]
"""Credentials to connect with: fixed, or asked at every connect and reconnect
(``natsauth.NatsAuthFolder``)."""


def _provider(credentials: Credentials) -> Callable[[], NatsCredentials]:
    if isinstance(credentials, NatsCredentials):
        return lambda: credentials
    return credentials


_log = logging.getLogger(__name__)


def user_and_password(current: Callable[[], NatsCredentials]) -> tuple[Callable[[], str], Callable[[], str]]:
    """The user and password callbacks for nats.py, which asks for the user, then the password, at each
    connect: both come from one read of ``current`` (two reads would read a credentials folder twice,
    and a rotation between them would pair the new user with the old password)."""
    read: list[NatsCredentials] = []

    def user() -> str:
        read[:] = [current()]
        return read[0].user

    def password() -> str:
        return (read.pop() if read else current()).password

    return user, password


async def connect(
    url: str, *, name: str, connect_timeout: float = 5.0, credentials: Credentials | None = None
) -> Client:
    """A connected client named ``name`` (shown by the NATS server's monitoring), with ``credentials``
    for the servers whose URL has none (``kubetensor.core.natsauth``): asked at every connect and
    reconnect, but of the kind (token, or user and password) they had at the first."""
    connected: list[Client] = []

    async def on_error(error: Exception) -> None:
        _log.warning("%s: NATS error: %s", name, error)

    async def on_disconnected() -> None:
        # A close we asked for also disconnects; only an unexpected loss is worth a warning.
        if connected and (connected[0].is_closed or connected[0].is_draining):
            return
        _log.warning("%s: disconnected from NATS; reconnecting", name)

    async def on_reconnected() -> None:
        _log.info("%s: reconnected to NATS", name)

    auth: dict[str, Callable[[], str]] = {}
    if credentials is not None:
        current = _provider(credentials)
        if current().token:
            auth["token"] = lambda: current().token
        else:
            auth["user"], auth["password"] = user_and_password(current)
    client: Client = await nats.connect(
        url,
        name=name,
        **auth,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        connect_timeout=max(1, round(connect_timeout)),
        reconnect_time_wait=1,
        max_reconnect_attempts=-1,
    )
    connected.append(client)
    return client


async def connect_lite(
    url: str,
    *,
    name: str,
    connect_timeout: float = 5.0,
    write_batch_bytes: int = 0,
    credentials: Credentials | None = None,
) -> natslite.LiteClient:
    """A ``natslite.LiteClient`` named ``name``, for the round's hot path (the miner's task subscriber
    and the validator's task client): it too reconnects forever, one second apart, and logs every
    disconnect and reconnect under ``name``."""
    return await natslite.connect(
        url,
        name=name,
        connect_timeout_s=connect_timeout,
        reconnect_wait_s=1.0,
        write_batch_bytes=write_batch_bytes,
        credentials=None if credentials is None else _provider(credentials),
    )


async def connect_tasks(
    url: str,
    *,
    name: str,
    connect_timeout: float = 5.0,
    write_batch_bytes: int = 0,
    credentials: Credentials | None = None,
) -> natslite.LiteClient | Client:
    """The client for a service's tasks: ``connect_lite``'s, else (``NatsUnsupportedError``) nats.py's,
    with one log line that says why, so TLS keeps working at nats.py's speed. ``credentials`` go to
    either client as they are."""
    try:
        return await connect_lite(
            url,
            name=name,
            connect_timeout=connect_timeout,
            write_batch_bytes=write_batch_bytes,
            credentials=credentials,
        )
    except natslite.NatsUnsupportedError as error:
        _log.info("%s: %s; using nats.py for tasks instead", name, error)
        return await connect(url, name=name, connect_timeout=connect_timeout, credentials=credentials)


async def subscribe(
    client: natslite.LiteClient | Client,
    subject: str,
    *,
    queue: str = "",
    cb: Callable[[Msg | natslite.Message], None],
) -> natslite.LiteSubscription | Subscription:
    """Subscribe ``cb``, a plain function that must return at once, with either client: the lean one
    calls it in its read path; nats.py, which wants a coroutine function, through a wrapper."""
    if isinstance(client, natslite.LiteClient):
        return await client.subscribe(subject, queue, cb=cb)

    async def wrapped(msg: Msg) -> None:
        cb(msg)

    return await client.subscribe(subject, queue=queue, cb=wrapped)
