"""The worker's three hot SQS calls (ReceiveMessage, DeleteMessageBatch,
ChangeMessageVisibilityBatch) sent straight over SQS's JSON protocol, on a botocore client's own
endpoint, signer, credentials and HTTP session, without botocore's generic per-call work (event
emission, endpoint rules, the shape-walking serializer and parser). That work is about a quarter
of each call's CPU, and a worker makes two of these calls for every ten messages
(`python -m bench.wire`).

What the calls send and return is what the client's own methods send and return: the same
body, headers and signature (SigV4 by the client's signer, which refreshes its credentials); the
reply's JSON as botocore shapes it (binary attribute values decoded to bytes); an error parsed by
the client's own parser and raised as botocore raises it (`ClientError`), and network errors
raised by its HTTP session (`BotoCoreError`s). A client this cannot mirror (another protocol, an
endpoint with headers or an auth scheme other than SigV4 for its own region) is used as it is:
`Wire.of` returns None.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

HOT = ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")


class Wire:
    def __init__(self, client: Any, url: str, headers: dict[str, str]):
        self._signer = client._request_signer
        self._session = client._endpoint.http_session
        self._parser = client._response_parser
        self._model = client.meta.service_model
        self._url = url
        self._headers = headers
        self._prefix = self._model.metadata.get("targetPrefix", "AmazonSQS")

    @classmethod
    def of(cls, client: Any) -> Wire | None:
        """A Wire on `client`, or None where it cannot send exactly what the client would."""
        try:
            model = client.meta.service_model
            if model.service_name != "sqs" or model.protocol != "json":
                return None
            signer = client._request_signer
            if signer.signature_version not in ("v4", "s3v4"):  # (UNSIGNED, or a custom one)
                return None
            endpoint = client._ruleset_resolver.construct_endpoint(model.operation_model(HOT[0]), {}, {})
            for scheme in endpoint.properties.get("authSchemes", []):
                if scheme.get("name") != "sigv4" or scheme.get("signingRegion", signer.region_name) != (
                    signer.region_name
                ):
                    return None
            if endpoint.headers or not client._endpoint.http_session:
                return None
            headers = {"Content-Type": f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}"}
            if "awsQueryCompatible" in model.metadata:
                headers["x-amzn-query-mode"] = "true"
            creator = getattr(client, "_user_agent_creator", None)
            if creator is not None:
                headers["User-Agent"] = creator.to_string()
            return cls(client, endpoint.url, headers)
        except Exception:  # noqa: BLE001 - anything unexpected in botocore: use the client as it is
            return None

    # --- the client's methods, for these three calls --------------------------------------------

    def receive_message(self, **params: Any) -> dict[str, Any]:
        reply = self._call("ReceiveMessage", params)
        for message in reply.get("Messages", ()):
            for attribute in message.get("MessageAttributes", {}).values():
                if "BinaryValue" in attribute:
                    attribute["BinaryValue"] = base64.b64decode(attribute["BinaryValue"])
                if values := attribute.get("BinaryListValues"):
                    attribute["BinaryListValues"] = [base64.b64decode(v) for v in values]
        return reply

    def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        return self._call("DeleteMessageBatch", params)

    def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        return self._call("ChangeMessageVisibilityBatch", params)

    def _call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        request = AWSRequest(
            "POST",
            self._url,
            data=json.dumps(params).encode(),
            headers={**self._headers, "X-Amz-Target": f"{self._prefix}.{action}"},
        )
        self._signer.sign(action, request)
        response = self._session.send(request.prepare())
        if response.status_code >= 300:
            parsed = self._parser.parse(
                {"status_code": response.status_code, "headers": response.headers, "body": response.content},
                self._model.operation_model(action).output_shape,
            )
            raise ClientError(parsed, action)
        return json.loads(response.content) if response.content else {}
