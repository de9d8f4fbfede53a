// gla.cu: gated linear attention forward, chunk (tensor cores) and recurrent modes.
//
// Per (sequence n, head h), state S (K x V, fp32), gates g <= 0 in log space, E = exp(g) in [0, 1]:
//     S_t = diag(E_t) S_{t-1} + k_t^T v_t,      o_t = scale * q_t S_t.
// Names: K/V head dims (runtime), kK the padded compile-time K (32, 64, 128, 256); a block
// handles one (value tile, head, sequence) = (blockIdx.x, blockIdx.y, seq0 + blockIdx.z).
// Sequences: with varlen, sequence n is tokens [cu[n], cu[n+1]) of batch row 0; otherwise it is
// batch row n, tokens [0, seqlen). States h0/ht are contiguous (N, H, K, V) float32.
//
// ---- Exactness of the chunk mode (why it never produces NaN, overflow or cancellation) ----
// Unrolling the recurrence inside a step of C = 16 tokens that starts from state S_0:
//     o_t = scale * [ (q_t * A_t) S_0 + sum_{s<=t} W_ts v_s ],   A_t = prod_{u<=t} E_u,
//     W_ts = sum_c q_tc k_sc P_c(s, t),                          P(s, t) = prod_{s<u<=t} E_u,
//     S_C = diag(A_{C-1}) S_0 + sum_s (k_s * P(s, C-1))^T v_s.
// Every decay factor is computed as a PRODUCT of the per-token factors E_u = expf(g_u), never as
// exp of a difference of cumulative log sums. Each E_u is the exp of a number <= 0 (once per
// token and channel, the same expf the recurrent kernel uses), so E_u is in [0, 1]:
// g = -inf gives 0, g = -0.1 * FLT_MAX gives 0, g = -20 gives 2.06e-9. Products of numbers in
// [0, 1] lie in [0, 1]: no overflow, no inf, so no inf - inf or 0 * inf can arise from gates
// (NaN appears only if an input is NaN or inf, as IEEE says). A reset (E_u = 0) makes every
// product spanning u exactly 0, so the carried state and all earlier tokens are cut off exactly.
// Rounding: a product of m factors carries a relative error <= m * 2^-24 (m <= 16 inside a step,
// then one more multiply per step for the state), the same order as the recurrent kernel, which
// multiplies the state by the same E_u one token at a time. There is no cumulative log sum, so
// there is no cancellation whatever the gate magnitudes (flash-linear-attention's cumsum path
// loses all precision when a gate is -3.4e37 and returns NaN for -inf). A positive gate gives
// E > 1: valid math, computed as given (it can overflow, as the recurrence itself would).
//
// gla_chunk_mma<T, kK, kWarps, kStateOnly> (T = half_t / bf16_t): kWarps = 4 or 8 warps,
// 16 kWarps value columns per block (8 warps: one block covers V = 128, so the per-step decay
// and W work below is done once instead of once per 64-column tile, by twice the threads).
// The state is kept TRANSPOSED, S^T (V x K), in fp32 mma accumulators: warp w owns value rows
// [16w, 16w + 16) and all kK key columns (kK / 2 registers per lane). That layout is exactly an
// mma A fragment once packed to T, so per step of 16 tokens:
//     o^T   = S^T (q*A)^T  +  v^T W^T           (M = 16 value rows, N = 16 tokens)
//     S^T   = S^T diag(A_{C-1}) + v^T (k*P)      (M = 16 value rows, N = kK, k = 16 tokens)
// all on mma.sync m16n8k16 with fp32 accumulation. The decayed q, k and W are formed in shared
// memory by all threads: a thread walks channel c over the step (running prefix product for q,
// suffix product for k; with 8 warps and kK <= 128 the q and k sides run on separate threads).
// W's two 8x8 diagonal blocks are formed elementwise: thread (t, c mod P), P = 8 (4 warps) or
// 16 (8 warps), walks s from t down to the start of t's half with a running product, then P
// lanes reduce; its block t >= 8 > s is one tensor-core product (warp 0) of (q_t P(7, t]) and
// (k_s P(s, 7]), both again products of factors in [0, 1]. q, k, g, v of step i+1 stream in with
// cp.async (double buffer, zero-filled past the sequence and past K/V: g = 0 there, E = 1).
// Shared memory (16-bit units unless noted): 2 stages x (q, k, g: 16 x (kK+8); v: 16 x (16 kWarps
// + 8)), decayed q, k and half-referenced q 16 x (kK+8) each, half-referenced k 8 x (kK+8),
// W 16 x 24, then fp32 E 16 x kK, A_{C-1} kK and the segment's decay kK.
// Traffic: q, k, g read once per value tile (V / (16 kWarps) tiles), v and o once, the state twice.
// Rounding beyond fp32: the tensor-core operands (decayed q and k, W, and the state in the
// inter-step product) are rounded to T, as in flash-linear-attention.
//
// Segmented chunk mode (long sequences with too few (sequence, head, tile) blocks to fill the
// GPU): each sequence is cut into segments of seg_len tokens (a multiple of 16), and
//   (1) gla_chunk_mma<.., kStateOnly = true>, one block per (tile, head, sequence x segment), runs
//       steps 1 and 4 only from a zero state: dS_j (the segment's own contribution to the state)
//       and D_j = prod over the segment of E (a running product of the per-step A_{C-1});
//   (2) gla_chunk_scan walks the segments: start_{j+1} = diag(D_j) start_j + dS_j, start_0 = h0;
//   (3) gla_chunk_mma<.., false> runs every segment in parallel from start_j, writing o.
// Exactness is unchanged: D_j is a product of factors in [0, 1] (a reset gives exactly 0, and
// 0 * finite = 0 in the scan), and (1) + (2) only regroup the products the sequential kernel
// forms: S after segment j is diag(D_j) S_before + dS_j in exact arithmetic. The segment states
// live in a float32 workspace (sequences x segments x H x K x V), written once and read twice.
//
// gla_chunk_prep<T, kK> (cuattn.gla.CHUNK_PREPASS; on by default for padded K > 64): phases 1-2 of every step in
// parallel, written to a workspace that gla_chunk_mma<.., kPrepped = true> reads instead of
// recomputing them in its sequential loop (see its own comment).
//
// gla_recurrent_tiled<T, kK, kVTile> (any T, exact FFMA): the recurrent mode (and float32
// chunk mode); see its own comment below. gla_step<T, kK, kRows>: calls with T = 1.

#include "common.cuh"

template <typename T>
__device__ __forceinline__ float gla_ld(const u16* p) {
    T x;
    x.bits = *p;
    return Num<T>::to_float(x);
}

// Token range and batch row of sequence n (see the top comment).
__device__ __forceinline__ void gla_sequence(const int* cu_seqlens, int varlen, int n, int seqlen,
                                             i64& bos, int& len, i64& row) {
    if (varlen) {
        bos = cu_seqlens[n];
        len = cu_seqlens[n + 1] - cu_seqlens[n];
        row = 0;
    } else {
        bos = 0;
        len = seqlen;
        row = n;
    }
}

// One 16-token step's q, k, g rows [t0, t0 + kC) of a sequence (qb, kb, gb: its token 0) into
// shared memory rows kK + 8 apart with cp.async, zero-filled past len and past head_dim_k (so
// g = 0 and E = 1 there), by kThreads threads.
template <typename T, int kK, int kThreads>
__device__ __forceinline__ void stage_qkg(u16* dq, u16* dk, u16* dg, const T* qb, const T* kb, const T* gb,
                                          i64 q_st, i64 k_st, i64 g_st, int t0, int len, int head_dim_k) {
    constexpr int kC = 16, kStrideK = kK + 8, kChunksK = kK / 8;
    for (int i = threadIdx.x; i < kC * kChunksK; i += kThreads) {
        const int r = i / kChunksK, c = i % kChunksK;
        const bool valid = (t0 + r < len) && (c * 8 < head_dim_k);
        const i64 off = (i64)(t0 + r);
        const int so = r * kStrideK + c * 8;
        cp_async_16(smem_addr(dq + so), valid ? qb + off * q_st + c * 8 : qb, valid);
        cp_async_16(smem_addr(dk + so), valid ? kb + off * k_st + c * 8 : kb, valid);
        cp_async_16(smem_addr(dg + so), valid ? gb + off * g_st + c * 8 : gb, valid);
    }
}

// Phases 1-2 of a chunk step of gla_chunk_mma (the work that depends on q, k and g alone), by
// kThreads threads from the step's q, k, g rows in shared memory (rq, rk, rg: kC rows kK + 8
// apart, zero-filled past the sequence and past K, so g = 0 and E = 1 there):
//   1. sE (E = expf(g), fp32), sQd / sKd (q and k decayed to the step's start / end, T), sQh / sKh
//      (the half-step products of W's lower-left block), sDecay = A_{C-1}, and sSegDecay (when
//      not null) multiplied by A_{C-1};
//   2. unless kStateOnly, W (kC x kC, T, rows kC + 8 apart).
// Ends with the block synchronized (every output visible).
template <typename T, int kK, int kThreads, bool kStateOnly>
__device__ __forceinline__ void chunk_decays_and_weights(const u16* rq, const u16* rk, const u16* rg, u16* sQd,
                                                         u16* sKd, u16* sQh, u16* sKh, u16* sW, float* sE,
                                                         float* sDecay, float* sSegDecay, int head_dim_k) {
    constexpr int kC = 16, kHalf = kC / 2, kStrideK = kK + 8, kStrideW = kC + 8, kKTiles = kK / 16;
    constexpr int kParts = kThreads / kC;
    constexpr bool kSplitDecay = kThreads >= 2 * kK;
    static_assert(kParts == 8 || kParts == 16, "W is formed by 8 or 16 threads per token row");
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g8 = lane / 4, t4 = lane % 4;

    // 1. per channel: E, decayed q (prefix products), decayed k (suffix products), A_{C-1}.
    //    Item i < kK is channel i's q side (also E, A_{C-1} and the segment's decay),
    //    item kK + c its k side; with kSplitDecay the two sides run on separate threads
    //    (each takes its own expf of the same g: the same E bit for bit).
    for (int i = tid; i < (kSplitDecay ? 2 * kK : kK); i += kThreads) {
        const int c = i % kK;
        const bool q_side = !kSplitDecay || i < kK, k_side = !kSplitDecay || i >= kK;
        float e[kC];
#pragma unroll
        for (int t = 0; t < kC; ++t) e[t] = expf(gla_ld<T>(rg + t * kStrideK + c));
        if (q_side) {
            float prefix = 1.f, prefix_h = 1.f;
#pragma unroll
            for (int t = 0; t < kC; ++t) {
                prefix *= e[t];
                if (!kStateOnly) {
                    sE[t * kK + c] = e[t];
                    const float qv = gla_ld<T>(rq + t * kStrideK + c);
                    sQd[t * kStrideK + c] = Num<T>::from_float(qv * prefix).bits;
                    if (t >= kHalf) prefix_h *= e[t];
                    sQh[t * kStrideK + c] = Num<T>::from_float(t >= kHalf ? qv * prefix_h : 0.f).bits;
                }
            }
            sDecay[c] = prefix;
            if (sSegDecay != nullptr) sSegDecay[c] *= prefix;
        }
        if (k_side) {
            float suffix = 1.f, suffix_h = 1.f;
#pragma unroll
            for (int s = kC - 1; s >= 0; --s) {
                const float kv = gla_ld<T>(rk + s * kStrideK + c);
                sKd[s * kStrideK + c] = Num<T>::from_float(kv * suffix).bits;
                suffix *= e[s];
                if (!kStateOnly && s < kHalf) {
                    sKh[s * kStrideK + c] = Num<T>::from_float(kv * suffix_h).bits;
                    suffix_h *= e[s];
                }
            }
        }
    }
    __syncthreads();
    if (kStateOnly) return;

    // 2. W[t][s] = sum_c q_tc k_sc P_c(s, t) for s <= t (0 above the diagonal).
    //    Same-half pairs elementwise (running product walking s from t down to the half's
    //    start); the block t >= 8 > s on tensor cores as (q_t P(7,t]) . (k_s P(s,7]).
    {
        const int t = tid / kParts, part = tid % kParts, base = t & kHalf;
        float w[kHalf];
#pragma unroll
        for (int j = 0; j < kHalf; ++j) w[j] = 0.f;
#pragma unroll 4
        for (int c = part; c < head_dim_k; c += kParts) {  // unrolled: independent channels overlap
            const float qc = gla_ld<T>(rq + t * kStrideK + c);
            float f = 1.f;  // P(s, t), walking s downwards
#pragma unroll
            for (int j = kHalf - 1; j >= 0; --j) {
                const int s = base + j;
                if (s <= t) {
                    w[j] = fmaf(qc * f, gla_ld<T>(rk + s * kStrideK + c), w[j]);
                    f *= sE[s * kK + c];
                }
            }
        }
#pragma unroll
        for (int j = 0; j < kHalf; ++j) {
#pragma unroll
            for (int m = 1; m < kParts; m *= 2) w[j] += __shfl_xor_sync(0xffffffffu, w[j], m);
            if (j == part) sW[t * kStrideW + base + j] = Num<T>::from_float(w[j]).bits;
        }
        if (t < kHalf && part < kHalf) sW[t * kStrideW + kHalf + part] = Num<T>::from_float(0.f).bits;
        if (warp == 0) {  // rows 0..7 of sQh are zero, so c0/c1 (rows g) are unused
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int kk = 0; kk < kKTiles; kk += 2) {
                u32 b[4];
                ldmatrix_x4(b, smem_addr(sKh + (lane & 7) * kStrideK + kk * 16 + (lane >> 3) * 8));
                u32 a[4];
                ldmatrix_x4(a, smem_addr(sQh + (lane & 15) * kStrideK + kk * 16 + (lane >> 4) * 8));
                Mma<T>::run(acc, a, b[0], b[1]);
                ldmatrix_x4(a, smem_addr(sQh + (lane & 15) * kStrideK + (kk + 1) * 16 + (lane >> 4) * 8));
                Mma<T>::run(acc, a, b[2], b[3]);
            }
            sW[(kHalf + g8) * kStrideW + 2 * t4] = Num<T>::from_float(acc[2]).bits;
            sW[(kHalf + g8) * kStrideW + 2 * t4 + 1] = Num<T>::from_float(acc[3]).bits;
        }
    }
    __syncthreads();
}

template <typename T, int kK, int kWarps, bool kStateOnly, bool kPrepped>
__global__ void __launch_bounds__(32 * kWarps, (kWarps > 4 || kK > 128) ? 1 : (kK > 64 ? 3 : 4))
gla_chunk_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
              const T* __restrict__ g, T* __restrict__ o, const float* __restrict__ h0,
              float* __restrict__ ht, const int* __restrict__ cu_seqlens,
              i64 q_sb, i64 q_sh, i64 q_st, i64 k_sb, i64 k_sh, i64 k_st, i64 v_sb, i64 v_sh, i64 v_st,
              i64 g_sb, i64 g_sh, i64 g_st, i64 o_sb, i64 o_sh, i64 o_st,
              int seqlen, int head_dim_k, int head_dim_v, int seq0, int use_h0, int store_ht,
              int varlen, float scale, float* __restrict__ seg_decay, int num_segments, int seg_len,
              const u16* __restrict__ ws_qd, const u16* __restrict__ ws_kd, const u16* __restrict__ ws_w,
              const float* __restrict__ ws_a, int max_steps) {
    constexpr int kThreads = 32 * kWarps;
    constexpr int kC = 16;                      // tokens per step
    constexpr int kHalf = kC / 2;               // W's diagonal blocks are formed elementwise
    constexpr int kBlockV = 16 * kWarps;        // value rows of S^T per block
    constexpr int kStrideK = kK + 8, kStrideV = kBlockV + 8, kStrideW = kC + 8;
    constexpr int kChunksK = kK / 8, kChunksV = kBlockV / 8;
    constexpr int kKTiles = kK / 16, kNTiles = kK / 8;
    constexpr int kStage = 3 * kC * kStrideK + kC * kStrideV;
    static_assert(kWarps == 4 || kWarps == 8, "4 or 8 warps");
    static_assert(kK % 32 == 0, "padded key dim");
    static_assert(kC * kStrideK >= kC * kStrideW + 2 * kK, "prepped: W and A_{C-1} fit the g rows of a stage");

    extern __shared__ __align__(16) u16 smem[];
    u16* sQd = smem + 2 * kStage;               // decayed q (T bits)
    u16* sKd = sQd + kC * kStrideK;             // decayed k
    u16* sQh = sKd + kC * kStrideK;             // q_t * P(7, t] for t >= 8, 0 for t < 8
    u16* sKh = sQh + kC * kStrideK;             // k_s * P(s, 7] for s < 8
    u16* sW = sKh + kHalf * kStrideK;           // intra-step weights W[t][s]
    float* sE = reinterpret_cast<float*>(sW + kC * kStrideW);  // E[t][c]
    float* sDecay = sE + kC * kK;               // A_{C-1}[c]
    // product of E over the segment so far (per channel); prepped: only the two stages precede it
    float* sSegDecay = kPrepped ? reinterpret_cast<float*>(smem + 2 * kStage) : sDecay + kK;

    // Segmented launch (num_segments >= 1): blockIdx.z = local sequence * num_segments + segment j,
    // tokens [j seg_len, (j+1) seg_len) of the sequence; states are indexed by (local sequence,
    // segment) in the caller's workspace. Otherwise blockIdx.z is the sequence, all its tokens.
    const int segmented = num_segments > 0;
    const int local = segmented ? blockIdx.z / num_segments : blockIdx.z;
    const int seg = segmented ? blockIdx.z % num_segments : 0;
    const int v0 = blockIdx.x * kBlockV, head = blockIdx.y, n = seq0 + local;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    i64 bos, row;
    int len;
    gla_sequence(cu_seqlens, varlen, n, seqlen, bos, len, row);
    int step0 = 0;  // the sequence's step index of this block's first step (prepped records)
    if (segmented) {
        const int start = seg * seg_len;  // < 2^31: the caller checks num_segments * seg_len
        bos += start;
        len = min(max(len - start, 0), seg_len);
        step0 = start / kC;
    }
    const i64 rec0 = ((i64)n * gridDim.y + head) * max_steps + step0;
    const T* qb = q + row * q_sb + head * q_sh + bos * q_st;
    const T* kb = k + row * k_sb + head * k_sh + bos * k_st;
    const T* vb = v + row * v_sb + head * v_sh + bos * v_st;
    const T* gb = g + row * g_sb + head * g_sh + bos * g_st;
    T* ob = o + row * o_sb + head * o_sh + bos * o_st;

    auto load_step = [&](int stage, int t0) {
        u16* dq = smem + stage * kStage;
        u16* dk = dq + kC * kStrideK;
        u16* dg = dk + kC * kStrideK;
        u16* dv = dg + kC * kStrideK;
        if (kPrepped) {  // decayed q and k, W and A_{C-1} of the step, from gla_chunk_prep's records
            const i64 rec = rec0 + t0 / kC;
            for (int i = tid; i < kC * kChunksK; i += kThreads) {
                const int r = i / kChunksK, c = i % kChunksK, so = r * kStrideK + c * 8;
                cp_async_16(smem_addr(dq + so), ws_qd + (rec * kC + r) * kK + c * 8, true);
                cp_async_16(smem_addr(dk + so), ws_kd + (rec * kC + r) * kK + c * 8, true);
            }
            for (int i = tid; i < 2 * kC + kK / 4; i += kThreads) {
                if (i < 2 * kC)  // W rows: 16 elements = two 16-byte chunks
                    cp_async_16(smem_addr(dg + (i / 2) * kStrideW + (i % 2) * 8),
                                ws_w + (rec * kC + i / 2) * kC + (i % 2) * 8, true);
                else  // A_{C-1}: kK floats after W's rows
                    cp_async_16(smem_addr(dg + kC * kStrideW + 8 * (i - 2 * kC)), ws_a + rec * kK + 4 * (i - 2 * kC),
                                true);
            }
        } else {
            stage_qkg<T, kK, kThreads>(dq, dk, dg, qb, kb, gb, q_st, k_st, g_st, t0, len, head_dim_k);
        }
        for (int i = tid; i < kC * kChunksV; i += kThreads) {
            const int r = i / kChunksV, c = i % kChunksV;
            const bool valid = (t0 + r < len) && (v0 + c * 8 < head_dim_v);
            cp_async_16(smem_addr(dv + r * kStrideV + c * 8), valid ? vb + (i64)(t0 + r) * v_st + v0 + c * 8 : vb,
                        valid);
        }
    };

    // S^T accumulators: element e of tile nt is (value row vr(e), key column kc(nt, e))
    const int g8 = lane / 4, t4 = lane % 4;
    const int vrow = v0 + warp * 16 + g8;
    const i64 state_idx = segmented ? (i64)local * num_segments + seg : (i64)n;
    const i64 state_off = (state_idx * gridDim.y + head) * head_dim_k * head_dim_v;
    for (int c = tid; c < kK; c += kThreads) sSegDecay[c] = 1.f;  // read only by c's owner below
    float acc_s[kNTiles][4];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int kc = nt * 8 + 2 * t4 + (e & 1), vr = vrow + 8 * (e >> 1);
            acc_s[nt][e] =
                (use_h0 && kc < head_dim_k && vr < head_dim_v) ? h0[state_off + (i64)kc * head_dim_v + vr] : 0.f;
        }

    // ldmatrix lane addressing (fragment layouts: Mma in common.cuh)
    const int x_row = (lane & 7) + ((lane >> 4) << 3), x_col = ((lane >> 3) & 1) * 8;  // A via .trans, B non-trans
    const int y_row = (lane & 7) + (((lane >> 3) & 1) << 3), y_col = (lane >> 4) * 8;  // B via .trans

    const int num_steps = (len + kC - 1) / kC;
    if (num_steps > 0) load_step(0, 0);
    cp_async_commit();
    for (int step = 0; step < num_steps; ++step) {
        const int t0 = step * kC, stage = step & 1;
        __syncthreads();  // every warp is done with the previous step's shared memory
        if (step + 1 < num_steps) load_step(stage ^ 1, t0 + kC);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const u16* rq = smem + stage * kStage;
        const u16* rk = rq + kC * kStrideK;
        const u16* rg = rk + kC * kStrideK;
        const u16* rv = rg + kC * kStrideK;

        // phases 1-2 (depend on q, k, g only): here, or read from the prepass's records
        const u16 *pQd = sQd, *pKd = sKd, *pW = sW;
        const float* pA = sDecay;
        if (kPrepped) {
            pQd = rq, pKd = rk, pW = rg, pA = reinterpret_cast<const float*>(rg + kC * kStrideW);
            if (kStateOnly)
                for (int c = tid; c < kK; c += kThreads) sSegDecay[c] *= pA[c];  // c's owner, as below
        } else {
            chunk_decays_and_weights<T, kK, kThreads, kStateOnly>(rq, rk, rg, sQd, sKd, sQh, sKh, sW, sE, sDecay,
                                                                   sSegDecay, head_dim_k);
        }

        u32 a_v[4];  // v^T (value rows x tokens): o's and the state update's A operand
        if (!kStateOnly) {
        // 3. o^T = S^T (q*A)^T + v^T W^T for this warp's 16 value rows
        ldmatrix_x4_trans(a_v, smem_addr(rv + x_row * kStrideV + warp * 16 + x_col));
        float acc_o[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc_o[i][j] = 0.f;
        {
            u32 b[4];
            ldmatrix_x4(b, smem_addr(pW + x_row * kStrideW + x_col));
            Mma<T>::run(acc_o[0], a_v, b[0], b[1]);
            Mma<T>::run(acc_o[1], a_v, b[2], b[3]);
        }
#pragma unroll
        for (int kk = 0; kk < kKTiles; ++kk) {
            u32 a[4];
            a[0] = Num<T>::pack2(acc_s[2 * kk][0], acc_s[2 * kk][1]);
            a[1] = Num<T>::pack2(acc_s[2 * kk][2], acc_s[2 * kk][3]);
            a[2] = Num<T>::pack2(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]);
            a[3] = Num<T>::pack2(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3]);
            u32 b[4];
            ldmatrix_x4(b, smem_addr(pQd + x_row * kStrideK + kk * 16 + x_col));
            Mma<T>::run(acc_o[0], a, b[0], b[1]);
            Mma<T>::run(acc_o[1], a, b[2], b[3]);
        }
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int t = t0 + nt * 8 + 2 * t4 + (e & 1), vr = vrow + 8 * (e >> 1);
                if (t < len && vr < head_dim_v) ob[(i64)t * o_st + vr] = Num<T>::from_float(scale * acc_o[nt][e]);
            }
        } else {
            ldmatrix_x4_trans(a_v, smem_addr(rv + x_row * kStrideV + warp * 16 + x_col));
        }

        // 4. S^T = S^T diag(A_{C-1}) + v^T (k*P)
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
            const float d0 = pA[nt * 8 + 2 * t4], d1 = pA[nt * 8 + 2 * t4 + 1];
            acc_s[nt][0] *= d0;
            acc_s[nt][1] *= d1;
            acc_s[nt][2] *= d0;
            acc_s[nt][3] *= d1;
        }
#pragma unroll
        for (int dt = 0; dt < kNTiles; dt += 2) {
            u32 b[4];
            ldmatrix_x4_trans(b, smem_addr(pKd + y_row * kStrideK + dt * 8 + y_col));
            Mma<T>::run(acc_s[dt], a_v, b[0], b[1]);
            Mma<T>::run(acc_s[dt + 1], a_v, b[2], b[3]);
        }
    }

    if (store_ht) {
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int kc = nt * 8 + 2 * t4 + (e & 1), vr = vrow + 8 * (e >> 1);
                if (kc < head_dim_k && vr < head_dim_v) ht[state_off + (i64)kc * head_dim_v + vr] = acc_s[nt][e];
            }
    }
    if (kStateOnly && blockIdx.x == 0) {  // the segment's decay: every value tile has the same
        for (int c = tid; c < head_dim_k; c += kThreads)  // c's owner wrote sSegDecay[c] (no sync needed)
            seg_decay[state_idx * gridDim.y * head_dim_k + (i64)head * head_dim_k + c] = sSegDecay[c];
    }
}

// gla_chunk_prep<T, kK>: the chunk mode's prepass (cuattn.gla.CHUNK_PREPASS).
// Phases 1-2 of a step depend on q, k and g only, so they need not sit in the sequential loop:
// one 128-thread block per (step, head, sequence), all in parallel, runs them
// (chunk_decays_and_weights, the same arithmetic as the loop's) and writes the step's record:
// decayed q and k (kC x kK, T), W (kC x kC, T) and A_{C-1} (kK, fp32), at record
// (sequence * heads + head) * max_steps + step of ws_qd / ws_kd / ws_w / ws_a. gla_chunk_mma<..,
// kPrepped = true> then streams records instead of q, k, g. Columns past K hold zeros (q = k = 0,
// E = 1), like the loop's; steps past a sequence's end are not written and never read.
// Shared memory (16-bit units unless noted): q, k, g 3 x kC x (kK + 8); decayed q, k and
// half-referenced q kC x (kK + 8) each, half-referenced k kHalf x (kK + 8); W kC x (kC + 8);
// fp32 E kC x kK and A_{C-1} kK.
template <typename T, int kK>
__global__ void __launch_bounds__(128)
gla_chunk_prep(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ g,
               const int* __restrict__ cu_seqlens, i64 q_sb, i64 q_sh, i64 q_st, i64 k_sb, i64 k_sh, i64 k_st,
               i64 g_sb, i64 g_sh, i64 g_st, int seqlen, int head_dim_k, int seq0, int varlen, int max_steps,
               u16* __restrict__ ws_qd, u16* __restrict__ ws_kd, u16* __restrict__ ws_w, float* __restrict__ ws_a) {
    constexpr int kThreads = 128, kC = 16, kHalf = kC / 2, kStrideK = kK + 8, kStrideW = kC + 8, kChunksK = kK / 8;
    extern __shared__ __align__(16) u16 smem[];
    u16* sq = smem;
    u16* sk = sq + kC * kStrideK;
    u16* sg = sk + kC * kStrideK;
    u16* sQd = sg + kC * kStrideK;
    u16* sKd = sQd + kC * kStrideK;
    u16* sQh = sKd + kC * kStrideK;
    u16* sKh = sQh + kC * kStrideK;
    u16* sW = sKh + kHalf * kStrideK;
    float* sE = reinterpret_cast<float*>(sW + kC * kStrideW);
    float* sDecay = sE + kC * kK;

    const int step = blockIdx.x, head = blockIdx.y, n = seq0 + blockIdx.z, tid = threadIdx.x;
    i64 bos, row;
    int len;
    gla_sequence(cu_seqlens, varlen, n, seqlen, bos, len, row);
    const int t0 = step * kC;
    if (t0 >= len) return;  // past this sequence (the grid covers the longest)
    stage_qkg<T, kK, kThreads>(sq, sk, sg, q + row * q_sb + head * q_sh + bos * q_st,
                               k + row * k_sb + head * k_sh + bos * k_st, g + row * g_sb + head * g_sh + bos * g_st,
                               q_st, k_st, g_st, t0, len, head_dim_k);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    chunk_decays_and_weights<T, kK, kThreads, false>(sq, sk, sg, sQd, sKd, sQh, sKh, sW, sE, sDecay, nullptr,
                                                     head_dim_k);
    const i64 rec = ((i64)n * gridDim.y + head) * max_steps + step;
    for (int i = tid; i < kC * kChunksK; i += kThreads) {
        const int r = i / kChunksK, c = i % kChunksK, so = r * kStrideK + c * 8;
        *reinterpret_cast<uint4*>(ws_qd + (rec * kC + r) * kK + c * 8) = *reinterpret_cast<const uint4*>(sQd + so);
        *reinterpret_cast<uint4*>(ws_kd + (rec * kC + r) * kK + c * 8) = *reinterpret_cast<const uint4*>(sKd + so);
    }
    if (tid < 2 * kC)
        *reinterpret_cast<uint4*>(ws_w + (rec * kC + tid / 2) * kC + (tid % 2) * 8) =
            *reinterpret_cast<const uint4*>(sW + (tid / 2) * kStrideW + (tid % 2) * 8);
    for (int c = tid; c < kK; c += kThreads) ws_a[rec * kK + c] = sDecay[c];
}

// Phase 2 of the segmented chunk mode: a sequential scan over one sequence's segments,
//     start_0 = h0,   start_{j+1} = diag(D_j) start_j + dS_j,   final = start_{num_segments},
// where dS_j (the segment's state from zero) and D_j (the product of its E, in [0, 1]) come from
// gla_chunk_mma<.., kStateOnly = true>. states (local sequence, segment, H, K, V) holds dS_j on
// entry and start_j on exit. One thread per state element (coalesced along V); a D_j of 0 resets
// exactly (0 * finite = 0).
__global__ void __launch_bounds__(256)
gla_chunk_scan(float* __restrict__ states, const float* __restrict__ seg_decay, const float* __restrict__ h0,
               float* __restrict__ ht, int head_dim_k, int head_dim_v, int num_segments, int seq0,
               int use_h0, int store_ht) {
    const int head = blockIdx.y, heads = gridDim.y, local = blockIdx.z;
    const int kv = head_dim_k * head_dim_v;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= kv) return;
    const int c = e / head_dim_v;
    const i64 state_off = ((i64)(seq0 + local) * heads + head) * kv + e;
    float s = use_h0 ? h0[state_off] : 0.f;
    for (int j = 0; j < num_segments; ++j) {
        const i64 idx = ((i64)local * num_segments + j) * heads + head;
        const float ds = states[idx * kv + e];
        const float d = seg_decay[idx * head_dim_k + c];
        states[idx * kv + e] = s;
        s = d * s + ds;
    }
    if (store_ht) ht[state_off] = s;
}

// One channel's 4 state columns: S = E S + k v, then a += q S (the recurrent kernel's FFMA order).
__device__ __forceinline__ void recurrent_update(float4& st, float e, float kk, float qq, const float4& vv, float4& a) {
    st.x = fmaf(st.x, e, kk * vv.x);
    st.y = fmaf(st.y, e, kk * vv.y);
    st.z = fmaf(st.z, e, kk * vv.z);
    st.w = fmaf(st.w, e, kk * vv.w);
    a.x = fmaf(qq, st.x, a.x);
    a.y = fmaf(qq, st.y, a.y);
    a.z = fmaf(qq, st.z, a.z);
    a.w = fmaf(qq, st.w, a.w);
}

// gla_step<T, kK, kRows>: a one-token call (T = 1, token-by-token generation) of either mode.
// Such a call reads the state once and writes it once, so it is bound by the state's bytes: one
// block per (128-column value tile, head, sequence), 32 lanes x kK / kRows row groups; a thread
// owns kRows (8 or 16) key rows x 4 value columns of the state (kRows float4 in registers), all
// loaded before anything else so the block's loads are in flight together, then
//     S = diag(E) S + k^T v,   o = scale * q S
// with E = expf(g) (the recurrent kernel's arithmetic: fmaf(S, E, k v) per element), the row
// groups' partial q S summed through shared memory. V is a multiple of 8 (the dispatcher's
// rule), so a thread's 4 columns are all inside V or all outside; states are contiguous
// (N, H, K, V) float32, so the float4 accesses are aligned.
template <typename T, int kK, int kRows>
__global__ void __launch_bounds__(32 * kK / kRows)
gla_step(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ g,
         T* __restrict__ o, const float* __restrict__ h0, float* __restrict__ ht,
         i64 q_sb, i64 q_sh, i64 k_sb, i64 k_sh, i64 v_sb, i64 v_sh, i64 g_sb, i64 g_sh, i64 o_sb, i64 o_sh,
         int head_dim_k, int head_dim_v, int seq0, int use_h0, int store_ht, float scale) {
    constexpr int kGroups = kK / kRows, kThreads = 32 * kGroups, kVTile = 128;
    __shared__ float sQ[kK], sK[kK], sE[kK];
    __shared__ float4 sO[kGroups][32];

    const int vt = blockIdx.x, head = blockIdx.y, n = seq0 + blockIdx.z;
    const int tid = threadIdx.x, grp = tid / 32, lane = tid % 32;
    const int col = vt * kVTile + 4 * lane, r0 = grp * kRows;
    const bool col_ok = col < head_dim_v;
    const i64 state_off = ((i64)n * gridDim.y + head) * head_dim_k * head_dim_v + col;

    float4 s[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
        const bool ok = use_h0 && col_ok && r0 + i < head_dim_k;
        s[i] = ok ? __ldg(reinterpret_cast<const float4*>(h0 + state_off + (i64)(r0 + i) * head_dim_v))
                  : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    const T* qb = q + n * q_sb + head * q_sh;
    const T* kb = k + n * k_sb + head * k_sh;
    const T* gb = g + n * g_sb + head * g_sh;
    for (int c = tid; c < kK; c += kThreads) {  // channels past K: q = k = 0, E = 1
        const bool ok = c < head_dim_k;
        sQ[c] = ok ? Num<T>::to_float(qb[c]) : 0.f;
        sK[c] = ok ? Num<T>::to_float(kb[c]) : 0.f;
        sE[c] = ok ? expf(Num<T>::to_float(gb[c])) : 1.f;
    }
    float4 vv = make_float4(0.f, 0.f, 0.f, 0.f);
    if (col_ok) {
        const T* vb = v + n * v_sb + head * v_sh + col;
        vv = make_float4(Num<T>::to_float(vb[0]), Num<T>::to_float(vb[1]), Num<T>::to_float(vb[2]),
                         Num<T>::to_float(vb[3]));
    }
    __syncthreads();

    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int i = 0; i < kRows; ++i) recurrent_update(s[i], sE[r0 + i], sK[r0 + i], sQ[r0 + i], vv, acc);
    if (store_ht && col_ok) {
#pragma unroll
        for (int i = 0; i < kRows; ++i)
            if (r0 + i < head_dim_k) *reinterpret_cast<float4*>(ht + state_off + (i64)(r0 + i) * head_dim_v) = s[i];
    }
    sO[grp][lane] = acc;
    __syncthreads();
    if (tid < 32 && col_ok) {
        float4 sum = sO[0][tid];
#pragma unroll
        for (int w = 1; w < kGroups; ++w) {
            const float4 x = sO[w][tid];
            sum.x += x.x, sum.y += x.y, sum.z += x.z, sum.w += x.w;
        }
        T* ob = o + n * o_sb + head * o_sh + col;
        ob[0] = Num<T>::from_float(scale * sum.x);
        ob[1] = Num<T>::from_float(scale * sum.y);
        ob[2] = Num<T>::from_float(scale * sum.z);
        ob[3] = Num<T>::from_float(scale * sum.w);
    }
}

// gla_recurrent_tiled<T, kK, kVTile> (any T, exact FFMA; the recurrent mode's kernel): a block
// owns kVTile (32, 64 or 128) value columns of one (head, sequence) and all kK key channels for
// the whole sequence. A lane owns 4 value columns x kSlice channels of the state (16, or 8 for
// kK <= 64, where the per-token block work (staging, the partial-sum reduction) needs more
// threads per block): 4 x kSlice fp32 registers. Why 4 columns: per token a thread
// reads q, k and E for its channels from shared memory, and the SM returns shared loads at one
// 32-bit register per lane per cycle whatever the addresses (broadcasts included), so those
// reads cost 3 registers per channel; 4 columns per lane spread them over 4 state elements each
// (an earlier kernel with one column per lane spent 3 register returns per state element and
// was bound by them: benchmarks/NOTES.md). Lanes: kColGroups = kVTile / 4 column groups x kLaneRows = 32 / kColGroups
// channel groups per warp; channel group gi = warp * kLaneRows + lane row owns the float4
// channel blocks (warp * kSlice / 4 + j) * kLaneRows + lane row, j < kSlice / 4, so the lane
// rows of a warp read adjacent 16-byte blocks (no bank conflicts). The kGroups partial q S per
// token are summed through shared memory. Tokens are staged kSteps at a time as fp32 (q, k,
// E = expf(g), v); the next round's values are loaded into registers while this round runs.
template <int kK, int kVTile>
struct RecurrentShape {
    static constexpr int kCols = 4;                                  // value columns per lane
    static constexpr int kColGroups = kVTile / kCols;                // lanes per channel group
    static constexpr int kLaneRows = 32 / kColGroups;                // channel groups per warp
    static constexpr int kSliceMax = kK > 64 ? 16 : 8;               // more warps for small K
    static constexpr int kSlice = kK / kLaneRows < kSliceMax ? kK / kLaneRows : kSliceMax;  // channels per lane
    static constexpr int kGroups = kK / kSlice;                      // channel groups per block
    static constexpr int kWarps = kGroups / kLaneRows;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kSteps = kK > 128 ? 4 : 8;                  // tokens per round
    static constexpr int kPer = kSteps * kK / kThreads;              // staged q/k/g values per thread
    static constexpr int kPerV = kSteps * kVTile / kThreads;         // staged v values per thread
    static_assert(kColGroups * kLaneRows == 32 && kSlice % 4 == 0 && kWarps >= 1, "lane layout");
    static_assert(kPer * kThreads == kSteps * kK && kPerV * kThreads == kSteps * kVTile, "staging");
};

// One round of gla_recurrent_tiled's tokens from global memory into registers (fp32; past the
// sequence or past K: q = k = v = 0 and g = 0, so E = 1 and the state is unchanged).
template <typename T, int kK, int kVTile>
__device__ __forceinline__ void recurrent_fetch(const T* qb, const T* kb, const T* gb, const T* vb, i64 q_st,
                                                i64 k_st, i64 g_st, i64 v_st, int t0, int len, int head_dim_k,
                                                int head_dim_v, int vt, int tid,
                                                float (&pq)[RecurrentShape<kK, kVTile>::kPer],
                                                float (&pk)[RecurrentShape<kK, kVTile>::kPer],
                                                float (&pg)[RecurrentShape<kK, kVTile>::kPer],
                                                float (&pv)[RecurrentShape<kK, kVTile>::kPerV]) {
    using R = RecurrentShape<kK, kVTile>;
#pragma unroll
    for (int p = 0; p < R::kPer; ++p) {
        const int i = tid + p * R::kThreads, r = i / kK, c = i % kK;
        const bool ok = t0 + r < len && c < head_dim_k;
        const i64 off = (i64)(t0 + r);
        pq[p] = ok ? Num<T>::to_float(qb[off * q_st + c]) : 0.f;
        pk[p] = ok ? Num<T>::to_float(kb[off * k_st + c]) : 0.f;
        pg[p] = ok ? Num<T>::to_float(gb[off * g_st + c]) : 0.f;
    }
#pragma unroll
    for (int p = 0; p < R::kPerV; ++p) {
        const int i = tid + p * R::kThreads, r = i / kVTile, j = i % kVTile, vc = vt * kVTile + j;
        pv[p] = (t0 + r < len && vc < head_dim_v) ? Num<T>::to_float(vb[(i64)(t0 + r) * v_st + vc]) : 0.f;
    }
}

template <typename T, int kK, int kVTile>
__global__ void __launch_bounds__(RecurrentShape<kK, kVTile>::kThreads, 1)
gla_recurrent_tiled(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                    const T* __restrict__ g, T* __restrict__ o, const float* __restrict__ h0,
                    float* __restrict__ ht, const int* __restrict__ cu_seqlens,
                    i64 q_sb, i64 q_sh, i64 q_st, i64 k_sb, i64 k_sh, i64 k_st, i64 v_sb, i64 v_sh, i64 v_st,
                    i64 g_sb, i64 g_sh, i64 g_st, i64 o_sb, i64 o_sh, i64 o_st,
                    int seqlen, int head_dim_k, int head_dim_v, int seq0, int use_h0, int store_ht,
                    int varlen, float scale) {
    using R = RecurrentShape<kK, kVTile>;
    constexpr int kSteps = R::kSteps, kSlice = R::kSlice, kLaneRows = R::kLaneRows, kGroups = R::kGroups;
    constexpr int kThreads = R::kThreads, kPer = R::kPer, kPerV = R::kPerV;
    __shared__ __align__(16) float sQ[kSteps][kK];
    __shared__ __align__(16) float sK[kSteps][kK];
    __shared__ __align__(16) float sE[kSteps][kK];
    __shared__ __align__(16) float sV[kSteps][kVTile];
    __shared__ __align__(16) float sO[kSteps][kGroups][kVTile];

    const int vt = blockIdx.x, head = blockIdx.y, n = seq0 + blockIdx.z;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int lrow = lane / R::kColGroups, cg = lane % R::kColGroups, gi = warp * kLaneRows + lrow;
    i64 bos, row;
    int len;
    gla_sequence(cu_seqlens, varlen, n, seqlen, bos, len, row);
    const T* qb = q + row * q_sb + head * q_sh + bos * q_st;
    const T* kb = k + row * k_sb + head * k_sh + bos * k_st;
    const T* vb = v + row * v_sb + head * v_sh + bos * v_st;
    const T* gb = g + row * g_sb + head * g_sh + bos * g_st;
    T* ob = o + row * o_sb + head * o_sh + bos * o_st;

    const int col = vt * kVTile + 4 * cg;
    const bool col_ok = col < head_dim_v;  // V is a multiple of 8: all 4 columns or none
    const i64 state_off = ((i64)n * gridDim.y + head) * head_dim_k * head_dim_v + col;
#define CHANNEL(j) (((warp * (kSlice / 4) + (j) / 4) * kLaneRows + lrow) * 4 + (j) % 4)
    float4 s[kSlice];
#pragma unroll
    for (int j = 0; j < kSlice; ++j) {
        const int c = CHANNEL(j);
        s[j] = (use_h0 && col_ok && c < head_dim_k)
                   ? *reinterpret_cast<const float4*>(h0 + state_off + (i64)c * head_dim_v)
                   : make_float4(0.f, 0.f, 0.f, 0.f);
    }

    // the next round's tokens, held in registers while this round runs
    float pq[kPer], pk[kPer], pg[kPer], pv[kPerV];
    if (len > 0) recurrent_fetch<T, kK, kVTile>(qb, kb, gb, vb, q_st, k_st, g_st, v_st, 0, len, head_dim_k,
                                                head_dim_v, vt, tid, pq, pk, pg, pv);
    for (int t0 = 0; t0 < len; t0 += kSteps) {
        const int steps = min(kSteps, len - t0);
        __syncthreads();  // the previous round's shared memory is consumed
#pragma unroll
        for (int p = 0; p < kPer; ++p) {
            const int i = tid + p * kThreads, r = i / kK, c = i % kK;
            sQ[r][c] = pq[p];
            sK[r][c] = pk[p];
            sE[r][c] = expf(pg[p]);
        }
#pragma unroll
        for (int p = 0; p < kPerV; ++p) {
            const int i = tid + p * kThreads;
            sV[i / kVTile][i % kVTile] = pv[p];
        }
        __syncthreads();
        if (t0 + kSteps < len)
            recurrent_fetch<T, kK, kVTile>(qb, kb, gb, vb, q_st, k_st, g_st, v_st, t0 + kSteps, len, head_dim_k,
                                           head_dim_v, vt, tid, pq, pk, pg, pv);
#pragma unroll 1
        for (int r = 0; r < steps; ++r) {
            const float4 vv = *reinterpret_cast<const float4*>(&sV[r][4 * cg]);
            float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
#pragma unroll
            for (int jb = 0; jb < kSlice / 4; ++jb) {
                const int c = CHANNEL(4 * jb);
                const float4 e4 = *reinterpret_cast<const float4*>(&sE[r][c]);
                const float4 k4 = *reinterpret_cast<const float4*>(&sK[r][c]);
                const float4 q4 = *reinterpret_cast<const float4*>(&sQ[r][c]);
                float4& a = acc[jb & 1];
                recurrent_update(s[4 * jb], e4.x, k4.x, q4.x, vv, a);
                recurrent_update(s[4 * jb + 1], e4.y, k4.y, q4.y, vv, a);
                recurrent_update(s[4 * jb + 2], e4.z, k4.z, q4.z, vv, a);
                recurrent_update(s[4 * jb + 3], e4.w, k4.w, q4.w, vv, a);
            }
            *reinterpret_cast<float4*>(&sO[r][gi][4 * cg]) =
                make_float4(acc[0].x + acc[1].x, acc[0].y + acc[1].y, acc[0].z + acc[1].z, acc[0].w + acc[1].w);
        }
        __syncthreads();
        for (int i = tid; i < steps * kVTile; i += kThreads) {
            const int r = i / kVTile, j = i % kVTile, vc = vt * kVTile + j;
            if (vc < head_dim_v) {
                float sum = 0.f;
#pragma unroll
                for (int w = 0; w < kGroups; ++w) sum += sO[r][w][j];
                ob[(i64)(t0 + r) * o_st + vc] = Num<T>::from_float(scale * sum);
            }
        }
    }

    if (store_ht && col_ok) {
#pragma unroll
        for (int j = 0; j < kSlice; ++j) {
            const int c = CHANNEL(j);
            if (c < head_dim_k) *reinterpret_cast<float4*>(ht + state_off + (i64)c * head_dim_v) = s[j];
        }
    }
}
#undef CHANNEL
