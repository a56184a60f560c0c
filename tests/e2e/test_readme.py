"""Every shell block of README.md runs, so the README cannot drift from what ships.

How the blocks run, as a reader at one terminal in a clone would run them:

* Every ```sh (or bash, shell) block of README.md runs, in order, in ONE bash process with
  ``set -euo pipefail``: blocks share the working directory, exported variables and background
  jobs, so a server the quick start starts with ``&`` serves the next sections, and ``kill %1``
  in a later block stops it. Each block keeps its README line numbers in the script (every
  other line is blank) and the script runs under ``set -x``, so a failure names README.md:LINE.
* A block that cannot run in a test is marked by an HTML comment on the line right before it:
  ``<!-- readme-test: skip: REASON -->``. Any other block runs: a new block is tested by default,
  and a directive without a reason, an unknown one, or one not followed by a block fails.
* The working directory is a fresh temporary folder with symlinks to the clone's ``examples``,
  ``scripts`` and ``tests``, so the README's relative paths resolve and ``./slipway-data``,
  ``audit.jsonl`` and the rest land in the temporary folder.
* PATH starts with a folder of shims: ``slipway`` is $SLIPWAY_BIN, ``python`` the interpreter
  running this suite (its venv has mlflow and scikit-learn), and ``cargo`` turns
  ``cargo run [--release] -p slipway -- ARGS`` into ``exec $SLIPWAY_BIN ARGS`` (exec, so the
  README's ``kill %1`` stops the server itself) and fails on anything else.
* The environment is this one without MLFLOW_TRACKING_*/SLIPWAY_* (the suite's own server must
  not leak in; SLIPWAY_CONVERT_VENV is kept), plus the passwords the README reads:
  ADMIN_PASSWORD, ALICE_PASSWORD, BOB_PASSWORD.
* curl fails on an HTTP error (``fail`` in a .curlrc under CURL_HOME), so a README curl to the
  wrong port or path fails the test rather than printing an error page; the README's curl
  commands must answer 2xx.
* The README uses the default ports, so 5000 and 5001 must be free; the test says so otherwise.
* The PostgreSQL section creates the database ``slipway`` on 127.0.0.1:5432 as user
  ``postgres``. The test fails if it already exists (it may be someone's: drop it yourself with
  ``dropdb -h 127.0.0.1 -U postgres slipway``) and drops it at the end.
* The bash process runs in its own process group; at the end, passed or failed, the whole group
  (servers, replicas, traffic loops) gets SIGTERM, then SIGKILL after 10 s.

It runs once, in the SQLite pass of scripts/test.sh: the README's servers pick their own stores,
so the PostgreSQL pass (E2E_BACKEND_STORE_URI) would only repeat it. `slipway models convert`
installs its Python environment the first time (minutes, once; test_convert.py shares it);
with that environment in place the file takes well under two minutes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slipway_only

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SHELL_LANGUAGES = {"sh", "bash", "shell"}
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(?P<body>.*?)\s*-->$")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "slipway"
PORTS = (5000, 5001)
# Generous for a loaded CI machine; a first `models convert` also installs its environment.
SCRIPT_TIMEOUT = 900

CARGO_SHIM = """#!/usr/bin/env bash
# test_readme.py: `cargo run [--release] -p slipway -- ARGS` runs the slipway binary under test.
set -euo pipefail
if [ "${1:-}" != run ]; then
  echo "cargo shim (tests/e2e/test_readme.py): only 'cargo run -p slipway -- ...' is supported, got: cargo $*" >&2
  exit 2
fi
shift
package=""
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  case "$1" in
    --release) ;;
    -p|--package) package="$2"; shift ;;
    *) echo "cargo shim: unsupported argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$package" != slipway ]; then
  echo "cargo shim: only -p slipway is supported, got '${package}'" >&2
  exit 2
fi
[ $# -gt 0 ] && shift
exec "$SLIPWAY_BIN" "$@"
"""


@dataclass
class Block:
    line: int  # README line of the block's first line of code (after the fence)
    code: list[str]
    skip_reason: str | None


def readme_blocks(text: str) -> list[Block]:
    """The README's shell blocks with their directives; raises ValueError on a bad directive."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # (line, reason) of a skip directive
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.match(line.strip())
        if directive:
            body = directive.group("body")
            kind, _, reason = body.partition(":")
            if kind.strip() != "skip" or not reason.strip():
                raise ValueError(f"README.md:{i + 1}: unknown readme-test directive {body!r}; "
                                 "the one directive is 'skip: REASON'")
            pending = (i + 1, reason.strip())
            i += 1
            continue
        if line.startswith("```"):
            language = line[3:].strip()
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                raise ValueError(f"README.md:{i + 1}: code block never closed")
            if pending and pending[0] != i:
                raise ValueError(f"README.md:{pending[0]}: a readme-test directive must be on "
                                 "the line right before its block")
            if language in SHELL_LANGUAGES:
                blocks.append(Block(i + 2, lines[i + 1:end], pending[1] if pending else None))
            elif pending:
                raise ValueError(f"README.md:{pending[0]}: directive before a {language!r} "
                                 "block, which never runs anyway")
            pending = None
            i = end + 1
            continue
        if pending and line.strip():
            raise ValueError(f"README.md:{pending[0]}: a readme-test directive must be on the "
                             "line right before its block")
        i += 1
    if pending:
        raise ValueError(f"README.md:{pending[0]}: a readme-test directive with no block after it")
    return blocks


def readme_script(blocks: list[Block]) -> str:
    """One bash script whose line N is README line N for every line of a block that runs."""
    last = max(b.line + len(b.code) for b in blocks)
    script = [""] * last
    script[0] = "set -euo pipefail; PS4='+ README.md:${LINENO}: '; set -x"
    for block in blocks:
        if block.skip_reason is None:
            script[block.line - 1:block.line - 1 + len(block.code)] = block.code
    return "\n".join(script) + "\n"


def test_every_readme_shell_block_runs_or_is_skipped_with_a_reason():
    blocks = readme_blocks(README.read_text())
    assert blocks, "README.md has no shell blocks"
    assert any(b.skip_reason is None for b in blocks)
    for bad, why in [
        ("<!-- readme-test: skip -->\n```sh\nfalse\n```\n", "unknown"),
        ("<!-- readme-test: skip:   -->\n```sh\nfalse\n```\n", "unknown"),
        ("<!-- readme-test: run -->\n```sh\ntrue\n```\n", "unknown"),
        ("<!-- readme-test: skip: slow -->\n\nprose\n```sh\ntrue\n```\n", "right before"),
        ("<!-- readme-test: skip: slow -->\n", "no block after it"),
        ("```sh\ntrue\n", "never closed"),
    ]:
        with pytest.raises(ValueError, match=why):
            readme_blocks(bad)
    parsed = readme_blocks("x\n<!-- readme-test: skip: needs a cluster -->\n```sh\nkubectl\n```\n"
                           "```bash\necho hi\n```\n")
    assert [(b.line, b.code, b.skip_reason) for b in parsed] == [
        (4, ["kubectl"], "needs a cluster"), (7, ["echo hi"], None)]
    assert readme_script(parsed).splitlines()[6] == "echo hi"
    assert "kubectl" not in readme_script(parsed)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _pg_connect():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and PostgreSQL is unreachable at {PG_ADMIN_URL}: {e}")
        pytest.skip(f"the README's PostgreSQL section needs PostgreSQL at {PG_ADMIN_URL}: {e}")


def _stop_group(pgid: int) -> None:
    """SIGTERM to every process the README started, SIGKILL after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _condensed(output: str) -> str:
    """The log without repeats of a traced command: a traffic loop traces the same curl
    thousands of times and would push the failing command out of the failure message."""
    seen: set[str] = set()
    kept = []
    for line in output.splitlines():
        if line.startswith("+"):
            if line in seen:
                continue
            seen.add(line)
        kept.append(line)
    return "\n".join(kept)


def _readme_env(shims: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MLFLOW_TRACKING_") or k.startswith("MLFLOW_REGISTRY_")
                   or k.startswith("MLFLOW_EXPERIMENT_") or k == "MLFLOW_RUN_ID"
                   or (k.startswith("SLIPWAY_") and k != "SLIPWAY_CONVERT_VENV"))}
    env["SLIPWAY_BIN"] = str(Path(os.environ["SLIPWAY_BIN"]).resolve())
    env["PATH"] = f"{shims}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["ADMIN_PASSWORD"] = "readme-admin-password"
    env["ALICE_PASSWORD"] = "readme-alice-password"
    env["BOB_PASSWORD"] = "readme-bob-password"
    env["NO_COLOR"] = "1"
    env["CURL_HOME"] = str(shims)
    return env


@pytest.mark.skipif(bool(os.environ.get("E2E_BACKEND_STORE_URI")),
                    reason="the README's servers pick their own stores; the SQLite pass runs it")
def test_the_readme_shell_blocks_run_against_live_servers(slipway_bin, tmp_path):
    busy = [p for p in PORTS if _port_in_use(p)]
    assert not busy, (f"the README uses ports {PORTS} and {busy} is taken on 127.0.0.1: stop "
                      "what listens there to run this test")
    with _pg_connect() as pg:
        exists = pg.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (PG_DATABASE,)).fetchone()
    assert not exists, (f"database {PG_DATABASE!r} exists on 127.0.0.1:5432 and the README's "
                        "PostgreSQL section creates it; if it is a leftover of this test, drop "
                        f"it: dropdb -h 127.0.0.1 -U postgres {PG_DATABASE}")

    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "slipway").symlink_to(Path(slipway_bin).resolve())
    # A script, not a symlink: a venv's python finds its packages from the path it was run as.
    python = shims / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (shims / ".curlrc").write_text("fail\n")
    cargo = shims / "cargo"
    cargo.write_text(CARGO_SHIM)
    cargo.chmod(0o755)
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("examples", "scripts", "tests"):
        (clone / name).symlink_to(ROOT / name)
    script = tmp_path / "readme.sh"
    script.write_text(readme_script(readme_blocks(README.read_text())))
    log_path = tmp_path / "readme.log"

    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", str(script)], cwd=clone, env=_readme_env(shims),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            try:
                status = proc.wait(timeout=SCRIPT_TIMEOUT)
            except subprocess.TimeoutExpired:
                status = None
        finally:
            _stop_group(proc.pid)
            proc.wait(timeout=10)
            with _pg_connect() as pg:
                pg.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    elapsed = time.monotonic() - started
    output = log_path.read_text(errors="replace")
    tail = _condensed(output)[-12000:]
    assert status is not None, f"the README's blocks ran over {SCRIPT_TIMEOUT} s:\n{tail}"
    assert status == 0, f"a README block failed (exit {status}); see the last README.md:LINE\n{tail}"

    # What the README says happened did: the exports are files with content.
    audit = (clone / "audit.jsonl").read_text().splitlines()
    assert any('"action":"registry.rollback_alias"' in line.replace(" ", "") for line in audit), \
        audit[-5:]
    assert (clone / "fraud.jsonl").read_text().strip(), "the prediction log export is empty"
    # The model served alone and the replica both answered the README's curl.
    assert output.count('{"predictions":') >= 2, tail
    # Every port is free again: nothing the README started outlives the test.
    assert not [p for p in PORTS if _port_in_use(p)], output[-2000:]
    print(f"README blocks ran in {elapsed:.1f} s")
