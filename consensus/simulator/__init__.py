"""A built-in CometBFT stand-in: what the main job watches by default, what fast tests use, and
what load benchmarks drive. Its frames are byte-compatible with a real v1.0.1 node's."""

from .chain import SimChain
from .runner import SimulatorThread, build_network
from .scenario import Halt, Scenario, SetChange, Stall, Window
from .server import SimNetwork, SimNode

__all__ = [
    "Halt",
    "Scenario",
    "SetChange",
    "SimChain",
    "SimNetwork",
    "SimNode",
    "SimulatorThread",
    "Stall",
    "Window",
    "build_network",
]
