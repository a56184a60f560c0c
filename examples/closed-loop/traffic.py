"""Sends churn-scoring requests to a deployment until told to stop: rows drawn around the
shift read from a file each second (so the world can move while it runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--shift-file", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    session = requests.Session()
    shift, checked = 0.0, 0.0
    while not args.stop_file.exists():
        now = time.monotonic()
        if now - checked > 1.0:
            text = args.shift_file.read_text().strip() if args.shift_file.exists() else "0"
            shift, checked = float(text or 0), now
        row = rng.normal(loc=shift, scale=1.0, size=4).round(5).tolist()
        try:
            session.post(args.url, json={"inputs": [row]}, timeout=5)
        except requests.RequestException:
            time.sleep(0.5)
        time.sleep(1.0 / args.rate)


if __name__ == "__main__":
    main()
