"""Every CUDA kernel variant compiles with NVRTC for sm_80 and sm_90a, without a GPU.

Runs everywhere CuPy's NVRTC is installed (the 'test' extra brings cupy-cuda13x[ctk]); in CI
(CI=true) a missing NVRTC is a failure, not a skip. The ptxas report must show no spills.
"""

import importlib
import importlib.util
import os
import re
import sys

import pytest

from cuattn import _cuda

ARCHS = ["sm_80", "sm_90a"]


def _nvrtc_available():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
        return True
    except Exception:
        return False


if not _nvrtc_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must compile every CUDA kernel, but CuPy's NVRTC is not installed")
    pytest.skip("CuPy's NVRTC is not installed", allow_module_level=True)


def _variants(arch):
    """(source, expression) for every variant: cuda/<op>.cu pairs with cuattn/<op>.py, whose
    all_kernel_expressions() lists what its dispatcher can pick (per arch, where it takes one)."""
    return [(source, e) for source in _cuda.kernel_files() for e in _cuda.kernel_expressions(source, arch)]


@pytest.mark.parametrize("arch,source,expression", [(a, s, e) for a in ARCHS for s, e in _variants(a)])
def test_kernel_compiles(arch, source, expression):
    log = _cuda.compile_ptx_report(source, [expression], arch)
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", log)]
    assert spills and max(spills) == 0, f"{expression} on {arch} spills registers:\n{log}"


def _assert_spill_free(exprs, options, what):
    """Compile the decode.cu variants `exprs` together for sm_90a with `options`: a spill report for
    each, every one without spills."""
    log = _cuda.compile_ptx_report("decode.cu", exprs, "sm_90a", options)
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", log)]
    assert len(spills) >= len(exprs) and max(spills) == 0, f"spills with {what}:\n{log}"


def test_decode_mma_opt_in_rings_compile(monkeypatch):
    """The tensor-core kernel's deepest two-block ring at D 64 (cuattn.decode.MMA_TWO_BLOCK_STAGES
    (): 6 stages, the default before the 36th session's 4): every variant it gives (dtypes,
    contiguous and paged, both producers) compiles for sm_90a without spills, with the default
    options (PDL, P_lo packed)."""
    mod = importlib.import_module("cuattn.decode")
    monkeypatch.setattr(mod, "MMA_TWO_BLOCK_STAGES", ())
    exprs = [mod.split_expression(t, 64, mod.MMA_ROWS, p, "mma", copy=c) for t in mod.MMA_TYPES
             for p in (False, True) for c in mod.MMA_COPIES]
    assert all(", 6, " in e for e in exprs) and len(exprs) == 8
    _assert_spill_free(exprs, (*mod.TMA_OPTIONS, mod.PDL_OPTION, mod.MMA_PACK_LO_OPTION), "MMA_TWO_BLOCK_STAGES")


def test_decode_page_prefetch_compiles():
    """The opt-in block-table prefetch (cuattn.decode.PAGE_PREFETCH: a compile option) of the
    paged tensor-core kernels with the cp.async producer: compiles for sm_90a without spills."""
    mod = importlib.import_module("cuattn.decode")
    for type_name in mod.MMA_TYPES:
        for d in mod.MMA_HEAD_DIMS:
            expr = mod.split_expression(type_name, d, mod.MMA_ROWS, True, "mma", copy="cp.async")
            _assert_spill_free([expr], (mod.PAGE_PREFETCH_OPTION,), f"{expr} with {mod.PAGE_PREFETCH_OPTION}")


def test_decode_mma_lean_mask_compiles():
    """The opt-in -DCUATTN_DECODE_MMA_LEAN_MASK (whole visible tiles scored without the per-score
    mask; it acts where P_lo is packed) on every tensor-core decode kernel variant, packed and not:
    compiles for sm_90a without spills."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith("decode_split_mma")]
    for extra in ((), (mod.MMA_PACK_LO_OPTION,)):
        _assert_spill_free(exprs, (*mod.TMA_OPTIONS, "-DCUATTN_DECODE_MMA_LEAN_MASK", *extra), f"the lean mask {extra}")


def test_decode_mma_slabs_compile():
    """The tensor-core kernel's merge in slabs (cuattn.decode.MMA_SLABS, a compile option with P_lo
    packed) on every tensor-core decode kernel variant, with the default options and without PDL:
    compiles for sm_90a without spills."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith("decode_split_mma")]
    for extra in ((mod.PDL_OPTION,), ()):
        _assert_spill_free(exprs, (*mod.TMA_OPTIONS, *extra, mod.MMA_PACK_LO_OPTION, mod.MMA_SLABS_OPTION),
                           f"{mod.MMA_SLABS_OPTION} {extra}")


def test_decode_mma_store_phase_compiles():
    """The tensor-core kernel's rows' store phase in both forms (decode.cu: the default, no barrier
    for 1 / total, four columns a thread; the probe option -DCUATTN_DECODE_BARRIER_STORE, the
    default to the 41st session) on every tensor-core decode kernel variant: bare (test_kernel_compiles'
    options), with the default options (PDL, its early trigger, P_lo packed) and with slabs: compiles
    for sm_90a without spills (the default's first form, a second loop for padded head dims, spilled
    4-8 bytes in the two-block D 128 kernels)."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith("decode_split_mma")]
    for store in ((), ("-DCUATTN_DECODE_BARRIER_STORE",)):
        for options in (store,
                        (*mod.TMA_OPTIONS, mod.PDL_OPTION, mod.PDL_TRIGGER_OPTION, mod.MMA_PACK_LO_OPTION, *store),
                        (*mod.TMA_OPTIONS, mod.PDL_OPTION, mod.MMA_PACK_LO_OPTION, mod.MMA_SLABS_OPTION, *store)):
            _assert_spill_free(exprs, options, f"the store phase {options}")


def test_decode_mma_launch_bound_matches_the_plan():
    """decode_split_mma's launch bound (DecodeMmaShape::min_blocks: 1 where a ring leaves room for
    one block per SM, which lets a one-block kernel hold more than 168 registers) agrees with
    cuattn.decode's blocks per SM (_mma_resident) for every head dim and ring depth, slabs or not."""
    mod = importlib.import_module("cuattn.decode")
    for padded in mod.MMA_HEAD_DIMS:
        for stages in range(2, 9):
            for slabs in (False, True):
                expr = mod.split_expression("half_t", padded, mod.MMA_ROWS, False, "mma", stages, "cp.async")
                options = (*mod.TMA_OPTIONS, mod.MMA_PACK_LO_OPTION) + ((mod.MMA_SLABS_OPTION,) if slabs else ())
                ptx = _cuda.compile_ptx("decode.cu", [expr], "sm_90a", options)
                bound = re.search(r"\.minnctapersm\s+(\d+)", ptx)
                resident = mod._mma_resident(stages, padded, slabs)
                assert bound and int(bound.group(1)) == max(1, resident), (padded, stages, slabs, bound, resident)


def test_decode_mma_pack_lo_compiles():
    """The packed P_lo (cuattn.decode.MMA_PACK_LO: a compile option) of every tensor-core
    decode kernel variant: compiles for sm_90a without spills."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith("decode_split_mma")]
    _assert_spill_free(exprs, (*mod.TMA_OPTIONS, mod.MMA_PACK_LO_OPTION), mod.MMA_PACK_LO_OPTION)


# what each call runs (kernel families, by template name) for check_arch's cases: (op, dtype, tensor
# cores) -> families; the one-token GLA step kernel and the merge go with every decode / GLA call
SM75_CASES = {
    ("attention", "float16", True): ["attention_fwd_mma<half_t"],
    ("attention", "bfloat16", True): ["attention_fwd_mma<bf16_t"],
    ("attention", "float32", True): ["attention_fwd_f32<"],
    ("decode", "float16", False): ["decode_split<half_t", "decode_merge<half_t", "decode_validate<"],
    ("decode", "bfloat16", False): ["decode_split<bf16_t", "decode_merge<bf16_t"],
    ("decode", "float32", False): ["decode_split<float", "decode_merge<float"],
    ("gla", "float16", True): ["gla_chunk_mma<half_t", "gla_chunk_prep<half_t", "gla_chunk_scan"],
    ("gla", "bfloat16", True): ["gla_chunk_mma<bf16_t", "gla_chunk_prep<bf16_t"],
    ("gla", "float16", False): ["gla_recurrent_tiled<half_t", "gla_step<half_t"],
    ("gla", "bfloat16", False): ["gla_recurrent_tiled<bf16_t", "gla_step<bf16_t"],
    ("gla", "float32", False): ["gla_recurrent_tiled<float", "gla_step<float"],
}


@pytest.mark.parametrize("case", list(SM75_CASES), ids=str)
def test_sm75_kernels_match_check_arch(case):
    """cuattn._cuda.check_arch lets a call through on a cc 7.5 GPU (T4) exactly where the kernels it
    runs compile for sm_75 (one variant of each family): elsewhere the call raises its TypeError
    instead of NVRTC's log."""
    from cuattn._cuda import check_arch

    op, dtype, tensor_cores = case
    source = f"{op}.cu"
    exprs = [e for e in _variants("sm_80") if e[0] == source]
    compiles = True
    for family in SM75_CASES[case]:
        expr = next(e for s, e in exprs if e.startswith(family))
        try:
            _cuda.compile_ptx_report(source, [expr], "sm_75")
        except RuntimeError:
            compiles = False
    try:
        check_arch(op, dtype, 75, tensor_cores)
        allowed = True
    except TypeError:
        allowed = False
    assert allowed == compiles, (case, "compiles" if compiles else "does not compile")


@pytest.mark.parametrize("size", [64, 128, 256])
def test_decode_cp_async_l2_prefetch_compiles(size):
    """The probe option -DCUATTN_CP_ASYNC_L2_PREFETCH (the tensor-core kernels' cp.async copies with
    PTX's L2 prefetch-size hint; nvdisasm shows LDGSTS.E.BYPASS.LTC<size>B) on every cp.async
    tensor-core decode variant: compiles for sm_90a without spills; another size is a compile error."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [mod.split_expression(t, d, mod.MMA_ROWS, paged, "mma", copy="cp.async")
             for t in mod.MMA_TYPES for d in mod.MMA_HEAD_DIMS for paged in (False, True)]
    _assert_spill_free(exprs, (*mod.TMA_OPTIONS, f"-DCUATTN_CP_ASYNC_L2_PREFETCH={size}"), f"L2 prefetch {size}")
    if size == 64:
        with pytest.raises(RuntimeError, match="must be 64, 128 or 256"):
            _cuda.compile_ptx_report("decode.cu", exprs[:1], "sm_90a",
                                     (*mod.TMA_OPTIONS, "-DCUATTN_CP_ASYNC_L2_PREFETCH=32"))


def test_decode_static_first_compiles():
    """The opt-in static first items (cuattn.decode.STATIC_FIRST: a compile option) of every
    persistent decode kernel variant: compile for sm_90a without spills."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith(("decode_split_tma", "decode_split_mma"))]
    _assert_spill_free(exprs, (mod.STATIC_FIRST_OPTION,), mod.STATIC_FIRST_OPTION)


def test_decode_pdl_compiles():
    """Programmatic dependent launch (cuattn.decode.PDL, on by default: a compile option) of every
    persistent decode kernel variant, with and without the probe's early trigger: compiles for
    sm_90a without spills; its PTX carries griddepcontrol.wait (without the option none), and
    griddepcontrol.launch_dependents only with -DCUATTN_DECODE_PDL_TRIGGER."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [e for e in mod.all_kernel_expressions("sm_90a") if e.startswith(("decode_split_tma", "decode_split_mma"))]
    trigger = mod.PDL_TRIGGER_OPTION
    _assert_spill_free(exprs, (mod.PDL_OPTION,), mod.PDL_OPTION)
    _assert_spill_free(exprs, (mod.PDL_OPTION, trigger), trigger)
    pair = exprs[:1] + [e for e in exprs if e.startswith("decode_split_mma")][:1]
    for options, wait, launch in (((mod.PDL_OPTION,), True, False), ((mod.PDL_OPTION, trigger), True, True),
                                  ((), False, False)):
        ptx = _cuda.compile_ptx("decode.cu", pair, "sm_90a", options)
        assert ("griddepcontrol.wait" in ptx) == wait, options
        assert ("griddepcontrol.launch_dependents" in ptx) == launch, options


def _benchmark_module(filename):
    """A script of benchmarks/ imported as a module; its imports (benchmarks/ on sys.path: common.py,
    decode.py, ...) are undone after it is read."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / filename
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    try:
        spec = importlib.util.spec_from_file_location("_" + path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(path.parent)):
                del sys.modules[name]


def _probe_builds():
    """The compile options of benchmarks/decode_stream_probe.py's variants beyond the module's own
    (each distinct tuple once, in the probe's order), and decode_probe.py --trace's: read from the
    probe itself, so a variant added there is compiled here. The probe's imports (benchmarks/ on
    sys.path: common.py, decode.py) are undone after it is read."""
    probe = _benchmark_module("decode_stream_probe.py")
    variants = probe.TMA_VARIANTS + probe.MMA_VARIANTS
    base = len(probe.module.TMA_OPTIONS)
    builds = [tuple(settings["TMA_OPTIONS"][base:]) for _, settings in variants if "TMA_OPTIONS" in settings]
    return list(dict.fromkeys(builds + [("-DCUATTN_DECODE_TRACE",)]))


@pytest.mark.parametrize("options", _probe_builds())
def test_decode_probe_builds_compile(options):
    """The probe builds of the persistent decode kernels (benchmarks/decode_stream_probe.py's
    variants, decode_probe.py --trace: timing only) compile for sm_90a, fp16 D 128, both kernels."""
    mod = importlib.import_module("cuattn.decode")
    exprs = [mod.split_expression("half_t", 128, 1, False, "tma"),
             mod.split_expression("half_t", 128, mod.MMA_ROWS, False, "mma", copy="cp.async"),
             mod.split_expression("half_t", 128, mod.MMA_ROWS, False, "mma", copy="tensor")]
    _cuda.compile_ptx_report("decode.cu", exprs, "sm_90a", (*mod.TMA_OPTIONS, *options))


def test_every_source_file_is_covered():
    covered = {source for arch in ARCHS for source, _ in _variants(arch)}
    assert covered == set(_cuda.kernel_files())


def test_generated_wgmma_header_is_current():
    import runpy

    gen = runpy.run_path(str(_cuda.source_dir() / "gen_wgmma.py"))
    assert (_cuda.source_dir() / "wgmma.cuh").read_text() == gen["main"](), "run python cuda/gen_wgmma.py"


def _max_threads(source, expression, arch="sm_90a"):
    """The block size a kernel variant was compiled for (__launch_bounds__ -> PTX .maxntid)."""
    def read(nvrtc, prog):
        return nvrtc.getPTX(prog), nvrtc.getLoweredName(prog, expression)

    ptx, mangled = _cuda._nvrtc_compile(source, [expression], arch, (), read)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    mangled = mangled.decode() if isinstance(mangled, bytes) else mangled
    entry = next(part for part in ptx.split(".entry ")[1:] if part.startswith(mangled + "("))
    found = re.findall(r"\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", entry.split("{", 1)[0])
    assert len(found) == 1, f"{expression}: expected one .maxntid for its entry, found {found}"
    return int(found[0][0]) * int(found[0][1]) * int(found[0][2])


def _gla_launch_shapes():
    """(expression, threads the dispatcher launches it with) for the GLA kernels whose block size
    the Python side works out from a mirror of the kernel's compile-time shape."""
    gla = importlib.import_module("cuattn.gla")
    out = []
    for padded in gla.PADDED_K:
        out += [(gla.tiled_expression("bf16_t", padded, tile), gla.tiled_threads(padded, tile))
                for tile in gla.TILED_TILES]
        out += [(gla.step_expression("bf16_t", padded, rows), 32 * padded // rows)
                for rows in sorted({gla._step_rows(padded, c) for c in gla.STEP_ROWS_CHOICES})]
        out += [(gla.prep_expression("bf16_t", padded), 128)]
    return out


@pytest.mark.parametrize("expression,threads", _gla_launch_shapes())
def test_gla_launch_threads_match_launch_bounds(expression, threads):
    """The Python mirrors of the kernels' shapes (tiled_threads, _step_rows) launch exactly the
    block size each variant was compiled for: a mismatch would leave state rows unprocessed."""
    assert _max_threads("gla.cu", expression) == threads


def test_stream_mechanisms_kernels_compile():
    """benchmarks/stream_mechanisms.py's rings (timing probes run on the device) compile for sm_90a:
    its CUDA source and the instantiations its main() asks for (its kernel_names()), so a shape
    added there is compiled here."""
    from cupy.cuda import nvrtc

    script = _benchmark_module("stream_mechanisms.py")
    names = script.kernel_names()
    assert any(n.startswith("ring_cp_async_items<") for n in names)
    prog = nvrtc.createProgram(script.SOURCE, "stream_mechanisms.cu", [], [])
    try:
        for n in names:
            nvrtc.addNameExpression(prog, n)
        try:
            nvrtc.compileProgram(prog, ["-std=c++17", f"-I{_cuda.source_dir()}", "-arch=sm_90a"])
        except nvrtc.NVRTCError as exc:
            raise AssertionError(f"{exc}\n{nvrtc.getProgramLog(prog)}") from exc
        for n in names:
            assert nvrtc.getLoweredName(prog, n)
    finally:
        nvrtc.destroyProgram(prog)


def test_ptx_identity_tool(tmp_path):
    """benchmarks/ptx_identity.py (is a refactor of cuda/ PTX-neutral?): a copy of cuda/ with comment
    and blank lines added compiles to the same PTX (comments, .loc and .file lines left out); the
    copy with 1 added to the sum in CUATTN_INV_TOTAL's division does not, and the difference names
    the opcode (add.f32) in the kernel, and its machine code differs too. Both sources are read
    afresh (_cuda.load_source is cached: a tool that forgot would call anything identical). The
    cubin's kernel text is found; register renaming alone is told from a changed operand."""
    import shutil
    tool = _benchmark_module("ptx_identity.py")
    exprs = ["decode_split<half_t, 32, 4, false>"]
    copy = tmp_path / "cuda"
    shutil.copytree(_cuda.source_dir(), copy)
    common = copy / "common.cuh"
    common.write_text("// a comment\n\n" + common.read_text().replace("\n\n", "\n\n// another\n\n", 3))
    assert tool.compare(copy, _cuda.source_dir(), "decode.cu", exprs, "sm_80") == (True, {})
    text = common.read_text()
    assert "? 1.f / (sum) :" in text
    common.write_text(text.replace("? 1.f / (sum) :", "? 1.f / ((sum) + 1.f) :"))
    same, changed = tool.compare(copy, _cuda.source_dir(), "decode.cu", exprs, "sm_80")
    assert not same and len(changed) == 1
    ops = next(iter(changed.values()))
    assert "add.f32" in ops and ops["add.f32"][1] > ops["add.f32"][0], ops
    # where the PTX differs, the machine code decides: each kernel's .text section of the cubin
    texts = tool._texts(tool._cubin(_cuda.source_dir(), "decode.cu", exprs, "sm_80", ()))
    assert [name.startswith(".text._Z12decode_split") for name in texts] == [True]
    assert len(next(iter(texts.values()))) > 1000
    # and PTX differing in register names alone is said so (renumbered per entry, by first use)
    ptx = "\n.visible .entry k(\n{\n\tld.shared.s32 %r5, [%r1];\n\tadd.s32 %r6, %r5, %tid.x;\n}"
    swapped = ptx.replace("%r5", "%rQ").replace("%r1", "%r5").replace("%rQ", "%r1")
    assert swapped != ptx and tool._registers_renamed(swapped) == tool._registers_renamed(ptx)
    assert tool._registers_renamed(ptx.replace("%r6, %r5", "%r6, %r1")) != tool._registers_renamed(ptx)
