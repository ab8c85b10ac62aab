"""The deterministic simulator every swarmlet protocol is tested on.

A :class:`Simulator` owns virtual time and the seeded RNG; a :class:`SimNetwork` of
:class:`SimHost` objects implements :class:`nodeagent.transport.Transport` with every fault the
chaos tools know. The same seed gives the same run, event for event.
"""

from nodeagent.sim.network import HostState, LinkProfile, SimHost, SimNetwork
from nodeagent.sim.scheduler import Simulator, Timer

__all__ = ["HostState", "LinkProfile", "SimHost", "SimNetwork", "Simulator", "Timer"]
