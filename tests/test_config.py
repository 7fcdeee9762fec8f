from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.service.offer import build_offer
from tests.conftest import REPO


def test_defaults_are_the_embedded_ones() -> None:
    config = load_config(env={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.database_url == "sqlite:///var/gateway.db"
    assert config.platforms == "sandbox"
    assert config.services["whatsapp"].e2ee == "required"
    assert config.services["messenger"].e2ee == "required"
    assert config.services["instagram"].e2ee == "optional"


def test_toml_is_read_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        'data_dir = "/srv/gw"\n[server]\nport = 9000\nhost = "0.0.0.0"\n'
        '[services.instagram]\ne2ee = "required"\n'
    )
    config = load_config(path, env={"GATEWAY_PORT": "9100", "GATEWAY_STORAGE__POOL_SIZE": "3"})
    assert config.server.port == 9100
    assert config.server.host == "0.0.0.0"
    assert config.storage.pool_size == 3
    assert config.data_dir == "/srv/gw"
    assert config.services["instagram"].e2ee == "required"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GATEWAY_PORT": "eighty"}, "server.port"),
        ({"GATEWAY_PORT": "70000"}, "server.port"),
        ({"GATEWAY_PLATFORMS": "carrier-pigeon"}, "platforms"),
        ({"GATEWAY_SERVER__NOPE": "1"}, "server.nope"),
        ({"GATEWAY_DATABASE_URL": "mysql://x"}, "storage.database_url"),
        ({"GATEWAY_PUBLIC_URL": "ftp://x"}, "server.public_url"),
        ({"GATEWAY_STORAGE__GROUP_COMMIT_MAX": "0"}, "storage.group_commit_max"),
        ({"GATEWAY_REPLICA_ID": "r1\n"}, "server.replica_id"),
        ({"GATEWAY_AUDIT__CHAIN_ID": "main\n"}, "audit.chain_id"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert caught.value.key == key


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", env={})


def test_serve_with_a_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={
            "GATEWAY_PORT": "eighty",
            "GATEWAY_DATA_DIR": str(tmp_path),
            "PATH": "",
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.port" in lines[0]
    assert not (tmp_path / "gateway.db").exists()


def test_auth_and_limits_sections() -> None:
    from gateway.config import BucketConfig

    config = load_config(env={})
    assert config.auth.access_token_ttl_s == 600
    assert config.auth.assertion_max_lifetime_s == 300
    assert config.limits.enabled is True
    env = {"GATEWAY_LIMITS__MESSAGES__RATE_PER_S": "2", "GATEWAY_LIMITS__MESSAGES__BURST": "5"}
    assert load_config(env=env).limits.messages == BucketConfig(rate_per_s=2.0, burst=5)
    # One key of a bucket keeps the other one's default.
    burst_only = load_config(env={"GATEWAY_LIMITS__MESSAGES__BURST": "5"}).limits.messages
    assert burst_only == BucketConfig(rate_per_s=50.0, burst=5)
    with pytest.raises(ConfigError) as caught:
        load_config(env={"GATEWAY_AUTH__ACCESS_TOKEN_TTL_S": "0"})
    assert caught.value.key == "auth.access_token_ttl_s"


def test_one_key_of_a_service_keeps_the_other_services_and_functionalities() -> None:
    defaults = load_config(env={})
    config = load_config(env={"GATEWAY_SERVICES__INSTAGRAM__E2EE": "required"})
    assert config.services["instagram"].e2ee == "required"
    assert config.services["instagram"].functionalities == (
        defaults.services["instagram"].functionalities
    )
    assert config.services["instagram"].functionalities["text"].state == "available"
    assert config.services["whatsapp"] == defaults.services["whatsapp"]
    assert config.services["messenger"] == defaults.services["messenger"]


def test_toml_and_environment_merge_onto_the_defaults_together(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        "[services.whatsapp]\nenabled = false\n"
        '[services.instagram.functionalities.voice_calls]\nstate = "available"\n'
        "[limits.intake]\nburst = 9\n"
        "[relay]\nconcurrency = 4\n"
    )
    env = {
        "GATEWAY_SERVICES__INSTAGRAM__E2EE": "required",
        "GATEWAY_LIMITS__INTAKE__RATE_PER_S": "0.5",
        "GATEWAY_RELAY__MAX_ATTEMPTS": "3",
    }
    defaults = load_config(env={})
    config = load_config(path, env=env)
    assert config.services["whatsapp"].enabled is False
    assert (
        config.services["whatsapp"].functionalities
        == defaults.services["whatsapp"].functionalities
    )
    instagram = config.services["instagram"]
    assert instagram.e2ee == "required"
    assert instagram.functionalities["voice_calls"].state == "available"
    # The functionality's other key, and the other functionalities, keep their defaults.
    assert instagram.functionalities["voice_calls"].planned_for == "2028-03-01"
    assert instagram.functionalities["video_calls"].state == "planned"
    assert config.limits.intake.burst == 9
    assert config.limits.intake.rate_per_s == 0.5
    assert config.limits.token == defaults.limits.token
    assert (config.relay.concurrency, config.relay.max_attempts) == (4, 3)
    assert config.relay.lease_s == defaults.relay.lease_s
    assert config.services["messenger"] == defaults.services["messenger"]
    offered = build_offer(config, audit_public_key="k")["services"]["instagram"]
    assert offered["functionalities"]["voice_calls"] == {"state": "available"}


def test_an_unknown_service_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"GATEWAY_SERVICES__TELEGRAM__E2EE": "required"})
    assert caught.value.key == "services.telegram"
