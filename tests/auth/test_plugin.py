"""``plugin``: loading classes, reporting bad ones, and the two shipped plugins."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
import pyotp
import pytest
import yaml

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    resolve_auth_type,
)
from outpost.auth.plugin import PluginAuth, load_plugin_class
from outpost.cli.main import main
from outpost.http import OutgoingRequest
from outpost.plugins.checksum import checksum
from outpost.plugins.expiry import lifetime_from_response
from tests.conftest import StartOutpost
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply


class StampConfig(AuthConfig):
    """Settings of the in-test plugin."""

    header: str = "X-Stamp"
    value: str
    mode: Literal["plain", "upper"] = "plain"


class StampPlugin(AuthModule):
    """A minimal plugin: one fixed header; rejects on 403 too."""

    config_model = StampConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, StampConfig)
        self.header = config.header.lower()
        self.value = config.value.upper() if config.mode == "upper" else config.value
        self.injected_headers = frozenset({self.header})
        self.closed = False

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        request.set_header(self.header, self.value)
        return AppliedCredential(None, self.value.encode())

    async def is_rejected(
        self, status: int, body: bytes | None, applied: AppliedCredential | None
    ) -> bool:
        return status == 403

    async def close(self) -> None:
        self.closed = True


class NotAModule:
    """Has an apply method but does not subclass AuthModule."""

    async def apply(self, request: OutgoingRequest, context: AuthContext) -> None:
        return None


class SyncApply(StampPlugin):
    def apply(  # type: ignore[override]
        self, request: OutgoingRequest, context: AuthContext
    ) -> None:
        return None


def build(module: str, config: dict[str, Any], **extra: Any) -> PluginAuth:
    auth_class = resolve_auth_type("plugin")
    assert auth_class is PluginAuth
    data = {"type": "plugin", "module": module, "config": config, **extra}
    return PluginAuth(auth_class.config_model.model_validate(data), {})


async def test_plugin_calls_are_delegated() -> None:
    auth = build(
        "tests.auth.test_plugin:StampPlugin",
        {"value": "abc", "mode": "upper"},
        invalidate_on=[401, 403],
    )
    request = OutgoingRequest("GET", "/", "")

    applied = await auth.apply(request, AuthContext("stamp"))

    assert request.get_header("x-stamp") == "ABC"
    assert applied == AppliedCredential(None, b"ABC")
    assert auth.injected_headers == {"x-stamp"}
    assert auth.invalidate_on == {401, 403}
    assert await auth.is_rejected(403, None, applied)
    assert not await auth.is_rejected(401, None, applied)
    await auth.close()
    assert isinstance(auth.plugin, StampPlugin)
    assert auth.plugin.closed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.auth.test_plugin", "must look like 'package.module:ClassName'"),
        ("no_such_package.auth:Thing", "'no_such_package.auth' cannot be imported"),
        ("tests.auth.test_plugin:Missing", "has no class 'Missing'"),
        ("tests.auth.test_plugin:NotAModule", "is not a subclass of"),
        ("tests.auth.test_plugin:SyncApply", "with 'async def'"),
        ("outpost.auth.minting:MintingAuth", "does not implement"),
    ],
)
def test_bad_plugin_classes_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_plugin_class(spec)


def test_invalid_plugin_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"config\.value: Field required"):
        build("tests.auth.test_plugin:StampPlugin", {"mode": "plain"})
    with pytest.raises(ValueError, match=r"config\.colour: Extra inputs"):
        build("tests.auth.test_plugin:StampPlugin", {"value": "a", "colour": "red"})


def write_provider(directory: Path, auth: dict[str, Any]) -> Path:
    directory.mkdir(exist_ok=True)
    provider = {"name": "vendor", "base_url": "http://127.0.0.1:9", "auth": auth}
    (directory / "vendor.yaml").write_text(yaml.safe_dump(provider, sort_keys=False))
    return directory


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("acme_missing.auth:TokenAuth", "plugin module 'acme_missing.auth' cannot"),
        ("outpost.plugins.totp:NoSuchClass", "'outpost.plugins.totp' has no class"),
        ("collections:OrderedDict", "'collections:OrderedDict' is not a subclass"),
    ],
)
def test_check_reports_broken_plugin(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    module: str,
    message: str,
) -> None:
    directory = write_provider(
        tmp_path / "providers", {"type": "plugin", "module": module}
    )

    code = main(["check", "--providers", str(directory)])

    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "vendor.yaml" in captured.err
    assert "auth.module" in captured.err


def test_check_reports_invalid_plugin_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = {
        "type": "plugin",
        "module": "outpost.plugins.checksum:ChecksumTokenAuth",
        "config": {"app_key_env": "K", "secret_env": "S"},
    }
    directory = write_provider(tmp_path / "providers", auth)

    code = main(["check", "--providers", str(directory)])

    captured = capsys.readouterr()
    assert code == 2
    assert "'outpost.plugins.checksum:ChecksumTokenAuth'" in captured.err
    assert "config.mint_url: Field required" in captured.err


def test_lifetime_from_response_formats() -> None:
    now = 1_700_000_000.0
    assert lifetime_from_response({"expires_in": 60}, "e", now) == 60
    assert lifetime_from_response({"expires_at": now + 30}, "e", now) == 30
    assert lifetime_from_response({"expires_at": (now + 30) * 1000}, "e", now) == 30
    iso = "2023-11-14T22:14:20Z"
    assert lifetime_from_response({"expires_at": iso}, "e", now) == 60
    assert lifetime_from_response({}, "e", now) is None


# End to end: both shipped plugins against local mint endpoints.

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TOTP_ENV = {
    "BROKER_USER": "trader-7",
    "BROKER_PASSWORD": "pw_TEST_broker_91",
    "BROKER_TOTP": TOTP_SECRET,
}


class TotpLogin:
    """A broker login endpoint that checks the TOTP code it receives."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.logins: list[dict[str, Any]] = []
        self.server = RecordingUpstream(self._handle)

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        login = orjson.loads(request.body)
        self.logins.append(login)
        valid = (
            login.get("user") == "trader-7"
            and login.get("password") == "pw_TEST_broker_91"
            and pyotp.TOTP(TOTP_SECRET).verify(login.get("totp", ""), valid_window=1)
        )
        if not valid:
            return Reply(status=401, body=b'{"error":"bad login"}')
        token = f"sess_daily{len(self.issued) + 1}_k3"
        self.issued.append(token)
        return Reply(body=orjson.dumps({"token": token, "expires_in": 86400}))


def test_totp_plugin_end_to_end(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    login = TotpLogin()
    provider = {
        "name": "broker",
        "base_url": upstream.url,
        "auth": {
            "type": "plugin",
            "module": "outpost.plugins.totp:TotpTokenAuth",
            "config": {
                "mint_url": login.server.url + "/session/login",
                "user_env": "BROKER_USER",
                "password_env": "BROKER_PASSWORD",
                "totp_secret_env": "BROKER_TOTP",
                "header": "X-Session-Token",
                "prefix": "",
            },
        },
    }
    outpost = start_outpost([provider], env=TOTP_ENV, workers=2)

    statuses = [outpost.get("/p/broker/portfolio").status for _ in range(4)]

    assert statuses == [200] * 4, outpost.output()[-3000:]
    assert login.server.count == 1
    assert login.server.requests[0].path == "/session/login"
    assert {r.header("x-session-token") for r in upstream.requests} == {
        "sess_daily1_k3"
    }
    output = outpost.output()
    for secret in [*TOTP_ENV.values(), "sess_daily1_k3"]:
        assert secret not in output
    login.server.close()


CHECKSUM_ENV = {"VENDOR_APP_KEY": "app_TEST_4417", "VENDOR_SECRET": "sec_TEST_c0ffee"}


class ChecksumMint:
    """A mint path that checks SHA-256(secret + timestamp) and a fresh timestamp."""

    def __init__(self, lifetime_ms: int) -> None:
        self.lifetime_ms = lifetime_ms
        self.issued: list[str] = []
        self.server = RecordingUpstream(self._handle)

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        sent = orjson.loads(request.body)
        timestamp = str(sent.get("timestamp", ""))
        fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 5000
        expected = checksum(CHECKSUM_ENV["VENDOR_SECRET"], timestamp)
        if not fresh or sent.get("checksum") != expected:
            return Reply(status=403, body=b'{"error":"checksum mismatch"}')
        if sent.get("app_key") != CHECKSUM_ENV["VENDOR_APP_KEY"]:
            return Reply(status=403, body=b'{"error":"unknown app"}')
        token = f"vtok{len(self.issued) + 1}_z9"
        self.issued.append(token)
        expires_at = int(time.time() * 1000) + self.lifetime_ms
        return Reply(body=orjson.dumps({"token": token, "expires_at": expires_at}))


def test_checksum_plugin_end_to_end(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    mint = ChecksumMint(lifetime_ms=1500)
    provider = {
        "name": "vendor",
        "base_url": upstream.url,
        "auth": {
            "type": "plugin",
            "module": "outpost.plugins.checksum:ChecksumTokenAuth",
            "config": {
                "mint_url": mint.server.url + "/v1/token/mint",
                "app_key_env": "VENDOR_APP_KEY",
                "secret_env": "VENDOR_SECRET",
            },
        },
    }
    outpost = start_outpost([provider], env=CHECKSUM_ENV)

    assert outpost.get("/p/vendor/orders").status == 200
    assert outpost.get("/p/vendor/orders").status == 200
    assert mint.server.count == 1
    time.sleep(1.5)
    assert outpost.get("/p/vendor/orders").status == 200

    assert mint.server.count == 2
    tokens = [r.header("authorization") for r in upstream.requests]
    assert tokens == ["Bearer vtok1_z9", "Bearer vtok1_z9", "Bearer vtok2_z9"]
    sent = orjson.loads(mint.server.requests[0].body)
    assert len(sent["checksum"]) == 64
    output = outpost.output()
    assert CHECKSUM_ENV["VENDOR_SECRET"] not in output
    assert "vtok1_z9" not in output
    mint.server.close()


def test_checksum_is_sha256_of_secret_then_timestamp() -> None:
    assert (
        checksum("s3cret", "1700000000000")
        == hashlib.sha256(b"s3cret1700000000000").hexdigest()
    )


def worked_example_source() -> str:
    text = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    section = text.split("## Worked example", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_documented_worked_example_signs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "acme_outpost"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "auth.py").write_text(worked_example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    auth_class = resolve_auth_type("plugin")
    assert auth_class is PluginAuth
    config = auth_class.config_model.model_validate(
        {
            "type": "plugin",
            "module": "acme_outpost.auth:AcmeAuth",
            "config": {"key_env": "ACME_KEY", "secret_env": "ACME_SECRET"},
        }
    )
    auth = PluginAuth(config, {"ACME_KEY": "key-1", "ACME_SECRET": "secret-1"})
    request = OutgoingRequest("GET", "/v2/orders", "limit=5")

    await auth.apply(request, AuthContext("acme"))

    now = request.get_header("x-acme-time")
    assert now is not None
    message = f"GET\n/v2/orders?limit=5\n{now}".encode()
    expected = hmac.new(b"secret-1", message, hashlib.sha256).hexdigest()
    assert request.get_header("x-acme-sign") == expected
    assert request.get_header("x-acme-key") == "key-1"
    assert auth.injected_headers == {"x-acme-key", "x-acme-time", "x-acme-sign"}
