"""The network guard of the tests: a connection to anything but loopback raises instead of leaving the machine.

Imported by conftest.py for the test process, and loaded as `sitecustomize` by every Python subprocess the
tests start (tests.helpers.offline_env puts this folder first on PYTHONPATH), DDP workers included.
"""

import socket

_connect = socket.socket.connect


def guarded_connect(sock: socket.socket, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and sock.family in (socket.AF_INET, socket.AF_INET6) and not (
        host.startswith("127.") or host in ("localhost", "::1")
    ):
        raise OSError(f"test tried to reach {host}: tests must not use the network")
    return _connect(sock, address, *args, **kwargs)


socket.socket.connect = guarded_connect
