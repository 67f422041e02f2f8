"""Fleet control: the SSM parameter `[control] ssm_parameter`, which `sqs-poller pause --fleet`
(and resume, quiet, unquiet) writes and every daemon reads every `[control] poll_seconds`, on
its `control-fleet` thread. Its value is the JSON of `control.State` (expiries as absolute UTC
times, so `--for` ends by itself on every host) plus who wrote it and when.

A failed read keeps the last state read: an SSM outage must not resume what an operator paused.
The endpoint comes from the AWS SDK's standard configuration (AWS_ENDPOINT_URL_SSM, the region
chain) or `[control] endpoint_url` and `region`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from poller.daemon.control import Control, State, iso
from poller.daemon.loops import survive


def ssm_client(control: Any) -> Any:
    from poller.aws import aws_client

    return aws_client(
        "ssm", control.region, control.endpoint_url, connect_timeout=3, read_timeout=5, attempts=2
    )


def read_fleet(client: Any, name: str) -> tuple[State, str]:
    """The parameter's state and who wrote it; no parameter is nothing paused. ValueError for a
    value that is not the state's JSON."""
    try:
        value = client.get_parameter(Name=name)["Parameter"]["Value"]
    except client.exceptions.ParameterNotFound:
        return State(), ""
    data = json.loads(value)
    return State.from_json(data), str(data.get("by", ""))


def write_fleet(client: Any, name: str, change: Callable[[State], State], by: str) -> State:
    """Read, change, write the parameter (its expired pauses dropped); returns what was written.
    Two operators writing at the same moment: the last write wins."""
    try:
        current, _ = read_fleet(client, name)
    except ValueError:
        current = State()  # not ours to read: overwritten with a valid state
    state = change(current.active(time.time()))
    value = {**state.to_json(), "by": by, "updated_at": iso(time.time())}
    client.put_parameter(
        Name=name,
        Value=json.dumps(value),
        Type="String",
        Overwrite=True,
        Description="sqs-poller fleet control: queues paused, quiet (sqs-poller pause --fleet)",
    )
    return state


class FleetWatcher:
    """The supervisor's `control-fleet` thread: reads the parameter every `poll_seconds` and
    hands its state to `Control`."""

    def __init__(self, config: Any, control: Control, log: Any, count_error: Callable[[str], None]):
        self.name = config.ssm_parameter
        self.every = config.poll_seconds
        self.config = config
        self.control = control
        self.log = log
        self.count_error = count_error
        self._stop = threading.Event()
        self._failing = ""
        self.thread = threading.Thread(target=self._run, name="control-fleet", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)  # one read's timeouts at most

    def _run(self) -> None:
        self.client = survive(lambda: ssm_client(self.config), self.log, self.count_error)
        while not self._stop.is_set():
            if self.client is None:
                self.client = survive(lambda: ssm_client(self.config), self.log, self.count_error)
            else:
                survive(self.look, self.log, self.count_error)
            self._stop.wait(self.every)

    def look(self) -> None:
        try:
            state, by = read_fleet(self.client, self.name)
        except Exception as exc:  # botocore's errors, a malformed value: keep the last state read
            error = f"{type(exc).__name__}: {exc}"[:300]
            if error != self._failing:
                self.log.warning("fleet_control_read_failed", parameter=self.name, error=error)
            self._failing = error
            return
        if self._failing:
            self.log.info("fleet_control_read_again", parameter=self.name)
            self._failing = ""
        self.control.set_fleet(state, by)
