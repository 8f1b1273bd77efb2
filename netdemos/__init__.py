"""
netdemos: echo, an HTTP counter and a chat room, served by one twistd plugin.

Each service lives in its own module (L{netdemos.echo}, L{netdemos.counter},
L{netdemos.chat}); L{netdemos.tap} wires them to endpoints for C{twistd}.
"""

__version__ = "1.0.0"
