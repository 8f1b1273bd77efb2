"""
What a client may send a C{haproxy:} endpoint, pretending to be the balancer.
"""

from __future__ import annotations

# v1 headers whose addresses or ports are not what they say, or that break
# the spec's other rules: each is refused and counted, none reaches a room.
FORGED_V1_HEADERS = [
    b"PROXY TCP4 x\n<admin>\x1b[2J 127.0.0.1 2222 1025\r\n",
    b"PROXY TCP4 " + b"1" * 150 + b" 127.0.0.1 2222 1025\r\n",
    b"PROXY TCP6 1.2.3.4 ::1 2222 1025\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 99999999 1025\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 x 1025\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 -1 1025\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 2222\r\n",
    b"PROXY TCP4 1.2.3.4 127.0.0.1 2222 1025 extra\r\n",
    b"PROXY TCP4 \xc3\xa9.2.3.4 127.0.0.1 2222 1025\r\n",
    b"PROXY TCP4 1.2.3.4  127.0.0.1 2222 1025\r\n",
    b"PROXY UDP4 1.2.3.4 127.0.0.1 2222 1025\r\n",
    b"PROXY TCP6 ::1 ::1 2222 1025" + b" " * 80 + b"\r\n",
]
