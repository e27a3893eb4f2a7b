"""`manage.py simulate_chain`: serve simulated CometBFT chains on 127.0.0.1 until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from django.core.management.base import CommandError

from common.cli import CtopCommand, parse_duration_or_zero
from consensus.simulator import build_network
from consensus.simulator.scenario import load


def parse_powers(text: str) -> int | list[int]:
    try:
        if "," in text:
            powers = [int(x) for x in text.split(",") if x.strip()]
            if not powers or any(p <= 0 for p in powers):
                raise ValueError
            return powers
        n = int(text)
    except ValueError:
        raise CommandError(f"--validators {text!r}: give a count (1-500) or comma-separated powers") from None
    if not 1 <= n <= 500:
        raise CommandError("--validators: between 1 and 500")
    return n


class Command(CtopCommand):
    help = "Serve simulated CometBFT chains (websocket + HTTP RPC) on 127.0.0.1 until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chains", type=int, default=1, help="How many chains (default 1).")
        parser.add_argument("--validators", default="4", help="Validator count, or powers like 3000,1000,1000.")
        parser.add_argument(
            "--block-time", type=parse_duration_or_zero, default="1s", help="Block time (default 1s; 0 = flat out)."
        )
        parser.add_argument("--port", type=int, default=26657, help="First port; chain k node j gets the next ones.")
        parser.add_argument("--nodes", type=int, default=1, help="RPC nodes (endpoints) per chain (default 1).")
        parser.add_argument("--chain-id-prefix", default="sim", help="Chain ids are PREFIX-1, PREFIX-2, ...")
        parser.add_argument("--scenario", default="none", help="none, demo, or a JSON scenario file.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--start-height",
            default="1",
            help="First height (default 1); 'auto' continues from the wall clock, so a restarted "
            "demo never replays heights already stored.",
        )

    def handle(self, *args, **opts) -> None:
        if not 1 <= opts["chains"] <= 200:
            raise CommandError("--chains: between 1 and 200")
        if not 1 <= opts["nodes"] <= 10:
            raise CommandError("--nodes: between 1 and 10")
        if not 1 <= opts["port"] <= 65535 - opts["chains"] * opts["nodes"]:
            raise CommandError("--port: out of range")
        try:
            scenario = load(opts["scenario"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if opts["start_height"] == "auto":
            start_height = int(time.time() // max(opts["block_time"].total_seconds(), 1.0)) - 1_700_000_000
        else:
            try:
                start_height = int(opts["start_height"])
            except ValueError:
                raise CommandError("--start-height: a height or 'auto'", returncode=2) from None
            if start_height < 1:
                raise CommandError("--start-height must be at least 1", returncode=2)
        network = build_network(
            chains=opts["chains"],
            validators=parse_powers(opts["validators"]),
            block_time=opts["block_time"].total_seconds(),
            scenario=lambda: load(opts["scenario"]) if opts["scenario"] != "none" else scenario,
            base_port=opts["port"],
            nodes_per_chain=opts["nodes"],
            chain_id_prefix=opts["chain_id_prefix"],
            seed=opts["seed"],
            start_height=start_height,
        )
        asyncio.run(self._serve(network))

    async def _serve(self, network) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await network.start()
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc} (is the port taken? choose another with --port)") from None
        networks = []
        for chain, nodes in network.chains:
            for node in nodes:
                self.stdout.write(
                    f"{chain.chain_id}: {node.url} (websocket {node.url.replace('http', 'ws')}/websocket)"
                )
                networks += [chain.chain_id, node.url]
        self.stdout.write("watch them with: manage.py subscribe_events --networks " + ",".join(networks))
        self.stdout.flush()
        await stop.wait()
        with contextlib.suppress(Exception):
            await network.stop()
        self.stdout.write("simulator stopped")
