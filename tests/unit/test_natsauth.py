"""``kubetensor.core.natsauth``: NATS credentials from a folder, for the NATS clients."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubetensor.core import bus, natsauth
from kubetensor.core.natsauth import NatsAuthError, NatsCredentials

SETTING = "KT_MINER_NATS_AUTH_DIR"


def folder(tmp_path: Path, **files: str) -> Path:
    path = tmp_path / "auth"
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_a_token_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    auth = folder(tmp_path, token="t0k/en@x\n")
    folder_ = natsauth.for_service("nats://a:4222, b:4223", auth_dir=auth, setting=SETTING)
    assert folder_ is not None
    assert folder_() == NatsCredentials(token="t0k/en@x")


def test_a_user_and_password_are_read_as_they_are(tmp_path: Path) -> None:
    auth = folder(tmp_path, user="kt", password="p:w@d ")
    credentials = natsauth.for_service("nats://nats.kt.svc:4222", auth_dir=auth, setting=SETTING)
    assert credentials is not None
    assert credentials() == NatsCredentials(user="kt", password="p:w@d")


def test_without_a_folder_there_are_no_credentials() -> None:
    assert natsauth.for_service("nats://u:p@a:4222", auth_dir=None, setting=SETTING) is None


def test_the_folder_is_read_again_each_time_and_a_broken_one_keeps_the_last_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = folder(tmp_path, token="first")
    read = natsauth.NatsAuthFolder(auth, setting=SETTING)
    (auth / "token").write_text("rotated")
    assert read() == NatsCredentials(token="rotated")
    (auth / "token").unlink()
    assert read() == NatsCredentials(token="rotated")
    assert f"{SETTING}: NATS credentials folder {auth}: needs a non-empty file 'token'" in caplog.text
    assert "rotated" not in caplog.text


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "needs a non-empty file 'token', or a non-empty file 'user' and a file 'password'"),
        ({"user": "kt"}, "needs a non-empty file 'token'"),
        ({"password": "x"}, "needs a non-empty file 'token'"),
        ({"token": "  \n"}, "needs a non-empty file 'token'"),
        (
            {"token": "t", "user": "kt", "password": "x"},
            "holds both a file 'token' and files 'user'/'password'",
        ),
    ],
)
def test_a_folder_without_usable_credentials_is_refused_naming_the_setting_and_the_folder(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    auth = folder(tmp_path, **files)
    with pytest.raises(NatsAuthError, match=re.escape(expected)) as caught:
        natsauth.for_service("nats://a:4222", auth_dir=auth, setting=SETTING)
    assert str(caught.value).startswith(f"{SETTING}: NATS credentials folder {auth}: ")
    # ValueError: the services' refusals to start, one line each.
    assert isinstance(caught.value, ValueError)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsAuthError, match="not a readable folder"):
        natsauth.for_service("nats://a:4222", auth_dir=tmp_path / "absent", setting=SETTING)


def test_credentials_in_both_the_url_and_the_folder_are_refused_without_showing_them(tmp_path: Path) -> None:
    auth = folder(tmp_path, token="secret-token")
    with pytest.raises(NatsAuthError, match="carries credentials too") as caught:
        natsauth.for_service("nats://a:4222,nats://me:hunter2@b:4222", auth_dir=auth, setting=SETTING)
    assert "hunter2" not in str(caught.value)
    assert "secret-token" not in str(caught.value)


def test_the_secret_values_stay_out_of_repr() -> None:
    shown = repr(NatsCredentials(user="kt", password="hunter2")) + repr(NatsCredentials(token="tok3n"))
    assert "hunter2" not in shown
    assert "tok3n" not in shown
    assert "kt" in shown


@pytest.mark.parametrize(
    ("url", "carries"),
    [
        ("nats://a:4222", False),
        ("a:4222", False),
        ("nats://tok@a:4222", True),
        ("nats://a:4222, nats://u:p@b:4222", True),
        ("tls://u:p@a:4222", True),
    ],
)
def test_has_credentials_looks_at_every_url_of_the_list(url: str, carries: bool) -> None:
    assert natsauth.has_credentials(url) is carries


def test_nats_py_gets_the_user_and_the_password_of_one_read() -> None:
    # nats.py asks for the user, then the password, at each connect: one read of the folder for both,
    # so a rotation (here, at every read) never pairs one read's user with another's password.
    reads = iter(NatsCredentials(user=f"u{i}", password=f"p{i}") for i in range(10))
    calls: list[NatsCredentials] = []

    def current() -> NatsCredentials:
        calls.append(next(reads))
        return calls[-1]

    user, password = bus.user_and_password(current)
    assert (user(), password()) == ("u0", "p0")
    assert (user(), password()) == ("u1", "p1")
    assert len(calls) == 2
    # A password asked for on its own is read on its own.
    assert password() == "p2"
