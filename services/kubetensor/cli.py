"""The ``kubetensor`` command: devnet, sandbox, models, yuma replay, consensus, chain, wallet, stake.

Each sub-command is a thin shell over a library module (``kubetensor.sandbox``, ``kubetensor.models``,
``kubetensor.consensus.replay``, ``kubetensor.consensus.client``); errors from those are printed as one
clear line and a non-zero exit code, never as a traceback. ``consensus register``/``deregister`` sign
with a hotkey from the wallet (``kubetensor.chain.wallet``) and never print its seed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kubetensor import __version__
from kubetensor.chain.commands import chain_app, public_key, stake_app, wallet_app, wallet_key
from kubetensor.core.paths import cache_root
from kubetensor.devnet.commands import devnet_app

app = typer.Typer(
    help="kubetensor: a Bittensor-style network of machine intelligence on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(
    help="A local Kubernetes control plane with fake GPU nodes (no cloud, no GPU).", no_args_is_help=True
)
models_app = typer.Typer(help="The small models the project builds itself.", no_args_is_help=True)
yuma_app = typer.Typer(help="Yuma Consensus tools.", no_args_is_help=True)
consensus_app = typer.Typer(
    help="The consensus service: serve it, read its metagraph and settlements, register and deregister "
    "a wallet hotkey.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(consensus_app, name="consensus")
app.add_typer(chain_app, name="chain")
app.add_typer(wallet_app, name="wallet")
app.add_typer(stake_app, name="stake")
app.add_typer(devnet_app, name="devnet")
app.add_typer(models_app, name="models")
app.add_typer(yuma_app, name="yuma")


def _say(message: str) -> None:
    typer.echo(f"[{time.strftime('%H:%M:%S')}] {message}", err=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _sandbox_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory.expanduser().resolve()
    env = os.environ.get("KT_SANDBOX_DIR")
    return Path(env).expanduser().resolve() if env else cache_root() / "sandbox"


DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="State directory (default: $KT_SANDBOX_DIR or ~/.cache/kubetensor/sandbox)."),
]


@app.command()
def version() -> None:
    """Print kubetensor's version and the pinned tool versions."""
    from kubetensor.sandbox.tools import pinned_versions

    typer.echo(f"kubetensor {__version__}")
    for key, value in pinned_versions().items():
        typer.echo(f"  {key}={value}")


@sandbox_app.command("up")
def sandbox_up(
    directory: DirOption = None,
    gpu_nodes: Annotated[int, typer.Option(min=0, help="Fake GPU nodes.")] = 2,
    gpus_per_node: Annotated[int, typer.Option(min=1, help="nvidia.com/gpu capacity of each GPU node.")] = 8,
    cpu_nodes: Annotated[int, typer.Option(min=0, help="Fake CPU-only nodes.")] = 2,
    with_operator: Annotated[
        bool,
        typer.Option(
            "--with-operator",
            help="Also install the CRDs and RBAC and run the operator (registering with a loopback "
            "consensus service, netuid 1).",
        ),
    ] = False,
) -> None:
    """Start etcd, apiserver, controller-manager, scheduler and kwok (and the operator) in the background."""
    from kubetensor.sandbox.controlplane import ControlPlane, NodePool, running_components
    from kubetensor.sandbox.errors import SandboxError

    d = _sandbox_dir(directory)
    if (d / "state.json").exists():
        try:
            alive = running_components(d)
        except SandboxError:
            alive = {}
        if alive and all(alive.values()):
            typer.echo(f"sandbox already running in {d}")
            _print_kubeconfig(d / "kubeconfig")
            return
        _say(f"removing a stale sandbox in {d}")
        _down(d)
    pools: tuple[NodePool, ...] = (
        NodePool(prefix="kt-gpu", count=gpu_nodes, gpus=gpus_per_node),
        NodePool(prefix="kt-cpu", count=cpu_nodes, cpu="16", memory="64Gi"),
    )
    pools = tuple(p for p in pools if p.count)
    _say(f"starting the sandbox control plane in {d}")
    started = time.monotonic()
    try:
        state = ControlPlane(d, pools=pools, progress=_say).start()
    except SandboxError as exc:
        shutil.rmtree(d, ignore_errors=True)
        raise _fail(str(exc)) from exc
    _say(
        f"sandbox up in {time.monotonic() - started:.1f}s "
        f"({state.kubernetes_version}, {len(state.nodes)} nodes)"
    )
    if with_operator:
        from kubetensor_operator import runner

        try:
            address = runner.start_consensus(d / "operator", netuid=1)
            pid = runner.start_background(
                kubeconfig=d / "kubeconfig", directory=d / "operator", consensus_address=address
            )
        except runner.OperatorStartError as error:
            _down(d)
            raise _fail(str(error)) from None
        _say(f"operator running (pid {pid}); log {d / 'operator' / 'operator.log'}")
        _say("try: kubectl apply -f manifests/examples/ && kubectl get miners")
    _print_kubeconfig(Path(state.kubeconfig))


def _print_kubeconfig(path: Path) -> None:
    typer.echo(f"kubeconfig: {path}")
    typer.echo(f"export KUBECONFIG={path}")


def _down(d: Path) -> list[str]:
    from kubetensor_operator import runner

    from kubetensor.sandbox.controlplane import stop_from_state
    from kubetensor.sandbox.errors import SandboxStateError

    # The operator (and its consensus process) first, while the API server is still there.
    runner.stop(d / "operator")
    try:
        stopped = stop_from_state(d)
    except SandboxStateError:
        stopped = []
    shutil.rmtree(d, ignore_errors=True)
    return stopped


@sandbox_app.command("down")
def sandbox_down(directory: DirOption = None) -> None:
    """Stop every sandbox process and remove its files."""
    d = _sandbox_dir(directory)
    if not d.exists():
        typer.echo(f"no sandbox in {d}")
        return
    stopped = _down(d)
    typer.echo(
        f"sandbox down: stopped {', '.join(stopped) or 'nothing (no process was running)'}; removed {d}"
    )


@sandbox_app.command("status")
def sandbox_status(
    directory: DirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Report whether the sandbox runs; exit 0 when every component is up, 1 when degraded, 3 when absent."""
    from kubetensor.sandbox.controlplane import ControlPlaneState, running_components
    from kubetensor.sandbox.errors import SandboxStateError

    d = _sandbox_dir(directory)
    try:
        state = ControlPlaneState.load(d)
        alive = running_components(d)
    except SandboxStateError:
        if as_json:
            typer.echo(json.dumps({"running": False, "directory": str(d)}))
        else:
            typer.echo(f"no sandbox in {d}")
        raise typer.Exit(3) from None
    running = bool(alive) and all(alive.values())
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": running,
                    "directory": str(d),
                    "kubeconfig": state.kubeconfig,
                    "apiserver": state.apiserver_url,
                    "kubernetes_version": state.kubernetes_version,
                    "components": alive,
                    "nodes": state.nodes,
                }
            )
        )
    else:
        typer.echo(f"sandbox in {d}: {'running' if running else 'DEGRADED'} ({state.kubernetes_version})")
        for name, up in alive.items():
            typer.echo(f"  {name:<24} {'up' if up else 'DOWN'}")
        typer.echo(f"  nodes: {', '.join(state.nodes)}")
        from kubetensor_operator import runner

        if (d / "operator").exists():
            typer.echo(f"  operator: {'running' if runner.running(d / 'operator') else 'DOWN'}")
        _print_kubeconfig(Path(state.kubeconfig))
    if not running:
        raise typer.Exit(1)


@models_app.command("build")
def models_build(
    quality: Annotated[
        list[str] | None, typer.Option(help="Quality to build (repeatable); default all.")
    ] = None,
) -> None:
    """Train (once; then cached) the small addition models vLLM serves."""
    from kubetensor.models import build

    try:
        built = build.build(quality, progress=_say)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    for q, m in built.items():
        typer.echo(f"{q:<10} {m.steps:>5} steps  {m.path}")


@models_app.command("list")
def models_list() -> None:
    """Show each model quality, whether it is built, and where."""
    from kubetensor.models import build

    for q, recipe in build.QUALITIES.items():
        state = "built" if build.is_built(q) else "not built"
        typer.echo(f"{q:<10} {recipe.steps:>5} steps  {state:<9}  {build.model_dir(q)}")


@yuma_app.command("replay")
def yuma_replay(
    file: Annotated[Path, typer.Argument(help="A yuma-vectors/v1 JSON file.")],
    variant: Annotated[
        str, typer.Option(help="chain_yuma2 | chain_yuma3 | chain_yuma3_bp0 | chain_yuma3_liquid")
    ],
    out: Annotated[Path | None, typer.Option(help="Write the JSON here instead of stdout.")] = None,
) -> None:
    """Replay every epoch of a reference vector file and print the results in the vectors' format."""
    from kubetensor.consensus.replay import VectorFileError, run_replay

    try:
        result = run_replay(file, variant)
    except FileNotFoundError as exc:
        raise _fail(f"{file}: no such file") from exc
    except VectorFileError as exc:
        raise _fail(f"{file}: {exc}") from exc
    text = json.dumps(result)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n")
        _say(f"wrote {len(result['epochs'])} epochs of {variant} to {out}")


@consensus_app.command("serve")
def consensus_serve() -> None:
    """Run the consensus gRPC service (settings from KT_CONSENSUS_* environment variables)."""
    from kubetensor.consensus.__main__ import main

    main()


AddressOption = Annotated[str, typer.Option(help="host:port of the consensus service.")]
NetuidOption = Annotated[int, typer.Option(min=0, help="Subnet id.")]


@consensus_app.command("metagraph")
def consensus_metagraph(address: AddressOption = "127.0.0.1:50061", netuid: NetuidOption = 1) -> None:
    """Print the subnet's metagraph as a table."""
    import asyncio

    from kubetensor.consensus.client import ConsensusClient

    async def fetch() -> Any:
        async with ConsensusClient.connect(address, netuid=netuid) as client:
            return await client.metagraph()

    graph = _rpc(lambda: asyncio.run(fetch()))
    typer.echo(
        f"netuid {graph.netuid}  block {graph.block}  epoch {graph.epoch}  neurons {len(graph.neurons)}"
    )
    typer.echo(
        f"{'uid':>4} {'hotkey':<18} {'permit':<6} {'stake_rao':>16} {'incentive':>10} {'dividends':>10} "
        f"{'v_trust':>8} {'emission_rao':>14}"
    )
    for n in graph.neurons:
        typer.echo(
            f"{n.uid:>4} {n.hotkey[:16] + '..':<18} {'yes' if n.validator_permit else 'no':<6} "
            f"{n.stake_rao:>16} {n.incentive:>10.6f} {n.dividends:>10.6f} {n.validator_trust:>8.4f} "
            f"{n.emission_rao:>14}"
        )


@consensus_app.command("settlements")
def consensus_settlements(
    address: AddressOption = "127.0.0.1:50061",
    netuid: NetuidOption = 1,
    verify: Annotated[bool, typer.Option(help="Recompute every hash and check the links.")] = False,
) -> None:
    """List the settlements; with --verify, exit 1 at the first bad hash or broken link."""
    import asyncio

    from kubetensor.consensus.client import ConsensusClient
    from kubetensor.core.settlementwire import settlement_from_proto

    async def fetch() -> Any:
        async with ConsensusClient.connect(address, netuid=netuid) as client:
            return await client.settlements()

    records = _rpc(lambda: asyncio.run(fetch()))
    previous = ""
    for record in records:
        s = record.settlement
        delivered = "delivered" if record.HasField("receipt") else "pending"
        typer.echo(f"epoch {s.epoch:>5}  block {s.block:>8}  {s.hash}  {delivered}")
        if verify:
            recomputed = settlement_from_proto(s).hash
            if recomputed != s.hash:
                raise _fail(f"epoch {s.epoch}: stored hash {s.hash} but the content hashes to {recomputed}")
            if s.previous_hash != previous:
                raise _fail(
                    f"epoch {s.epoch}: previous_hash {s.previous_hash!r} does not link to {previous!r}"
                )
        previous = s.hash
    if verify:
        typer.echo(f"verified {len(records)} settlements: hashes match and links are unbroken")


WalletDirOption = Annotated[
    Path | None,
    typer.Option("--wallet-dir", help="Wallet directory (default: $KT_WALLET_DIR or ~/.kubetensor/wallet)."),
]
SigningHotkeyOption = Annotated[
    str, typer.Option("--hotkey", help="Name of the hotkey in the wallet (it signs the request).")
]


def _consensus_call(address: str, call: Callable[[], Any]) -> Any:
    """Run ``call`` (which does ``asyncio.run``); an unreachable service or a refusal is one line, exit 1."""
    import grpc

    try:
        return call()
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            raise _fail(
                f"consensus service at {address} is unreachable (UNAVAILABLE: {exc.details()})"
            ) from None
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise _fail(f"consensus service at {address} did not answer in time ({exc.details()})") from None
        raise _fail(f"{exc.code().name}: {exc.details()}") from None


@consensus_app.command(
    "register",
    short_help="Register a wallet hotkey on the subnet; print its uid and block.",
    help="Register the wallet hotkey on the subnet; print its uid and block. Signed by the hotkey with a "
    "wall-clock nonce (nanoseconds), as the operator does. A hotkey registered already is refused "
    "(ALREADY_EXISTS, naming its uid): exit 1.",
)
def consensus_register(
    hotkey: SigningHotkeyOption,
    coldkey: Annotated[
        str,
        typer.Option(
            "--coldkey",
            help="The owning coldkey: hex public key, or a key name in the wallet (not used to sign).",
        ),
    ],
    address: AddressOption = "127.0.0.1:50061",
    netuid: NetuidOption = 1,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Register the wallet hotkey (help text above)."""
    import asyncio

    from kubetensor.consensus.client import ConsensusClient

    keypair = wallet_key(wallet_dir, hotkey)
    owner = public_key(wallet_dir, coldkey)

    async def call() -> Any:
        async with ConsensusClient.connect(address, netuid=netuid) as client:
            return await client.register(keypair, coldkey=owner, nonce=time.time_ns())

    response = _consensus_call(address, lambda: asyncio.run(call()))
    typer.echo(
        f"hotkey {keypair.hotkey} registered on subnet {netuid} as uid {response.uid} "
        f"at block {response.registered_at_block}"
    )


@consensus_app.command(
    "deregister",
    short_help="Free the uid a wallet hotkey holds on the subnet; print the freed uid.",
    help="Free the uid the wallet hotkey holds on the subnet; print the freed uid and block. A hotkey that "
    "holds no uid (never registered, or deregistered already) counts as done, as the operator treats it: "
    "the command says so, naming the hotkey, and exits 0. A subnet the service does not run, or any other "
    "refusal, exits 1.",
)
def consensus_deregister(
    hotkey: SigningHotkeyOption,
    address: AddressOption = "127.0.0.1:50061",
    netuid: NetuidOption = 1,
    wallet_dir: WalletDirOption = None,
) -> None:
    """Deregister the wallet hotkey (help text above)."""
    import asyncio

    import grpc

    from kubetensor.consensus.client import ConsensusClient

    keypair = wallet_key(wallet_dir, hotkey)

    async def call() -> Any:
        async with ConsensusClient.connect(address, netuid=netuid) as client:
            try:
                return await client.deregister(keypair, nonce=time.time_ns())
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                # NOT_FOUND is either "no such subnet" or "not registered": reading the subnet's
                # metagraph tells them apart (it too is NOT_FOUND for a subnet the service does not run).
                await client.metagraph()
                return None

    response = _consensus_call(address, lambda: asyncio.run(call()))
    if response is None:
        typer.echo(f"hotkey {keypair.hotkey} is not registered on subnet {netuid}: nothing to deregister")
        return
    typer.echo(
        f"hotkey {keypair.hotkey} deregistered from subnet {netuid}: uid {response.uid} freed "
        f"at block {response.deregistered_at_block}"
    )


def _rpc(call: Callable[[], Any]) -> Any:
    import grpc

    try:
        return call()
    except grpc.aio.AioRpcError as exc:
        raise _fail(f"{exc.code().name}: {exc.details()}") from exc


if __name__ == "__main__":
    app()
