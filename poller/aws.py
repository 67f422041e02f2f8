"""AWS clients, made the same way everywhere: one botocore session per process, bounded
timeouts, one request per attempt counted as such."""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()  # botocore sessions are not thread-safe: clients are made one at a time
_session: tuple[int, Any] | None = None  # (pid, session): a child process makes its own

# Every service sqs-poller makes a client for, and those botocore's credential providers use
# (role assumption, SSO). A process keeps the endpoint data of these only (see `session`).
SERVICES = frozenset(
    {"sqs", "s3", "kms", "secretsmanager", "ssm", "dynamodb", "autoscaling", "sts", "sso", "sso-oidc"}
)


def session() -> Any:
    """This process's botocore session (made here: never inherited from another process). Its
    loader caches the endpoint and partition data every client needs: loaded once, not per client,
    and kept for `SERVICES` only: botocore's endpoints.json describes every AWS service, 7 MB of
    Python objects for ten entries (4 MB less resident per worker; bench/README.md)."""
    global _session
    import botocore.session

    if _session is None or _session[0] != os.getpid():
        made = botocore.session.get_session()
        # the paths botocore's own loader would search (create_loader's reading of data_path)
        paths = (made.get_config_variable("data_path") or "").split(os.pathsep)
        extra = [os.path.expanduser(os.path.expandvars(p)) for p in paths if p] or None
        made.register_component("data_loader", _services_loader(SERVICES, extra))
        _session = (os.getpid(), made)
    return _session[1]


def _services_loader(services: frozenset[str], extra_search_paths: list[str] | None) -> Any:
    """botocore's data loader for `services` only (classes made here: botocore loads lazily)."""
    import botocore.loaders

    class EndpointsOf(botocore.loaders.JSONFileLoader):
        """botocore's JSON file loader; the endpoint data it returns lists `services` only."""

        def load_file(self, file_path: str) -> Any:
            data = super().load_file(file_path)
            if os.path.basename(file_path) == "endpoints" and isinstance(data, dict):
                for partition in data.get("partitions", ()):
                    known = partition.get("services", {})
                    partition["services"] = {name: known[name] for name in services if name in known}
            return data

    class ServicesLoader(botocore.loaders.Loader):
        """botocore's loader, knowing `services` only: it does not list the ~400 directories of
        every service's data to check that SQS exists (about 20 ms a process start)."""

        def list_available_services(self, type_name: str) -> list[str]:
            found = set()
            for root in self.search_paths:
                for name in services:
                    folder = os.path.join(root, name)
                    if os.path.isdir(folder) and any(
                        self.file_loader.exists(os.path.join(folder, version, type_name))
                        for version in os.listdir(folder)
                    ):
                        found.add(name)
            return sorted(found)

    return ServicesLoader(extra_search_paths=extra_search_paths, file_loader=EndpointsOf())


def aws_client(
    service: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 10,
    attempts: int = 3,
    pool_size: int = 10,
    validate: bool = True,
    lean: bool = False,
) -> Any:
    """A client on this process's botocore session: create it in the process that uses it.
    (botocore directly: boto3 adds nothing to a low-level client but s3transfer's imports.)
    `lean`: without the event handlers that do nothing for this service (see `drop_idle_handlers`)."""
    from botocore.config import Config

    if service not in SERVICES:
        raise ValueError(f"aws_client({service!r}): add {service!r} to poller.aws.SERVICES")
    # One attempt needs no retry machinery: legacy mode registers a single handler, dropped below.
    mode = "legacy" if lean and attempts == 1 else "standard"
    with _lock:
        client = session().create_client(
            service,
            region_name=region or None,
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # total_max_attempts counts the first try: attempts=1 is one request, no retry
                retries={"mode": mode, "total_max_attempts": attempts},
                parameter_validation=validate,
                max_pool_connections=max(pool_size, 10),
                tcp_keepalive=True,
            ),
        )
    return drop_idle_handlers(client) if lean else client


def drop_idle_handlers(client: Any) -> Any:
    """Unregister the botocore handlers that cannot change this client's requests (each costs
    5-40 us a call; together about 0.15 ms of each SQS call's ~2 ms): idempotency tokens and
    checksum validation modes its operations do not have, the API-version header of endpoint
    discovery it does not use, Lambda's recursion-detection header outside Lambda, the retry
    decision and retry headers of a one-attempt client, and the User-Agent rebuilt after signing
    (the header keeps botocore's value from before). Error parsing and signing stay."""
    from botocore import handlers

    events, model = client.meta.events, client.meta.service_model
    service = model.service_id.hyphenize()
    operations = [model.operation_model(name) for name in model.operation_names]
    if not any(op.idempotent_members for op in operations):
        events.unregister("before-parameter-build", handlers.generate_idempotent_uuid)
    if not any((op.http_checksum or {}).get("requestValidationModeMember") for op in operations):
        events.unregister("before-parameter-build", handlers._handle_request_validation_mode_member)
    if not any(op.is_endpoint_discovery_operation for op in operations):
        events.unregister("before-call", handlers.inject_api_version_header_if_needed)
    if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
        events.unregister("before-call", handlers.add_recursion_detection_header)
    retries = client.meta.config.retries or {}
    if retries.get("mode") == "legacy" and retries.get("total_max_attempts") == 1:
        events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
        events.unregister("request-created", handlers.add_retry_headers)
    user_agent = getattr(client, "_user_agent_creator", None)  # skipped if botocore renames it
    if user_agent is not None:
        events.unregister(f"request-created.{service}", user_agent.rebuild_and_replace_user_agent_handler)
    return client


def default_region() -> str | None:
    """The region the AWS SDK resolves (AWS_REGION, AWS_DEFAULT_REGION, the config file)."""
    with _lock:
        return session().get_config_variable("region")
