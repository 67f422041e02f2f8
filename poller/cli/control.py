"""The operator's commands on a running daemon: `pause`, `resume`, `quiet`, `unquiet` (this
host over the control socket, or with `--fleet` every host through the SSM parameter),
`status` and `top`. Exit codes: 0 done, 1 no daemon runs or the request was refused (the
message says who may), 2 an unknown queue (listing those there are) or bad usage."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import click

from poller.cli.common import config_option
from poller.config import Config, select_queue
from poller.configload import load_config
from poller.daemon.control import State, describe, iso, parse_duration
from poller.daemon.controlsocket import request, socket_path
from poller.errors import EXIT_OK, ConfigError
from poller.output import emit_result

FLEET_HELP = "Every daemon whose config names this [control] ssm_parameter, within its poll_seconds."


def _config(config_path: str | None) -> Config:
    return load_config(config_path)


def _queue(config: Config, name: str) -> str:
    return select_queue(config, name).name  # unknown: ConfigError (exit 2) listing the queues


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (a container)
        user = "?"
    return f"{user} (uid {os.getuid()}) on {socket.gethostname()}"


def _local(config: Config, payload: dict[str, Any], done: str) -> int:
    reply = request(socket_path(config), payload)
    emit_result(
        f"{done} on this host. Now: {reply.get('status') or 'every queue receiving'}",
        {"event": payload["command"], "scope": "host", **payload, **reply},
    )
    return EXIT_OK


def _fleet(config: Config, command: str, change: Callable[[State], State], done: str) -> int:
    from poller.daemon.fleet import ssm_client, write_fleet

    name = config.control.ssm_parameter
    if not name:
        raise ConfigError(
            "--fleet needs [control] ssm_parameter in the config (the parameter every host reads)"
        )
    state = write_fleet(ssm_client(config.control), name, change, _who())
    every = config.control.poll_seconds
    emit_result(
        f"{done} on every host reading {name} (within {every}s). Fleet: "
        f"{describe(state, time.time()) or 'every queue receiving'}",
        {"event": command, "scope": "fleet", "parameter": name, "state": state.to_json()},
    )
    return EXIT_OK


fleet_option = click.option("--fleet", is_flag=True, help=FLEET_HELP)


@click.command()
@config_option
@click.option("--for", "duration", metavar="DURATION", help="Resume by itself after this: 90s, 15m, 2h, 1d.")
@fleet_option
@click.argument("queue")
def pause(config_path: str | None, duration: str | None, fleet: bool, queue: str) -> int:
    """Stop receiving from QUEUE: what is held but not started goes back, running handlers finish."""
    config = _config(config_path)
    name = _queue(config, queue)
    try:
        seconds = parse_duration(duration) if duration else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    until = f" until {iso(time.time() + seconds)}" if seconds else ""
    done = f"paused {name}{until}"
    if fleet:

        def change(state: State) -> State:
            state.paused[name] = None if seconds is None else time.time() + seconds
            return state

        return _fleet(config, "pause", change, done)
    return _local(config, {"command": "pause", "queue": name, "seconds": seconds}, done)


@click.command()
@config_option
@fleet_option
@click.argument("queue")
def resume(config_path: str | None, fleet: bool, queue: str) -> int:
    """Receive from QUEUE again (a pause on this host, or with --fleet the fleet's)."""
    config = _config(config_path)
    name = _queue(config, queue)
    if fleet:

        def change(state: State) -> State:
            state.paused.pop(name, None)
            return state

        return _fleet(config, "resume", change, f"resumed {name}")
    return _local(config, {"command": "resume", "queue": name}, f"resumed {name}")


@click.command()
@config_option
@fleet_option
def quiet(config_path: str | None, fleet: bool) -> int:
    """Stop receiving from every queue, finish what is held, stay up (for maintenance)."""
    config = _config(config_path)
    if fleet:
        return _fleet(config, "quiet", lambda s: State(s.paused, True), "quiet")
    return _local(config, {"command": "quiet"}, "quiet")


@click.command()
@config_option
@fleet_option
def unquiet(config_path: str | None, fleet: bool) -> int:
    """Receive again after `quiet` (queues paused one by one stay paused)."""
    config = _config(config_path)
    if fleet:
        return _fleet(config, "unquiet", lambda s: State(s.paused, False), "unquiet")
    return _local(config, {"command": "unquiet"}, "unquiet")


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="The status as one JSON object.")
def status(config_path: str | None, as_json: bool) -> int:
    """The daemon on this host: each queue (rates, in flight, paused, breaker), each worker."""
    reply = request(socket_path(_config(config_path)), {"command": "status"})
    reply.pop("ok", None)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return EXIT_OK
    from rich.console import Console

    from poller.output import status_view

    Console().print(status_view(reply))
    return EXIT_OK


@click.command()
@config_option
def top(config_path: str | None) -> int:
    """`status`, live: redrawn every second; q quits."""
    from poller.liveview import live_status

    path = socket_path(_config(config_path))
    request(path, {"command": "status"})  # no daemon: say so now, not in the view
    live_status(lambda: request(path, {"command": "status"}, timeout=2.0))
    return EXIT_OK
