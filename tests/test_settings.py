from pathlib import Path

import pytest

from jobs.errors import SettingsError
from jobs.settings import Secret, load_settings


def test_defaults_serve_the_local_stack():
    settings = load_settings(env={})
    assert settings.api_port == 8000
    assert settings.redis_url.startswith("redis://127.0.0.1:")
    assert settings.case == "camel"


def test_env_overrides_toml_and_explicit_overrides_env(tmp_path: Path):
    config = tmp_path / "abaco.toml"
    config.write_text('[abaco]\napi_port = 9100\ns3_bucket = "from-toml"\ncase = "snake"\n')
    env = {"ABACO_CONFIG_FILE": str(config), "ABACO_API_PORT": "9200"}
    settings = load_settings(env=env)
    assert settings.api_port == 9200
    assert settings.s3_bucket == "from-toml"
    assert settings.case == "snake"
    assert load_settings(env=env, api_port=9300).api_port == 9300


@pytest.mark.parametrize("env, named", [
    ({"ABACO_CASE": "kebab"}, "case"),
    ({"ABACO_API_PORT": "eighty"}, "api_port"),
    ({"ABACO_HEARTBEAT_TTL_S": "-1"}, "heartbeat_ttl_s"),
    ({"ABACO_API_HOST": "0.0.0.0"}, "api_host"),
    ({"ABACO_LOG_CACHE_BYTES": "-1"}, "log_cache_bytes"),
])
def test_invalid_settings_fail_naming_the_setting(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


def test_unknown_toml_setting_is_refused(tmp_path: Path):
    config = tmp_path / "abaco.toml"
    config.write_text("redis_ulr = 'x'\n")
    with pytest.raises(SettingsError, match="redis_ulr"):
        load_settings(env={"ABACO_CONFIG_FILE": str(config)})


def test_secrets_are_masked_in_reprs_but_passed_to_children():
    settings = load_settings(env={"ABACO_REDIS_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert isinstance(settings.redis_password, Secret)
    assert settings.as_env()["ABACO_REDIS_PASSWORD"] == "hunter2"
    assert load_settings(env=settings.as_env()) == settings


@pytest.mark.parametrize("name, value", [
    ("user_max_workers", -1), ("actor_mem_max", "lots"), ("actor_mem_default", "0"),
    ("message_env_allow", "("), ("actor_user", "root"), ("mount_allow", "relative/path"),
    ("actor_cpus_max", 0),
])
def test_security_settings_are_checked_at_start(name: str, value: object):
    with pytest.raises(SettingsError, match=name):
        load_settings(env={}, **{name: value})


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:8123"),
                                           ("::1", "http://[::1]:8123")])
def test_the_api_url_takes_an_ipv6_host_in_brackets(host: str, url: str):
    settings = load_settings(env={}, api_host=host, api_port=8123)
    assert settings.api_url == url
    assert settings.api_authority == url.removeprefix("http://")
