"""
UDP clients for end-to-end tests: a free port, a round trip that retries, and
datagrams sent from many loopback addresses through one socket.
"""

from __future__ import annotations

import socket
import struct
import time

from support.running import LOOPBACK

# Linux's IP_PKTINFO, which Python's socket module does not name.
IP_PKTINFO = 8


def freeUDPPort(host: str = LOOPBACK) -> int:
    """
    A UDP port free on C{host} now (another process may take it before the
    server binds it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def udpClient(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, port))
    return client


def roundTrip(
    client: socket.socket,
    datagram: bytes,
    server: tuple[str, int],
    attempts: int = 5,
    timeout: float = 2.0,
) -> bytes:
    """
    Send C{datagram} to C{server} and return the first datagram back; send it
    again if none comes within C{timeout}, as UDP may lose either.
    """
    for _ in range(attempts):
        client.sendto(datagram, server)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            client.settimeout(remaining)
            try:
                reply, source = client.recvfrom(70000)
            except TimeoutError:
                break
            if source[:2] == server:
                return reply
    raise AssertionError(f"no reply from {server} in {attempts} attempts")


def sendFrom(
    client: socket.socket, datagram: bytes, source: str, server: tuple[str, int]
) -> None:
    """
    Send C{datagram} from the loopback address C{source}, whatever address
    C{client} is bound to: Linux takes any of 127.0.0.0/8 as a local source
    given in C{IP_PKTINFO}, as it would a forged one.
    """
    info = struct.pack("=I4s4s", 0, socket.inet_aton(source), bytes(4))
    client.sendmsg([datagram], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, server)
