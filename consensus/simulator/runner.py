"""Running a SimNetwork: in the foreground (the management command) or in a background thread
(tests and benchmarks, which drive it through the same objects)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .chain import SimChain
from .scenario import Scenario
from .server import SimNetwork, SimNode


class SimulatorThread:
    """A SimNetwork on its own event loop in a daemon thread.

    with SimulatorThread() as sim:
        nodes = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.2), nodes=2)
        ... nodes[0].url ...
    """

    def __init__(self) -> None:
        self.network = SimNetwork()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="simulator", daemon=True)
        self._started = False

    def add_chain(self, chain: SimChain, nodes: int = 1, ports: list[int] | None = None) -> list[SimNode]:
        if self._started:
            raise RuntimeError("add chains before start()")
        return self.network.add(chain, ports or [0] * nodes)

    def start(self) -> SimulatorThread:
        self._thread.start()
        self.call(self.network.start())
        self._started = True
        return self

    def call(self, coro_or_fn: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine (or a plain function) on the simulator's loop and wait for its result."""
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout)

        async def wrap() -> Any:
            return coro_or_fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def stop(self) -> None:
        if self._started:
            self.call(self.network.stop(), timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_network(
    *,
    chains: int,
    validators: int | list[int],
    block_time: float,
    scenario: Callable[[], Scenario] | Scenario,
    base_port: int,
    nodes_per_chain: int = 1,
    chain_id_prefix: str = "sim",
    seed: int = 0,
    start_height: int = 1,
) -> SimNetwork:
    network = SimNetwork()
    port = base_port
    for k in range(chains):
        sc = scenario() if callable(scenario) else scenario
        chain = SimChain(
            f"{chain_id_prefix}-{k + 1}",
            validators=validators,
            block_time=block_time,
            scenario=sc,
            seed=seed + k,
            start_height=start_height,
        )
        ports = [port + j if base_port else 0 for j in range(nodes_per_chain)]
        network.add(chain, ports, monikers=[f"{chain_id_prefix}-{k + 1}-node{j}" for j in range(nodes_per_chain)])
        port += nodes_per_chain
    return network
