"""The manager's web view of the swarm: nodes, tasks, leader, membership views, a timeline.

:class:`WebView` is the shell (aiohttp on the node's loop, port ``--web-port``, 8081);
:mod:`manager.web.model` computes what it shows; :mod:`manager.web.peers` asks the other agents.
"""

from manager.web.server import WebView

__all__ = ["WebView"]
