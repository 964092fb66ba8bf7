"""Free loopback ports for servers a test starts."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct free ports. Every probe socket stays bound until all are chosen: asked
    one at a time, the kernel may hand the same port out twice (a serve test once got its intake
    and staff apps on one port and failed with "address already in use")."""
    with ExitStack() as probes:
        ports = []
        for _ in range(count):
            probe = probes.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            ports.append(int(probe.getsockname()[1]))
        return tuple(ports)
