"""The web console in a real browser: Debian's Chromium driven by Selenium against a server
with --auth. People sign in with the same users as the API; an editor finds runs with the
filter grammar and compares them on charts; an approver approves a promotion an editor cannot;
an operator watches a canary progress and roll back without reloading; a drift chart is drawn
from real monitoring windows. Every page is checked for browser console errors and kept as a
screenshot under tests/e2e/.output/console/ (or $E2E_SCREENSHOTS)."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from e2e_support import SlipwayServer, unique_name
from test_deployments import MLFLOW_MODEL, MODELS, ROWS, _require_runtime

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PASSWORDS = {"root": "root-password-1", "alice": "alice-password-1",
             "bob": "bob-password-12", "victor": "victor-password-1"}
ROLES = {"root": "admin", "alice": "editor", "bob": "approver", "victor": "viewer"}
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS")
                   or Path(__file__).resolve().parent / ".output" / "console")


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver).exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and Debian's chromium/chromium-driver are missing "
                        "(scripts/test.sh installs them with apt-get)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return chromium, driver


def _as(user: str) -> dict:
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": PASSWORDS[user]}


class World:
    """One server with --auth, users of every role, runs, a protected model with a pending
    promotion, a deployment with monitoring windows, and the CLI as any of the users."""

    def __init__(self, binary: str, tmp: Path):
        self.bin = binary
        self.tmp = tmp
        uri = f"sqlite:///{tmp / 'slipway.db'}"
        for i, (user, role) in enumerate(ROLES.items()):
            args = [binary, "users", "create", user, "--role", role, "--password-stdin",
                    "--backend-store-uri", uri] + (["--create"] if i == 0 else [])
            subprocess.run(args, input=PASSWORDS[user], text=True, check=True, capture_output=True,
                           timeout=60)
        # MLflow's own UI, from the mlflow wheel this suite installs, served beside the console.
        try:
            import mlflow

            build = Path(mlflow.__file__).parent / "server" / "js" / "build"
            self.mlflow_ui = build if (build / "index.html").is_file() else None
        except ImportError:
            self.mlflow_ui = None
        ui = ["--mlflow-ui", str(self.mlflow_ui)] if self.mlflow_ui else []
        self.server = SlipwayServer(binary, tmp, extra_args=[
            "--auth", "--cpu-hour-price", "0.05", "--alert-interval", "1s", *ui]).start()
        self.url = self.server.url

    def cli(self, user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        env.update(MLFLOW_TRACKING_URI=self.url, **_as(user))
        result = subprocess.run([self.bin, *args], env=env, capture_output=True, text=True,
                                timeout=90)
        if check:
            assert result.returncode == 0, f"slipway {' '.join(args)} as {user}: {result.stderr}"
        return result

    def api(self, user: str) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.auth = (user, PASSWORDS[user])
        return session

    def client(self, user: str):
        """The real mlflow client acting as `user` (its credentials come from the
        environment, set only while `use` runs)."""
        from mlflow import MlflowClient

        world = self

        class As:
            def __enter__(self):
                self.saved = {k: os.environ.get(k) for k in _as(user)}
                os.environ.update(_as(user))
                return MlflowClient(world.url, world.url)

            def __exit__(self, *exc):
                for k, v in self.saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

        return As()


def _register(client, model: str, folder: Path, files: list[str] | None = None) -> str:
    experiment = client.get_experiment_by_name("Default").experiment_id
    run = client.create_run(experiment)
    if files is None:
        client.log_artifacts(run.info.run_id, str(folder), "model")
    else:
        for file in files:
            client.log_artifact(run.info.run_id, str(folder / file), "model")
    client.set_terminated(run.info.run_id)
    return client.create_model_version(model, f"runs:/{run.info.run_id}/model",
                                       run_id=run.info.run_id).version


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = os.environ.get("SLIPWAY_BIN")
    if not binary:
        pytest.skip("needs SLIPWAY_BIN (starts its own slipway server)")
    _browser_paths()
    _require_runtime()
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    w = World(binary, tmp_path_factory.mktemp("console"))
    # Alice's experiment: three runs with histories, params and artifacts.
    with w.client("alice") as client:
        w.experiment = client.create_experiment(unique_name("churn"))
        w.runs = []
        for i, (lr, depth) in enumerate([(0.1, 3), (0.05, 5), (0.01, 8)]):
            run = client.create_run(w.experiment, run_name=f"gbt-{i}")
            rid = run.info.run_id
            client.log_param(rid, "learning_rate", str(lr))
            client.log_param(rid, "max_depth", str(depth))
            for step in range(50):
                client.log_metric(rid, "loss", 1.0 / (1 + lr * step * 10), step=step)
            client.log_metric(rid, "f1", 0.70 + i * 0.05)
            notes = w.tmp / f"notes-{i}.txt"
            notes.write_text(f"run {i}: <b>not html</b>\n")
            client.log_artifact(rid, str(notes))
            client.set_terminated(rid)
            w.runs.append(rid)
        # A protected model: v1 in production, v2 waiting for an approval Alice asked for.
        w.model = unique_name("fraud")
        client.create_registered_model(w.model)
        _register(client, w.model, MLFLOW_MODEL)
        _register(client, w.model, MLFLOW_MODEL)
    with w.client("root") as client:
        client.set_registered_model_alias(w.model, "production", "1")
    w.cli("root", "policy", "set", w.model, "--aliases", "production", "--approvals", "1")
    asked = json.loads(w.cli("alice", "promote", "request", w.model, "2", "--to", "production",
                             "--reason", "better recall", "--json").stdout)
    w.promotion = asked["promotion"]["id"] if "promotion" in asked else asked["id"]
    # A monitored deployment with two closed windows: one like the reference, one drifted.
    data = sklearn_datasets.load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    reference = w.tmp / "reference.csv"
    with reference.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "target"])
        for row, label in zip(data.data.tolist(), data.target.tolist()):
            writer.writerow([*row, label])
    with w.client("alice") as client:
        w.monitored_model = unique_name("mon")
        client.create_registered_model(w.monitored_model)
        version = _register(client, w.monitored_model, MLFLOW_MODEL)
    w.cli("alice", "monitor", "reference", "create", f"models:/{w.monitored_model}/{version}",
          "--data", str(reference), "--label", "target")
    w.monitored = unique_name("mon")
    w.cli("alice", "deploy", "create", w.monitored, "--model",
          f"models:/{w.monitored_model}/{version}", "--monitor-window", "60s",
          "--monitor-window-rows", "150")
    session = w.api("alice")
    rng = random.Random(3)
    rows = data.data.tolist()
    def windows() -> int:
        url = f"{w.url}/api/slipway/v1/deployments/{w.monitored}/monitoring"
        return len(session.get(url, timeout=10).json()["windows"])

    # One window like the reference, then one drifted: each waits for the one before to close
    # (the data plane sends its sample every 2 s).
    for closed, scale in enumerate((1.0, 1.5), start=1):
        for row in rng.choices(rows, k=150):
            r = session.post(f"{w.url}/deployments/{w.monitored}/invocations",
                             json={"inputs": [[v * scale for v in row]]}, timeout=10)
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 40
        while windows() < closed:
            assert time.monotonic() < deadline, f"window {closed} did not close"
            time.sleep(0.25)
    yield w
    w.server.stop()


class Traffic:
    """Single-row requests as `user` from a thread until the block ends."""

    def __init__(self, url: str, session: requests.Session):
        import threading

        self.url, self.session = url, session
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self.stop.is_set():
            try:
                r = self.session.post(self.url, json={"inputs": [ROWS[i % len(ROWS)]]}, timeout=10)
                self.statuses.append(r.status_code)
            except requests.RequestException:
                self.statuses.append(0)
            i += 1
            # About 12 requests a second: the candidate's 30 samples take a few seconds, long
            # enough to watch the stage before the analysis decides.
            self.stop.wait(0.08)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


class Browser:
    """A headless Chromium session, signed in as one user; keeps every page's console log."""

    def __init__(self, base: str):
        chromium, driver = _browser_paths()
        options = Options()
        options.binary_location = chromium
        for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--disable-gpu"]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.set_page_load_timeout(30)
        self.base = base
        self.errors: list[str] = []

    def sign_in(self, user: str) -> "Browser":
        self.driver.get(self.base + "/login")
        self.driver.find_element(By.ID, "user").send_keys(user)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
        self.driver.find_element(By.ID, "sign-in").click()
        WebDriverWait(self.driver, 10).until(EC.presence_of_element_located((By.ID, "whoami")))
        assert self.driver.find_element(By.ID, "whoami").text == user
        return self

    def open(self, path: str, shot: str | None = None):
        self.driver.get(self.base + path)
        WebDriverWait(self.driver, 10).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        if shot:
            self.settle()
            self.shot(shot)
        self.collect()
        return self.driver

    def settle(self, seconds: float = 1.0):
        """Charts draw after their data arrives."""
        time.sleep(seconds)

    def shot(self, name: str):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def collect(self):
        for entry in self.driver.get_log("browser"):
            if entry["level"] == "SEVERE":
                self.errors.append(f"{self.driver.current_url}: {entry['message']}")

    def wait(self, condition, timeout: float = 20, what: str = ""):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition)
        except TimeoutException:
            self.shot("failure-" + (what or "wait").replace(" ", "-"))
            raise AssertionError(f"timed out waiting for {what}: {self.driver.current_url}")

    def close(self):
        self.driver.quit()


@pytest.fixture
def browser(world):
    opened: list[Browser] = []

    def make(user: str) -> Browser:
        b = Browser(world.url).sign_in(user)
        opened.append(b)
        return b

    yield make
    for b in opened:
        b.close()


def test_a_page_asks_for_sign_in_and_refuses_a_wrong_password(world, browser):
    b = Browser(world.url)
    try:
        b.open("/experiments")
        assert "/login" in b.driver.current_url
        b.driver.find_element(By.ID, "user").send_keys("alice")
        b.driver.find_element(By.ID, "password").send_keys("wrong-password")
        b.driver.find_element(By.ID, "sign-in").click()
        error = b.wait(lambda d: d.find_element(By.ID, "login-error"), what="login error")
        assert "invalid credentials" in error.text
        b.shot("sign-in-refused")
    finally:
        b.close()
    # A token of the user's signs in too (its own user's, not another's).
    token = subprocess.run(
        [world.bin, "tokens", "create", "--user", "victor", "--expires-in", "1h",
         "--backend-store-uri", world.server.backend_store_uri],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    session = requests.Session()
    session.trust_env = False
    wrong = session.post(f"{world.url}/login", data={"user": "alice", "password": token},
                         allow_redirects=False, timeout=10)
    assert wrong.status_code == 401, wrong.status_code
    signed = session.post(f"{world.url}/login", data={"user": "victor", "password": token},
                          allow_redirects=False, timeout=10)
    assert signed.status_code == 303 and "slipway_session" in signed.headers["set-cookie"]
    assert session.get(f"{world.url}/api/slipway/v1/whoami", timeout=10).json()["user"] == "victor"
    # A session's own token does not start another session (it would never end).
    renewed = requests.post(f"{world.url}/login", allow_redirects=False, timeout=10,
                            data={"user": "victor", "password": session.cookies["slipway_session"]})
    assert renewed.status_code == 401 and "cannot start another session" in renewed.text
    # Signed in, the page asked for first comes back; signed out, the session's token is gone.
    b = browser("alice")
    b.open(f"/experiments/{world.experiment}")
    assert b.driver.find_element(By.ID, "runs")
    b.driver.find_element(By.CSS_SELECTOR, "header form button").click()
    b.wait(lambda d: "/login" in d.current_url, what="sign-out")
    b.open(f"/experiments/{world.experiment}")
    assert "/login" in b.driver.current_url


def test_an_editor_finds_runs_by_filter_and_compares_them_on_charts(world, browser):
    b = browser("alice")
    d = b.open(f"/experiments/{world.experiment}", shot="runs")
    assert len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 3
    box = d.find_element(By.ID, "filter")
    box.clear()
    box.send_keys("metrics.f1 > 0.72 and params.max_depth != '3'")
    d.find_element(By.ID, "search").click()
    b.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2, what="filtered runs")
    names = sorted(e.text for e in d.find_elements(By.CSS_SELECTOR, "#runs tbody td:nth-child(2) a"))
    assert names == ["gbt-1", "gbt-2"], names
    # Sorted by a metric column, the best first.
    d.find_element(By.LINK_TEXT, "metrics.f1").click()
    b.wait(lambda d: "order=metrics.f1" in d.current_url, what="sorted runs")
    first = d.find_element(By.CSS_SELECTOR, "#runs tbody tr td:nth-child(2) a").text
    assert first == "gbt-2", first
    b.shot("runs-filtered")
    # A filter the grammar refuses says why, on the page.
    box = d.find_element(By.ID, "filter")
    box.clear()
    box.send_keys("metrics.f1 >> 1")
    d.find_element(By.ID, "search").click()
    assert "expected a value" in b.wait(lambda d: d.find_element(By.ID, "filter-error"), what="filter error").text
    # Tick two runs and compare: the overlaid chart and the parallel coordinates are drawn.
    d = b.open(f"/experiments/{world.experiment}")
    assert not d.find_element(By.ID, "compare").is_enabled()
    for box in d.find_elements(By.CSS_SELECTOR, "#runs tbody input[type=checkbox]")[:2]:
        box.click()
    d.find_element(By.ID, "compare").click()
    b.wait(lambda d: "/compare" in d.current_url, what="compare view")
    chart = b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#compare-chart[data-drawn]"), what="compare chart")
    Select = __import__("selenium.webdriver.support.select", fromlist=["Select"]).Select
    Select(d.find_element(By.CSS_SELECTOR, "[data-metric]")).select_by_value("loss")
    b.wait(lambda d: d.find_element(By.ID, "compare-chart").get_attribute("data-drawn") == "50", what="loss history drawn")
    assert chart.find_elements(By.CSS_SELECTOR, "canvas"), "uPlot draws on a canvas"
    assert d.find_element(By.ID, "parallel").get_attribute("data-drawn") == "2"
    differing = [r.find_element(By.TAG_NAME, "th").text
                 for r in d.find_elements(By.CSS_SELECTOR, "#param-diff tr.differs")]
    assert sorted(differing) == ["learning_rate", "max_depth"], differing
    b.settle()
    b.shot("compare")
    # A run's page: its history on a chart, and a text artifact previewed as text, not HTML.
    d = b.open(f"/runs/{world.runs[0]}")
    b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#run-chart[data-drawn]"), what="run chart")
    d.find_element(By.CSS_SELECTOR, "a[data-preview]").click()
    pre = b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#artifact-preview pre"), what="preview")
    assert "<b>not html</b>" in pre.text
    b.shot("run")
    assert not b.errors, b.errors


def test_an_approver_approves_a_promotion_that_an_editor_cannot(world, browser):
    alice = browser("alice")
    d = alice.open("/promotions", shot="promotions-editor")
    card = d.find_element(By.ID, f"promotion-{world.promotion}")
    assert "better recall" in card.text and "v1 → v2" in card.text, card.text
    assert not card.find_elements(By.CSS_SELECTOR, "button.approve"), "an editor sees no Approve"
    # Forced from the page's own script, the API refuses her all the same.
    status = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/api/slipway/v1/promotions/{world.promotion}/approve', {{method: 'POST',"
        " credentials: 'same-origin', headers: {'X-Slipway-Console': '1',"
        " 'Content-Type': 'application/json'}, body: '{}'}).then(r => done(r.status));")
    assert status == 403
    # Without the console's header, the session cookie changes nothing even for an approver.
    bob_api = requests.Session()
    bob_api.trust_env = False
    bob = browser("bob")
    cookie = bob.driver.get_cookie("slipway_session")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict", cookie
    bob_api.cookies.set("slipway_session", cookie["value"])
    forged = bob_api.post(f"{world.url}/api/slipway/v1/promotions/{world.promotion}/approve",
                          json={}, timeout=10)
    assert forged.status_code == 403 and "console" in forged.text, forged.text
    d = bob.open("/promotions")
    d.find_element(By.CSS_SELECTOR, f"#promotion-{world.promotion} button.approve").click()
    prompt = bob.wait(EC.alert_is_present(), what="approval comment prompt")
    prompt.send_keys("checked the recall numbers")
    prompt.accept()
    bob.wait(lambda d: not d.find_elements(By.ID, f"promotion-{world.promotion}"), what="approved request leaves the pending list")
    bob.shot("promotions-approved")
    with world.client("bob") as client:
        assert client.get_model_version_by_alias(world.model, "production").version == "2"
    audit = world.api("root").get(f"{world.url}/api/slipway/v1/audit",
                                  params={"actor": "bob"}, timeout=10).json()["entries"]
    assert any(e["action"] == "promotions.approve" for e in audit), audit
    assert not alice.errors and not bob.errors, alice.errors + bob.errors


def test_an_operator_watches_a_canary_progress_and_roll_back_live(world, browser):
    name = unique_name("canary")
    with world.client("alice") as client:
        model = unique_name("can")
        client.create_registered_model(model)
        _register(client, model, MLFLOW_MODEL)
        bad = _register(client, model, MODELS, files=["iris_logreg.onnx"])
    world.cli("alice", "deploy", "create", name, "--model", f"models:/{model}/1",
              "--breaker-failures", "1000")
    world.cli("alice", "deploy", "update", name, "--candidate", f"models:/{model}/{bad}",
              "--steps", "50:60s", "--interval", "500ms", "--min-samples", "30",
              "--max-p99-ratio", "10")
    b = browser("alice")
    d = b.open(f"/deployments/{name}", shot="deployment-progressing")
    assert d.find_element(By.ID, "rollout-state").text == "progressing"
    assert d.find_element(By.ID, "traffic-split").get_attribute("data-candidate") == "50"
    # The page is not reloaded from here on: live parts change under this marker.
    d.execute_script("window.__stayed = true;")
    with Traffic(f"{world.url}/deployments/{name}/invocations", world.api("alice")) as traffic:
        b.wait(lambda d: int(d.find_element(By.CSS_SELECTOR, "#variants tr.candidate td:nth-child(4)").text or 0) > 0,
               timeout=30, what="candidate requests counted live")
        b.shot("deployment-live")
        b.wait(lambda d: d.find_element(By.ID, "rollout-state").text == "rolled_back",
               timeout=60, what="rollback shown live")
    assert d.execute_script("return window.__stayed === true;"), "the page reloaded"
    # The stable answered every request the failing candidate could not.
    assert set(traffic.statuses) == {200}, sorted(set(traffic.statuses))
    assert d.find_element(By.ID, "traffic-split").get_attribute("data-candidate") == "0"
    reason = d.find_element(By.ID, "rollout-reason").text
    assert "error_rate" in reason, reason
    kinds = [r.get_attribute("class") for r in d.find_elements(By.CSS_SELECTOR, "#events tbody tr")]
    assert any("rolled_back" in k for k in kinds), kinds
    b.shot("deployment-rolled-back")
    assert not b.errors, b.errors


def test_drift_is_drawn_over_time_with_reference_and_current_distributions(world, browser):
    b = browser("alice")
    d = b.open(f"/deployments/{world.monitored}/monitoring")
    chart = b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#drift-chart[data-drawn]"), what="drift chart")
    assert chart.get_attribute("data-drawn") == "2", "one point per closed window"
    assert "dataset drift" in d.find_element(By.ID, "dataset-drift").text
    figures = d.find_elements(By.CSS_SELECTOR, "#distributions figure")
    assert len(figures) == 31, "30 features and the prediction"
    drifted = d.find_elements(By.CSS_SELECTOR, "#distributions figure.drifted")
    assert len(drifted) >= 20, len(drifted)
    bars = figures[0].find_elements(By.CSS_SELECTOR, "rect.current")
    assert len(bars) == 12 and any(float(r.get_attribute("height")) > 0 for r in bars)
    b.settle()
    b.shot("monitoring")
    assert not b.errors, b.errors


def test_every_page_draws_without_console_errors(world, browser):
    root = browser("root")
    pages = {
        "home": "/",
        "experiments": "/experiments",
        "runs-all": f"/experiments/{world.experiment}",
        "run-page": f"/runs/{world.runs[1]}",
        "compare-all": f"/compare?runs={','.join(world.runs)}",
        "models": "/models",
        "model": f"/models/{world.model}",
        "version-lineage": f"/models/{world.model}/versions/2",
        "promotions-all": "/promotions",
        "deployments": "/deployments",
        "deployment": f"/deployments/{world.monitored}",
        "monitoring-page": f"/deployments/{world.monitored}/monitoring",
        "alerts": "/alerts",
        "audit": "/audit?verify=1",
        "delivery": "/delivery",
    }
    for shot, path in pages.items():
        d = root.open(path, shot=shot)
        assert d.find_element(By.TAG_NAME, "h1").text, path
        assert not d.find_elements(By.ID, "page-error"), (path, d.find_element(By.ID, "page-error").text)
    d = root.open("/audit?verify=1")
    assert d.find_element(By.ID, "verify-result").text.startswith("intact"), \
        d.find_element(By.ID, "verify-result").text
    d = root.open(f"/models/{world.model}/versions/2")
    kinds = {g.get_attribute("data-kind") for g in d.find_elements(By.CSS_SELECTOR, "#lineage g.node")}
    assert {"model", "run"} <= kinds, kinds
    assert not root.errors, root.errors
    # A viewer reads but sees no audit trail and no buttons.
    victor = browser("victor")
    d = victor.open("/audit")
    assert "for admins" in d.find_element(By.ID, "page-error").text
    d = victor.open(f"/deployments/{world.monitored}")
    assert not d.find_elements(By.CSS_SELECTOR, "button[data-action]")


def test_mlflow_s_own_ui_lists_the_runs_and_shows_a_run(world, browser):
    if world.mlflow_ui is None:
        pytest.skip("the mlflow wheel's UI build is not installed")
    b = browser("alice")
    d = b.open(f"/mlflow/#/experiments/{world.experiment}/runs")
    body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
    b.wait(lambda d: "gbt-2" in body(d), timeout=40, what="MLflow's runs list")
    text = body(d)
    assert "gbt-0" in text and "gbt-1" in text and "3 matching runs" in text, text[-800:]
    b.shot("mlflow-ui-runs")
    d = b.open(f"/mlflow/#/experiments/{world.experiment}/runs/{world.runs[0]}")
    b.wait(lambda d: "learning_rate" in body(d), timeout=40, what="MLflow's run page")
    text = body(d)
    for expected in ["gbt-0", "max_depth", "0.1", "loss", world.runs[0]]:
        assert expected in text, (expected, text[:1500])
    b.shot("mlflow-ui-run")
    # The UI's searches go through the session like the console's reads, and still cannot
    # change anything without the console's header.
    status = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/mlflow/ajax-api/2.0/mlflow/experiments/create', {method: 'POST',"
        " credentials: 'same-origin', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({name: 'from-the-ui'})}).then(r => done(r.status));")
    assert status == 403
