"""Shared test fixtures. Add new fixtures below; keep each small and named for what it builds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The authors'-code figures in ../shared/fixtures (override with CVGL_FIXTURES)."""
    path = Path(os.environ.get("CVGL_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
    if not (path / "reference_weights.py").is_file():
        pytest.fail(f"reference fixtures not found in {path}; set CVGL_FIXTURES to the shared/fixtures folder")
    return path


@pytest.fixture(scope="session")
def reference_checkpoint(reference_dir: Path) -> dict:
    """The published-format checkpoint rebuilt from the fixture manifest by the fixture's own rule."""
    sys.path.insert(0, str(reference_dir))
    try:
        from reference_weights import reference_checkpoint as build
    finally:
        sys.path.remove(str(reference_dir))
    return build(str(reference_dir / "reference_state_small.json"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to reach beyond this machine (loopback stays open for DDP/gloo)."""
    import socket

    connect = socket.socket.connect

    def guarded(sock: socket.socket, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and sock.family in (socket.AF_INET, socket.AF_INET6) and not (
            host.startswith("127.") or host in ("localhost", "::1")
        ):
            raise OSError(f"test tried to reach {host}: tests must not use the network")
        return connect(sock, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
