"""The package as operators install it (SPEC §12): `python -m build` (what
`make dist` runs: an sdist, then a wheel built from that sdist) and the wheel
`pip install .` builds straight from the tree both hold every file the code
reads with importlib.resources (the SQL, the migrations, the test schema,
openapi.yaml, the monitor page's files); the wheel, installed (not editable)
into a fresh venv, gives a `synchrod` console script that, run from outside
the source tree without PYTHONPATH, starts, migrates the replay database,
serves /monitor/, /api/v1/openapi.json and /metrics, synchronizes a call,
and exits 0 on SIGTERM.

The builds run on a copy of the work tree (untracked files included, as
`pip install .` sees them), so they leave nothing in it."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import _daemon
from _daemon import Daemon, wait_until
from _monitor import enable_monitor, wait_listening
from conftest import REPO

#: what the code reads from the installed package, as globs below synchrod/
#: (setup.cfg's package_data and MANIFEST.in list the same)
ASSET_GLOBS = ("pg/*.sql", "recorder/sql/*.sql", "replay/sql/migrations/*.sql", "testing/*.sql", "monitor/openapi.yaml",
               "monitor/static/**/*")
#: files that must be there whatever the globs find
MUST_HAVE = ("synchrod/monitor/openapi.yaml", "synchrod/monitor/static/index.html",
             "synchrod/monitor/static/app.js", "synchrod/replay/sql/migrations/001_initial.sql",
             "synchrod/recorder/sql/load_batch.sql", "synchrod/pg/identity.sql", "synchrod/testing/callrec_schema.sql")
#: left out of the copy that is built: local state, not sources
_NOT_SOURCES = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]",
                ".hypothesis", ".pytest_cache", ".demo", ".bench")
#: variables that would let a child import synchrod from elsewhere than its venv
_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")
_TIMEOUT = 600


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f"{what} failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                                  f"--- stdout ---\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _copy_tree(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*_NOT_SOURCES), symlinks=True)
    return dest


def _expected(src: Path) -> set[str]:
    """Every module and asset of the source tree, as paths in a wheel."""
    pkg = src / "synchrod"
    found = {p for p in pkg.rglob("*.py")}
    for pattern in ASSET_GLOBS:
        found.update(pkg.glob(pattern))
    return {p.relative_to(src).as_posix() for p in found
            if p.is_file() and "__pycache__" not in p.parts}


@dataclass
class Built:
    src: Path               # the copy `python -m build` ran on
    expected: set[str]      # its modules and assets, as wheel paths
    sdist: Path
    wheel: Path             # built from the sdist (`make dist`)
    direct_wheel: Path      # built from the tree (what `pip install .` installs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    if importlib.util.find_spec("build") is None:
        pytest.fail("the `build` package is missing from this venv: `make install` "
                    "(it is in setup.cfg's dev extras)")
    root = tmp_path_factory.mktemp("packaging")
    # two copies: a build leaves egg-info in its tree, which would feed the other's file list
    src = _copy_tree(root / "src")
    direct_src = _copy_tree(root / "src-direct")
    _run([sys.executable, "-m", "build", "--outdir", root / "dist", src], root, "python -m build")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", root / "direct",
          direct_src], root, "pip wheel .")
    (sdist,) = (root / "dist").glob("synchrod-*.tar.gz")
    (wheel,) = (root / "dist").glob("synchrod-*.whl")
    (direct_wheel,) = (root / "direct").glob("synchrod-*.whl")
    return Built(src, _expected(src), sdist, wheel, direct_wheel)


@dataclass
class Installed:
    venv: Path
    python: Path
    synchrod: Path          # the console script
    package: Path           # where `import synchrod` finds it, from outside the tree


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], root, "python -m venv")
    python = venv / "bin" / "python"
    # a regular install of the wheel file, dependencies from the package index
    _run([python, "-m", "pip", "install", "--quiet", built.wheel], root, "pip install WHEEL")
    probe = _run([python, "-c", "import json, synchrod, importlib.metadata as md;"
                  "d = md.distribution('synchrod');"
                  "print(json.dumps({'file': synchrod.__file__,"
                  " 'direct_url': d.read_text('direct_url.json')}))"],
                 root, "import synchrod in the venv")
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    direct_url = json.loads(info["direct_url"] or "{}")     # PEP 610
    assert not direct_url.get("dir_info", {}).get("editable"), info
    assert "archive_info" in direct_url, info                 # installed from the wheel file
    return Installed(venv, python, venv / "bin" / "synchrod", Path(info["file"]).parent)


# --- what the archives hold ---------------------------------------------------------------

def _check_names(names: set[str], expected: set[str], what: str) -> None:
    for must in MUST_HAVE:
        assert must in expected, f"{must} is not in the source tree any more: update MUST_HAVE"
    missing = sorted(expected - names)
    assert not missing, f"{what} lacks {len(missing)} file(s) of the source tree: {missing}"


@pytest.mark.parametrize("which", ["wheel", "direct_wheel"])
def test_wheel_holds_every_module_and_asset(built, which):
    wheel = getattr(built, which)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
        for name in built.expected:     # the same bytes as the tree's
            assert zf.read(name) == (built.src / name).read_bytes(), name
    _check_names(names, built.expected, wheel.name)
    assert "synchrod = synchrod.cli:main" in entry_points, entry_points
    # only the package and its metadata: no tests/, docs/ or stray top-level modules
    stray = sorted(n for n in names if not n.startswith(("synchrod/", "synchrod-")))
    assert not stray, stray


def test_sdist_holds_every_module_and_asset(built):
    with tarfile.open(built.sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    _check_names(names, built.expected, built.sdist.name)
    for extra in ("README.md", "etc/synchrod.yaml", "etc/prometheus/synchrod-alerts.yml",
                  "tests/promtool/synchrod-alerts-test.yml", "systemd/synchrod.service",
                  "scripts/rc.callrec_synchro", "setup.cfg", "pyproject.toml", "MANIFEST.in"):
        assert extra in names, f"{built.sdist.name} ({top}) lacks {extra}"


# --- the installed daemon ------------------------------------------------------------------

def test_installed_package_is_a_regular_install(installed):
    site = installed.venv / "lib"
    assert installed.package.is_relative_to(site), installed.package
    assert not installed.package.is_relative_to(REPO), installed.package
    assert not list(site.rglob("__editable__*")), "an editable install"
    shebang = installed.synchrod.read_text().splitlines()[0]
    assert shebang == f"#!{installed.python}", shebang
    for must in MUST_HAVE:
        assert (installed.package.parent / must).is_file(), must


@pytest.fixture
def installed_daemon(installed, env, tmp_path, monkeypatch):
    """``start()``: the installed console script's `synchrod run -c CONFIG` (a
    :class:`_daemon.Daemon`) with env's configuration and the monitor on
    127.0.0.1:<free port> (its secret under tmp_path), run in a directory
    outside the tree without PYTHONPATH & co; returns (daemon, monitor)."""
    section = enable_monitor(env, tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert not cwd.is_relative_to(REPO)
    # Daemon runs _daemon.SYNCHROD in _daemon.REPO with child_env() (our environment)
    monkeypatch.setattr(_daemon, "SYNCHROD", [str(installed.synchrod)])
    monkeypatch.setattr(_daemon, "REPO", cwd)
    for var in _LEAKS:
        monkeypatch.delenv(var, raising=False)
    started: list[Daemon] = []

    def start():
        d = Daemon(env, "installed")
        started.append(d)
        return d, wait_listening(d, section)

    yield start
    for d in started:
        d.close()
    assert not list(cwd.iterdir()), "the daemon wrote into its working directory"


def test_installed_daemon_serves_the_monitor(installed, installed_daemon):
    d, mon = installed_daemon()

    page = mon.get("/monitor/", headers={"Accept": "text/html"}).expect(200)
    assert page.content_type == "text/html", page.headers
    assert "<html" in page.text.lower() and "/monitor/app.js" in page.text, page.text[:500]
    static = installed.package / "monitor" / "static"
    for asset in sorted(static.iterdir()):
        if asset.name == "index.html" or not asset.is_file():
            continue
        reply = mon.get(f"/monitor/{asset.name}").expect(200)
        assert reply.body == asset.read_bytes(), asset.name

    spec = mon.get("/api/v1/openapi.json").expect(200)
    assert spec.content_type == "application/json", spec.headers
    assert "openapi" in spec.json() and spec.json()["paths"], spec.text[:300]

    metrics = mon.get("/metrics").expect(200)
    assert "synchrod_build_info" in metrics.text, metrics.text[:1000]

    assert d.stop() == 0, d.tail()


def test_installed_daemon_synchronizes_a_call(installed_daemon, env, make_call):
    """The packaged SQL (migrations at start, then a cycle's reads and marks)."""
    d, _ = installed_daemon()
    env.add_calls(0, [make_call("pkg-1")])
    wait_until(lambda: env.marks(0) == {"pkg-1": "S"}, 60,
               "the installed daemon to synchronize pkg-1")
    assert env.target("SELECT sid FROM callrec.couples") == [("pkg-1",)]
    assert d.stop() == 0, d.tail()
