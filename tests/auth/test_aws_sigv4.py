"""``aws_sigv4``: AWS's vectors, botocore as the reference, moto as the upstream."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from outpost.auth.aws_sigv4 import AwsSigV4Auth, canonical_query
from outpost.auth.base import AuthContext, CredentialError, resolve_auth_type
from outpost.http import OutgoingRequest
from tests.conftest import StartOutpost
from tests.support.outpost import free_port
from tests.support.upstream import RecordingUpstream

# The example credentials and time of AWS's Signature Version 4 test suite.
SUITE_KEY_ID = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_ENV = {"AWS_KEY_ID": SUITE_KEY_ID, "AWS_SECRET": SUITE_SECRET}


def build(env: dict[str, str] | None = None, **config: Any) -> AwsSigV4Auth:
    data = {
        "type": "aws_sigv4",
        "access_key_id_env": "AWS_KEY_ID",
        "secret_access_key_env": "AWS_SECRET",
        **config,
    }
    auth_class = resolve_auth_type("aws_sigv4")
    assert auth_class is AwsSigV4Auth
    module = AwsSigV4Auth(
        auth_class.config_model.model_validate(data), env or SUITE_ENV
    )
    module.clock = lambda: SUITE_TIME
    return module


def signature(request: OutgoingRequest) -> str:
    header = request.get_header("authorization")
    assert header is not None
    return header.rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
async def test_aws_suite_vectors(query: str, expected: str) -> None:
    # "get-vanilla" and "get-vanilla-query-order-key-case" of the AWS suite.
    auth = build(region="us-east-1", service="service")
    request = OutgoingRequest("GET", "/", query, host="example.amazonaws.com")

    await auth.apply(request, AuthContext("aws"))

    assert request.get_header("x-amz-date") == "20150830T123600Z"
    assert request.get_header("authorization") == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
        f"aws4_request, SignedHeaders=host;x-amz-date, Signature={expected}"
    )


def botocore_signature(request: OutgoingRequest, service: str, region: str) -> str:
    """Sign the request Outpost produced with botocore, as moto and AWS do."""
    headers = {
        name: value for name, value in request.headers if name != "authorization"
    }
    url = f"http://{request.host}{request.path}"
    if request.query:
        url += f"?{request.query}"
    aws_request = AWSRequest(request.method, url, headers=headers, data=request.body)
    aws_request.context["timestamp"] = headers["x-amz-date"]
    token = headers.get("x-amz-security-token")
    credentials = Credentials(SUITE_KEY_ID, SUITE_SECRET, token)
    auth_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = auth_class(credentials, service, region)
    canonical = signer.canonical_request(aws_request)
    result: str = signer.signature(
        signer.string_to_sign(aws_request, canonical), aws_request
    )
    return result


def agent_authorization(region: str, service: str) -> tuple[str, str]:
    return (
        "authorization",
        f"AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261204/{region}/{service}/"
        "aws4_request, SignedHeaders=host, Signature=00",
    )


CASES: list[dict[str, Any]] = [
    {
        "id": "s3-list-objects",
        "method": "GET",
        "path": "/my-bucket",
        "query": "list-type=2&prefix=a%2Fb%20c&delimiter=%2F&encoding-type=url",
        "scope": ("eu-west-1", "s3"),
    },
    {
        "id": "s3-put-streamed",
        "method": "PUT",
        "path": "/my-bucket/dir/k%20x.txt",
        "query": "",
        "scope": ("us-east-1", "s3"),
        "headers": [("content-type", "text/plain"), ("x-amz-meta-owner", " a   b ")],
        "agent": [
            ("content-length", "5"),
            (
                "x-amz-content-sha256",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
        ],
    },
    {
        "id": "s3-multipart-bare-key",
        "method": "POST",
        "path": "/my-bucket/big",
        "query": "uploads",
        "scope": ("us-east-1", "s3"),
    },
    {
        "id": "secretsmanager-json",
        "method": "POST",
        "path": "/",
        "query": "",
        "scope": ("eu-west-1", "secretsmanager"),
        "headers": [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "secretsmanager.GetSecretValue"),
        ],
        "body": b'{"SecretId": "db"}',
    },
    {
        "id": "api-gateway-double-encoded-path",
        "method": "GET",
        "path": "/prod/items/a%20b/%E2%82%AC",
        "query": "b=2&a=2&a=1&empty=&sp=x%20y",
        "scope": ("us-west-2", "execute-api"),
    },
]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
@pytest.mark.parametrize("session_token", [None, "FwoGZXIvYXdzEXAMPLE//token="])
async def test_signature_matches_botocore(
    case: dict[str, Any], session_token: str | None
) -> None:
    env = dict(SUITE_ENV)
    config: dict[str, Any] = {}
    if session_token is not None:
        env["AWS_TOKEN"] = session_token
        config["session_token_env"] = "AWS_TOKEN"
    auth = build(env, **config)
    region, service = case["scope"]
    request = OutgoingRequest(
        case["method"],
        case["path"],
        case["query"],
        headers=list(case.get("headers", [])),
        body=case.get("body"),
        host="127.0.0.1:9000",
        agent_headers=[agent_authorization(region, service), *case.get("agent", [])],
    )

    await auth.apply(request, AuthContext("aws"))

    assert signature(request) == botocore_signature(request, service, region)
    assert f"/{region}/{service}/aws4_request" in str(
        request.get_header("authorization")
    )
    assert request.get_header("x-amz-security-token") == session_token


async def test_s3_payload_hash_rules() -> None:
    auth = build(service="s3", region="us-east-1")
    hashed = "a" * 64

    async def payload_hash(agent: list[tuple[str, str]], body: bytes | None) -> str:
        request = OutgoingRequest(
            "PUT", "/b/k", "", body=body, host="h", agent_headers=agent
        )
        await auth.apply(request, AuthContext("aws"))
        value = request.get_header("x-amz-content-sha256")
        assert value is not None
        return value

    assert not auth.signs_body
    assert await payload_hash([], None) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert await payload_hash([("content-length", "9")], None) == "UNSIGNED-PAYLOAD"
    assert (
        await payload_hash(
            [("content-length", "9"), ("x-amz-content-sha256", hashed)], None
        )
        == hashed
    )
    trailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert await payload_hash([("x-amz-content-sha256", trailer)], None) == trailer
    with pytest.raises(CredentialError, match="chunk-signed"):
        await payload_hash(
            [("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")], None
        )


async def test_scope_missing_is_credential_error() -> None:
    auth = build()
    request = OutgoingRequest("GET", "/", "", host="h")

    with pytest.raises(CredentialError, match="no AWS region and service"):
        await auth.apply(request, AuthContext("aws"))


async def test_presigned_query_parameters_are_replaced() -> None:
    auth = build()
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDUMMY%2F20261204%2F"
        "eu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261204T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=00&versionId=3"
    )
    request = OutgoingRequest("GET", "/b/k", query, host="h")

    await auth.apply(request, AuthContext("aws"))

    assert request.query == "versionId=3"
    assert "/eu-west-1/s3/aws4_request" in str(request.get_header("authorization"))


def test_canonical_query_reencodes_uniformly() -> None:
    assert canonical_query("b=%7e&a=x+y&a=%41&c") == "a=A&a=x%2By&b=~&c="


# End to end: boto3 -> Outpost -> moto, with moto checking every signature.

MOTO_POLICY = (
    '{"Version": "2012-10-17", "Statement": '
    '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)


@pytest.fixture
def moto() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server with one IAM user; signature checks on after setup."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    setup = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }

    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="outpost")
    iam.put_user_policy(
        UserName="outpost", PolicyName="all", PolicyDocument=MOTO_POLICY
    )
    key = iam.create_access_key(UserName="outpost")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket="agent-data")
    secrets = boto3.client("secretsmanager", **{**setup, "region_name": "eu-west-1"})
    secrets.create_secret(Name="db-password", SecretString="hunter2-from-moto")

    _reset_auth(url, "0")
    try:
        yield (
            url,
            {
                "AWS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET": key["SecretAccessKey"],
            },
        )
    finally:
        # moto keeps its state and auth switch in module globals of this process.
        _moto_api(url, "reset-auth", "inf")
        _moto_api(url, "reset", "")
        server.stop()


def _reset_auth(url: str, count: str) -> None:
    _moto_api(url, "reset-auth", count)


def _moto_api(url: str, action: str, body: str) -> None:
    request = urllib.request.Request(
        f"{url}/moto-api/{action}",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def aws_provider(name: str, moto_url: str, **auth: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base_url": moto_url,
        "auth": {
            "type": "aws_sigv4",
            "access_key_id_env": "AWS_KEY_ID",
            "secret_access_key_env": "AWS_SECRET",
            **auth,
        },
        "forwarding": {"mode": "transparent", "treat_writes_as_sensitive": False},
    }


def agent_client(service: str, outpost_url: str, provider: str, region: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=f"{outpost_url}/p/{provider}",
        region_name=region,
        aws_access_key_id="AKIDUMMYAGENT",
        aws_secret_access_key="dummy-agent-secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_boto3_through_outpost_to_moto(
    start_outpost: StartOutpost, moto: tuple[str, dict[str, str]]
) -> None:
    moto_url, env = moto
    outpost = start_outpost(
        [
            aws_provider("aws-s3", moto_url, service="s3"),
            aws_provider("aws-secrets", moto_url),
        ],
        env=env,
    )
    s3 = agent_client("s3", outpost.url, "aws-s3", "us-east-1")
    secrets = agent_client("secretsmanager", outpost.url, "aws-secrets", "eu-west-1")

    s3.put_object(Bucket="agent-data", Key="notes/day 1.txt", Body=b"hello moto")
    body = s3.get_object(Bucket="agent-data", Key="notes/day 1.txt")["Body"].read()
    listed = s3.list_objects_v2(Bucket="agent-data", Prefix="notes/")
    secret = secrets.get_secret_value(SecretId="db-password")

    assert body == b"hello moto"
    assert [item["Key"] for item in listed["Contents"]] == ["notes/day 1.txt"]
    assert secret["SecretString"] == "hunter2-from-moto"
    output = outpost.output()
    assert env["AWS_SECRET"] not in output


def test_wrong_secret_passes_upstream_403(
    start_outpost: StartOutpost, moto: tuple[str, dict[str, str]]
) -> None:
    moto_url, env = moto
    outpost = start_outpost(
        [aws_provider("aws-s3", moto_url, service="s3")],
        env={**env, "AWS_SECRET": "not-the-right-secret-key"},
    )
    s3 = agent_client("s3", outpost.url, "aws-s3", "us-east-1")

    with pytest.raises(ClientError) as caught:
        s3.list_objects_v2(Bucket="agent-data")

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Error"]["Code"] == "SignatureDoesNotMatch"


def test_forwarded_request_has_one_signed_host(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = aws_provider("aws-s3", upstream.url, region="eu-west-1", service="s3")
    outpost = start_outpost([provider], env=SUITE_ENV)

    response = outpost.get(
        "/p/aws-s3/bucket/key?versionId=7",
        [
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDUMMY/x, Signature=1"),
            ("X-Amz-Date", "20000101T000000Z"),
            ("X-Amz-Security-Token", "agent-token"),
        ],
    )

    assert response.status == 200
    received = upstream.requests[0]
    assert received.header_values("host") == [f"127.0.0.1:{upstream.port}"]
    authorization = received.header("authorization")
    assert authorization is not None
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={SUITE_KEY_ID}/")
    assert "/eu-west-1/s3/aws4_request" in authorization
    assert received.header("x-amz-date") != "20000101T000000Z"
    assert received.header("x-amz-security-token") is None
    assert received.header("x-amz-content-sha256") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
