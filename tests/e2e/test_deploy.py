"""The deployment, checked without a Docker engine: docker-compose.yml against the compose
specification's schema, every `failover` command a service runs against the real CLI parser, the
Prometheus targets against the services and their ports, the Grafana dashboard against the metrics
the proxy and the worker export, the Dockerfile's shape and the configs it ships (the lock itself: tests/test_setup.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from health.metrics import WORKER_METRICS
from proxy.cli import COMMANDS, build_parser
from proxy.config import load_config
from proxy.runtime.metrics import PROXY_METRICS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gatewayz.json"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
PORT_FLAGS = ("--port", "--metrics-port")


# --- reading the files -------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _load_yaml(COMPOSE)["services"]
    return services


def _dockerfile_json(instruction: str) -> list[str]:
    """The exec-form argument list of the Dockerfile's last `instruction` (ENTRYPOINT, CMD)."""
    found = re.findall(rf"^{instruction}\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, f"deploy/Dockerfile has no exec-form {instruction}"
    args: list[str] = json.loads(found[-1])
    return args


def _uses_our_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: entrypoint + command, with the image's defaults where unset.

    As in Docker, a service that sets `entrypoint` drops the image's CMD.
    """
    if not _uses_our_image(service):
        return [*service.get("entrypoint", []), *service.get("command", [])]
    if "entrypoint" in service:
        return [*service["entrypoint"], *service.get("command", [])]
    return [*_dockerfile_json("ENTRYPOINT"), *service.get("command", _dockerfile_json("CMD"))]


def failover_services(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Service name -> the `failover` arguments it runs, for every service that runs the CLI."""
    runs = {name: argv(service) for name, service in services.items()}
    return {name: args[1:] for name, args in runs.items() if args[:1] == ["failover"]}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a host path or a volume name) of each short-syntax mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def listening_ports(args: list[str]) -> set[int]:
    """The ports a `failover` process listens on, from its flags (`serve` defaults to 8080)."""
    ports = {int(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg in PORT_FLAGS}
    if args[:1] == ["serve"] and not ports:
        ports.add(8080)
    return ports


def declared_ports(service: dict[str, Any]) -> set[int]:
    """The container ports a service declares: `expose` and the container side of `ports`."""
    declared = {int(str(port)) for port in service.get("expose", [])}
    for mapping in service.get("ports", []):
        declared.add(int(str(mapping).rsplit(":", 1)[-1].split("/")[0]))
    return declared


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    if not CHECK_JSONSCHEMA.exists():
        pytest.fail(f"{CHECK_JSONSCHEMA} not found: install the [dev] extras")
    command = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# --- compose ---------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    result = run_check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("    restart: unless-stopped\n", "    restart: unless-stopped\n    restart_policy_typo: always\n"),
        ("condition: service_completed_successfully", "condition: when_it_feels_like_it"),
        ("  postgres-data:\n", "  postgres-data: [not, a, volume]\n"),
    ],
    ids=["unknown-key", "bad-depends-on-condition", "bad-volume"],
)
def test_a_broken_compose_file_fails_the_schema(tmp_path: Path, original: str, broken: str) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert original in text, "the negative control no longer edits anything: update it"
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace(original, broken, 1), encoding="utf-8")
    assert run_check_jsonschema(copy).returncode != 0


def test_every_failover_command_a_service_runs_exists_and_parses(services: dict[str, dict[str, Any]]) -> None:
    runs = failover_services(services)
    assert {args[0] for args in runs.values()} >= {"migrate", "serve", "health", "mock-provider"}
    parser = build_parser()
    for name, args in runs.items():
        assert args[0] in COMMANDS, f"service {name} runs unknown subcommand {args[0]!r}"
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"service {name}: `failover {' '.join(args)}` does not parse")
        assert parsed.command == args[0]


def test_servers_listen_beyond_their_own_container(services: dict[str, dict[str, Any]]) -> None:
    for name, args in failover_services(services).items():
        if args[0] in ("serve", "mock-provider"):
            parsed = build_parser().parse_args(args)
            assert parsed.host == "0.0.0.0", f"service {name} binds {parsed.host}: unreachable from others"


def test_postgres_redis_and_migrate_come_first(services: dict[str, dict[str, Any]]) -> None:
    postgres, redis = services["postgres"], services["redis"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "ping" in redis["healthcheck"]["test"]
    migrate = services["migrate"]
    assert failover_services(services)["migrate"] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    for name in ("proxy", "health"):
        waits = services[name]["depends_on"]
        assert waits["migrate"]["condition"] == "service_completed_successfully", name
        assert waits["redis"]["condition"] == "service_healthy", name
        env = environment(services[name])
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]
        assert "healthcheck" in services[name]


def test_proxy_is_published_and_health_worker_runs_with_metrics(services: dict[str, dict[str, Any]]) -> None:
    proxy = services["proxy"]
    assert any(str(p).endswith(":8080") for p in proxy["ports"])
    assert environment(proxy)["FAILOVER_HEALTHCHECK_URL"].startswith("http://127.0.0.1:8080/")
    assert failover_services(services)["health"] == ["health", "--metrics-port", "9101"]


def test_proxy_and_worker_read_the_config_the_config_services_write(services: dict[str, dict[str, Any]]) -> None:
    """`config` (always) and `demo-config` (demo profile, after it) copy a TOML into the shared volume."""
    runs = {name: argv(services[name]) for name in ("config", "demo-config")}
    expected_sources = {"config": "./deploy/failover.toml", "demo-config": "./deploy/demo/failover.toml"}
    for name, (program, source, target) in runs.items():
        assert program == "cp", name
        assert bind_mounts(services[name])[source] == expected_sources[name]
        config_dir, volume = str(Path(target).parent), bind_mounts(services[name]).get(str(Path(target).parent))
        assert volume == "failover-config", name
        for reader in ("proxy", "health"):
            assert environment(services[reader])["FAILOVER_CONFIG"] == target
            assert bind_mounts(services[reader])[config_dir] == "failover-config"
            assert services[reader]["volumes"] == ["failover-config:/etc/failover:ro"]
    assert services["demo-config"]["depends_on"]["config"]["condition"] == "service_completed_successfully"
    for reader in ("proxy", "health"):
        waits = services[reader]["depends_on"]
        assert waits["config"]["condition"] == "service_completed_successfully"
        assert waits["demo-config"] == {"condition": "service_completed_successfully", "required": False}


def test_demo_profile_has_three_mock_providers_one_flaky(services: dict[str, dict[str, Any]]) -> None:
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"demo-config", "mock-a", "mock-b", "mock-c", "demo-client"}
    always = set(services) - demo
    assert all("profiles" not in services[name] for name in always)
    runs = failover_services(services)
    faults = {name: build_parser().parse_args(runs[name]).fault for name in ("mock-a", "mock-b", "mock-c")}
    assert faults["mock-a"] != "none"
    assert list(faults.values()).count("none") == 2
    client = services["demo-client"]
    assert client["depends_on"]["proxy"]["condition"] == "service_healthy"
    script = argv(client)[1]
    assert bind_mounts(client)[script] == "./deploy/demo/client.py"
    compile((DEPLOY / "demo" / "client.py").read_text(), "client.py", "exec")


def test_one_shots_do_not_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in ("migrate", "config", "demo-config", "demo-client"):
        assert services[name]["restart"] == "no", name


def test_every_service_bind_mount_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source in bind_mounts(service).values():
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"service {name} mounts missing {source}"


# --- prometheus ------------------------------------------------------------------------------------


def prometheus_targets(config: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(job, host, port) of every static target and DNS service-discovery name."""
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                yield job["job_name"], host, int(port)
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                yield job["job_name"], host, int(sd["port"])


def test_prometheus_scrapes_the_ports_the_services_listen_on(services: dict[str, dict[str, Any]]) -> None:
    config = _load_yaml(DEPLOY / "prometheus.yml")
    targets = list(prometheus_targets(config))
    assert {(host, port) for _, host, port in targets} == {("proxy", 8080), ("health", 9101)}
    runs = failover_services(services)
    for job, host, port in targets:
        assert host in services, f"job {job} scrapes {host}, which is not a service"
        assert port in listening_ports(runs[host]), f"job {job}: {host} does not listen on {port}"
        assert port in declared_ports(services[host]), f"job {job}: {host} does not expose {port}"


def test_prometheus_service_reads_that_config(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    assert bind_mounts(prometheus)[flag.split("=", 1)[1]] == "./deploy/prometheus.yml"


# --- grafana ---------------------------------------------------------------------------------------

METRIC_NAME = re.compile(r"\bgatewayz_[a-z_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets (rows included) and variables."""
    exprs: list[str] = []
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        exprs.extend(target["expr"] for target in panel.get("targets", []) if "expr" in target)
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def queried_metrics(exprs: list[str]) -> set[str]:
    return {HISTOGRAM_SUFFIX.sub("", name) for expr in exprs for name in METRIC_NAME.findall(expr)}


def test_metric_extraction_notices_an_unknown_metric() -> None:
    exprs = ["sum(rate(gatewayz_nope_total[5m]))", "histogram_quantile(0.5, gatewayz_overhead_seconds_bucket)"]
    assert queried_metrics(exprs) == {"gatewayz_nope_total", "gatewayz_overhead_seconds"}


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 10
    queried = queried_metrics(exprs)
    unknown = queried - set(PROXY_METRICS) - set(WORKER_METRICS)
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"
    wanted = {
        "gatewayz_requests_total",
        "gatewayz_failovers_total",
        "gatewayz_upstream_ttfb_seconds",
        "gatewayz_offer_state",
        "gatewayz_circuit_open",
        "gatewayz_overhead_seconds",
        "gatewayz_cost_usd_total",
        "gatewayz_cache_lookups_total",
        "gatewayz_probes_total",
        "gatewayz_worker_rounds_total",
    }
    assert wanted <= queried, f"panels missing for {sorted(wanted - queried)}"


def test_dashboard_shows_scrape_targets_down() -> None:
    exprs = dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    assert any(re.search(r"\bup\s*==\s*0", expr) for expr in exprs), "no panel for targets Prometheus cannot scrape"


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    datasources = _load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {ds["uid"] for ds in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]
            assert all(t["datasource"]["uid"] in uids for t in panel["targets"]), panel["title"]


def test_grafana_provisioning_points_at_the_mounted_files(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    providers = _load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "gatewayz.yml")["providers"]
    for provider in providers:
        assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts[str(Path(home).parent)] == "./deploy/grafana/dashboards"
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()
    datasources = _load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    for datasource in datasources["datasources"]:
        url = urlsplit(datasource["url"])
        assert url.hostname in services
        assert url.port in declared_ports(services[url.hostname])


# --- image -----------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [args for name, args in instructions if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "python" in healthchecks[0]
    assert "FAILOVER_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz" in DOCKERFILE.read_text()
    assert _dockerfile_json("ENTRYPOINT") == ["failover"]
    assert _dockerfile_json("CMD") == ["serve", "--host", "0.0.0.0"]


def test_dockerfile_installs_the_lock_in_a_layer_before_the_code() -> None:
    instructions = _instructions()
    copy_uv = next(i for i, (n, a) in enumerate(instructions) if n == "COPY" and "uv-requirements.txt" in a)
    install_uv = next(i for i, (n, a) in enumerate(instructions) if n == "RUN" and "uv-requirements.txt" in a)
    assert "--require-hashes" in instructions[install_uv][1]
    copy_lock = next(i for i, (n, a) in enumerate(instructions) if n == "COPY" and "uv.lock" in a.split())
    syncs = [i for i, (n, a) in enumerate(instructions) if n == "RUN" and a.startswith("uv sync")]
    assert syncs and all("--locked" in instructions[i][1] for i in syncs)
    assert "--no-install-project" in instructions[syncs[0]][1]
    assert not any("--extra" in instructions[i][1] or "--all-extras" in instructions[i][1] for i in syncs)
    first_code = next(i for i, (n, a) in enumerate(instructions) if n == "COPY" and "proxy" in a.split()[0])
    assert copy_uv < install_uv < copy_lock < syncs[0] < first_code < syncs[-1]
    assert not any(n == "RUN" and "pip install" in a and "uv-requirements" not in a for n, a in instructions)
    assert "FAILOVER_MIGRATIONS_DIR=/app/migrations" in DOCKERFILE.read_text()
    assert any(n == "COPY" and a.split() == ["migrations", "/app/migrations"] for n, a in instructions)


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", ".venv", ".uv"} <= set(ignored)
    assert not {"proxy", "health", "migrations", "pyproject.toml", "README.md"} & set(ignored)


# --- configs and secrets ---------------------------------------------------------------------------


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def test_env_example_names_every_key_and_holds_no_value() -> None:
    example = env_example()
    assert "FAILOVER_ADMIN_TOKEN" in example
    assert all(value == "" for value in example.values()), "no value belongs in .env.example"
    config = load_config(DEPLOY / "failover.toml", {})
    assert {p.api_key_env for p in config.providers} <= set(example)


def test_env_file_is_not_tracked() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_example_config_loads_with_keys_from_the_environment() -> None:
    env = {name: f"test-{name.lower()}" for name in env_example()}
    config = load_config(DEPLOY / "failover.toml", env)
    assert [p.slug for p in config.providers] == ["openrouter", "featherless"]
    assert all(p.api_key.reveal() == env[p.api_key_env] for p in config.providers)
    assert all(len(model.offers) >= 2 for model in config.models)
    assert config.admin_token is not None


def test_demo_config_offers_each_model_on_the_mock_services(services: dict[str, dict[str, Any]]) -> None:
    config = load_config(DEPLOY / "demo" / "failover.toml", {})
    runs = failover_services(services)
    for provider in config.providers:
        url = urlsplit(provider.base_url)
        assert url.hostname in services and "demo" in services[url.hostname]["profiles"], provider.slug
        assert url.port in listening_ports(runs[url.hostname]), provider.slug
    assert {m.model_id for m in config.models} == {"gpt-4", "gpt-3.5-turbo"}
    for model in config.models:
        assert {offer.provider for offer in model.offers} == {"mock-a", "mock-b", "mock-c"}
