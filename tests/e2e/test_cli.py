"""The `failover` command line as a new user meets it: commands listed, `--config` anywhere, and every
user error one line naming what to fix, exit code 2 (configuration) or 1 (runtime), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cli import COMMANDS, main
from proxy.mock.settings import FAULTS

MALFORMED_URLS = [
    ("not-a-url", "no scheme"),
    ("postgresq://user@127.0.0.1/db", "scheme 'postgresq'"),
    ("postgresql://user@127.0.0.1:notaport/db", "Port could not be cast"),
    ("postgresql://[::1/db", "Invalid IPv6 URL"),
]
COMMANDS_WITH_A_DATABASE = [["migrate"], ["check"], ["explain", "gpt-4"], ["health", "--once"], ["serve"], ["sync"]]


def failover(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with no config and no data folder, and no database named in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "FAILOVER_CONFIG", "FAILOVER_DATA_DIR", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_failover_alone_lists_every_command() -> None:
    done = failover()
    assert done.returncode == 2
    for command in COMMANDS:
        assert f"\n    {command}" in done.stdout, command
    assert "Traceback" not in done.stdout + done.stderr


def test_config_is_accepted_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[providers]]\nslug = "solo"\nname = "Solo"\nbase_url = "http://127.0.0.1:9/v1"\nlisting = "none"\n'
                    '[[models]]\nmodel_id = "gpt-4"\noffers = [{ provider = "solo", provider_model_id = "solo/gpt-4" }]\n')
    assert main(["sync", "--dry-run", "--config", str(path)]) == 0
    assert "  solo/gpt-4 -> gpt-4  (static)" in capsys.readouterr().out
    missing = tmp_path / "missing.toml"
    for argv in (["check", "--config", str(missing)], ["--config", str(missing), "check"]):
        assert main(argv) == 2
        assert f"{missing}: config file not found" in capsys.readouterr().err


@pytest.mark.parametrize("case", MALFORMED_URLS, ids=lambda c: c[1])
@pytest.mark.parametrize("command", COMMANDS_WITH_A_DATABASE, ids=lambda c: c[0])
def test_a_malformed_database_url_is_one_configuration_line(
    case: tuple[str, str], command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, says = case
    config = tmp_path / "failover.toml"
    config.write_text("")
    monkeypatch.setenv("DATABASE_URL", url)
    assert main([*command, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("failover: configuration error: DATABASE_URL: "), err
    assert says in err[0]


def test_a_malformed_url_in_a_real_process_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresq://user:hunter2@db/catalog"}
    done = failover("migrate", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "DATABASE_URL" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_a_malformed_redis_url_is_one_configuration_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "failover.toml").write_text("")
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    assert main(["serve", "--config", str(tmp_path / "failover.toml")]) == 2
    assert "REDIS_URL: expected a URL starting with redis:// or rediss:// or unix://" in capsys.readouterr().err


def test_serve_on_a_busy_port_says_so_before_listening(busy_port: int, tmp_path: Path) -> None:
    (tmp_path / "failover.toml").write_text("")
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    done = failover("serve", "--port", str(busy_port), env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == (f"failover serve: cannot listen on 127.0.0.1:{busy_port}: the port is already in use "
                           "(stop what uses it, or pick another --port)\n")


def test_health_metrics_port_busy_is_one_line(busy_port: int, tmp_path: Path) -> None:
    (tmp_path / "failover.toml").write_text("")
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    done = failover("health", "--metrics-port", str(busy_port), env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"failover health: cannot listen on 0.0.0.0:{busy_port}: the port is already in use "
        "(stop what uses it, or pick another --metrics-port)"
    )
    assert "Traceback" not in done.stderr


def test_mock_provider_on_a_busy_port_is_one_line(busy_port: int) -> None:
    done = failover("mock-provider", "--port", str(busy_port))
    assert done.returncode == 1
    assert done.stderr == (f"failover mock-provider: cannot listen on 127.0.0.1:{busy_port}: the port is already "
                           "in use (stop what uses it, or pick another --port)\n")


@pytest.mark.parametrize("command", [["check"], ["explain", "gpt-4"]], ids=lambda c: c[0])
def test_read_only_commands_refuse_to_invent_an_empty_database(
    command: list[str], empty_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"no catalog to read: DATABASE_URL is unset and there is no embedded database in {empty_folder}" in err
    assert list(empty_folder.iterdir()) == []  # nothing created: no .failover, no pgdata


def test_an_unreadable_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "failover.toml"
    folder.mkdir()
    assert main(["--config", str(folder), "sync"]) == 2
    assert capsys.readouterr().err == f"failover: configuration error: {folder}: cannot read: Is a directory\n"


def test_mock_provider_help_explains_each_fault_and_the_control_endpoint() -> None:
    done = failover("mock-provider", "--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    described = {}
    for fault in FAULTS:
        found = [line for line in lines if line.startswith(f"  {fault} ")]
        assert found and len(found[0].split()) > 2, fault  # the name, then what it does
        described[fault] = found[0]
    assert "close the connection" in described["down"]
    assert "429" in described["rate_limit"] and "Retry-After" in described["rate_limit"]
    assert "--first-byte-ms" in described["slow_first_byte"]
    assert "[DONE]" in described["cut"] and "forever" in described["stall"]
    for endpoint in ("POST /_mock/faults", "DELETE /_mock/faults", "GET /_mock/stats"):
        assert endpoint in done.stdout
