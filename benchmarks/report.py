"""Markdown tables from the benchmark JSON files in benchmarks/results/ (for README.md).

    python benchmarks/report.py [attention|decode|gla ...]
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def attention_table(data):
    rows = ["| dtype | D | S | B x H | causal | cuattn TFLOP/s | torch flash (FA2) | cuDNN | x FA2 | x cuDNN |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        rows.append(f"| {r['dtype']} | {r['D']} | {r['S']} | {r['B']}x{r['H']} | {'yes' if r['causal'] else 'no'} | "
                    f"{fmt(r['cuattn'], 0)} | {fmt(r.get('torch_flash'), 0)} | {fmt(r.get('torch_cudnn'), 0)} | "
                    f"{fmt(r.get('ratio_torch_flash'))} | {fmt(r.get('ratio_torch_cudnn'))} |")
    return rows


def generic_table(data):
    rows = data["rows"]
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k)) if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys) + " |")
    return out


def main(names):
    for name in names or ["attention", "decode", "gla"]:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        meta = data.get("meta", {})
        print(f"\n{name}: {meta.get('device', '?')}, {meta.get('date', '?')} (benchmarks/results/{name}.json)\n")
        table = attention_table(data) if name == "attention" else generic_table(data)
        print("\n".join(table))


if __name__ == "__main__":
    main(sys.argv[1:])
