"""The SQS server of the run (tests/servers.py) listens on loopback only: fauxqs binds every
interface unless patched at install, LocalStack's default gateway ignores the interface."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import descendants

pytestmark = pytest.mark.servers

LISTEN = "0A"  # the TCP state in /proc/net/tcp


def listening_addresses(pids: list[int]) -> set[str]:
    """host:port of every TCP socket these processes listen on (from /proc, no tools needed)."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and inode in inodes:
                found.add(decode(local, family))
    return found


def decode(local: str, family: int) -> str:
    address, port = local.split(":")
    raw = bytes.fromhex(address)
    # /proc prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{socket.inet_ntop(family, words)}:{int(port, 16)}"


def test_the_server_listens_on_loopback_only(local_sqs):
    # GIVEN the run's SQS server (a child process, or moto inside this one)
    proc = getattr(local_sqs, "proc", None)
    pids = [proc.pid, *descendants(proc.pid)] if proc is not None else [os.getpid()]

    # WHEN its listening sockets are read
    addresses = listening_addresses(pids)

    # THEN its endpoint is among them, and every one is on 127.0.0.1
    assert f"127.0.0.1:{local_sqs.port}" in addresses, addresses
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
