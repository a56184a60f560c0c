"""Splits the latest labeled batch (data/raw/batch.csv) into training rows and a holdout."""

from __future__ import annotations

import csv
from pathlib import Path

rows = list(csv.reader(Path("data/raw/batch.csv").open()))
header, body = rows[0], rows[1:]
cut = len(body) * 3 // 4
for name, part in (("train", body[:cut]), ("holdout", body[cut:])):
    with Path(f"data/{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(part)
print(f"{cut} training rows, {len(body) - cut} holdout rows")
