"""The results page's table of a directions.json: one row per method and one for the best single dimension, one
column per attribute, each cell `pooled ρ · ρ within / class kept`.

    python benchmarks/directions_table.py RUN/directions.json [--attributes a,b,c]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaelab.analysis.directions import percent_text, signed_text

METHODS = {"ridge": "ridge", "ridge-class-held": "ridge, class held", "per-class": "per class", "local": "local path"}


def cell(entry: dict, best: bool = False) -> str:
    rho, within = signed_text(entry.get("rho")).strip(), signed_text(entry.get("rho_within")).strip()
    text = f"{rho} · {within} / {percent_text(entry.get('class_kept'))}"
    return f"**{text}**" if best else text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--attributes", help="comma-separated, in this order (default: the summary's)")
    args = parser.parse_args()
    result = json.loads(args.path.read_text())
    summary = {row["attribute"]: row for row in result["summary"]}
    names = args.attributes.split(",") if args.attributes else list(summary)
    print("| method | " + " | ".join(name.replace("_", " ") for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for method, label in METHODS.items():
        entries = {d["name"]: d for d in result["directions"] if d["method"] == method}
        if entries:
            print(f"| {label} | " + " | ".join(
                cell(entries[name], summary[name]["method"] == method) if name in entries else "–" for name in names)
                + " |")
    single = result["single_dimensions"]
    print("| best single dimension | " + " | ".join(
        f"z{single[name]['dim']} {cell(single[name])}" if name in single else "–" for name in names) + " |")
    for method in ("pca", "sefa"):
        found = [d for d in result["principal"] if d["method"] == method]
        named = [f"{d['name']} {signed_text(d['rho']).strip()}" for d in found if d["name"] != "unnamed"]
        print(f"\n{method}: {len(named)} of {len(found)} named ({', '.join(named) or '–'})")


if __name__ == "__main__":
    main()
