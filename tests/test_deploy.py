"""``deploy/``: the compose file, the entrypoint, Prometheus, the dashboard, systemd.

The build machine has no Docker daemon, so nothing here builds an image or starts the
stack (``docker compose config`` runs when a compose plugin is there). What can be
checked without it is checked for real: the files parse, every variable is a setting
tiaojie reads, the compose environment run through the real entrypoint with the
secrets ``make-secrets.sh`` makes loads as valid settings, every metric the dashboard
queries is in a real ``/metrics``, and ``systemd-analyze verify`` accepts the unit.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot.runtime import Store
from bot.settings import Settings, load_settings
from bot.web import create_app
from nlu.interface import NLUBackend
from tests.test_metrics import full_intake, sample_names, scrape

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
#: Variables the deployment sets that are not tiaojie settings, and who reads them.
NOT_SETTINGS = {
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus-client (multiprocess mode)
    "PGPASSFILE",  # asyncpg: the database password file
    "TIAOJIE_WORKERS",  # the unit's and compose's `tiaojie run --workers N`
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8")))


def setting_names() -> set[str]:
    return {str(field.alias) for field in Settings.model_fields.values() if field.alias}


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (comments and blanks skipped), as systemd and compose read them."""
    values: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` and ``${NAME}``, from ``.env``-style variables."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return variables.get(name) or default

    return re.sub(r"\$\{([A-Z0-9_]+)(:-([^}]*))?\}", one, value)


# ------------------------------------------------------------------------- compose


def test_compose_file_has_every_service_and_profile() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"postgres", "tiaojie", "rasa", "prometheus", "grafana"}
    assert "profiles" not in services["postgres"] and "profiles" not in services["tiaojie"]
    assert services["rasa"]["profiles"] == ["rasa"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    tiaojie = services["tiaojie"]
    assert tiaojie["command"][:2] == ["run", "--workers"]
    assert tiaojie["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert tiaojie["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY.parent / tiaojie["build"]["dockerfile"]).is_file()
    assert (DEPLOY.parent / services["rasa"]["build"]["dockerfile"]).is_file()
    # Multiprocess metrics need a directory that is fresh at every start: a tmpfs.
    folder = tiaojie["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert any(folder.startswith(mount.split(":")[0]) for mount in tiaojie["tmpfs"])
    # Secrets: declared, made by make-secrets.sh, and nothing secret in the file itself.
    declared = set(spec["secrets"])
    made = set(re.findall(r"^put (\w+)", (DEPLOY / "make-secrets.sh").read_text(), re.M))
    made |= set(
        re.findall(r"for channel in ([\w ]+);", (DEPLOY / "make-secrets.sh").read_text())[0].split()
    )
    for name, service in services.items():
        assert set(service.get("secrets", [])) <= declared, name
    assert declared == made
    assert all(entry["file"].startswith("./secrets/") for entry in spec["secrets"].values())
    text = (DEPLOY / "docker-compose.yml").read_text("utf-8")
    assert not re.search(r"(PASSWORD|TOKEN|SECRET|KEY)\s*:\s*[^$\s/]", text.replace("_FILE", "")), (
        "a secret value written into the compose file"
    )


def test_every_variable_the_deployment_sets_is_read_by_tiaojie() -> None:
    names = setting_names()
    tiaojie_env = compose()["services"]["tiaojie"]["environment"]
    entrypoint = (DEPLOY / "docker-entrypoint.sh").read_text("utf-8")
    for key in tiaojie_env:
        if key.endswith("_FILE") and key not in names:  # (TIAOJIE_CENTRES_FILE is a setting)
            key = key.removesuffix("_FILE")
            assert key in entrypoint, f"the entrypoint does not read {key}_FILE"
        assert key in names or key in NOT_SETTINGS, key
    for path in (DEPLOY / "systemd/tiaojie.env.example", DEPLOY / "env.example"):
        for key in env_file(path):
            assert (
                key in names
                or key in NOT_SETTINGS
                or key.startswith(("POSTGRES_", "PROMETHEUS_"))
                or key == "TIAOJIE_PUBLISH"
            ), (path.name, key)


def test_compose_environment_through_the_entrypoint_is_valid(tmp_path: Path) -> None:
    """What the tiaojie container would get: make-secrets.sh's files, env.example's
    values, the real entrypoint; a stand-in ``tiaojie`` records its calls and loads
    the settings the real one would load."""
    work = tmp_path / "deploy"
    work.mkdir()
    shutil.copy(DEPLOY / "make-secrets.sh", work)
    subprocess.run(["sh", str(work / "make-secrets.sh")], check=True, capture_output=True)
    secrets = work / "secrets"
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    (secrets / "telegram_bot_token").write_text("123456:ABCdef_ghi")  # one channel on
    variables = env_file(DEPLOY / "env.example")
    environment: dict[str, str] = {}
    for key, raw in compose()["services"]["tiaojie"]["environment"].items():
        value = interpolate(str(raw), variables)
        environment[key] = value.replace("/run/secrets/", f"{secrets}/")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1234.db").write_bytes(b"left over")
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    calls = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tiaojie"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} -c "{_LOAD_SETTINGS}" "$@"\n'
    )
    fake.chmod(0o755)
    environment.update(PATH=f"{bin_dir}:/usr/bin:/bin", PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    command = interpolate(" ".join(compose()["services"]["tiaojie"]["command"]), variables)
    done = subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), *command.split()],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["db upgrade", "run --workers 2"]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["database_url"].startswith("postgresql+asyncpg://tiaojie:")
    assert loaded["database_url"].endswith("@postgres:5432/tiaojie")
    assert loaded["secret_key"] and loaded["rest_token"] and loaded["metrics_token"]
    assert loaded["telegram_bot_token"] and not loaded["wechat_enabled"]  # empty files: off
    assert loaded["http_host"] == "0.0.0.0" and loaded["log_format"] == "json"
    assert loaded["secret_files_left"] == []  # *_FILE variables are not passed on
    assert not list(metrics_dir.glob("*.db")), "an earlier run's metrics were kept"


_LOAD_SETTINGS = (
    "import json, os; from bot.settings import load_settings; s = load_settings(); "
    "print(json.dumps({'database_url': s.database_url, "
    "'secret_key': bool(s.secret_key), 'rest_token': bool(s.rest_token), "
    "'metrics_token': bool(s.metrics_token), "
    "'telegram_bot_token': bool(s.telegram_bot_token), 'wechat_enabled': s.wechat_enabled, "
    "'http_host': s.http_host, 'log_format': s.log_format, "
    "'secret_files_left': sorted(k for k in os.environ if k.endswith('_FILE') "
    "and k != 'TIAOJIE_CENTRES_FILE')}))"
)


def test_docker_compose_config_when_docker_is_here() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker here; the compose file is checked by the YAML tests above")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        pytest.skip("docker here has no compose plugin (and no daemon): YAML tests only")
    done = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=DEPLOY,
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------ Prometheus and Grafana


def test_prometheus_scrapes_tiaojie_with_the_metrics_token() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text("utf-8"))
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["tiaojie:8080"]
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    services = compose()["services"]
    assert "metrics_token" in services["prometheus"]["secrets"]
    assert services["tiaojie"]["environment"]["TIAOJIE_METRICS_TOKEN_FILE"] == (
        "/run/secrets/metrics_token"
    )


def dashboard() -> dict[str, Any]:
    return dict(json.loads((DEPLOY / "grafana/dashboards/tiaojie.json").read_text("utf-8")))


def dashboard_metrics() -> set[str]:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\btiaojie_[a-z0-9_]+", expr)}


def test_dashboard_is_provisioned_against_the_prometheus_datasource() -> None:
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text("utf-8")
    )
    uid = source["datasources"][0]["uid"]
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    board = dashboard()
    assert board["uid"] and board["panels"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/tiaojie.yml").read_text("utf-8")
    )
    mounted = compose()["services"]["grafana"]["volumes"]
    assert any(
        v.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for v in mounted
    )


async def test_every_metric_on_the_dashboard_is_in_a_real_metrics(
    sqlite_url: str, nlu: NLUBackend, tmp_path: Path
) -> None:
    settings = load_settings(database_url=sqlite_url, data_dir=tmp_path / "var", sweep_seconds=0)
    store = Store.open(settings)
    try:
        async with TestClient(TestServer(create_app(settings, nlu, store=store))) as http:
            await full_intake(http, "deploy-1", "房东不退押金3000元,我已经搬走一个月了,在沙井")
            _, text = await scrape(http)
    finally:
        await store.close()
    names = sample_names(text)
    wanted = dashboard_metrics()
    assert len(wanted) >= 14, wanted
    assert wanted <= names, sorted(wanted - names)


# -------------------------------------------------------------------------- systemd


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd/tiaojie.service", encoding="utf-8")
    return parser


def test_systemd_unit_runs_workers_with_a_fresh_metrics_directory() -> None:
    service = unit()["Service"]
    assert service["ExecStart"].endswith("tiaojie run --workers ${TIAOJIE_WORKERS}")
    assert service["EnvironmentFile"] == "/etc/tiaojie/tiaojie.env"
    assert service["RuntimeDirectory"] == "tiaojie"
    text = (DEPLOY / "systemd/tiaojie.service").read_text("utf-8")
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/tiaojie/metrics" in text
    assert service["KillSignal"] == "SIGTERM"
    assert "TIAOJIE_WORKERS" in env_file(DEPLOY / "systemd/tiaojie.env.example")


def test_systemd_env_example_has_no_secret_and_loads() -> None:
    values = env_file(DEPLOY / "systemd/tiaojie.env.example")
    for key, value in values.items():
        if re.search(r"TOKEN|SECRET|PASSWORD|AES_KEY|SECRET_KEY", key):
            assert value == "", f"{key} has a value in the example"
    assert (
        "@" in values["TIAOJIE_DATABASE_URL"]
        and ":" not in values["TIAOJIE_DATABASE_URL"].split("//")[1].split("@")[0]
    ), "a password in the example URL"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIAOJIE_", "TELEGRAM_"))}
    env.update(values)
    done = subprocess.run(
        [sys.executable, "-c", "from bot.settings import load_settings; load_settings()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    # Point the unit at this checkout (verify checks that the programs exist).
    text = (DEPLOY / "systemd/tiaojie.service").read_text("utf-8")
    text = text.replace(
        "/opt/tiaojie/.venv/bin/tiaojie", str(Path(sys.executable).parent / "tiaojie")
    )
    text = text.replace("/opt/tiaojie", str(ROOT))
    copy = tmp_path / "tiaojie.service"
    copy.write_text(text, "utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
