"""The deployment kit: deploy/docker-compose.yml passes `docker compose config` (the Compose
validator), deploy/config.example.yaml passes the service's own configuration validator with the
environment compose gives the service, and the licence is the full Apache-2.0 text."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cds_service.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRETS = {"CDS_HOSTNAME": "cds.hospital.example.org", "POSTGRES_PASSWORD": "pw-for-the-test",
           "PSEUDONYM_KEY": "key-for-the-test"}


def compose_command() -> list[str]:
    """`docker compose` (the v2 plugin) when the docker CLI has it, else Debian's `docker-compose`;
    scripts/test.sh installs the latter (apt-get install docker-compose). Neither needs an engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    reason = "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def compose_config(compose_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([*compose_command(), "-f", str(compose_file), "config"], cwd=compose_file.parent,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_docker_compose_config_validates_the_deployment():
    result = compose_config(DEPLOY / "docker-compose.yml", SECRETS)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    services = resolved["services"]
    assert set(services) == {"cds", "postgres", "redis", "proxy"}
    assert services["cds"]["command"][:2] == ["sarcopenia-cds", "serve"]  # gunicorn, as serve runs it
    assert "ports" not in services["cds"]  # only the proxy is reachable from outside
    assert {p["target"] if isinstance(p, dict) else int(str(p).split(":")[-1]) for p in services["proxy"]["ports"]} == {443, 80}
    assert services["cds"]["environment"]["SARCOPENIA_CDS_DATABASE__URL"] == (
        "postgresql+psycopg://cds:pw-for-the-test@postgres:5432/cds")


def test_docker_compose_config_refuses_a_missing_secret():
    result = compose_config(DEPLOY / "docker-compose.yml", {k: v for k, v in SECRETS.items() if k != "POSTGRES_PASSWORD"})
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in deploy/.env" in result.stderr


def test_docker_compose_config_catches_a_broken_file(tmp_path):
    broken = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8").replace("    restart: unless-stopped\n",
                                                                                 "    restart: [unless-stopped]\n", 1)
    (tmp_path / "docker-compose.yml").write_text(broken, encoding="utf-8")
    for name in ("config.yaml", "Caddyfile"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert compose_config(tmp_path / "docker-compose.yml", SECRETS).returncode != 0


def test_example_configuration_loads_with_the_services_validator_and_composes_environment():
    result = compose_config(DEPLOY / "docker-compose.yml", SECRETS)
    assert result.returncode == 0, result.stderr
    environment = yaml.safe_load(result.stdout)["services"]["cds"]["environment"]
    environment["SARCOPENIA_CDS_CONFIG"] = str(DEPLOY / "config.example.yaml")
    config = load_config(environ=environment)
    assert config["base_url"] == "https://cds.hospital.example.org"
    assert config["auth"]["required"] is True and config["auth"]["issuers"][0]["jwks_url"].startswith("https://")
    assert config["database"]["url"] == "postgresql+psycopg://cds:pw-for-the-test@postgres:5432/cds"
    assert config["redis"]["url"] == "redis://redis:6379/0"
    assert config["privacy"]["pseudonym_key"] == "key-for-the-test"
    assert config["fhir"]["allow_http"] is False and config["demo"]["enabled"] is False
    assert config["logging"]["format"] == "json"


def test_example_configuration_alone_loads_and_a_typo_is_refused(tmp_path):
    example = DEPLOY / "config.example.yaml"
    load_config(environ={"SARCOPENIA_CDS_CONFIG": str(example)})
    typo = tmp_path / "config.yaml"
    typo.write_text(example.read_text(encoding="utf-8").replace("allow_http: false", "allow_https: false"), encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown configuration key 'fhir.allow_https'"):
        load_config(environ={"SARCOPENIA_CDS_CONFIG": str(typo)})


def test_proxy_body_limit_equals_the_services_limit():
    caddy = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    size = re.search(r"max_size (\d+)MiB", caddy)
    example = yaml.safe_load((DEPLOY / "config.example.yaml").read_text(encoding="utf-8"))
    assert size and int(size.group(1)) * 1024 * 1024 == example["limits"]["max_body_bytes"]
    assert re.search(r"read_header \d+s", caddy) and re.search(r"read_body \d+s", caddy)
    assert re.search(r"response_header_timeout \d+s", caddy)


def test_license_is_the_full_apache_2_0_text():
    text = (ROOT / "LICENSE").read_bytes()
    # the digest of https://www.apache.org/licenses/LICENSE-2.0.txt
    assert hashlib.sha256(text).hexdigest() == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
