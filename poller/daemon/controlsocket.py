"""The control socket: a unix socket the supervisor listens on (its `control` thread), for
`sqs-poller pause|resume|quiet|unquiet|status|top`. One JSON line a request, one a reply.

Only root and the daemon's own user may use it: the socket file is 0600 (its directory, under
systemd, the unit's 0700 RuntimeDirectory), and the daemon checks each peer's uid
(SO_PEERCRED) too. Where it is (`socket_path`, the same rule for the daemon and the CLI):
`[control] socket` if set; else `$RUNTIME_DIRECTORY/control.sock` (systemd sets it:
RuntimeDirectory=sqs-poller-%i); else `/run/sqs-poller-<stem>/control.sock` when that
directory exists (the unit's, with <stem> the config file's name without `.toml`, as the
unit's instance name is), so a shell on the host finds the unit's daemon; else
`<temp dir>/sqs-poller-<stem>-<hash of the config file's absolute path>.sock`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import select
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from poller.daemon.loops import survive
from poller.errors import EXIT_CONFIG, PollerError

TICK = 1.0  # the thread's longest wait: it samples what `status` reports and expires pauses
REQUEST_TIMEOUT = 2.0  # a client that sends nothing for this long is dropped
MAX_REQUEST = 65536


class ControlError(PollerError):
    """The daemon cannot be reached or refused the request; says why and what to do."""


class UnknownQueue(ControlError):
    exit_code = EXIT_CONFIG


def socket_path(config: Any, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if config.control.socket:
        return config.control.socket
    if runtime := env.get("RUNTIME_DIRECTORY", "").split(":")[0]:
        return os.path.join(runtime, "control.sock")
    source = os.path.abspath(config.source) if config.source else "poller.toml"
    stem = os.path.basename(source).removesuffix(".toml") or "poller"
    unit_dir = f"/run/sqs-poller-{stem}"
    if os.path.isdir(unit_dir):
        return os.path.join(unit_dir, "control.sock")
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(), f"sqs-poller-{stem[:40]}-{digest}.sock")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def who_may(owner: int) -> str:
    return f"only root or the daemon's user ({user_name(owner)}, uid {owner}) may; try sudo"


# --- the daemon's side ----------------------------------------------------------------------------


class ControlServer:
    """The supervisor's `control` thread: serves requests one at a time (each small, with a
    deadline) and, at least every TICK, runs `tick` (status sampling, pause expiry). It never
    runs user code."""

    def __init__(
        self,
        path: str,
        handle: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        tick: Callable[[], None],
        log: Any,
        count_error: Callable[[str], None] = lambda _: None,
    ):
        self.path = path
        self.handle = handle  # (request, who) -> reply
        self.tick = tick
        self.log = log
        self.count_error = count_error
        self.owner = os.geteuid()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sock = self._listen()
        self.thread = threading.Thread(target=self._run, name="control", daemon=True)

    def _listen(self) -> socket.socket:
        """Bind the socket 0600; a stale one (nothing listens) is replaced, a live one is not."""
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(1)
                probe.connect(self.path)
                raise OSError(errno.EADDRINUSE, f"another daemon listens on {self.path}")
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(self.path)
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        sock.listen(16)
        sock.setblocking(False)
        return sock

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"\0")
        self.thread.join(timeout=REQUEST_TIMEOUT + TICK)
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:  # ours, not a successor's
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        while not self._stop.is_set():
            survive(self._turn, self.log, self.count_error)

    def _turn(self) -> None:
        ready = select.select([self.sock, self._wake_r], [], [], TICK)[0]
        self.tick()
        if self.sock in ready:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(REQUEST_TIMEOUT)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        who = {"uid": uid, "pid": pid, "user": user_name(uid)}
        try:
            line = _read_line(conn)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except (OSError, ValueError) as exc:
            self._reply(conn, {"ok": False, "error": "bad_request", "message": str(exc)[:200]})
            return
        if uid not in (0, self.owner):
            self.log.warning("control_refused", command=request.get("command"), **who)
            message = f"uid {uid} ({who['user']}) may not control this daemon: {who_may(self.owner)}"
            self._reply(conn, {"ok": False, "error": "permission", "message": message})
            return
        self._reply(conn, self.handle(request, who))

    def _reply(self, conn: socket.socket, reply: Mapping[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass  # the client went away: nothing to tell


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


# --- the CLI's side -------------------------------------------------------------------------------


def request(path: str, payload: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the daemon listening on `path`; its reply. ControlError (exit 1)
    when no daemon listens or it refuses; UnknownQueue (exit 2) naming the queues it has."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise ControlError(
                f"no sqs-poller daemon is running for this config: {path} does not exist "
                "(is the service started? systemctl status sqs-poller@NAME)"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(
                f"no sqs-poller daemon is running for this config: nothing listens on {path}"
            ) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: {who_may(_owner(path))}") from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise ControlError(f"the daemon on {path} did not answer within {timeout:g}s") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise ControlError(f"the daemon on {path} closed the connection without an answer") from None
    if reply.get("error") == "unknown_queue":
        names = ", ".join(reply.get("queues", []))
        raise UnknownQueue(f"the daemon has no queue named {reply.get('queue')!r}; its queues: {names}")
    if not reply.get("ok"):
        raise ControlError(reply.get("message") or f"the daemon refused: {reply.get('error')}")
    return reply


def _owner(path: str) -> int:
    """Who owns the socket (or, when it cannot be seen, its directory)."""
    for candidate in (path, os.path.dirname(path)):
        try:
            return os.stat(candidate).st_uid
        except OSError:
            continue
    return 0
