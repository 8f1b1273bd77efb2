"""
Helpers for netdemos's tests, one module a concern.

The unit tests' fakes: L{support.chat} (clients on string transports in one
room), L{support.http} (HTTP over a string transport), L{support.web} (a
WebSocket client of the web site over a string transport),
L{support.descriptors} (an open-file limit held in memory) and
L{support.events} (the log events a test emits).

The end-to-end tests' harness, which sees the server only as its clients do:
L{support.process} starts the installed C{twistd netdemos} on free loopback
ports and stops it (on L{support.running}, which the benchmarks share);
L{support.clients} speaks to it (chat users, lines, HTTP, echo, TLS);
L{support.rooms} fills a chat room for a client that never reads;
L{support.certificates} makes a TLS certificate; L{support.prometheus} scrapes
C{/metrics}; L{support.redbot} lints its responses with REDbot;
L{support.systemd} reads the shipped units and receives C{sd_notify}
messages.  The fixtures that put them together for one test are
in C{tests/conftest.py}.
"""

# How long a test waits for something a running server should send: a line
# to a client, a line in its log, an HTTP answer.
LINE_TIMEOUT = 10.0

# How long a test waits for twistd to exit once it should.
EXIT_TIMEOUT = 30.0
