"""The SQS server of the run (tests/servers.py): it listens on loopback only (fauxqs binds
every interface unless patched at install, LocalStack's default gateway ignores the
interface), and what the daemon and the DLQ tools assume of SQS, so a server that differs
shows here by name (a quirk marker) rather than as a puzzling failure elsewhere."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

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


def send_group(sqs, url: str, bodies: list[str], group: str = "g") -> None:
    entries = [
        {"Id": str(n), "MessageBody": b, "MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex}
        for n, b in enumerate(bodies)
    ]
    assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def receive(sqs, url: str, visibility: int = 30) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=visibility
    ).get("Messages", [])


def hide(sqs, url: str, message: dict, seconds: int) -> None:
    receipt = message["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=seconds)


@pytest.mark.quirk(
    "localstack",
    "it hands out the rest of a FIFO group released with visibility 0 while an earlier message "
    "of the group is still in flight",
)
def test_a_fifo_group_stays_blocked_while_one_of_its_messages_is_in_flight(sqs, make_queues):
    # GIVEN a FIFO group of three, its first message received and hidden for 5 s (a retry), and
    # any others received with it released at once
    url, _ = make_queues(fifo=True)
    send_group(sqs, url, ["m0", "m1", "m2"])
    first, *rest = receive(sqs, url)
    assert first["Body"] == "m0"
    hide(sqs, url, first, 5)
    for message in rest:
        hide(sqs, url, message, 0)

    # WHEN the queue is received from while m0 is in flight
    got = receive(sqs, url)

    # THEN the group hands out nothing (SQS: no more of a group until that message is deleted
    # or visible again)
    assert [m["Body"] for m in got] == []


@pytest.mark.quirk("fauxqs", "a FIFO receive returns at most one message of each group")
def test_a_fifo_group_comes_back_in_order_when_its_messages_turn_visible_together(sqs, make_queues):
    # GIVEN a FIFO group of six received at once; two are done, the third failed and goes back
    # after 2 s, and the rest with it (the daemon's release after a failure)
    url, _ = make_queues(fifo=True)
    send_group(sqs, url, [f"m{n}" for n in range(6)])
    held = receive(sqs, url)
    assert [m["Body"] for m in held] == [f"m{n}" for n in range(6)]
    for message in held[:2]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for message in held[2:]:
        hide(sqs, url, message, 2)
    time.sleep(2.5)

    # WHEN the group is received again until it is done
    again = []
    while len(again) < 4:
        got = receive(sqs, url)
        assert got, f"the group stopped after {again}"
        again += [m["Body"] for m in got]
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    # THEN it comes back in order
    assert again == ["m2", "m3", "m4", "m5"]


@pytest.mark.quirk("fauxqs", "a FIFO receive returns at most one message of each group")
def test_a_fifo_receive_hands_out_several_messages_of_a_group_in_order(sqs, make_queues):
    # GIVEN ten messages of one FIFO group
    url, _ = make_queues(fifo=True)
    send_group(sqs, url, [f"m{n}" for n in range(10)])

    # WHEN received with room for ten
    got = [m["Body"] for m in receive(sqs, url)]

    # THEN several of the group come at once, in order
    assert len(got) > 1 and got == [f"m{n}" for n in range(len(got))], got


@pytest.mark.quirk("moto", "it counts the 1 MiB limit in characters and leaves attributes out")
def test_a_message_over_one_mib_in_bytes_with_its_attributes_is_refused(sqs, make_queues):
    # GIVEN a queue, and two messages over 1 MiB only as SQS counts: in UTF-8 bytes, and with
    # their attributes
    url, _ = make_queues()
    wide = "é" * (512 * 1024 + 1)  # 512 Ki characters, 1 MiB + 2 bytes
    one_mib = "x" * (1024 * 1024)
    tagged = {"a": {"DataType": "String", "StringValue": "v"}}

    # WHEN each is sent THEN each is refused as too long
    for body, attributes in ((wide, {}), (one_mib, tagged)):
        with pytest.raises(ClientError, match="InvalidParameterValue"):
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
