"""The tests stay on this machine: in the test process and in every Python subprocess they start."""

import socket
import subprocess
import sys

import pytest

from tests.helpers import offline_env

ATTEMPT = """
import socket
assert socket.socket.connect.__name__ == "guarded_connect", "no guard: nothing is tried"
sock = socket.socket()
try:
    sock.connect(("192.0.2.1", 80))  # TEST-NET-1; the guard answers before anything is sent
except OSError as exc:
    print(exc)
"""


def test_the_test_process_cannot_connect_beyond_loopback():
    assert socket.socket.connect.__name__ == "guarded_connect"  # else nothing is tried
    with socket.socket() as sock, pytest.raises(OSError, match="test tried to reach 192.0.2.1"):
        sock.connect(("192.0.2.1", 80))


def test_a_subprocess_cannot_either():
    result = subprocess.run([sys.executable, "-c", ATTEMPT], capture_output=True, text=True, env=offline_env(),
                            timeout=60)
    assert "test tried to reach 192.0.2.1: tests must not use the network" in result.stdout
