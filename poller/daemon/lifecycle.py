"""Graceful scale-in: watch the instance's Auto Scaling target lifecycle state through IMDSv2;
on `Terminated`, drain as on SIGTERM, heartbeat the lifecycle action while draining, then
complete it with CONTINUE."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from poller.aws import aws_client
from poller.config import LifecycleConfig

TOKEN_TTL = 21600
STATE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"


class Imds:
    """A minimal IMDSv2 client: PUT a session token, then GET with it."""

    def __init__(self, base_url: str, timeout: float = 1.0):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._token = ""
        self._token_expires = 0.0

    def _fetch_token(self) -> str:
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        request = urllib.request.Request(
            self.base + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            self._token = response.read().decode()
        self._token_expires = time.monotonic() + TOKEN_TTL - 60
        return self._token

    def get(self, path: str) -> str:
        request = urllib.request.Request(
            self.base + path, headers={"X-aws-ec2-metadata-token": self._fetch_token()}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read().decode().strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # token expired early: fetch a new one next time
                self._token = ""
            raise

    def get_optional(self, path: str) -> str | None:
        """The value at path, or None while IMDS answers 404 (e.g. no Spot notice yet)."""
        try:
            return self.get(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


class LifecycleWatcher:
    def __init__(self, cfg: LifecycleConfig, log: Any, client: Any = None):
        self.cfg = cfg
        self.log = log
        self.imds = Imds(cfg.imds_url)
        self._client = client
        self._instance_id = ""
        self._terminating = False
        self._next_poll = 0.0
        self._last_heartbeat = 0.0
        self._errors = 0

    def client(self) -> Any:
        if self._client is None:
            region = self.imds.get("/latest/meta-data/placement/region")
            self._client = aws_client("autoscaling", region, self.cfg.endpoint_url)
        return self._client

    def instance_id(self) -> str:
        if not self._instance_id:
            self._instance_id = self.imds.get("/latest/meta-data/instance-id")
        return self._instance_id

    def terminating(self) -> bool:
        """True once the target lifecycle state is Terminated (checked every poll_seconds)."""
        if self._terminating or time.monotonic() < self._next_poll:
            return self._terminating
        self._next_poll = time.monotonic() + self.cfg.poll_seconds
        try:
            state = self.imds.get(STATE_PATH)
            self._errors = 0
        except (OSError, urllib.error.URLError) as exc:
            self._errors += 1
            if self._errors in (1, 10) or self._errors % 100 == 0:
                self.log.warning("lifecycle_state_unavailable", error=str(exc), failures=self._errors)
            return False
        if state == "Terminated":
            self._terminating = True
            self._last_heartbeat = time.monotonic()
        return self._terminating

    def _action(self) -> dict[str, str]:
        return {
            "LifecycleHookName": self.cfg.hook_name,
            "AutoScalingGroupName": self.cfg.asg_name,
            "InstanceId": self.instance_id(),
        }

    def heartbeat(self) -> None:
        """While a long drain runs, keep the lifecycle action from timing out."""
        if not self._terminating:
            return
        if time.monotonic() - self._last_heartbeat < self.cfg.heartbeat_seconds:
            return
        self._last_heartbeat = time.monotonic()
        try:
            self.client().record_lifecycle_action_heartbeat(**self._action())
            self.log.info("lifecycle_heartbeat_sent")
        except Exception as exc:  # a failed heartbeat must not stop the drain
            self.log.warning("lifecycle_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")

    def complete(self) -> bool:
        if not self._terminating:
            return False
        try:
            self.client().complete_lifecycle_action(LifecycleActionResult="CONTINUE", **self._action())
        except Exception as exc:  # the hook's own timeout then continues the termination
            self.log.error("lifecycle_complete_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        self.log.info("lifecycle_completed", instance_id=self.instance_id())
        return True
