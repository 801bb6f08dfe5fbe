"""Static checks of the deployment files, for machines without a container runtime.

Run: ``.venv/bin/python deploy/check_deploy.py`` (exit 1 on any problem).

- ``compose.yaml``: valid YAML; every service's secrets, volumes and networks are declared at
  the top level; the hub's command is a list of ``moma-hub`` arguments that ``moma-hub serve``
  accepts (checked against the real CLI's options); file-based secrets point inside
  ``deploy/secrets/``.
- ``Containerfile``: every instruction is a known Dockerfile instruction, continuation lines
  are closed, JSON-form ``CMD``/``ENTRYPOINT``/``VOLUME`` parse as JSON arrays, ``FROM``
  stages referenced by ``COPY --from`` exist, torch is pinned to 2.13.0 from the CPU index
  before the project is installed, and the image runs as a non-root ``USER``.
- ``scale/``: the replicas' ``moma-hub serve`` options exist, each trusts nginx's fixed
  address as its proxy, and ``nginx.conf`` forwards the client address to those replicas.
- ``moma-hub.service``: has the sections and hardening keys the README promises.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL", "MAINTAINER"}


def serve_options() -> set[str]:
    """The long options ``moma-hub serve`` accepts, read from the real command."""
    import click
    import typer.main

    from moma_server.cli.app import app

    command = typer.main.get_command(app)
    assert isinstance(command, click.Group)
    serve = command.commands["serve"]
    return {opt for param in serve.params for opt in getattr(param, "opts", [])
            if opt.startswith("--")}


def check_compose(problems: list[str]) -> None:
    data = yaml.safe_load((HERE / "compose.yaml").read_text())
    declared = {kind: set((data.get(kind) or {}).keys())
                for kind in ("secrets", "volumes", "networks")}
    for name, service in data["services"].items():
        for secret in service.get("secrets", []):
            key = secret if isinstance(secret, str) else secret["source"]
            if key not in declared["secrets"]:
                problems.append(f"compose: service {name} uses undeclared secret {key}")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in declared["volumes"]:
                problems.append(f"compose: service {name} uses undeclared volume {source}")
        for network in service.get("networks", []):
            if network not in declared["networks"]:
                problems.append(f"compose: service {name} uses undeclared network {network}")
        for dep in service.get("depends_on", {}):
            if dep not in data["services"]:
                problems.append(f"compose: service {name} depends on unknown service {dep}")
    for name, secret in (data.get("secrets") or {}).items():
        if not str(secret.get("file", "")).startswith("./secrets/"):
            problems.append(f"compose: secret {name} is not a file under deploy/secrets/")
    hub = data["services"]["hub"]
    build = hub.get("build", {})
    if build.get("dockerfile") != "deploy/Containerfile" or build.get("context") != "..":
        problems.append("compose: hub must build ../ with deploy/Containerfile")
    command = hub["command"]
    if not (isinstance(command, list) and command[0] == "serve"):
        problems.append("compose: hub command must be a list starting with 'serve'")
    else:
        known = serve_options()
        for arg in command[1:]:
            option = arg.split("=", 1)[0]
            if option not in known:
                problems.append(f"compose: moma-hub serve has no option {option}")
        if "--insecure" in command:
            problems.append("compose: the hub must serve TLS")
    print(f"compose.yaml: {len(data['services'])} services, "
          f"{len(declared['secrets'])} secrets, {len(declared['volumes'])} volumes")


def check_scale(problems: list[str]) -> None:
    """``scale/``: every replica's serve options exist, each trusts exactly nginx's fixed
    address (inside the backend subnet) as its proxy, and nginx forwards the client address to
    an upstream of exactly those replicas."""
    import ipaddress

    data = yaml.safe_load((HERE / "scale" / "compose.yaml").read_text())
    services = data["services"]
    subnet = ipaddress.ip_network(data["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["backend"]["ipv4_address"])
    if nginx_ip not in subnet:
        problems.append(f"scale compose: nginx's address {nginx_ip} is outside {subnet}")
    known = serve_options()
    replicas = sorted(n for n, svc in services.items() if (svc.get("command") or [""])[0]
                      == "serve")
    for name in replicas:
        command = services[name]["command"]
        for arg in command[1:]:
            if arg.split("=", 1)[0] not in known:
                problems.append(f"scale compose: moma-hub serve has no option {arg}")
        trusted = [a.split("=", 1)[1] for a in command if a.startswith("--trusted-proxy=")]
        if trusted != [str(nginx_ip)]:
            problems.append(f"scale compose: {name} must trust exactly nginx ({nginx_ip}) as "
                            f"its proxy, not {trusted}")
    conf = (HERE / "scale" / "nginx.conf").read_text()
    upstream = sorted(line.split()[1].split(":")[0] for line in conf.splitlines()
                      if line.strip().startswith("server ") and ":50051" in line)
    if upstream != replicas:
        problems.append(f"scale nginx.conf: upstream {upstream} is not the replicas {replicas}")
    if "grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" not in conf:
        problems.append("scale nginx.conf: the client address is not forwarded")
    print(f"scale/compose.yaml: {len(replicas)} replicas behind nginx {nginx_ip}")


def logical_lines(text: str) -> list[tuple[int, str]]:
    lines, current, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continuation
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append((start, current))
        current = ""
    if current:
        lines.append((start, current + "  <unterminated continuation>"))
    return lines


def check_containerfile(problems: list[str]) -> None:
    text = (HERE / "Containerfile").read_text()
    stages: list[str] = []
    user = None
    torch_at = project_at = None
    for number, line in logical_lines(text):
        if line.endswith("<unterminated continuation>"):
            problems.append(f"Containerfile:{number}: unterminated line continuation")
        word, _, rest = line.partition(" ")
        if word.upper() not in INSTRUCTIONS:
            problems.append(f"Containerfile:{number}: unknown instruction {word}")
            continue
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.append(parts[2])
        if word in ("CMD", "ENTRYPOINT", "VOLUME") and rest.lstrip().startswith("["):
            try:
                value = json.loads(rest)
                assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            except (ValueError, AssertionError):
                problems.append(f"Containerfile:{number}: {word} is not a JSON string array")
        if word == "COPY":
            source = re.search(r"--from=(\S+)", rest)
            if source and source.group(1) not in stages:
                problems.append(f"Containerfile:{number}: COPY --from unknown stage")
        if word == "USER":
            user = rest.split(":")[0]
        if word == "RUN" and "torch==2.13.0" in rest and "whl/cpu" in rest:
            torch_at = number
        if word == "RUN" and re.search(r"pip install \.(\s|$)", rest):
            project_at = number
    if user in (None, "root", "0"):
        problems.append("Containerfile: the final image must run as a non-root USER")
    if torch_at is None or project_at is None or torch_at > project_at:
        problems.append("Containerfile: install torch==2.13.0 (CPU index) before the project")
    print(f"Containerfile: stages {stages} + final, USER {user}, torch line {torch_at}, "
          f"project line {project_at}")


def check_unit(problems: list[str]) -> None:
    text = (HERE / "moma-hub.service").read_text()
    for key in ("[Unit]", "[Service]", "[Install]", "User=", "ProtectSystem=strict",
                "ProtectHome=true", "NoNewPrivileges=true", "PrivateTmp=true",
                "CapabilityBoundingSet=", "StateDirectory=moma-hub", "--tls-cert"):
        if key not in text:
            problems.append(f"moma-hub.service: missing {key}")
    print("moma-hub.service: sections and hardening keys present")


def main() -> None:
    problems: list[str] = []
    check_compose(problems)
    check_scale(problems)
    check_containerfile(problems)
    check_unit(problems)
    for problem in problems:
        print("problem:", problem)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
