"""
A randomized fault run, in the manner of Jepsen: clients use two instances
on one Redis while faults are injected in a random order (Redis restarted
empty, Redis paused, Redis full, an instance paused, now and then past its
presence); afterwards the invariants are checked on what the clients saw.

The run takes about a minute.  Its seed is printed; to replay a failure,
set C{NETDEMOS_FAULT_SEED} to it.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

from support.backbone import RedisServer
from support.clients import ChatUser, Clients, requestNumber, waitForReadiness
from support.process import Launcher, Netdemos, redisInstance
from support.running import LOOPBACK

from netdemos.chat.redishub import HEARTBEAT_INTERVAL, PRESENCE_TTL

# The faults last about this long in all, with a healthy gap after each.
FAULT_SECONDS = 40.0
HEALTHY_GAP = (1.0, 3.0)
# Long enough for the others to take a paused instance for dead.
LONG_PAUSE = PRESENCE_TTL + 2 * HEARTBEAT_INTERVAL
HEALED_SECONDS = 15.0
CLIENT_TIMEOUT = 2.0


class Numbers:
    """
    HTTP clients on one instance, each GET on a new connection, recording
    every number they are given; errors and 503s are part of the run.
    """

    def __init__(self, server: Netdemos) -> None:
        self.server = server
        self.given: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            connection = http.client.HTTPConnection(
                LOOPBACK, self.server.httpPort, timeout=CLIENT_TIMEOUT
            )
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                if response.status == 200:
                    self.given.append(requestNumber(body))
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.01)  # a pace, not a synchronisation

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=CLIENT_TIMEOUT + 5)


class Talker:
    """
    A chat client that says numbered lines at a steady pace.
    """

    def __init__(self, user: ChatUser, label: str) -> None:
        self.user = user
        self.label = label
        self.said: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            text = f"{self.label} {count}"
            self.said.add(f"<{self.user.name}> {text}")
            try:
                self.user.send(f"{text}\n".encode())
            except OSError:
                return
            count += 1
            time.sleep(0.2)  # a pace, not a synchronisation

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def test_randomFaultsKeepEveryPromise(
    launcher: Launcher, redis: RedisServer, clients: Clients
) -> None:
    seed = int(os.environ.get("NETDEMOS_FAULT_SEED") or random.randrange(2**32))
    print(f"fault run seed: {seed} (replay: NETDEMOS_FAULT_SEED={seed})")
    chance = random.Random(seed)
    servers = [redisInstance(launcher, redis, name) for name in ("a", "b")]
    users = [clients.chatUser(server.chatPort) for server in servers for _ in (1, 2)]
    for user in users:
        user.waitForCrowd(len(users))
    talkers = [Talker(user, f"t{n}") for n, user in enumerate(users)]
    counters = [Numbers(server) for server in servers]

    def restartRedis() -> None:
        redis.restartEmpty()

    def pauseRedis() -> None:
        redis.pause()
        time.sleep(chance.uniform(1.0, 4.0))  # the fault's length
        redis.resume()

    def fillRedis() -> None:
        redis.fill()
        time.sleep(chance.uniform(2.0, 5.0))  # the fault's length
        redis.drain()

    def pauseInstance() -> None:
        server = chance.choice(servers)
        length = LONG_PAUSE if chance.random() < 0.3 else chance.uniform(1.0, 4.0)
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(length)  # the fault's length
        finally:
            server.process.send_signal(signal.SIGCONT)

    faults: list[Callable[[], None]] = [
        restartRedis,
        pauseRedis,
        fillRedis,
        pauseInstance,
    ]
    history = []
    began = time.monotonic()
    try:
        while time.monotonic() - began < FAULT_SECONDS:
            fault = chance.choice(faults)
            history.append(fault.__name__)
            fault()
            time.sleep(chance.uniform(*HEALTHY_GAP))  # healthy for a while
    finally:
        for server in servers:
            server.process.send_signal(signal.SIGCONT)
        redis.resume()
    print(f"faults: {', '.join(history)}")
    replay = f"(seed {seed}; faults {history})"

    # Healed: both ready again, and the room whole.
    for server in servers:
        waitForReadiness(server.metricsPort, 200, timeout=HEALED_SECONDS)
    for talker in talkers:
        talker.stop()
    for counter in counters:
        counter.stop()
    deadline = time.monotonic() + HEALED_SECONDS
    while len({tuple(user.who()) for user in users}) != 1:
        assert time.monotonic() < deadline, f"the instances never agreed {replay}"

    # No number was given twice.
    given = [number for counter in counters for number in counter.given]
    twice = [number for number, times in Counter(given).items() if times > 1]
    assert not twice, f"numbers given twice: {twice[:20]} {replay}"
    assert len(given) > 100, f"hardly any numbers were given {replay}"

    # Every line received was said by someone, and received at most once.
    said = set().union(*(talker.said for talker in talkers))
    for user in users:
        lines = [line for line in user.inbox.snapshot() if line.startswith("<")]
        unsaid = [line for line in lines if line not in said]
        assert not unsaid, f"{user.name} got lines nobody said: {unsaid[:5]} {replay}"
        again = [line for line, times in Counter(lines).items() if times > 1]
        assert not again, f"{user.name} got lines twice: {again[:5]} {replay}"

    # Once healed, every instance lists the same members, each name once.
    names = users[0].who()
    assert len({name.casefold() for name in names}) == len(names), names
    assert len(names) == len(users), f"{names} {replay}"
    for server in servers:
        assert not re.search(r"Traceback|Unhandled", server.output()), server.output()
