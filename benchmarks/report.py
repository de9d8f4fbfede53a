"""Markdown tables from the benchmark JSON files in benchmarks/results/ (for README.md).

    python benchmarks/report.py [attention|decode|gla ...]     print the tables
    python benchmarks/report.py --readme                        rewrite README.md's result blocks
    python benchmarks/report.py --columns FILE [PREFIX ...]     one line a row of any benchmark JSON:
                                                                its float columns (those starting
                                                                with a PREFIX, if given), 3 digits

README.md holds each table between `<!-- results:NAME -->` and `<!-- /results -->`.
"""

import json
import re
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


def decode_table(data):
    rows = ["| B | Hq | Hkv | D | KV len | paged | cuattn ALiBi | cuattn no bias | ALiBi, tensor-core kernel | torch flash | cuDNN "
            "| torch + ALiBi bias | x best torch (per-round min-max) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        rows.append(f"| {r['B']} | {r['Hq']} | {r['Hkv']} | {r['D']} | {r['L']} | {'yes' if r['paged'] else 'no'} | "
                    f"{fmt(r.get('cuattn_alibi'))} | {fmt(r.get('cuattn'))} | {fmt(r.get('cuattn_alibi_mma'))} | {fmt(r.get('torch_flash'))} | "
                    f"{fmt(r.get('torch_cudnn'))} | {fmt(r.get('torch_alibi_bias'))} | {fmt(r.get('ratio_alibi_vs_best_torch'))}"
                    f"{spread(r.get('ratio_alibi_vs_best_torch_rounds'))} |")
    return rows


def spread(rounds):
    """ ' (min-max)' of a [min, median, max] triple, '' without one."""
    return f" ({rounds[0]:.2f}-{rounds[2]:.2f})" if rounds else ""


def gla_table(data):
    rows = ["| B | T | H | K=V | cuattn chunk | fla chunk_gla | x | cuattn recurrent | fla fused_recurrent | x | IO floor |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        rows.append(f"| {r['B']} | {r['T']} | {r['H']} | {r['K']} | {fmt(r.get('cuattn_chunk_ms'), 3)} | "
                    f"{fmt(r.get('fla_chunk_ms'), 3)} | {fmt(r.get('speedup_chunk_vs_fla_chunk'))} | "
                    f"{fmt(r.get('cuattn_recurrent_ms'), 3)} | {fmt(r.get('fla_fused_recurrent_ms'), 3)} | "
                    f"{fmt(r.get('speedup_recurrent_vs_fla_recurrent'))} | {fmt(r.get('io_floor_ms'), 3)} |")
    return rows


TABLES = {"attention": attention_table, "decode": decode_table, "gla": gla_table}


def generic_table(data):
    rows = data["rows"]
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (dict, list))]
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k)) if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys) + " |")
    return out


def block(name):
    data = json.loads((RESULTS / f"{name}.json").read_text())
    meta = data.get("meta", {})
    lines = TABLES[name](data)
    lines.append("")
    lines.append(f"{meta.get('device', '?')}, {meta.get('date', '?')}; `benchmarks/results/{name}.json`.")
    return "\n".join(lines)


def update_readme():
    readme = RESULTS.parent.parent / "README.md"
    text = readme.read_text()
    for name in TABLES:
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)??(<!-- /results -->)", re.S)
        if (RESULTS / f"{name}.json").exists():
            text = pattern.sub(lambda m: m.group(1) + block(name) + "\n" + m.group(2), text)
    readme.write_text(text)


def columns(path, prefixes=()):
    """Print one line a row of the benchmark JSON at `path`: the row's identity (its int, bool and str
    fields) and its float columns, those whose names start with one of `prefixes` if any are given.
    Device scripts use it to put a run's numbers in their log."""
    for r in json.loads(Path(path).read_text())["rows"]:
        ident = " ".join(f"{k}={v}" for k, v in r.items() if isinstance(v, (int, str)))
        cols = {k: round(v, 3) for k, v in r.items()
                if isinstance(v, float) and (not prefixes or k.startswith(tuple(prefixes)))}
        print(ident, cols)


def main(names):
    if names == ["--readme"]:
        update_readme()
        return
    if names[:1] == ["--columns"]:
        if len(names) < 2:
            sys.exit("usage: python benchmarks/report.py --columns FILE [PREFIX ...]")
        columns(names[1], names[2:])
        return
    if any(name.startswith("-") for name in names):
        sys.exit(__doc__)
    for name in names or ["attention", "decode", "gla"]:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            if names:  # a table asked for by name
                sys.exit(f"no {path}")
            continue
        data = json.loads(path.read_text())
        meta = data.get("meta", {})
        print(f"\n{name}: {meta.get('device', '?')}, {meta.get('date', '?')} (benchmarks/results/{name}.json)\n")
        table = TABLES.get(name, generic_table)(data)
        print("\n".join(table))


if __name__ == "__main__":
    main(sys.argv[1:])
