"""A real 4-validator CometBFT network on loopback, for end-to-end tests (and for trying ctop).

The node software is `injectived` (Cosmos SDK on CometBFT v1.0.1) from the PyPI package
injective-core, installed by requirements-e2e.txt. Everything listens on 127.0.0.1 on free ports.

    python -m tools.localnet start  --dir /tmp/ctop-localnet     # set up (first time) and start
    python -m tools.localnet stop-node 1 --dir /tmp/ctop-localnet
    python -m tools.localnet start-node 1 --dir /tmp/ctop-localnet
    python -m tools.localnet stop --dir /tmp/ctop-localnet         # stops every node by process id

Tests use the Localnet class directly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHAIN_ID = "injective-777"
STAKE = "1000000000000000000000stake"  # 1e21: voting power 1000 each
BALANCE = "1000000000000000000000000stake,1000000000000000000000000inj"


class LocalnetUnavailable(RuntimeError):
    """The platform cannot run the bundled binary (not x86_64 Linux, or the package is missing)."""


def binary() -> Path:
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise LocalnetUnavailable(f"injectived runs on x86_64 Linux only, not {sys.platform}/{platform.machine()}")
    try:
        import injective_core
    except ImportError as exc:
        raise LocalnetUnavailable("injective-core is not installed (pip install -r requirements-e2e.txt)") from exc
    return Path(injective_core.get_binary_path())


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class Node:
    index: int
    home: Path
    rpc_port: int
    p2p_port: int
    node_id: str = ""
    address: str = ""  # consensus address, hex
    api_port: int = 0  # the Cosmos SDK REST API (LCD); 0 in a state file from before it was enabled

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "node.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid


class Localnet:
    def __init__(self, root: Path, validators: int = 4, commit_timeout: str = "1s") -> None:
        self.root = Path(root)
        self.n = validators
        self.commit_timeout = commit_timeout
        self.bin = binary()
        self.tmp = self.root / "tmp"
        self.env = dict(os.environ)
        self.env["LD_LIBRARY_PATH"] = f"{self.bin.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        self.env["TMPDIR"] = str(self.tmp)  # the binary leaves injectiveappNNN folders in TMPDIR
        self.nodes: list[Node] = []
        self.state_file = self.root / "localnet.json"
        if self.state_file.exists():
            self._load()

    # --- set-up ---

    def _run(self, *args: str, home: Path | None = None, capture: bool = True) -> str:
        cmd = [str(self.bin), *args] + (["--home", str(home)] if home else [])
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed: {proc.stderr.strip()[-800:]}")
        return (proc.stdout + proc.stderr).strip() if capture else ""

    def _save(self) -> None:
        state = [
            {
                "index": n.index,
                "home": str(n.home),
                "rpc_port": n.rpc_port,
                "p2p_port": n.p2p_port,
                "node_id": n.node_id,
                "address": n.address,
                "api_port": n.api_port,
            }
            for n in self.nodes
        ]
        self.state_file.write_text(json.dumps({"chain_id": CHAIN_ID, "nodes": state}, indent=2))

    def _load(self) -> None:
        state = json.loads(self.state_file.read_text())
        self.nodes = [Node(**n | {"home": Path(n["home"])}) for n in state["nodes"]]

    @property
    def ready(self) -> bool:
        return self.state_file.exists() and len(self.nodes) == self.n

    def setup(self) -> None:
        """Create the homes, one genesis holding every validator's gentx, and the configs."""
        if self.ready:
            return
        if self.root.exists():
            shutil.rmtree(self.root)
        self.tmp.mkdir(parents=True)
        ports = free_ports(self.n * 3)
        self.nodes = [
            Node(i, self.root / f"val{i}", ports[3 * i], ports[3 * i + 1], api_port=ports[3 * i + 2])
            for i in range(self.n)
        ]
        accounts = []
        for node in self.nodes:
            self._run("init", f"val{node.index}", "--chain-id", CHAIN_ID, home=node.home)
            self._run("keys", "add", f"val{node.index}", "--keyring-backend", "test", home=node.home)
            accounts.append(
                self._run("keys", "show", f"val{node.index}", "-a", "--keyring-backend", "test", home=node.home)
                .splitlines()[-1]
                .strip()
            )
            node.node_id = self._run("comet", "show-node-id", home=node.home).splitlines()[-1].strip()
            key = json.loads((node.home / "config" / "priv_validator_key.json").read_text())
            node.address = key["address"].upper()
        first = self.nodes[0]
        for account in accounts:
            self._run("genesis", "add-genesis-account", account, BALANCE, "--chain-id", CHAIN_ID, home=first.home)
        genesis = first.home / "config" / "genesis.json"
        doc = json.loads(genesis.read_text())
        # Outage tests stop validators for minutes: never jail them for it.
        doc["app_state"]["slashing"]["params"]["signed_blocks_window"] = "100000"
        genesis.write_text(json.dumps(doc))
        for node in self.nodes[1:]:
            shutil.copy(genesis, node.home / "config" / "genesis.json")
        for node in self.nodes:
            self._run(
                "genesis",
                "gentx",
                f"val{node.index}",
                STAKE,
                "--chain-id",
                CHAIN_ID,
                "--keyring-backend",
                "test",
                "--ip",
                "127.0.0.1",
                "--p2p-port",
                str(node.p2p_port),
                home=node.home,
            )
            if node is not first:
                for gentx in (node.home / "config" / "gentx").glob("*.json"):
                    shutil.copy(gentx, first.home / "config" / "gentx" / gentx.name)
        self._run("genesis", "collect-gentxs", home=first.home)
        for node in self.nodes[1:]:
            shutil.copy(genesis, node.home / "config" / "genesis.json")
        for node in self.nodes:
            self._configure(node)
        self._save()

    def _configure(self, node: Node) -> None:
        peers = ",".join(f"{o.node_id}@127.0.0.1:{o.p2p_port}" for o in self.nodes if o is not node)
        config = node.home / "config" / "config.toml"
        lines, section = [], ""
        for line in config.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("["):
                section = stripped
            key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
            value = {
                ("[rpc]", "laddr"): f'"tcp://127.0.0.1:{node.rpc_port}"',
                ("[p2p]", "laddr"): f'"tcp://127.0.0.1:{node.p2p_port}"',
                ("[p2p]", "persistent_peers"): f'"{peers}"',
                ("[p2p]", "pex"): "false",
                ("[p2p]", "allow_duplicate_ip"): "true",
                ("[p2p]", "addr_book_strict"): "false",
                ("[rpc]", "pprof_laddr"): '""',
                ("", "proxy_app"): '"tcp://127.0.0.1:0"',
                ("[instrumentation]", "prometheus"): "false",
            }.get((section, key))
            lines.append(f"{key} = {value}" if value is not None else line)
        config.write_text("\n".join(lines) + "\n")
        app = node.home / "config" / "app.toml"
        lines, section = [], ""
        for line in app.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("["):
                section = stripped
            # The REST API (staking and slashing, for ctop's validator status) on a port of its own;
            # gRPC, gRPC-web and the EVM JSON-RPC off (their default ports would collide).
            if stripped.startswith("enable =") and section == "[api]":
                line = "enable = true"
            elif stripped.startswith("address =") and section == "[api]":
                line = f'address = "tcp://127.0.0.1:{node.api_port}"'
            elif stripped.startswith("enable =") and section in ("[grpc]", "[grpc-web]", "[json-rpc]"):
                line = "enable = false"
            lines.append(line)
        app.write_text("\n".join(lines) + "\n")

    # --- processes ---

    def start_node(self, i: int) -> None:
        node = self.nodes[i]
        if node.pid():
            return
        log = open(node.home / "node.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [
                str(self.bin),
                "start",
                "--home",
                str(node.home),
                "--unsafe-consensus-timeout-commit",
                self.commit_timeout,
                "--log-level",
                "error",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        node.pid_file.write_text(str(proc.pid))

    def stop_node(self, i: int, timeout: float = 15.0, *, kill: bool = False) -> None:
        """Stop node i by process id: SIGTERM (a clean stop), or SIGKILL with kill=True (a crash)."""
        node = self.nodes[i]
        pid = node.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not our child (started by another process): poll for it
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        node.pid_file.unlink(missing_ok=True)

    def start(self) -> None:
        self.setup()
        for node in self.nodes:
            self.start_node(node.index)

    def stop(self) -> None:
        for node in self.nodes:
            self.stop_node(node.index)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def restore(self, timeout: float = 90.0) -> None:
        """Every node running again, and the chain making heights (what the next test expects)."""
        for node in self.nodes:
            self.start_node(node.index)
        deadline = time.monotonic() + timeout
        start = None
        while time.monotonic() < deadline:
            try:
                h = self.height(0)
            except OSError:
                time.sleep(0.5)
                continue
            start = h if start is None else start
            if h >= start + 2:
                return
            time.sleep(0.3)
        raise TimeoutError(f"the localnet did not resume within {timeout}s")

    def height(self, i: int = 0) -> int:
        with urllib.request.urlopen(f"{self.nodes[i].rpc_url}/status", timeout=2) as r:  # noqa: S310 - loopback
            return int(json.load(r)["result"]["sync_info"]["latest_block_height"])

    def wait_for_height(self, height: int, node: int = 0, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                h = self.height(node)
                if h >= height:
                    return h
            except OSError as exc:
                last_error = exc
            time.sleep(0.2)
        raise TimeoutError(f"localnet node {node} did not reach height {height} in {timeout}s ({last_error})")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.localnet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["start", "stop", "stop-node", "start-node", "status"])
    parser.add_argument("node", nargs="?", type=int, help="node index for stop-node / start-node")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ctop-localnet"))  # noqa: S108 - a scratch dir for tests
    parser.add_argument("--commit-timeout", default="1s")
    args = parser.parse_args()
    try:
        net = Localnet(args.dir, commit_timeout=args.commit_timeout)
    except LocalnetUnavailable as exc:
        parser.exit(2, f"localnet: {exc}\n")
    if args.action in ("stop-node", "start-node") and (args.node is None or not 0 <= args.node < net.n):
        parser.error(f"{args.action} needs a node index 0..{net.n - 1}")
    if args.action == "start":
        net.start()
        h = net.wait_for_height(2)
        for node in net.nodes:
            print(f"val{node.index} pid {node.pid()} rpc {node.rpc_url} address {node.address}")
        print(
            f"chain {CHAIN_ID} at height {h}; networks: localnet,{net.nodes[0].rpc_url},localnet,{net.nodes[1].rpc_url}"
        )
    elif args.action == "stop":
        net.stop()
        print("stopped")
    elif args.action == "stop-node":
        net.stop_node(args.node)
    elif args.action == "start-node":
        net.start_node(args.node)
    else:
        for node in net.nodes:
            print(f"val{node.index} pid {node.pid()} rpc {node.rpc_url}")


if __name__ == "__main__":
    main()
