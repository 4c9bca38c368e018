"""``kubetensor.core.natsauth``: NATS credentials from a folder, joined to the server URLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubetensor.core import natsauth, natslite
from kubetensor.core.natsauth import NatsAuthError, NatsCredentials

SETTING = "KT_MINER_NATS_AUTH_DIR"


def folder(tmp_path: Path, **files: str) -> Path:
    path = tmp_path / "auth"
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_a_token_goes_into_every_server_of_the_list_percent_encoded(tmp_path: Path) -> None:
    auth = folder(tmp_path, token="t0k/en@x\n")
    url = natsauth.server_urls("nats://a:4222, b:4223", auth_dir=auth, setting=SETTING)
    assert url == "nats://t0k%2Fen%40x@a:4222,nats://t0k%2Fen%40x@b:4223"
    # The lite client reads it back as it was written.
    servers = [natslite.Server.parse(part) for part in url.split(",")]
    assert [(s.host, s.port, s.token) for s in servers] == [("a", 4222, "t0k/en@x"), ("b", 4223, "t0k/en@x")]


def test_a_user_and_password_go_into_the_url(tmp_path: Path) -> None:
    auth = folder(tmp_path, user="kt", password="p:w@d ")
    url = natsauth.server_urls("nats://nats.kt.svc:4222", auth_dir=auth, setting=SETTING)
    server = natslite.Server.parse(url)
    assert (server.user, server.password, server.token) == ("kt", "p:w@d", "")


def test_without_a_folder_the_url_is_unchanged() -> None:
    assert natsauth.server_urls("nats://u:p@a:4222", auth_dir=None, setting=SETTING) == "nats://u:p@a:4222"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "expected a file 'token', or files 'user' (not empty) and 'password'"),
        ({"user": "kt"}, "expected a file 'token'"),
        ({"password": "x"}, "expected a file 'token'"),
        ({"token": "  \n"}, "'token' is empty"),
        ({"token": "t", "user": "kt", "password": "x"}, "holds both 'token' and 'user'/'password'"),
    ],
)
def test_a_folder_without_usable_credentials_is_refused_naming_the_setting_and_the_folder(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    auth = folder(tmp_path, **files)
    with pytest.raises(NatsAuthError, match=re.escape(expected)) as caught:
        natsauth.server_urls("nats://a:4222", auth_dir=auth, setting=SETTING)
    assert str(caught.value).startswith(f"{SETTING}: NATS credentials folder {auth}: ")
    # ValueError: the services' refusals to start, one line each.
    assert isinstance(caught.value, ValueError)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsAuthError, match="not a readable folder"):
        natsauth.server_urls("nats://a:4222", auth_dir=tmp_path / "absent", setting=SETTING)


def test_credentials_in_both_the_url_and_the_folder_are_refused_without_showing_them(tmp_path: Path) -> None:
    auth = folder(tmp_path, token="secret-token")
    with pytest.raises(NatsAuthError, match="carries credentials too") as caught:
        natsauth.server_urls("nats://a:4222,nats://me:hunter2@b:4222", auth_dir=auth, setting=SETTING)
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
