"""Tally an Nsight Compute SASS source page by opcode: executed warp-instructions and stall samples.

    python benchmarks/ncu_sass_summary.py FILE.txt.gz [TOP] [--sequence REGEX]

FILE is what `gpu_session.sh ncu-sass` writes (`ncu --import R --page source --print-source sass`,
gzipped): a fixed-width table whose first line of dashes gives the columns (address, SASS text,
warp stall samples, not-issued samples, samples, instructions executed, ...). Prints the TOP (45)
opcodes by executed warp-instructions with their static count and stall samples; with
--sequence, also every instruction whose text matches REGEX, in program order, with its executed
count (e.g. 'LDGSTS|DEPBAR|BAR.SYNC' shows how a kernel issues and waits for its copies).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import re


def parse(path: str) -> list[tuple[str, str, list[str]]]:
    """(address, SASS text, the other columns as text) of every instruction row."""
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    bounds = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[0])]
    rows = []
    for line in lines:
        if line.startswith("0x"):
            fields = [line[a:b + 1].strip() for a, b in bounds]
            rows.append((fields[0], fields[1], fields[2:]))
    return rows


def count(text: str) -> int:
    return int(text) if text.isdigit() else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("top", nargs="?", type=int, default=45)
    parser.add_argument("--sequence", default="")
    args = parser.parse_args()
    rows = parse(args.file)
    executed, samples, static = collections.Counter(), collections.Counter(), collections.Counter()
    for _, text, nums in rows:
        op = re.sub(r"^@!?U?P\w+\s+", "", text).split()[0] if text else "?"
        executed[op] += count(nums[3])
        samples[op] += count(nums[0])
        static[op] += 1
    total, total_samples = sum(executed.values()), max(1, sum(samples.values()))
    print(f"{len(rows)} instructions, {total} warp-instructions executed, {sum(samples.values())} stall samples")
    for op, n in executed.most_common(args.top):
        print(f"{op:32s} static {static[op]:5d} executed {n:10d} ({100 * n / max(total, 1):5.1f}%) "
              f"samples {samples[op]:6d} ({100 * samples[op] / total_samples:5.1f}%)")
    if args.sequence:
        for i, (_, text, nums) in enumerate(rows):
            if re.search(args.sequence, text):
                print(f"{i:5d} {text[:72]:72s} {nums[3]}")


if __name__ == "__main__":
    main()
