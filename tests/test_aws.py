"""poller.aws: clients keep the endpoint data of the services sqs-poller uses only, and send
exactly the requests botocore's defaults would (URL, signing region and service)."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.config import Config

from poller import aws

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "us-iso-east-1"]
CALLS = {  # one cheap call per service, enough to build and sign a request
    "sqs": ("list_queues", {}),
    "s3": ("list_buckets", {}),
    "kms": ("list_keys", {}),
    "secretsmanager": ("list_secrets", {}),
    "ssm": ("describe_parameters", {}),
    "dynamodb": ("list_tables", {}),
    "autoscaling": ("describe_auto_scaling_groups", {}),
    "sts": ("get_caller_identity", {}),
    "sso": ("list_accounts", {"accessToken": "t"}),
    "sso-oidc": ("register_client", {"clientName": "c", "clientType": "public"}),
}


class Sent(Exception):
    pass


def request_of(client, operation: str, params: dict) -> tuple[str, str]:
    """The URL and the SigV4 credential scope (region/service) of the request the client sends."""

    def capture(request, **_):
        auth = request.headers.get("Authorization", b"")
        auth = auth.decode() if isinstance(auth, bytes) else auth
        scope = auth.split("Credential=")[1].split(",")[0].split("/", 2)[2] if "Credential=" in auth else ""
        raise Sent(request.url, scope)

    client.meta.events.register_first("before-send", capture)
    with pytest.raises(Sent) as sent:
        getattr(client, operation)(**params)
    return sent.value.args


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.parametrize("service", sorted(aws.SERVICES))
def test_requests_match_botocores_own_endpoint_data(service):
    # GIVEN a client from sqs-poller's session (endpoint data for its services only) and one from
    # a plain botocore session, in every partition, with and without FIPS endpoints
    plain = botocore.session.get_session()
    operation, params = CALLS[service]
    for region in REGIONS:
        for fips in (False, True):
            config = Config(use_fips_endpoint=fips, retries={"total_max_attempts": 1})
            try:
                expected = request_of(plain.create_client(service, region, config=config), operation, params)
            except Exception as exc:  # botocore itself cannot make it (e.g. no FIPS there)
                expected = type(exc).__name__
            try:
                ours = aws.session().create_client(service, region, config=config)
                got = request_of(ours, operation, params)
            except Exception as exc:
                got = type(exc).__name__
            # THEN both send the same request: same URL, same signing region and service
            assert got == expected, (service, region, fips)


def test_a_client_for_another_service_names_the_list_to_extend():
    with pytest.raises(ValueError, match=r"add 'ec2' to poller.aws.SERVICES"):
        aws.aws_client("ec2", "us-east-1")


def test_the_endpoint_data_is_kept_for_the_listed_services_only():
    loader = aws.session().get_component("data_loader")
    endpoints = loader.load_data("endpoints")
    kept = {name for partition in endpoints["partitions"] for name in partition["services"]}
    assert kept <= aws.SERVICES and "sqs" in kept
    assert {p["partition"] for p in endpoints["partitions"]} >= {"aws", "aws-cn", "aws-us-gov"}
