"""Settings: every source, every precedence rule, and the error messages users see."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pytest

from exporter import config


def load(argv: Sequence[str] = (), environ: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), environ or {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15), ("5m", 300), ("24h", 86400), ("1h30m", 5400), ("2.5", 2.5), ("1d", 86400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "15x", "-1s", "s", "1h-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(text)


def test_defaults_match_the_contract() -> None:
    s = load()
    assert (s.letta_url, s.listen_address, s.poll_interval, s.state_path) == (
        "http://localhost:8283",
        "0.0.0.0:9813",
        15.0,
        "letta-exporter-state.db",
    )
    assert (s.backfill, s.stuck_after, s.expire_after, s.step_timings) == (0.0, 900.0, 86400.0, True)
    assert (s.log_level, s.log_format, s.letta_api_key) == ("info", "auto", None)


def test_the_documented_command_line_works_exactly_like_that() -> None:
    s = load(["--letta-url", "http://127.0.0.1:8283", "--poll-interval", "1s", "--state-path", ":memory:"])
    assert (s.letta_url, s.poll_interval, s.state_path) == ("http://127.0.0.1:8283", 1.0, ":memory:")


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("poll_interval: 7s\nstuck-after: 1m\nletta_url: http://file:1\nstep_timings: false\n")
    env = {"LETTA_EXPORTER_POLL_INTERVAL": "9s", "LETTA_EXPORTER_CONFIG": str(path), "LETTA_BASE_URL": "http://sdk:2"}
    s = load(["--poll-interval", "3s"], env)
    assert (s.poll_interval, s.stuck_after, s.letta_url, s.step_timings) == (3.0, 60.0, "http://sdk:2", False)
    assert load([], env).poll_interval == 9.0
    assert load(["--config", str(path)]).poll_interval == 7.0
    assert load(["--no-step-timings"]).step_timings is False
    assert load([], {"LETTA_EXPORTER_LETTA_URL": "http://mine:3", "LETTA_BASE_URL": "http://sdk:2"}).letta_url == (
        "http://mine:3"
    )


def test_sdk_api_key_variable_is_honoured_and_never_shown() -> None:
    s = load([], {"LETTA_API_KEY": "sk-let-secret"})
    assert s.letta_api_key == "sk-let-secret"
    assert "sk-let-secret" not in repr(s) and "<hidden>" in repr(s)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--poll-interval", "soon"], {}, "--poll-interval (from --poll-interval): 'soon' is not a duration"),
        ([], {"LETTA_EXPORTER_POLL_INTERVAL": "0s"}, "--poll-interval (from LETTA_EXPORTER_POLL_INTERVAL)"),
        (
            ["--letta-url", "localhost:8283"],
            {},
            "--letta-url (from --letta-url): 'localhost:8283' is not an http(s) URL",
        ),
        (["--listen-address", "9813"], {}, "--listen-address"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--stuck-after", "2h", "--expire-after", "1h"], {}, "--expire-after must be longer than --stuck-after"),
        (["--page-size", "5000"], {}, "at most 1000"),
        (["--max-concurrency", "0"], {}, "--max-concurrency"),
        ([], {"LETTA_EXPORTER_STEP_TIMINGS": "maybe"}, "--step-timings"),
    ],
)
def test_invalid_settings_name_the_setting_and_its_source(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(config.ConfigError) as caught:
        load(argv, environ)
    assert message in str(caught.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        load(["--config", str(tmp_path / "missing.yml")])
    bad = tmp_path / "bad.yml"
    bad.write_text("poll_interval: [1\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        load(["--config", str(bad)])
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("poll_intervall: 5s\n")
    with pytest.raises(config.ConfigError, match="unknown settings: poll_intervall"):
        load(["--config", str(unknown)])
    listed = tmp_path / "list.yml"
    listed.write_text("- a\n")
    with pytest.raises(config.ConfigError, match="mapping"):
        load(["--config", str(listed)])


def test_reference_table_lists_every_option() -> None:
    table = config.reference_table()
    for option in config.OPTIONS:
        assert f"`{option.flag}`" in table and f"`{option.env}`" in table


def test_the_agent_allowlist_is_a_comma_list_or_a_yaml_list(tmp_path: Path) -> None:
    assert config.load(environ={"LETTA_EXPORTER_AGENT_ALLOWLIST": "agent-1, support-bot,,agent-1"}).agent_allowlist == (
        "agent-1",
        "support-bot",
    )
    path = tmp_path / "settings.yaml"
    path.write_text("agent_allowlist: [agent-1, support-bot]\nagent_labels: true\n")
    settings = config.load(environ={"LETTA_EXPORTER_CONFIG": str(path)})
    assert settings.agent_allowlist == ("agent-1", "support-bot") and settings.agent_labels
    assert config.load(environ={}).agent_allowlist == () and config.load(environ={}).cost
