"""SLOs end to end: a deployment with availability and latency objectives (`slipway deploy create
--slo-availability --slo-latency`), healthy traffic that leaves the error budget whole, then a
synthetic error burst (requests shed with 503 by a server told to take one at a time), after
which the SRE workbook's fast-burn rule on `slo_burn(availability)` fires to a webhook receiver
and `slipway slo status` shows the budget spent and exits non-zero."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from mlflow import MlflowClient

from e2e_support import cli_for, free_port, register_folder, unique_name
from test_deployments import MLFLOW_MODEL, ROWS, _require_runtime

pytestmark = pytest.mark.slipway_only


class Receiver:
    """Collects the alert notifications slipway's webhook receiver POSTs."""

    def __init__(self):
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_an_error_burst_burns_the_budget_and_pages(slipway_factory, slipway_bin, tmp_path):
    _require_runtime()
    # One request at a time, and none kept waiting: concurrent traffic is shed with 503.
    server = slipway_factory(extra_args=["--alert-interval", "1s", "--serving-max-in-flight", "1",
                                         "--serving-max-queue-wait-ms", "1"])
    url = server.url
    cli = cli_for(slipway_bin, url)

    client = MlflowClient(url, url)
    model = unique_name("slo-model")
    register_folder(client, model, MLFLOW_MODEL)
    name = unique_name("slo")
    refused = cli("deploy", "create", name, "--model", f"models:/{model}/1",
                  "--slo-latency", "300ms:0.99", check=False)
    assert refused.returncode != 0 and "200, 500" in refused.stderr, refused.stderr
    cli("deploy", "create", name, "--model", f"models:/{model}/1",
        "--slo-availability", "0.999", "--slo-latency", "500ms:0.99", "--slo-window", "30d")

    receiver = Receiver()
    try:
        rules = tmp_path / "alerts.yml"
        rules.write_text(f"""
receivers:
  - name: oncall
    webhook: {{url: "{receiver.url}"}}
rules:
  - alert: SLOFastBurn
    deployment: {name}
    expr: slo_burn(availability) > 14.4
    window: 1h
    min_samples: 10
    severity: critical
    runbook_url: https://runbooks.example.com/slo-burn
""")
        cli("alerts", "rules", "apply", str(rules))

        session = requests.Session()
        invocations = f"{url}/deployments/{name}/invocations"
        for row in ROWS * 5:
            r = session.post(invocations, json={"inputs": [row]}, timeout=10)
            assert r.status_code == 200, r.text

        def status(*extra: str) -> tuple[int, dict]:
            result = cli("slo", "status", name, "--json", *extra, check=False)
            return result.returncode, json.loads(result.stdout)

        # The evaluator stores the minutes it counted every second or so.
        deadline = time.monotonic() + 15
        while (answer := status())[1]["objectives"][0]["requests"] < 5 * len(ROWS):
            assert time.monotonic() < deadline, answer
            time.sleep(0.5)
        code, healthy = answer
        assert code == 0, healthy
        availability, latency = healthy["objectives"]
        assert (availability["kind"], availability["bad"]) == ("availability", 0), healthy
        assert availability["budget_remaining"] == 1.0 and availability["sli"] == 1.0
        assert latency["threshold_ms"] == 500.0 and latency["objective"] == 0.99
        assert not receiver.bodies

        # The burst: many 256-row requests at once; all but one at a time are shed.
        big = {"inputs": [ROWS[i % len(ROWS)] for i in range(256)]}
        statuses: list[int] = []

        def flood():
            s = requests.Session()
            for _ in range(25):
                statuses.append(s.post(invocations, json=big, timeout=30).status_code)

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        shed = statuses.count(503)
        assert shed >= 10 and set(statuses) <= {200, 503}, statuses

        deadline = time.monotonic() + 20
        while not [b for b in receiver.bodies if b.get("status") == "firing"]:
            assert time.monotonic() < deadline, cli("alerts", "list", check=False).stdout
            time.sleep(0.2)
        firing = [b for b in receiver.bodies if b["status"] == "firing"][0]["alerts"][0]
        assert firing["labels"]["alertname"] == "SLOFastBurn", firing
        assert firing["labels"]["deployment"] == name, firing
        assert firing["annotations"]["runbook_url"] == "https://runbooks.example.com/slo-burn"

        # Every shed request is counted, once the planes' last reports are in.
        deadline = time.monotonic() + 15
        while (answer := status())[1]["objectives"][0]["bad"] < shed:
            assert time.monotonic() < deadline, (answer, shed)
            time.sleep(0.5)
        code, burnt = answer
        availability = burnt["objectives"][0]
        assert availability["bad"] == shed, (availability, shed)
        assert availability["budget_remaining"] < 0, availability
        assert availability["burn_rates"][0]["burning"] is True, availability
        assert code == 2, burnt
        text = cli("slo", "status", name, check=False).stdout
        assert "availability" in text and "latency <= 500 ms" in text and "(page)" in text, text
    finally:
        receiver.close()
