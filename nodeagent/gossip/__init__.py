"""SWIM + Lifeguard gossip membership: a core without I/O, its codec and its simulated cluster.

* :mod:`nodeagent.gossip.config` the configuration (``GossipConfig.lan()`` / ``.default()``);
* :mod:`nodeagent.gossip.core` the state machine (:class:`Swim`);
* :mod:`nodeagent.gossip.messages` the messages, :mod:`nodeagent.gossip.codec` their protobuf form;
* :mod:`nodeagent.gossip.timing` the timeout arithmetic;
* :mod:`nodeagent.gossip.schedule` the staggered probe schedule's shared member order;
* :mod:`nodeagent.gossip.simcluster` a cluster of cores on the deterministic simulator.
"""

from nodeagent.gossip.config import GossipConfig
from nodeagent.gossip.core import Member, MemberEvent, MemberState, Outgoing, Swim, SwimStats, UserMessage
from nodeagent.gossip.messages import NodeMeta

__all__ = [
    "GossipConfig",
    "Member",
    "MemberEvent",
    "MemberState",
    "NodeMeta",
    "Outgoing",
    "Swim",
    "SwimStats",
    "UserMessage",
]
