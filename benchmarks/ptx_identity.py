"""Do the CUDA sources in cuda/ compile to the same PTX as those of a git revision? (No GPU needed.)

    python benchmarks/ptx_identity.py REV [--sources decode.cu ...] [--archs sm_90a ...]
                                          [--option=-DX ...] [--match TEXT]

Compiles every kernel variant (`_cuda.kernel_expressions`) of each source with NVRTC, from
the working tree's cuda/ and from REV's (`git show REV:cuda/...` into a temporary folder), with the
given extra options (default none: test_kernel_compiles' bare options), and compares the PTX with
comments, `.loc` and `.file` lines left out. Prints one line a (source, arch): identical, or the
kernels that differ with the opcodes whose counts differ (old, new): a refactor that should leave
the kernels alone shows as "identical". Where the PTX differs, the machine code is compared too
(each kernel's .text section of NVRTC's cubin: what ptxas made of it): "machine code identical"
where every kernel's is, said with "in register names alone" where each entry's virtual registers
renumbered in order of first use make the PTX equal (the same instructions on the same values in
the same order). Exits 1 when the machine code differs. (`_cuda.load_source` and `source_dir`
are cached: both are cleared around each compile, or both sides would read the same source.)

Takes minutes on two CPUs (decode.cu at sm_90a alone: ~4 min); --match keeps the expressions that
contain TEXT (e.g. "split_mma").
"""

import argparse
import collections
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cuattn import _cuda  # noqa: E402


def _in_folder(folder, compile_):
    """compile_() with the CUDA sources read from `folder` (the caches cleared on the way in and out)."""
    saved = _cuda.source_dir
    _cuda.source_dir = lambda: Path(folder)
    _cuda.load_source.cache_clear()
    try:
        return compile_()
    finally:
        _cuda.source_dir = saved
        _cuda.load_source.cache_clear()


def _ptx(folder, source, exprs, arch, options):
    return _in_folder(folder, lambda: _cuda.compile_ptx(source, exprs, arch, options))


def _strip(ptx):
    return "\n".join(line for line in ptx.splitlines() if not line.lstrip().startswith(("//", ".loc", ".file")))


def _opcodes(ptx):
    """Opcode counts per kernel entry (label lines, braces and directives left out)."""
    out = {}
    for body in re.split(r"\n\.(?:visible|weak) \.entry ", ptx)[1:]:
        name = body.split("(")[0]
        ops = collections.Counter()
        for line in body.splitlines()[1:]:
            words = line.split()
            if line.startswith("\t") and words and not words[0].startswith(("$", "{", "}", ".", "//")):
                ops[words[1] if words[0].startswith("@") and len(words) > 1 else words[0]] += 1  # @%p bra: bra
        out[name] = ops
    return out


def _registers_renamed(ptx):
    """The PTX with each entry's virtual registers (%r12, %rd3, %p1, ...) renumbered per class in
    order of first use: two PTX texts equal after this differ in register names alone."""
    out = []
    for part in re.split(r"(\n\.(?:visible|weak) \.entry )", ptx):
        names, used = {}, collections.Counter()

        def rename(m):
            key = m.group(0)
            if key not in names:
                names[key] = f"%{m.group(1)}#{used[m.group(1)]}"
                used[m.group(1)] += 1
            return names[key]

        out.append(re.sub(r"%([a-z]+)(\d+)\b", rename, part))
    return "".join(out)


def _cubin(folder, source, exprs, arch, options):
    return _in_folder(folder, lambda: _cuda._nvrtc_compile(source, exprs, arch, options,
                                                           lambda nvrtc, prog: nvrtc.getCUBIN(prog)))


def _texts(cubin):
    """{section name: bytes} of an ELF64 cubin's .text.* sections (each kernel's machine code)."""
    cubin = bytes(cubin)
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", cubin, 0x3A)

    def header(i):  # (name offset, file offset, size)
        at = shoff + i * entsize
        return struct.unpack_from("<I", cubin, at)[0], *struct.unpack_from("<QQ", cubin, at + 0x18)

    _, names_at, _ = header(names_index)
    out = {}
    for i in range(count):
        name_off, offset, size = header(i)
        name = cubin[names_at + name_off:cubin.index(b"\0", names_at + name_off)].decode()
        if name.startswith(".text."):
            out[name] = cubin[offset:offset + size]
    return out


def compare(new_folder, old_folder, source, exprs, arch, options=()):
    """(identical, {kernel: {opcode: (old count, new count)}}) for `source`'s kernels `exprs`
    compiled from old_folder and from new_folder (the kernels whose opcode counts differ). Where
    the PTX differs but every kernel's machine code is the same (_texts), identical is "renamed"
    (the PTX differs in register names alone: _registers_renamed) or "machine code"."""
    new = _strip(_ptx(new_folder, source, exprs, arch, options))
    before = _strip(_ptx(old_folder, source, exprs, arch, options))
    if new == before:
        return True, {}
    if _texts(_cubin(new_folder, source, exprs, arch, options)) == _texts(_cubin(old_folder, source, exprs, arch,
                                                                                 options)):
        return "renamed" if _registers_renamed(new) == _registers_renamed(before) else "machine code", {}
    a, b = _opcodes(before), _opcodes(new)
    changed = {}
    for name in b:
        old_c, new_c = a.get(name, collections.Counter()), b[name]
        if old_c != new_c:
            changed[name] = {o: (old_c[o], new_c[o]) for o in sorted(set(old_c) | set(new_c)) if old_c[o] != new_c[o]}
    return False, changed


def _expressions(source, arch, match):
    return [e for e in _cuda.kernel_expressions(source, arch) if match in e]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision to compare against (e.g. HEAD, a commit)")
    parser.add_argument("--sources", nargs="+", default=None, help="cuda/ files (default: every kernel file)")
    parser.add_argument("--archs", nargs="+", default=["sm_80", "sm_90a"])
    parser.add_argument("--option", action="append", default=[],
                        help="an extra NVRTC option, written --option=-DX (repeat for more)")
    parser.add_argument("--match", default="", help="only kernel expressions containing this text")
    args = parser.parse_args()
    sources = args.sources or list(_cuda.kernel_files())
    differ = False
    with tempfile.TemporaryDirectory() as old:
        for path in sorted((ROOT / "cuda").iterdir()):
            if path.suffix in (".cu", ".cuh"):
                text = subprocess.run(["git", "show", f"{args.rev}:cuda/{path.name}"], cwd=ROOT,
                                      capture_output=True, text=True)
                if text.returncode == 0:  # a file new since REV is missing there (its includes fail loudly)
                    (Path(old) / path.name).write_text(text.stdout)
        for source in sources:
            for arch in args.archs:
                exprs = _expressions(source, arch, args.match)
                if not exprs:
                    continue
                same, changed = compare(ROOT / "cuda", old, source, exprs, arch, tuple(args.option))
                if same in ("renamed", "machine code"):
                    what = "PTX differs" + (" in register names alone" if same == "renamed" else "")
                    what += ", machine code identical"
                    print(f"{source} {arch}: {len(exprs)} kernels, {what}", flush=True)
                    continue
                if same:
                    print(f"{source} {arch}: {len(exprs)} kernels, identical", flush=True)
                    continue
                differ = True
                print(f"{source} {arch}: {len(exprs)} kernels, PTX differs; opcode counts differ in {len(changed)}",
                      flush=True)
                for name, ops in changed.items():
                    print(f"  {name[:70]} {ops}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
