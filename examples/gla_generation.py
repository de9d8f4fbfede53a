"""Gated linear attention: prefill a prompt in chunk mode, then generate token by token.

Run:  python examples/gla_generation.py [--device auto|cpu|gpu]

A prompt of 500 tokens (2 sequences, 4 heads, K = V = 64) goes through ``cuattn.gla`` in chunk
mode with ``output_final_state=True``; then 24 more tokens are fed one at a time, each call
taking the previous state (``initial_state``) and returning the next: the generation loop of a
GLA language model. The same 524 tokens in one call give the same outputs and final state, and
both are checked against the float64 recurrence (``cuattn.reference.gla``). Half-way through
generation one head's gates are -inf on every channel: the state of that head is reset exactly
(flash-linear-attention's chunk mode returns NaN there; ours stays finite and exact). On the GPU
the inputs are bfloat16 (or float16), on the CPU float32.

On the GPU the 24 generation steps are also captured in one CUDA graph (inside
``cuattn.graph_memory()``, which holds the buffers the captured calls use) and replayed: the
replay must give the eager loop's bits, at a fraction of its host time per token.
"""

import argparse
import sys
import time

import numpy as np

import cuattn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    args = parser.parse_args()
    gpu = args.device == "gpu" or (args.device == "auto" and cuattn.gpu_available())
    if gpu and not cuattn.gpu_available():
        sys.exit("--device gpu: no CUDA GPU (or no CuPy) found")

    rng = np.random.default_rng()
    batch, heads, prompt, new, dk, dv = 2, 4, 500, 24, 64, 64
    total = prompt + new
    if gpu:
        from cuattn._checks import BFLOAT16

        dtype = BFLOAT16 if BFLOAT16 is not None else np.float16
    else:
        dtype = np.float32
    q, k = (rng.standard_normal((batch, heads, total, dk)).astype(dtype) for _ in range(2))
    v = rng.standard_normal((batch, heads, total, dv)).astype(dtype)
    g = (-np.logaddexp(0, -rng.standard_normal((batch, heads, total, dk))) / 8).astype(dtype)  # logsigmoid / 8
    g[0, 1, prompt + new // 2, :] = -np.inf  # a reset in the middle of generation

    xp = np
    if gpu:
        import cupy as xp
    dq, dk_, dv_, dg = (xp.asarray(x) for x in (q, k, v, g))

    def tokens(x, a, b):
        return x[:, :, a:b]

    # compile (GPU) or JIT-compile (CPU) both paths outside the timing
    _, warm = cuattn.gla(tokens(dq, 0, 20), tokens(dk_, 0, 20), tokens(dv_, 0, 20), tokens(dg, 0, 20),
                         mode="chunk", output_final_state=True)
    cuattn.gla(tokens(dq, 20, 21), tokens(dk_, 20, 21), tokens(dv_, 20, 21), tokens(dg, 20, 21),
               initial_state=warm, output_final_state=True, mode="recurrent")
    start = time.perf_counter()
    o_prompt, state = cuattn.gla(tokens(dq, 0, prompt), tokens(dk_, 0, prompt), tokens(dv_, 0, prompt),
                                 tokens(dg, 0, prompt), mode="chunk", output_final_state=True)
    prompt_state = state

    def generate(state):
        steps = []
        for t in range(prompt, total):  # one token per call, the state carried along
            o_t, state = cuattn.gla(tokens(dq, t, t + 1), tokens(dk_, t, t + 1), tokens(dv_, t, t + 1),
                                    tokens(dg, t, t + 1), initial_state=state, output_final_state=True,
                                    mode="recurrent")
            steps.append(o_t)
        return steps, state

    steps, state = generate(prompt_state)
    o_steps = xp.concatenate([o_prompt] + steps, axis=2)
    if gpu:
        xp.cuda.get_current_stream().synchronize()
    elapsed = time.perf_counter() - start
    graph_ok = graph_report = None
    if gpu:
        graph_ok, graph_report = replay_in_a_graph(xp, lambda: generate(prompt_state), steps, state, new)
    o_once, state_once = cuattn.gla(dq, dk_, dv_, dg, mode="chunk", output_final_state=True)

    def host(x):
        return np.asarray(x.get() if gpu else x, dtype=np.float64)

    o_steps, state, o_once, state_once = (host(x) for x in (o_steps, state, o_once, state_once))
    ref_o, ref_s = cuattn.reference.gla(q, k, v, g, output_final_state=True)

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    tol = 1e-2 if gpu else 2e-5
    errors = {"generation vs reference": (rel(o_steps, ref_o), rel(state, ref_s)),
              "one call vs reference": (rel(o_once, ref_o), rel(state_once, ref_s)),
              "generation vs one call": (rel(o_steps, o_once), rel(state, state_once))}
    print(f"cuattn {cuattn.__version__} on {'GPU' if gpu else 'CPU'}, {np.dtype(dtype).name}")
    print(f"prefill {prompt} tokens (chunk mode) + {new} single-token steps (recurrent mode): "
          f"{elapsed * 1e3:.1f} ms")
    for name, (eo, es) in errors.items():
        print(f"{name:24}: output {eo:.2e}, final state {es:.2e}")
    finite = bool(np.all(np.isfinite(o_steps)) and np.all(np.isfinite(state)))
    print(f"all finite through the -inf reset: {finite} (tolerance {tol:.0e})")
    print(graph_report or "CUDA graph replay: GPU only (skipped on the CPU)")
    ok = finite and all(e < tol for pair in errors.values() for e in pair) and graph_ok is not False
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


def replay_in_a_graph(cupy, generate, steps, state, new):
    """Capture generate() (the single-token steps) in one CUDA graph and replay it: (bits equal
    to the eager loop's, a report line with host + GPU time per token both ways)."""
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cuattn.graph_memory() as memory:
        stream.begin_capture()
        graph_steps, graph_state = generate()
        graph = stream.end_capture()
        graph.launch(stream)  # the first launch uploads the graph
        stream.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            graph.launch(stream)
        stream.synchronize()
        per_token_graph = (time.perf_counter() - start) / (20 * new)
        start = time.perf_counter()
        for _ in range(20):
            generate()
        stream.synchronize()
        per_token_eager = (time.perf_counter() - start) / (20 * new)
    same = all(bool((a == b).all()) for a, b in zip(graph_steps + [graph_state], steps + [state]))
    report = (f"CUDA graph replay of the {new} steps: same bits as the eager loop: {same}; "
              f"{per_token_graph * 1e6:.1f} us a token (eager {per_token_eager * 1e6:.1f} us); "
              f"graph_memory holds {memory.nbytes / 1e6:.2f} MB")
    return same, report


if __name__ == "__main__":
    main()
