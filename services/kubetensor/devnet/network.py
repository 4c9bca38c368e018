"""``Network``: starts a devnet's processes in order, registers its neurons, watches them, stops them all.

Called by ``commands.run`` and the e2e tests. Start order: nats-server (it requires a token made for
the run, which the miners and validators read from ``<workdir>/nats-auth/token`` as on Kubernetes they
read a mounted Secret: ``nats_credentials``); one vLLM per miner (in
parallel, unless the caller passes engine URLs it runs itself); the chain sidecar (ledger backend),
with the subnet, hotkeys and validator stake recorded on it (``ledger.prepare``); the consensus
service, reading stake from the sidecar and submitting its settlements there; the registrations
(validators first, then miners, all owned by the plan's coldkey); the miners; the validators.
``check`` raises ``ComponentExitedError`` for any process that exited without being told to;
``stop`` stops everything started, in reverse order, and is safe to call at any point, including
while starts are still in flight (a process that is still starting is killed, and ``start`` waits
for its start thread to return before it gives up, so nothing is left behind).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubetensor.consensus.client import ConsensusClient
from kubetensor.core.natsauth import TOKEN_KEY, NatsCredentials
from kubetensor.core.stopping import wait_for_threads
from kubetensor.devnet import components, ledger
from kubetensor.devnet.components import Component
from kubetensor.devnet.errors import ComponentExitedError
from kubetensor.devnet.plan import DevnetPlan
from kubetensor.sandbox.natsserver import NatsServer
from kubetensor.sandbox.processes import ManagedProcess, log_tail
from kubetensor.sandbox.vllmserver import VllmServer

_log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class _Server:
    """A sandbox server (nats-server, vLLM) seen as a component: a name and a ManagedProcess."""

    name: str
    holder: NatsServer | VllmServer

    @property
    def process(self) -> ManagedProcess | None:
        return self.holder.process

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def exit_code(self) -> int | None:
        process = self.process
        return None if process is None or process.popen is None else process.popen.poll()

    @property
    def log_path(self) -> Path:
        process = self.process
        return process.log_path if process is not None else Path("/dev/null")

    def stop(self) -> None:
        self.holder.stop()


class Network:
    """One devnet: see the module doc."""

    def __init__(
        self,
        plan: DevnetPlan,
        *,
        workdir: Path,
        engines: Mapping[str, tuple[str, str]] | None = None,
        say: Say | None = None,
        component_env: Mapping[str, str] | None = None,
    ) -> None:
        """``engines`` maps a miner name to (engine base URL, served model name) the caller runs;
        ``component_env`` goes to every service process (each reads only its own ``KT_<SVC>_*``)."""
        self.plan = plan
        self.workdir = workdir
        self._engines = dict(engines or {})
        self._say = say or (lambda message: _log.info("%s", message))
        self.nats: NatsServer | None = None
        self.nats_credentials = NatsCredentials(token=secrets.token_urlsafe(24))
        """The token the run's nats-server requires (in ``nats_auth_dir``, for the miners and validators)."""
        self.nats_auth_dir = workdir / "nats-auth"
        self.chain: Component | None = None
        self.consensus: Component | None = None
        self.miners: dict[str, Component] = {}
        self.validators: dict[str, Component] = {}
        self.vllm: dict[str, VllmServer] = {}
        self.uids: dict[str, int] = {}
        """uid of each neuron, by name."""
        self._servers: list[_Server] = []
        self._stopped_on_purpose: set[str] = set()
        self._env = dict(component_env or {})

    # -- addresses ------------------------------------------------------------------------------------

    @property
    def nats_url(self) -> str:
        if self.nats is None:
            raise RuntimeError("the network is not started")
        return self.nats.url

    @property
    def chain_address(self) -> str:
        if self.chain is None:
            raise RuntimeError("the network is not started")
        return self.chain.address

    @property
    def consensus_address(self) -> str:
        if self.consensus is None:
            raise RuntimeError("the network is not started")
        return self.consensus.address

    def engine_of(self, miner: str) -> tuple[str, str]:
        """(base URL, served model name) of a miner's engine."""
        if miner in self._engines:
            return self._engines[miner]
        server = self.vllm[miner]
        return server.base_url, server.served_name

    # -- start ----------------------------------------------------------------------------------------

    async def start(self, *, model_dirs: Mapping[str, Path] | None = None) -> None:
        """Start everything (see the module doc); ``model_dirs`` maps a model quality to its folder."""
        plan, workdir = self.plan, self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._say(f"starting nats-server (logs in {workdir / 'logs'})")
        self.nats = nats_server = NatsServer(workdir / "nats")
        self._servers.append(_Server("nats-server", nats_server))
        config = self._write_nats_auth()
        await wait_for_threads(
            [functools.partial(nats_server.start, extra_args=["-c", str(config)])], kill=nats_server.stop
        )

        wanted = [m for m in plan.miners if m.name not in self._engines]
        if wanted:
            if model_dirs is None:
                raise ValueError("model_dirs is required when the devnet starts vLLM itself")
            for miner in wanted:
                server = VllmServer(
                    model_dir=model_dirs[miner.model],
                    served_name=f"addition-{miner.model}",
                    log_path=workdir / "logs" / f"vllm-{miner.name}.log",
                )
                self.vllm[miner.name] = server
                self._servers.append(_Server(f"vllm ({miner.name})", server))
            self._say(f"starting {len(wanted)} vLLM servers (CPU build; this takes a minute or two)")
            await wait_for_threads(
                [server.start for server in self.vllm.values()], kill=lambda: self._stop_servers("vllm")
            )

        self._say("starting the chain sidecar (ledger backend)")
        self.chain = components.chain(
            workdir, genesis_balances=ledger.genesis_balances(plan), extra_env=self._env
        )
        await self._start_components([self.chain])
        await ledger.prepare(self.chain.address, plan=plan)

        self._say("starting the consensus service")
        self.consensus = components.consensus(
            workdir,
            netuid=plan.netuid,
            block_seconds=plan.block_seconds,
            tempo_blocks=plan.tempo_blocks,
            chain_address=self.chain.address,
            extra_env=self._env,
        )
        await self._start_components([self.consensus])
        await self._register()

        for miner in plan.miners:
            url, model = self.engine_of(miner.name)
            self.miners[miner.name] = components.miner(
                workdir,
                name=miner.name,
                keypair=miner.keypair,
                netuid=plan.netuid,
                nats_url=self.nats_url,
                consensus_address=self.consensus_address,
                engine_url=url,
                engine_model=model,
                permit_refresh_seconds=max(plan.tempo_seconds / 4, 1.0),
                extra_env={**self._env, "KT_MINER_NATS_AUTH_DIR": str(self.nats_auth_dir)},
            )
        self._say(f"starting {len(plan.miners)} miners")
        await self._start_components(list(self.miners.values()))

        for validator in plan.validators:
            self.validators[validator.name] = components.validator(
                workdir,
                name=validator.name,
                keypair=validator.keypair,
                netuid=plan.netuid,
                nats_url=self.nats_url,
                consensus_address=self.consensus_address,
                round_seconds=plan.round_seconds,
                task_timeout_seconds=plan.task_timeout_seconds,
                weights_interval_seconds=plan.weights_interval_seconds,
                weights_retry_seconds=plan.weights_retry_seconds,
                moving_average_alpha=plan.moving_average_alpha,
                extra_env={**self._env, "KT_VALIDATOR_NATS_AUTH_DIR": str(self.nats_auth_dir)},
            )
        self._say(f"starting {len(plan.validators)} validators")
        await self._start_components(list(self.validators.values()))

    def _write_nats_auth(self) -> Path:
        """The run's token, as the miners and validators read it, and the nats-server configuration that
        requires it (both readable by this user only); returns the configuration's path."""
        components.write_private(self.nats_auth_dir / TOKEN_KEY, self.nats_credentials.token)
        # token_urlsafe's letters, digits, - and _ need no quoting in nats-server's configuration.
        config = f'authorization {{\n  token: "{self.nats_credentials.token}"\n}}\n'
        return components.write_private(self.workdir / "nats-auth.conf", config)

    async def _start_components(self, started: list[Component]) -> None:
        def kill() -> None:
            for component in started:
                component.stop(grace=1)

        await wait_for_threads([component.start for component in started], kill=kill)

    async def _register(self) -> None:
        plan = self.plan
        async with ConsensusClient.connect(self.consensus_address, netuid=plan.netuid) as client:
            for name, key in [(v.name, v.keypair) for v in plan.validators] + [
                (m.name, m.keypair) for m in plan.miners
            ]:
                registered = await client.register(key, coldkey=plan.coldkey.hotkey, nonce=1)
                self.uids[name] = registered.uid
        self._say("registered " + ", ".join(f"{name}=uid {uid}" for name, uid in self.uids.items()))

    # -- watch and stop -------------------------------------------------------------------------------

    def all_components(self) -> list[tuple[str, Component | _Server]]:
        named: list[tuple[str, Component | _Server]] = [(server.name, server) for server in self._servers]
        for component in (self.chain, self.consensus):
            if component is not None:
                named.append((component.name, component))
        named.extend(self.miners.items())
        named.extend(self.validators.items())
        return named

    def check(self) -> None:
        """Raise ComponentExitedError for the first process that exited without being stopped."""
        for name, component in self.all_components():
            if name in self._stopped_on_purpose:
                continue
            code = component.exit_code()
            if code is not None:
                raise ComponentExitedError(
                    name, code=code, log_path=str(component.log_path), log_tail=log_tail(component.log_path)
                )

    def kill(self, name: str) -> None:
        """SIGKILL one miner or validator (fault injection); the watchdog ignores it until restarted."""
        component = self.miners.get(name) or self.validators.get(name)
        if component is None or component.process.popen is None:
            raise KeyError(f"no running miner or validator named {name!r}")
        self._stopped_on_purpose.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.popen.pid, signal.SIGKILL)
        component.process.popen.wait(timeout=30)

    def terminate(self, name: str) -> None:
        """SIGTERM one miner or validator and wait for it to exit (a graceful stop)."""
        component = self.miners.get(name) or self.validators.get(name)
        if component is None:
            raise KeyError(f"no miner or validator named {name!r}")
        self._stopped_on_purpose.add(name)
        component.stop(grace=10)

    async def restart(self, name: str) -> None:
        """Start a killed or terminated miner or validator again, with the same settings and state."""
        component = self.miners.get(name) or self.validators.get(name)
        if component is None:
            raise KeyError(f"no miner or validator named {name!r}")
        component.stop(grace=1)
        await self._start_components([component])
        self._stopped_on_purpose.discard(name)

    def _stop_servers(self, prefix: str) -> None:
        for server in self._servers:
            if server.name.startswith(prefix):
                server.stop()

    def stop(self) -> None:
        """Stop everything that was started, validators first, nats-server last; safe to call twice."""
        for component in [*self.validators.values(), *self.miners.values()]:
            component.stop(grace=5)
        for service in (self.consensus, self.chain):
            if service is not None:
                service.stop(grace=5)
        for server in reversed(self._servers):
            server.stop()
