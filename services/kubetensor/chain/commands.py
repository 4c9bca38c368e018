"""The ``kubetensor chain``, ``kubetensor wallet`` and ``kubetensor stake`` sub-commands (typer apps).

``kubetensor.cli`` adds ``chain_app``, ``wallet_app`` and ``stake_app`` with ``app.add_typer``. Each
command is a thin shell over ``verify``, ``wallet`` and ``client``; failures print one line and exit
non-zero, never a traceback. The sidecar address defaults to ``$KT_CHAIN_ADDRESS`` or
127.0.0.1:50071, the wallet directory to ``$KT_WALLET_DIR`` or ``~/.kubetensor/wallet``. Like
``kubetensor.cli``, the commands import gRPC and the crypto modules only when they run, so the
``kubetensor`` command starts fast.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from kubetensor.chain.client import ChainClient
    from kubetensor.core.keys import Keypair

chain_app = typer.Typer(help="The chain sidecar's ledger: verify it, inspect it.", no_args_is_help=True)
wallet_app = typer.Typer(
    help="Keys (coldkeys and hotkeys) stored with 0600 permissions.", no_args_is_help=True
)
stake_app = typer.Typer(
    help="Stake to hotkeys, unstake, set a hotkey's take, show stake.", no_args_is_help=True
)

_T = TypeVar("_T")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _default_address() -> str:
    return os.environ.get("KT_CHAIN_ADDRESS", "127.0.0.1:50071")


AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="Chain sidecar host:port (default: $KT_CHAIN_ADDRESS or 127.0.0.1:50071)."
    ),
]
WalletDirOption = Annotated[
    Path | None,
    typer.Option("--wallet-dir", help="Wallet directory (default: $KT_WALLET_DIR or ~/.kubetensor/wallet)."),
]
ColdkeyOption = Annotated[
    str, typer.Option("--coldkey", help="Name of the coldkey in the wallet that signs.")
]
HotkeyOption = Annotated[
    str, typer.Option("--hotkey", help="The hotkey: hex public key, or a key name in the wallet.")
]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _client(address: str | None) -> ChainClient:
    from kubetensor.chain.client import ChainClient

    return ChainClient.connect(address or _default_address())


def _run(action: Callable[[], Awaitable[_T]]) -> _T:
    """Run an async client call, turning gRPC and key errors into one line and exit code 1."""
    import grpc

    from kubetensor.chain.errors import ChainError

    try:
        return asyncio.run(_call(action))
    except grpc.aio.AioRpcError as error:
        raise _fail(f"{error.code().name}: {error.details()}") from None
    except ChainError as error:
        raise _fail(str(error)) from None


async def _call(action: Callable[[], Awaitable[_T]]) -> _T:
    return await action()


def _wallet(directory: Path | None) -> Path:
    from kubetensor.chain import wallet

    return directory.expanduser() if directory is not None else wallet.default_dir()


def wallet_key(directory: Path | None, name: str) -> Keypair:
    """The wallet's key ``name`` (the default wallet folder without ``directory``); a missing, malformed or
    world-readable key file is one line, exit 1."""
    from kubetensor.chain import wallet
    from kubetensor.chain.errors import ChainError

    try:
        return wallet.load_key(_wallet(directory), name)
    except ChainError as error:
        raise _fail(str(error)) from None


def public_key(directory: Path | None, value: str) -> str:
    """``value`` as a hex public key: itself when it is 64 hex digits, else the wallet key of that name."""
    if _HEX64.fullmatch(value):
        return value.lower()
    return wallet_key(directory, value).hotkey


# -- chain ------------------------------------------------------------------------------------------------
@chain_app.command("verify")
def chain_verify(
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="A ledger file to verify (read-only).")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="A running sidecar to verify (host:port).")
    ] = None,
    authority: Annotated[
        str | None, typer.Option("--authority", help="Expected authority public key (hex); refuse any other.")
    ] = None,
) -> None:
    """Walk every block: hashes, parent links, signatures, nonces, credits; exit 0 with a one-line summary."""
    from kubetensor.chain import verify

    if (ledger is None) == (address is None):
        raise _fail("give exactly one of --ledger FILE or --address HOST:PORT")
    expected = authority.lower() if authority else None
    if ledger is not None:
        report = verify.verify_ledger(ledger, expected_authority=expected)
    else:
        assert address is not None
        report = _run(lambda: verify.verify_remote(address, expected_authority=expected))
    if not report.ok:
        raise _fail(report.summary)
    typer.echo(report.summary)


@chain_app.command("info")
def chain_info(address: AddressOption = None) -> None:
    """Height, head hash, authority and issuance of a running sidecar."""

    async def call() -> str:
        async with _client(address) as client:
            info = await client.info()
        return (
            f"height {info.height} head {info.head_hash} authority {info.authority} "
            f"issuance {info.issuance_rao} rao"
        )

    typer.echo(_run(call))


# -- wallet -----------------------------------------------------------------------------------------------
@wallet_app.command("create")
def wallet_create(
    name: Annotated[str, typer.Argument(help="Name of the new key.")], wallet_dir: WalletDirOption = None
) -> None:
    """Generate a new ed25519 key (file mode 0600) and print its public key."""
    from kubetensor.chain import wallet
    from kubetensor.chain.errors import ChainError

    try:
        key = wallet.create_key(_wallet(wallet_dir), name)
    except ChainError as error:
        raise _fail(str(error)) from None
    typer.echo(f"{key.name} {key.public_key} {key.path}")


@wallet_app.command("list")
def wallet_list(wallet_dir: WalletDirOption = None) -> None:
    """List the wallet's keys: name and public key."""
    from kubetensor.chain import wallet
    from kubetensor.chain.errors import ChainError

    try:
        keys = wallet.list_keys(_wallet(wallet_dir))
    except ChainError as error:
        raise _fail(str(error)) from None
    for key in keys:
        typer.echo(f"{key.name} {key.public_key}")


@wallet_app.command("register-hotkey")
def wallet_register_hotkey(
    coldkey: ColdkeyOption,
    hotkey: Annotated[
        str, typer.Option("--hotkey", help="Name of the hotkey in the wallet (it signs a proof).")
    ],
    address: AddressOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Register a hotkey to a coldkey on the chain (both keys sign)."""
    cold, hot = wallet_key(wallet_dir, coldkey), wallet_key(wallet_dir, hotkey)

    async def call() -> int:
        async with _client(address) as client:
            return int((await client.register_hotkey(cold, hot)).block)

    typer.echo(f"hotkey {hot.hotkey} registered to {cold.hotkey} in block {_run(call)}")


# -- stake ------------------------------------------------------------------------------------------------
AmountOption = Annotated[int, typer.Option("--amount", min=1, help="Amount in rao (1 TAO = 10^9 rao).")]


@stake_app.command("add")
def stake_add(
    coldkey: ColdkeyOption,
    hotkey: HotkeyOption,
    amount: AmountOption,
    address: AddressOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Stake rao from the coldkey's free balance to a hotkey."""
    cold, target = wallet_key(wallet_dir, coldkey), public_key(wallet_dir, hotkey)

    async def call() -> int:
        async with _client(address) as client:
            return int((await client.add_stake(cold, hotkey=target, amount_rao=amount)).block)

    typer.echo(f"staked {amount} rao to {target} in block {_run(call)}")


@stake_app.command("remove")
def stake_remove(
    coldkey: ColdkeyOption,
    hotkey: HotkeyOption,
    amount: AmountOption,
    address: AddressOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Unstake rao from a hotkey back to the coldkey's free balance."""
    cold, target = wallet_key(wallet_dir, coldkey), public_key(wallet_dir, hotkey)

    async def call() -> int:
        async with _client(address) as client:
            return int((await client.remove_stake(cold, hotkey=target, amount_rao=amount)).block)

    typer.echo(f"unstaked {amount} rao from {target} in block {_run(call)}")


@stake_app.command("take")
def stake_take(
    coldkey: ColdkeyOption,
    hotkey: HotkeyOption,
    take: Annotated[int, typer.Option("--take", min=0, max=65535, help="Take as u16 (11796 = 18%).")],
    address: AddressOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Set the delegate take of a hotkey the coldkey owns."""
    cold, target = wallet_key(wallet_dir, coldkey), public_key(wallet_dir, hotkey)

    async def call() -> int:
        async with _client(address) as client:
            return int((await client.set_delegate_take(cold, hotkey=target, take=take)).block)

    typer.echo(f"take of {target} set to {take} in block {_run(call)}")


@stake_app.command("show")
def stake_show(
    coldkey: Annotated[
        str, typer.Option("--coldkey", help="Coldkey: hex public key, or a key name in the wallet.")
    ],
    address: AddressOption = None,
    wallet_dir: WalletDirOption = None,
) -> None:
    """A coldkey's free balance, nonce and stake positions."""
    account = public_key(wallet_dir, coldkey)

    async def call() -> list[str]:
        async with _client(address) as client:
            balance = await client.balance(account)
            stakes = await client.coldkey_stakes(account)
        lines = [
            f"{account}: free {balance.free_rao} rao, staked {balance.staked_rao} rao, nonce {balance.nonce}"
        ]
        lines += [f"  {p.hotkey} {p.stake_rao} rao" for p in stakes.positions]
        return lines

    for line in _run(call):
        typer.echo(line)
