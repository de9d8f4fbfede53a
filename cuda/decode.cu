// decode.cu: split-KV (flash-decoding) attention of a few query tokens against a long KV cache,
// with an optional ALiBi bias, contiguous or paged cache.
//
// Names: B batch, Hq/Hkv query/kv heads, group = Hq / Hkv, Sq new tokens per row, L cache
// length, D head dim (runtime), kHeadDim the padded compile-time head dim (32, 64, 128, 256).
// The rows of one kv head are its group * Sq query rows r = g * Sq + t (query head
// hkv * group + g, token t); token t of batch row b sits at position i = len_b - Sq + t and sees
// keys j <= i (so j < len_b). Logits in log2 units: (q . k) * scale * log2(e) +
// slope * log2(e) * (j - i); the bias is <= 0 and relative to the query, so logits stay near 0.
//
// decode_split<T, kHeadDim, kRows, kPaged>: grid (num_splits, Hkv * row_chunks, B), 128 threads.
//   A block streams keys [split * chunk, min(len_b, (split + 1) * chunk)) of one kv head once
//   for up to kRows query rows (the whole GQA group and all Sq tokens when they fit), held in
//   registers. A key is read by kLanesPerKey lanes, each loading 16-byte pieces of K and V
//   (kElems elements each) with non-caching loads; a warp covers kKeysPerWarp keys at once and
//   each thread keeps kUnroll keys' K and V loads in flight. Every key slot (a lane group) runs
//   its own online softmax (running max m, sum l, accumulator acc of its kPerLane columns,
//   fp32); at the end slots merge by shuffles, warps through shared memory (kRows * kHeadDim
//   floats), and the block writes its partial o (normalized, fp32) and natural-log lse.
//   Masked keys get exactly -inf; a slot that saw nothing keeps m = -inf and l = 0. A failed value
//   check (decode_validate's flags holding this call's generation; 0: no check) ends every block
//   before it reads a length or page (decode_merge's too): the outputs stay as they were.
//   Traffic: K and V of the chunk once; partials (num_splits * rows * D * 4 bytes) are small.
//
// decode_split_tma<T, kHeadDim, kRows, kPaged, kStages> (sm_90, kRows <= 4): decode_split's math
//   and key order (bit-identical for the same split of the keys), persistent (as many blocks as
//   the SMs hold, taking work items from a shared counter: take_item; optionally stealing the
//   rest of unfinished items at the end: walk_work), with K and V streamed by the bulk copy
//   engine into a kStages-deep shared-memory ring (16 KB per stage) filled by a producer warp;
//   the block that completes a row group merges it (count_partial, merge_rows), so there is no
//   second launch; a row group's only partial goes straight into the output (RowsOut). The
//   default on Hopper for one row per block (cuattn/decode.py KERNEL = None; "regs" selects
//   decode_split + decode_merge everywhere).
//   Both kernels share DecodeState (query rows, the per-slot online softmax, the block merge).
//
// decode_split_mma<T, kHeadDim, kPaged, kStages, kCpAsync> (sm_90, fp16/bf16, kHeadDim 64 or 128;
//   KERNEL = "mma", the default for row groups): decode_split_tma's structure with the scores and value sums on
//   tensor cores for up to 16 query rows per block; tiles arrive by tensor copies into
//   128-byte-swizzled shared memory (see its own comment).
//
// decode_validate<I>: the value checks of cache_seqlens and the used block-table entries in one
//   launch, flags to the split kernels (device memory) and to the host (mapped pinned memory).
//
// decode_merge<T> (after decode_split only): one block per (batch row, kv head, row chunk) merges
//   the splits' partials with weights exp(lse_s - max): a split with lse -inf weighs 0; all -inf
//   gives zeros and lse -inf; a NaN lse (NaN input) gives NaN for that row only. The persistent
//   kernels do the same merge (merge_rows) in the block that completes a row group.

#include "common.cuh"
#include "hopper.cuh"

// Timeline probe (benchmarks/decode_probe.py --trace; compiled in only with -DCUATTN_DECODE_TRACE):
// thread 0 of each persistent block stamps %globaltimer (ns) at points of its first 16 items (n: the
// block's item number) into decode_trace[(block * 16 + n) * 8 + slot]: 0 item start, 1 first tile
// landed, 2 key loop done, 3 partial written, 4 merge check (and merge) done, 5 the SM's id, 6 (mma)
// every warp's key loop done, 7 the item.
// Stream probes (benchmarks/decode_stream_probe.py; results wrong, timing only): with
// -DCUATTN_DECODE_SKIP_MATH the persistent kernels' consumers take each tile and hand it back without
// the math; with -DCUATTN_DECODE_MMA_BULK as well, decode_split_mma's producer fills its ring with
// decode_split_tma's 1-d bulk copies (contiguous caches) instead of tensor copies. With
// -DCUATTN_DECODE_K_THEN_V (results the same bits) the cp.async producer copies a whole tile's K
// rows, then its V rows, instead of K and V pieces taking turns.
// With -DCUATTN_DECODE_SKIP_END, decode_split_tma's consumers skip every partial's end (no
// partial written, no count, no merge: the time of the rows' ends); with -DCUATTN_DECODE_SKIP_COUNT
// they write every partial (and lone outputs) but skip the count and the merge (wrong results: what
// the count and merge cost beside the partial's writes); with -DCUATTN_DECODE_COUNT_NO_WAIT they
// send the count (a release reduction; relaxed with -DCUATTN_DECODE_RELAXED_COUNT) and go on without
// its answer or a merge (wrong results: what waiting for the answer costs); with
// -DCUATTN_DECODE_SKIP_MERGE they count and wait for the answer but never merge (wrong results:
// what the merge costs). -DCUATTN_DECODE_MMA_P_HI_ONLY: decode_split_mma's P V takes P rounded to
// T alone, not P_hi + P_lo (one product, not two; timing only: less accurate than the default).
// The ends as they were (results right, for side-by-side timing): -DCUATTN_DECODE_SC_FENCE counts
// partials after every consumer thread's fence.sc (and fences again before the merge), not by one
// thread's release/acquire atomic; -DCUATTN_DECODE_LONE_PARTIAL writes a row group's only partial
// as a partial and merges it in its own block, not straight into the output.
// -DCUATTN_DECODE_SERIAL_FINISH: DecodeState::finish of one row adds the warps' columns one warp
// after the other (kWarps + 1 barriers) as it did before the 14th session (the same bits).
// -DCUATTN_DECODE_MERGE_IN_FLIGHT=n, -DCUATTN_DECODE_MERGE_VEC=c: decode_split_tma's merge_rows loads
// n partials at a time, c columns a thread (the default: 8, and 1 or 2 with one query row; before
// the 14th session 16 and 4, which held decode_split_tma<half_t, 128, 1, ...> at the cap of 128
// registers: it now takes 94).
// -DCUATTN_DECODE_MMA_LEAN_MASK (opt-in, results the same bits; built in the 20th session, run on an
// H200 in the 21st: same bits, sanitizers clean, +0.0-0.2%): decode_split_mma with P_lo packed
// scores a tile that every real row sees whole (the item's first real row's position at or past
// its last key) without the per-score mask and integer-to-float conversion: ~13 instructions a
// warp a tile, not ~36 (SASS).
// -DCUATTN_DECODE_RELAXED_COUNT (timing only: a merge may read partials not yet visible) counts by
// a relaxed atomic: what the count's release and acquire cost beside its round trip.
// -DCUATTN_DECODE_L2_AHEAD=N (probe option, 39th session; the same bits): the producers of
// contiguous caches (decode_split_mma's cp.async one, decode_split_tma's bulk copies of whole tiles)
// also prefetch into L2 the tile N tiles ahead of the one they copy, K and V (one
// cp.async.bulk.prefetch.L2 each, by one lane) where it lies within the item: more bytes on their way
// to an SM than its ring holds, for the end of a call, when the SMs still streaming could take more
// than the ring's depth over the latency. Measured slower on every decode.py row (H100: n = 2 -1 to
// -8%, the more the further ahead).
#ifdef CUATTN_DECODE_L2_AHEAD
#define DECODE_L2_AHEAD(kbase, vbase, t0, key1, tile, row_elems)                                        \
    if (lane == 0 && (t0) + (CUATTN_DECODE_L2_AHEAD + 1) * (tile) <= (key1)) {                           \
        const i64 ahead = (i64)((t0) + CUATTN_DECODE_L2_AHEAD * (tile)) * (row_elems);                   \
        prefetch_l2_bulk((kbase) + ahead, (u32)((tile) * (row_elems) * sizeof(T)));                      \
        prefetch_l2_bulk((vbase) + ahead, (u32)((tile) * (row_elems) * sizeof(T)));                      \
    }
#else
#define DECODE_L2_AHEAD(kbase, vbase, t0, key1, tile, row_elems)
#endif
// In a consumer's tile loop: with -DCUATTN_DECODE_SKIP_MATH, count the tile's keys, hand the stage
// back and go on to the next tile (or end the partial) without the math.
#ifdef CUATTN_DECODE_SKIP_MATH
#define DECODE_SKIP_MATH_TILE()                          \
    {                                                    \
        if (keys == 0) DECODE_TRACE(n, 1, global_ns());  \
        keys += min(kTile, key1 - t0);                   \
        mbar_arrive(s_empty + 8 * stage);                \
        ++it;                                            \
        if (code & 1) {                                  \
            code = owner_end(code);                      \
            break;                                       \
        }                                                \
        continue;                                        \
    }
#else
#define DECODE_SKIP_MATH_TILE()
#endif
// -DCUATTN_DECODE_PDL (cuattn.decode.PDL, on by default; sm_90): programmatic dependent launch of
// the persistent kernels. The host launches them with programmatic stream serialization, so a
// launch may begin (blocks placed, ring barriers set up) while the kernel before it in the stream
// ends. Every thread then waits for that kernel (its completion and its memory: griddepcontrol.wait)
// before it reads or writes global memory, so inputs and results are those of a plain launch.
// Without the launch attribute the wait does nothing. -DCUATTN_DECODE_PDL_TRIGGER (probe) also lets
// each block's producer start the next launch once it has no more tiles to copy
// (griddepcontrol.launch_dependents): measured slower where a launch has one block per SM (H100,
// 25th session: B 1 32/32 -6%, B 1 32/8 and B 8 L 8192 -5%): the next launch's blocks take the
// free second slots of SMs still running this one, two to an SM, and those SMs stream both.
// (cuattn.decode.PDL_TRIGGER, opt-in: the trigger, with such launches asking for half an SM's
// shared memory so that no second block fits beside them.)
#if defined(CUATTN_DECODE_PDL) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DECODE_GRID_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#else
#define DECODE_GRID_WAIT() ((void)0)
#endif
#if defined(CUATTN_DECODE_PDL) && defined(CUATTN_DECODE_PDL_TRIGGER) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DECODE_LAUNCH_DEPENDENTS() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define DECODE_LAUNCH_DEPENDENTS() ((void)0)
#endif
#ifdef CUATTN_DECODE_TRACE
__device__ unsigned long long decode_trace[1024 * 16 * 8];
__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned int sm_id() {
    unsigned int r;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(r));
    return r;
}
#define DECODE_TRACE(n, slot, value)                                                        \
    do {                                                                                    \
        if (threadIdx.x == 0 && blockIdx.x < 1024 && (n) < 16)                              \
            decode_trace[((size_t)blockIdx.x * 16 + (n)) * 8 + (slot)] = (value);           \
    } while (0)
#else
#define DECODE_TRACE(n, slot, value) \
    do {                                \
    } while (0)
#endif
// (probe) -DCUATTN_DECODE_SKIP_WARP_MERGE (wrong results, timing only): decode_split_mma's item end
// lets every warp add its columns at once, in one step with one barrier (racing: wrong sums), not in
// the warps' four serial steps: what the serial order costs a call.
// (probe) -DCUATTN_DECODE_OUT_PREFETCH: decode_split_mma's thread 0 prefetches (prefetch.global.L2)
// an item's output rows, partial and final, as the item starts: does the end's ~1 us from the warps'
// merge to the rows' last store wait on address translation (the first stores in a long while)?
__device__ __forceinline__ void prefetch_global_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p) : "memory");
}
// (probe, with -DCUATTN_DECODE_TRACE) -DCUATTN_DECODE_TRACE_FINISH: decode_split_mma stamps slot 7
// (else the item) when its warps' serial merge into shared memory is done: where the end of an
// item spends its time (the 39th-40th sessions' traces: 1.5-1.9 us from the last warp's key loop
// to the partial's last store issued)
// -DCUATTN_DECODE_TRACE_FINISH_AT=k (with TRACE_FINISH; 41st session) moves that stamp into the
// rows' store phase after it: 1 warp 0's 1 / total and lse written (thread 0 is one of the lanes
// that write them), 2 past the barrier that publishes them (slot 3: its last output store
// issued). H200: warp 0's part 0.32 us, the barrier ~0, the column-a-thread stores 0.74 us of the
// 1.06 (B 1 32/8); those numbers are the probe option -DCUATTN_DECODE_BARRIER_STORE's (the default
// to the 41st session). The default has no such barrier: both stamp after the warp's own copy of
// 1 / total.
#ifdef CUATTN_DECODE_TRACE_FINISH
#ifndef CUATTN_DECODE_TRACE_FINISH_AT
#define CUATTN_DECODE_TRACE_FINISH_AT 0
#endif
#define DECODE_TRACE_ITEM(n, item) ((void)0)
#define DECODE_TRACE_FINISH_AT(n, k) \
    do {                            \
        if (CUATTN_DECODE_TRACE_FINISH_AT == (k)) DECODE_TRACE(n, 7, global_ns()); \
    } while (0)
#else
#define DECODE_TRACE_ITEM(n, item) DECODE_TRACE(n, 7, item)
#define DECODE_TRACE_FINISH_AT(n, k) ((void)0)
#endif
#define DECODE_TRACE_FINISH(n) DECODE_TRACE_FINISH_AT(n, 0)

// 16-byte global load that bypasses L1 allocation: K/V are read exactly once. volatile keeps the
// compiler from speculating it past the bounds check that guards it.
__device__ __forceinline__ uint4 ld_stream_16(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// 16-byte shared load; volatile keeps it after the barrier wait that guards it
__device__ __forceinline__ uint4 ld_shared_16(u32 addr) {
    uint4 r;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(addr));
    return r;
}

template <typename T> struct Unpack16;
template <> struct Unpack16<float> {
    static constexpr int kElems = 4;
    static __device__ __forceinline__ void run(const uint4& x, float* f) {
        f[0] = __uint_as_float(x.x); f[1] = __uint_as_float(x.y);
        f[2] = __uint_as_float(x.z); f[3] = __uint_as_float(x.w);
    }
};
template <> struct Unpack16<half_t> {
    static constexpr int kElems = 8;
    static __device__ __forceinline__ void run(const uint4& x, float* f) {
        const u32 w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = Num<half_t>::to_float(half_t{(u16)(w[i] & 0xffffu)});
            f[2 * i + 1] = Num<half_t>::to_float(half_t{(u16)(w[i] >> 16)});
        }
    }
};
template <> struct Unpack16<bf16_t> {
    static constexpr int kElems = 8;
    static __device__ __forceinline__ void run(const uint4& x, float* f) {
        const u32 w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};

template <typename T, int kHeadDim, int kRows>
struct DecodeShape {
    static constexpr int kWarps = 4;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kElems = Unpack16<T>::kElems;
    static constexpr int kChunks = kHeadDim / kElems;                  // 16-byte pieces per key row
    static constexpr int kLanesPerKey = kChunks < 32 ? kChunks : 32;
    static constexpr int kChunksPerLane = kChunks / kLanesPerKey;
    static constexpr int kPerLane = kChunksPerLane * kElems;           // columns per lane
    static constexpr int kKeysPerWarp = 32 / kLanesPerKey;
    static constexpr int kSlots = kWarps * kKeysPerWarp;               // independent softmax streams
    // DecodeState::finish's buffer: one row keeps every warp's columns (kWarps rows of kHeadDim),
    // more rows one sum of kHeadDim per row; then a max and a sum per warp and row
    static constexpr int kMergeFloats = (kRows == 1 ? kWarps : kRows) * kHeadDim + 2 * kWarps * kRows;
    static constexpr int kUnroll = 4 / kChunksPerLane;                 // keys in flight per thread
    // 4 blocks per SM (<= 128 registers) where the rows' registers fit, else 2
    static constexpr int kMinBlocks =
        (kRows * kPerLane <= 16 || (kRows <= 4 && kRows * kPerLane <= 32 && kHeadDim >= 64 && kChunksPerLane == 1))
            ? 4
            : 2;
};

// K and V rows of key j of one (batch row, kv head): kbase/vbase are that head's start (the
// batch row's too when contiguous); a paged cache finds the page through the block table row.
template <typename T, bool kPaged>
__device__ __forceinline__ void key_rows(const T* kbase, const T* vbase, const int* pages, int j, int page_size,
                                         i64 k_sb, i64 k_ss, i64 v_sb, i64 v_ss, const T*& kp, const T*& vp) {
    if (kPaged) {
        const i64 page = pages[j / page_size];
        const i64 off = j % page_size;
        kp = kbase + page * k_sb + off * k_ss;
        vp = vbase + page * v_sb + off * v_ss;
    } else {
        kp = kbase + (i64)j * k_ss;
        vp = vbase + (i64)j * v_ss;
    }
}

// ---------------------------------------------------------------- pieces shared by the split kernels
// One row's merge over a block's warps, from each warp's running max and sum of the row
// (s_m[w][r], s_l[w][r], log2 units): the block's max and total, and (where `factors` is given)
// each warp's rescale factor exp2(m_w - shift); returns the shift.
template <int kWarps, int kRows>
__device__ __forceinline__ float warp_stats_shift(const float (*s_m)[kRows], const float (*s_l)[kRows], int r,
                                                  float& total, float& block_max, float* factors = nullptr) {
    float mx = -CUATTN_INF;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_m[w][r]);
    const float shift = softmax_shift(mx);
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        const float f = fast_exp2(s_m[w][r] - shift);
        if (factors) factors[w] = f;
        t = fmaf(s_l[w][r], f, t);
    }
    total = t;
    block_max = mx;
    return shift;
}
// The same, and the factor that rescales the calling warp's accumulator (whose own max is m_own).
template <int kWarps, int kRows>
__device__ __forceinline__ void merge_warp_stats(const float (*s_m)[kRows], const float (*s_l)[kRows], int r,
                                                 float m_own, float& factor, float& total, float& block_max) {
    factor = fast_exp2(m_own - warp_stats_shift<kWarps, kRows>(s_m, s_l, r, total, block_max));
}

// The output row (of o's (B, Hq, Sq) rows, and lse's) of query row `row` of kv head kv_head: rows
// are (head in the group, token) in order, so a block's rows are consecutive output rows.
__device__ __forceinline__ i64 output_row(int b, int kv_head, int row, int num_q_heads, int group, int seqlen_q) {
    return ((i64)b * num_q_heads + kv_head * group) * seqlen_q + row;
}

// Where DecodeState::finish writes row r (of the block's rows) of o and lse: a partial (fp32 rows
// part_row + r of o_part and lse_part), or the output itself (RowsOut: row base + r of o, in T, and
// of lse; base: output_row of the block's first row).
struct PartialOut {
    float* o_part;
    float* lse_part;
    i64 part_row;
    int head_dim;
    __device__ __forceinline__ void o(int r, int col, float x) const { o_part[(part_row + r) * head_dim + col] = x; }
    __device__ __forceinline__ void lse(int r, float x) const { lse_part[part_row + r] = x; }
};
template <typename T>
struct RowsOut {
    T* out;
    float* out_lse;
    i64 base;
    int head_dim;
    __device__ __forceinline__ void o(int r, int col, float x) const {
        out[(base + r) * head_dim + col] = Num<T>::from_float(x);
    }
    __device__ __forceinline__ void lse(int r, float x) const { out_lse[base + r] = x; }
};

// One thread's view of the rows of its block: query columns (pre-scaled into log2 units),
// positions and slopes, and its key slot's online softmax (running max m, sum l, accumulator).
template <typename T, int kHeadDim, int kRows>
struct DecodeState {
    using S = DecodeShape<T, kHeadDim, kRows>;
    float qr[kRows][S::kPerLane];
    int pos[kRows];
    float slope[kRows];
    float m[kRows], l[kRows], acc[kRows][S::kPerLane];

    // rows past num_rows see nothing (position -1)
    __device__ __forceinline__ void init(const T* __restrict__ q, const float* __restrict__ slopes, i64 q_sb,
                                         i64 q_sh, i64 q_ss, int b, int kv_head, int row0, int num_rows,
                                         int seqlen_q, int group, int len, int head_dim, int cl, float scale_log2) {
        constexpr float kLog2e = 1.4426950408889634f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int row = row0 + r;
            const bool real = row < num_rows;
            const int g = real ? row / seqlen_q : 0, t = real ? row % seqlen_q : 0;
            const int h = kv_head * group + g;
            pos[r] = real ? len - seqlen_q + t : -1;
            slope[r] = real ? slopes[h] * kLog2e : 0.f;
            const T* qp = q + b * q_sb + h * q_sh + t * q_ss;
#pragma unroll
            for (int c = 0; c < S::kChunksPerLane; ++c) {
#pragma unroll
                for (int e = 0; e < S::kElems; ++e) {
                    const int col = (c * S::kLanesPerKey + cl) * S::kElems + e;
                    qr[r][c * S::kElems + e] =
                        (real && col < head_dim) ? Num<T>::to_float(qp[col]) * scale_log2 : 0.f;
                }
            }
            m[r] = -CUATTN_INF;
            l[r] = 0.f;
#pragma unroll
            for (int e = 0; e < S::kPerLane; ++e) acc[r][e] = 0.f;
        }
    }

    // kUnroll keys of this slot: key j = base + u * kSlots + slot (valid when j < key1) with raw
    // K pieces kraw[u]; vload(u, c)
    // gives V's (called after the scores, so V can come late from shared memory).
    // Invalid keys must come with zero pieces (a garbage V times weight 0 could be NaN).
    template <typename VLoad>
    __device__ __forceinline__ void update(const uint4 (&kraw)[S::kUnroll][S::kChunksPerLane], VLoad vload,
                                           int base, int slot, int key1) {
        constexpr int kUnroll = S::kUnroll, kElems = S::kElems;
        float s[kUnroll][kRows];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int r = 0; r < kRows; ++r) s[u][r] = 0.f;
#pragma unroll
            for (int c = 0; c < S::kChunksPerLane; ++c) {
                float kf[kElems];
                Unpack16<T>::run(kraw[u][c], kf);
#pragma unroll
                for (int r = 0; r < kRows; ++r)
#pragma unroll
                    for (int e = 0; e < kElems; ++e) s[u][r] = fmaf(qr[r][c * kElems + e], kf[e], s[u][r]);
            }
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
#pragma unroll
                for (int o = 1; o < S::kLanesPerKey; o <<= 1) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], o);
                // exact masking: invisible keys are -inf, never a finite stand-in
                const int j = base + u * S::kSlots + slot;
                s[u][r] = (j < key1 && j <= pos[r]) ? fmaf(slope[r], (float)(j - pos[r]), s[u][r]) : -CUATTN_INF;
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            float mx = m[r];
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) mx = fmaxf(mx, s[u][r]);
            const float shift = softmax_shift(mx);
            const float alpha = fast_exp2(m[r] - shift);
            m[r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                s[u][r] = fast_exp2(s[u][r] - shift);
                sum += s[u][r];
            }
            l[r] = fmaf(l[r], alpha, sum);
#pragma unroll
            for (int e = 0; e < S::kPerLane; ++e) acc[r][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int c = 0; c < S::kChunksPerLane; ++c) {
                float vf[kElems];
                Unpack16<T>::run(vload(u, c), vf);
#pragma unroll
                for (int r = 0; r < kRows; ++r)
#pragma unroll
                    for (int e = 0; e < kElems; ++e)
                        acc[r][c * kElems + e] = fmaf(s[u][r], vf[e], acc[r][c * kElems + e]);
            }
        }
    }

    // Merge the key slots of the block's kWarps warps (threads 0 .. 32 kWarps - 1, synchronized
    // by sync()) and write the normalized o and natural-log lse of its rows through out (PartialOut,
    // RowsOut). One row: every warp puts its columns and stats in shared memory at once and each
    // thread sums the warps' columns (two barriers); more rows: the warps add theirs one after the
    // other (kWarps + 1 barriers, a buffer of one sum per row). The same sums in the same order
    // (warp 0 first, no fused multiply-add), so both give the same bits.
    // smem: S::kMergeFloats floats, free again on return.
    template <typename Sync, typename Out>
    __device__ __forceinline__ void finish(float* smem, Sync sync, Out out, int rows_here, int head_dim, int tid,
                                           int cl) {
        constexpr int kWarps = S::kWarps, kElems = S::kElems;
        constexpr int kAccRows = kRows == 1 ? kWarps : kRows;
        const int warp = tid / 32, lane = tid % 32;
        float* s_acc = smem;
        float(*s_m)[kRows] = reinterpret_cast<float(*)[kRows]>(smem + kAccRows * kHeadDim);
        float(*s_l)[kRows] = reinterpret_cast<float(*)[kRows]>(smem + kAccRows * kHeadDim + kWarps * kRows);
        // slots of a warp: lanes cl, cl + kLanesPerKey, ... hold the same columns
#pragma unroll
        for (int o = S::kLanesPerKey; o < 32; o <<= 1) {
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const float m_o = __shfl_xor_sync(0xffffffffu, m[r], o);
                const float l_o = __shfl_xor_sync(0xffffffffu, l[r], o);
                const float mx = fmaxf(m[r], m_o);
                const float shift = softmax_shift(mx);
                const float a = fast_exp2(m[r] - shift), c = fast_exp2(m_o - shift);
                l[r] = fmaf(l[r], a, l_o * c);
                m[r] = mx;
#pragma unroll
                for (int e = 0; e < S::kPerLane; ++e) {
                    const float acc_o = __shfl_xor_sync(0xffffffffu, acc[r][e], o);
                    acc[r][e] = fmaf(acc[r][e], a, acc_o * c);
                }
            }
        }
        // warps through shared memory
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < kRows; ++r) { s_m[warp][r] = m[r]; s_l[warp][r] = l[r]; }
        }
#ifndef CUATTN_DECODE_SERIAL_FINISH
        if constexpr (kRows == 1) {
            if (lane < S::kLanesPerKey) {
#pragma unroll
                for (int c = 0; c < S::kChunksPerLane; ++c)
#pragma unroll
                    for (int e = 0; e < kElems; ++e)
                        s_acc[warp * kHeadDim + (c * S::kLanesPerKey + cl) * kElems + e] = acc[0][c * kElems + e];
            }
            sync();
            float total, mx, factor[kWarps];
            warp_stats_shift<kWarps, 1>(s_m, s_l, 0, total, mx, factor);
            if (rows_here > 0) {
                const float inv = CUATTN_INV_TOTAL(total);
                for (int col = tid; col < head_dim; col += S::kThreads) {
                    float x = __fmul_rn(s_acc[col], factor[0]);
#pragma unroll
                    for (int w = 1; w < kWarps; ++w) x = __fadd_rn(x, __fmul_rn(s_acc[w * kHeadDim + col], factor[w]));
                    out.o(0, col, x * inv);
                }
                if (tid == 0) out.lse(0, lse_from_log2(mx, total));
            }
            sync();  // every thread has read the buffer
            return;
        }
#endif
        sync();
        float factor[kRows], total[kRows], block_max[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r)
            merge_warp_stats<kWarps, kRows>(s_m, s_l, r, m[r], factor[r], total[r], block_max[r]);
        for (int w = 0; w < kWarps; ++w) {
            if (warp == w && lane < S::kLanesPerKey) {
#pragma unroll
                for (int r = 0; r < kRows; ++r)
#pragma unroll
                    for (int c = 0; c < S::kChunksPerLane; ++c)
#pragma unroll
                        for (int e = 0; e < kElems; ++e) {
                            const int col = (c * S::kLanesPerKey + cl) * kElems + e;
                            const float x = __fmul_rn(acc[r][c * kElems + e], factor[r]);
                            s_acc[r * kHeadDim + col] = w == 0 ? x : __fadd_rn(s_acc[r * kHeadDim + col], x);
                        }
            }
            sync();
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            if (r < rows_here) {
                const float inv = CUATTN_INV_TOTAL(total[r]);
                for (int col = tid; col < head_dim; col += S::kThreads) out.o(r, col, s_acc[r * kHeadDim + col] * inv);
                if (tid == 0) out.lse(r, lse_from_log2(block_max[r], total[r]));
            }
        }
    }
};

struct BlockSync {
    __device__ __forceinline__ void operator()() const { __syncthreads(); }
};

// Whether a call's value check failed: decode_validate set flag f0 (lengths) or f1 (pages) to the
// call's generation; generation 0: no check. (The kernels load the flags where they overlap them
// with other loads.)
__device__ __forceinline__ bool check_failed(int f0, int f1, int generation) {
    return generation != 0 && (f0 == generation || f1 == generation);
}

// ---------------------------------------------------------------- register kernel (sm_80+)
template <typename T, int kHeadDim, int kRows, bool kPaged>
__global__ void __launch_bounds__(128, (DecodeShape<T, kHeadDim, kRows>::kMinBlocks))
decode_split(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int* __restrict__ seqlens, const int* __restrict__ block_table,
             const float* __restrict__ slopes, float* __restrict__ o_part, float* __restrict__ lse_part,
             i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb, i64 v_sh, i64 v_ss,
             i64 bt_stride, int page_size, int batch, int num_kv_heads, int seqlen_q, int head_dim,
             int group, int num_rows, int row_chunks, int chunk, float scale_log2, const int* __restrict__ bad,
             int generation) {
    using S = DecodeShape<T, kHeadDim, kRows>;
    constexpr int kLanesPerKey = S::kLanesPerKey, kElems = S::kElems;
    constexpr int kChunksPerLane = S::kChunksPerLane, kUnroll = S::kUnroll, kSlots = S::kSlots;

    __shared__ float s_merge[S::kMergeFloats];

    const int split = blockIdx.x;
    const int kv_head = blockIdx.y / row_chunks;
    const int row0 = (blockIdx.y % row_chunks) * kRows;
    const int b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int slot = warp * S::kKeysPerWarp + lane / kLanesPerKey;
    const int cl = lane % kLanesPerKey;
    // the value check's flags, loaded with the length (one round trip; generation 0: no check): a
    // failed check (a flag holding this call's generation) means no work, nothing read past them
    const int f0 = generation != 0 ? bad[0] : 0, f1 = generation != 0 ? bad[1] : 0;
    const int len = seqlens[b];
    if (check_failed(f0, f1, generation)) return;
    const int key0 = split * chunk;
    const int key1 = min(len, key0 + chunk);

    DecodeState<T, kHeadDim, kRows> st;
    st.init(q, slopes, q_sb, q_sh, q_ss, b, kv_head, row0, num_rows, seqlen_q, group, len, head_dim, cl, scale_log2);

    const T* kbase = k + (kPaged ? 0 : b * k_sb) + kv_head * k_sh;
    const T* vbase = v + (kPaged ? 0 : b * v_sb) + kv_head * v_sh;
    const int* pages = block_table + b * bt_stride;

    for (int base = key0; base < key1; base += kSlots * kUnroll) {
        uint4 kraw[kUnroll][kChunksPerLane], vraw[kUnroll][kChunksPerLane];
        int j[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            j[u] = base + u * kSlots + slot;
            const T* kp = kbase;
            const T* vp = vbase;
            if (j[u] < key1) key_rows<T, kPaged>(kbase, vbase, pages, j[u], page_size, k_sb, k_ss, v_sb, v_ss, kp, vp);
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                const int col = (c * kLanesPerKey + cl) * kElems;
                const bool valid = j[u] < key1 && col < head_dim;
                kraw[u][c] = valid ? ld_stream_16(kp + col) : make_uint4(0, 0, 0, 0);
                vraw[u][c] = valid ? ld_stream_16(vp + col) : make_uint4(0, 0, 0, 0);
            }
        }
        st.update(kraw, [&](int u, int c) { return vraw[u][c]; }, base, slot, key1);
    }

    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    const i64 part_row = (i64)split * split_stride + ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
    st.finish(s_merge, BlockSync(), PartialOut{o_part, lse_part, part_row, head_dim}, min(kRows, num_rows - row0),
              head_dim, tid, cl);
}

// ---------------------------------------------------------------- bulk-copy kernel (sm_90)
// decode_split_tma<T, kHeadDim, kRows, kPaged, kStages>: decode_split's math, key order and
// results (bit-identical without stealing), persistent (a grid of as many blocks as the SMs hold,
// each taking work items from a shared counter until none is left: walk_work), with K and V
// streamed by the copy engine: one producer warp (warp 4) fills a
// kStages-deep ring of tiles (kTile = kSlots * kUnroll keys of K and of V, 16 KB per stage) with
// 1-d bulk copies, running ahead across work items, and the 4 consumer warps read their keys'
// pieces from shared memory, hand the stage back (empty barrier) and do the math while the next
// tiles land. A tile is one copy each for K and V when its keys are contiguous (row stride = D,
// and for a paged cache pages that hold whole tiles: run_keys 0), else one copy per run of keys
// back to back (a page's share of the tile: run_keys = page_size; strided rows: one per key row).
// Shared-memory rows are D elements (runtime): a tile is the cache's bytes as they lie.
// Needs every copied row 16-byte aligned (the host checks). Dynamic shared memory:
// kStages * 2 * kTile * kHeadDim * sizeof(T) + kMergeBytes + 24 kStages (barriers, stage headers).
// Where the partials of one row group lie: the owners' (one per split: row part_row + s * split_stride
// of o_part / lse_part, s < num_splits) and the stolen ranges' (pool slots, rows_cap rows each,
// listed in list[0 .. num_parts - num_splits); see walk_work).
struct PartialSet {
    const float* o_part;
    const float* lse_part;
    i64 part_row, split_stride;
    int num_splits;
    const float* pool_o;
    const float* pool_lse;
    const int* list;
    int rows_cap;
};

// Merge the num_parts partials of rows row0 .. row0 + rows_here - 1 of (b, kv_head) into o and lse
// (the decode_merge math), by 128 threads (the consumers of a persistent block, or a decode_merge
// block). Partials written by other blocks are read through L2 (__ldcg) after the caller's fence.
// The merge is bound by L2 latency (it often runs while other blocks stream HBM, when one round
// trip takes microseconds), so it is one pass with kInFlight partials' loads issued together: a
// thread takes kVec columns of one row (4; the one-row bulk-copy kernel: 1, or 2 past 128 columns,
// which still covers its row in one pass of 128 threads with fewer registers of loads in flight:
// that kernel takes 94 registers, not its cap of 128) and keeps an online log-sum-exp over the
// partials in order
// (running max m, sum l of exp(lse_p - m), acc of exp(lse_p - m) o_p; one rescale per kInFlight
// partials, none when the first ones hold the max). Every thread of a row computes the same m and
// l; the one with the first columns writes lse.
// merge_rows' partials per round in decode_merge and decode_split_tma (the same rounds: the same
// bits; 8, not 16: fewer registers); the tensor-core kernel's merge takes 16
constexpr int kDecodeMergeInFlight = 8;

template <int kVec>
struct VecOf;
template <>
struct VecOf<1> {
    static __device__ __forceinline__ void load(const float* p, float (&x)[1]) { x[0] = __ldcg(p); }
};
template <>
struct VecOf<2> {
    static __device__ __forceinline__ void load(const float* p, float (&x)[2]) {
        const float2 v = __ldcg(reinterpret_cast<const float2*>(p));
        x[0] = v.x, x[1] = v.y;
    }
};
template <>
struct VecOf<4> {
    static __device__ __forceinline__ void load(const float* p, float (&x)[4]) {
        const float4 v = __ldcg(reinterpret_cast<const float4*>(p));
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    }
};

template <typename T, int kVec, int kInFlight>
__device__ __forceinline__ void merge_rows(const PartialSet& ps, int num_parts, T* __restrict__ o,
                                           float* __restrict__ lse, int rows_here, int row0, int b, int kv_head,
                                           int group, int seqlen_q, int head_dim, int num_q_heads, int tid) {
    const int vecs = head_dim / kVec;  // head_dim is a multiple of 8
    for (int i = tid; i < rows_here * vecs; i += 128) {
        const int r = i / vecs, c = (i - r * vecs) * kVec;
        float m = -CUATTN_INF, l = 0.f, acc[kVec];
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[e] = 0.f;
        bool any_nan = false;
        for (int s0 = 0; s0 < num_parts; s0 += kInFlight) {
            float x[kInFlight];
            float y[kInFlight][kVec];
            int slot[kInFlight];
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {  // past the last partial: reload it, skipped below
                const int p = min(s0 + u, num_parts - 1);
                slot[u] = p < ps.num_splits ? -1 : __ldcg(ps.list + (p - ps.num_splits));
            }
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const int p = min(s0 + u, num_parts - 1);
                const float *lp, *op;
                if (slot[u] < 0) {
                    const i64 row = p * ps.split_stride + ps.part_row + r;
                    lp = ps.lse_part + row, op = ps.o_part + row * head_dim + c;
                } else {
                    const i64 row = (i64)slot[u] * ps.rows_cap + r;
                    lp = ps.pool_lse + row, op = ps.pool_o + row * head_dim + c;
                }
                x[u] = __ldcg(lp);
                VecOf<kVec>::load(op, y[u]);
            }
            float cm = m;
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                if (s0 + u < num_parts) {
                    any_nan = any_nan || x[u] != x[u];
                    cm = fmaxf(cm, x[u]);
                }
            }
            if (cm == -CUATTN_INF) continue;  // no partial so far saw a key
            if (cm != m) {                    // m = -inf gives scale 0 on l = acc = 0
                const float scale = __expf(m - cm);
                l *= scale;
#pragma unroll
                for (int e = 0; e < kVec; ++e) acc[e] *= scale;
                m = cm;
            }
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const float w = s0 + u < num_parts ? __expf(x[u] - m) : 0.f;
                if (w > 0.f) {  // a partial that saw no key (lse -inf) adds nothing, whatever its o holds
                    l += w;
#pragma unroll
                    for (int e = 0; e < kVec; ++e) acc[e] = fmaf(w, y[u][e], acc[e]);
                }
            }
        }
        const i64 out_row = output_row(b, kv_head, row0 + r, num_q_heads, group, seqlen_q);
        T* out = o + out_row * head_dim + c;
        const float nan = __int_as_float(0x7fc00000);
        if (any_nan || m == -CUATTN_INF) {  // NaN input, or a row that sees no key
#pragma unroll
            for (int e = 0; e < kVec; ++e) out[e] = Num<T>::from_float(any_nan ? nan : 0.f);
            if (c == 0) lse[out_row] = any_nan ? nan : -CUATTN_INF;
            continue;
        }
        const float inv = 1.f / l;
#pragma unroll
        for (int e = 0; e < kVec; ++e) out[e] = Num<T>::from_float(acc[e] * inv);
        if (c == 0) lse[out_row] = m + __logf(l);
    }
}

// Barriers of a kStages ring: full[s] completes on the producer's arrival plus the bytes it
// expects; empty[s] on `consumers` arrivals (every consumer thread, once per use of the stage).
__device__ __forceinline__ void init_ring_barriers(u32 s_full, u32 s_empty, int stages, int consumers) {
    for (int s = 0; s < stages; ++s) {
        mbar_init(s_full + 8 * s, 1);
        mbar_init(s_empty + 8 * s, consumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Work distribution of the persistent kernels. Items (split, kv head x row chunk, batch row), split
// fastest, are handed out in order from a global counter (the blocks of faster SMs take more of
// them: on an H100 some SMs stream ~25% faster than others, so equal shares per block would leave
// those idle; and a block that is not resident yet, e.g. while another stream's kernel holds its
// SM, takes nothing until it runs). A block's producer takes an item, then streams its tiles; each
// ring stage carries a header (walk_work). A failed value check (decode_validate's flags hold this
// call's generation: a bad length or page) means no work at all (first_take; the host raises).
// Every block ends on one take past the last item, so a launch makes exactly num_items +
// gridDim.x takes: the one that reads the last of those counts sets the counter back to 0 for the
// next launch on this stream (no block has to count its way out).
//
// Work stealing (grain < chunk): when the counter runs dry, the blocks that are done take what is
// left of the unfinished items, so the launch ends when the work does, not when its slowest SM
// does. An item's keys are `grains` pieces of `grain` keys. Its owner (the block that took it)
// claims them from the front, one ahead of the one it streams; thieves claim them from the back.
// Both claim by one atomic add on the item's 64-bit word (launch number << 32 | grains taken from
// the back << 16 | grains taken from the front); a claim holds when front + back < grains before
// it, so every grain goes to exactly one block. The owner starts the word (atomicExch: launch
// number, grain 0 taken), and thieves only touch words of this launch. The owner's grains make
// one partial (its split's rows of the partials); a thief's grains of one item make one partial
// in a pool slot (allocated from a per-launch count; the slot goes into the row group's list).
// A row group is merged by the block that completes it: every owner's partial written and every
// key of the row counted (done: thieves' partials << 48 | owners' << 32 | keys, per row group;
// one atomic tells the last block how many partials there are).
// How a row group's partials find the block that merges them: the block that completes the row
// group's count (count_partial: one atomic after its partial is written) merges it. Probe option
// -DCUATTN_DECODE_TICKETS (40th session; the same bits, stealing off; measured no faster): by tickets
// instead, the consumers of an owner taking their row group's ticket (thread 0: a relaxed atomic on
// ticket_count) as soon as their key loop ends, its answer coming back while they merge their warps
// and write the partial (DecodeState::finish; 1.4-1.9 us on an H100); the others set their split's
// flag (a release store) once their partial is written, and the block with the last ticket (the
// last key loop to end) waits for every other owner's flag (acquire loads), sets flags and count
// back to 0 for the next launch and merges (ticketed_partial). On an H100 the merging block still
// spent ~2.9 us from its partial to the merge's end (the others' flags, two L2 round trips), as
// with the count: -0.3 to +0.2% on the split rows; and its ticket, held through the warps' merge,
// spills 4-8 bytes in the two-block tensor-core kernels at D 128 (3 stages; the one-block ones,
// with their larger launch bound since the 40th session, do not).
#if defined(CUATTN_DECODE_TICKETS) && !defined(CUATTN_DECODE_SKIP_END) && !defined(CUATTN_DECODE_SKIP_COUNT) && \
    !defined(CUATTN_DECODE_COUNT_NO_WAIT) && !defined(CUATTN_DECODE_SKIP_MERGE) &&                      \
    !defined(CUATTN_DECODE_SC_FENCE) && !defined(CUATTN_DECODE_RELAXED_COUNT)
constexpr bool kDecodeTickets = true;
#else
constexpr bool kDecodeTickets = false;
#endif
struct Work {
    const int* __restrict__ seqlens;
    int num_items, num_splits, ys, row_chunks, chunk, grain, nrg;
    int span;  // even pieces (see split_key): a row group's keys in the flat order; 0: uniform splits
    // zero between launches: done (u64, per row group), thieves' partials (per row group), the
    // work counter, the pool's count, blocks out
    int* counters;
    const int* __restrict__ bad;
    int generation;
    unsigned long long* words;  // per item (see above)
    int* lists;                 // per row group: pool_cap entries
    int pool_cap, window, owner_grains;
    unsigned launch;
    __device__ __forceinline__ unsigned long long* done() const {
        return reinterpret_cast<unsigned long long*>(counters);
    }
    __device__ __forceinline__ int* thieves() const { return counters + 2 * nrg; }
    __device__ __forceinline__ int* work() const { return counters + 3 * nrg; }
    __device__ __forceinline__ int* pool_used() const { return counters + 3 * nrg + 1; }
    __device__ __forceinline__ int* exits() const { return counters + 3 * nrg + 2; }
    // per row group, one int per split slot (num_splits): the owner's partial is written (tickets, a probe)
    __device__ __forceinline__ int* flags() const { return counters + 3 * nrg + 3; }
    // tickets count a row group's owners in the low half of its done (counters are little-endian)
    __device__ __forceinline__ int* ticket_count(int rg) const { return counters + 2 * rg; }
    __device__ __forceinline__ bool stealing() const { return grain < chunk; }
    __device__ __forceinline__ bool tickets() const { return kDecodeTickets && !stealing(); }
};

// Where split s of row group rg starts. Uniform splits (span 0): s chunk. Even pieces (span > 0):
// the row groups' keys are laid end to end, span (the cache length rounded up to CHUNK_ALIGN) each,
// and cut into pieces of chunk keys (a multiple of CHUNK_ALIGN): piece i is [i chunk, (i + 1) chunk)
// of that order, and split s of row group rg is its part of piece rg span / chunk + s. A block takes
// a piece and streams its splits (one or, where the piece crosses into the next row group, two
// partials): every block the same number of keys however many row groups there are (B 1 x 32 heads
// of 33001 keys: 132 pieces of 8064 keys for 132 SMs, where uniform splits make 128 items of 8320
// and leave 4 SMs idle). The split slots of a row group: split_parts of them; num_splits is the
// most any row group has.
// In 32-bit units of 128 keys (CHUNK_ALIGN): the host takes even pieces only where every row
// group's keys end to end stay below 2^31 such units.
__device__ __forceinline__ int split_key(int rg, int s, int chunk, int span) {
    if (span == 0) return s * chunk;
    const unsigned u = (unsigned)span >> 7, c = (unsigned)chunk >> 7, start = (unsigned)rg * u;
    const int key = (int)((start / c + s) * c - start);  // the piece's start past the row group's
    return max(0, min(key, (int)u)) << 7;
}
__device__ __forceinline__ int split_parts(const Work& w, int rg) {
    if (w.span == 0) return w.num_splits;
    const unsigned u = (unsigned)w.span >> 7, c = (unsigned)w.chunk >> 7, start = (unsigned)rg * u;
    return (int)((start + u - 1) / c - start / c + 1);
}
struct ItemRange {
    int split, y, b, key0, key1, grains;
};
__device__ __forceinline__ ItemRange item_range(const Work& w, int item) {
    ItemRange r;
    r.split = item % w.num_splits;
    r.y = (item / w.num_splits) % w.ys;
    r.b = item / (w.num_splits * w.ys);
    const int rg = r.b * w.ys + r.y;
    r.key0 = split_key(rg, r.split, w.chunk, w.span);
    r.key1 = min(w.seqlens[r.b], split_key(rg, r.split + 1, w.chunk, w.span));
    r.grains = r.key1 > r.key0 ? (r.key1 - r.key0 + w.grain - 1) / w.grain : 0;
    return r;
}

#ifndef CUATTN_DECODE_STATIC_FIRST
__device__ __forceinline__ int take_item(int* work, int num_items) {
    const int taken = atomicAdd(work, 1);
    if (taken == num_items + (int)gridDim.x - 1) *work = 0;  // the launch's last take
    return taken < num_items ? taken : -1;
}
#else
// (opt-in, cuattn.decode.STATIC_FIRST) block i's first item is i (no atomic before its first copy;
// the host launches at most num_items blocks) and the counter hands out the rest: item gridDim.x +
// count. A launch then makes num_items takes (num_items - gridDim.x items, then one past the end
// per block); the last resets the counter.
__device__ __forceinline__ int take_item(int* work, int num_items) {
    const int taken = atomicAdd(work, 1);
    if (taken == num_items - 1) *work = 0;  // the launch's last take
    const int item = taken + (int)gridDim.x;
    return item < num_items ? item : -1;
}
#endif
// A block's first take, sent together with the loads of the value check's flags (one round trip
// before the first copy, not two; generation 0: no check, no loads). A failed check (a flag
// holding this call's generation: `failed`) makes the block take on until the counter runs out,
// doing no work: the launch still makes its num_items + gridDim.x takes, so the counter is reset
// as usual.
__device__ __forceinline__ int first_take(int* work, int num_items, const int* __restrict__ bad, int generation,
                                          int& failed) {
    const int f0 = generation != 0 ? bad[0] : 0, f1 = generation != 0 ? bad[1] : 0;
#ifndef CUATTN_DECODE_STATIC_FIRST
    int item = take_item(work, num_items);
#else
    int item = (int)blockIdx.x;
#endif
    failed = check_failed(f0, f1, generation);
    if (failed) {
#ifdef CUATTN_DECODE_STATIC_FIRST
        item = take_item(work, num_items);
#endif
        while (item >= 0) item = take_item(work, num_items);
    }
    return item;
}
__device__ __forceinline__ void st_shared_s32(u32 addr, int x) {
    asm volatile("st.shared.s32 [%0], %1;\n" ::"r"(addr), "r"(x) : "memory");
}
__device__ __forceinline__ int ld_shared_s32(u32 addr) {
    int x;
    asm volatile("ld.shared.s32 %0, [%1];\n" : "=r"(x) : "r"(addr) : "memory");
    return x;
}
// The count of a row group's partials (count_partial): one atomic of thread 0, release and acquire
// at GPU scope.
__device__ __forceinline__ unsigned long long atom_add_acq_rel_gpu(unsigned long long* p, unsigned long long x) {
#if defined(CUATTN_DECODE_SC_FENCE)
    return atomicAdd(p, x);  // (the probe's old way: every thread's fence.sc before and after)
#elif defined(CUATTN_DECODE_RELAXED_COUNT)
    unsigned long long old;  // (timing probe: no release, no acquire; a merge may read stale partials)
    asm volatile("atom.relaxed.gpu.global.add.u64 %0, [%1], %2;\n" : "=l"(old) : "l"(p), "l"(x) : "memory");
    return old;
#else
    unsigned long long old;
    asm volatile("atom.acq_rel.gpu.global.add.u64 %0, [%1], %2;\n" : "=l"(old) : "l"(p), "l"(x) : "memory");
    return old;
#endif
}
// Tickets (probe option, see Work): thread 0 of a block's consumers takes one by a relaxed atomic; the others'
// thread 0 sets their split's flag by a release store (after a barrier behind every thread's
// partial writes); the last ticket's warp 0 reads the flags by acquire loads.
__device__ __forceinline__ int take_ticket(const Work& w, int rg) {
    int old;
    asm volatile("atom.relaxed.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(old) : "l"(w.ticket_count(rg)) : "memory");
    return old;
}
__device__ __forceinline__ int ld_acquire_gpu_s32(const int* p) {
    int x;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(x) : "l"(p) : "memory");
    return x;
}
__device__ __forceinline__ void st_release_gpu_s32(int* p, int x) {
    asm volatile("st.release.gpu.global.s32 [%0], %1;\n" ::"l"(p), "r"(x) : "memory");
}
// A row group's count (Work::done): thieves' partials << 48 | owners' partials << 32 | keys. It is
// complete when all `owners` owners' partials and all `len` keys are in (thieves' partials aside).
constexpr unsigned long long kCountOwner = 1ull << 32, kCountThief = 1ull << 48;
__device__ __forceinline__ bool count_complete(unsigned long long done, int owners, int len) {
    return (done & (kCountThief - 1)) == owners * kCountOwner + (unsigned)len;
}

// Stage headers: (item, code), two ints per stage at s_hdr + 8 * stage. item -1: no more work.
// code >= 0: a tile of `item` whose first key is code >> 2; code & 1: the tile also ends the
// owner's partial (an item nobody can steal from: no end record); code & 2: that partial is its
// rows' only one (lone_partial: the consumers write it straight into the output). kOwnerLone: the
// end of such a partial without keys (an empty row). -1 / -2: the end of the owner's
// partial of `item` (-2: some of its grains went to thieves); <= -3: the end of a thief's partial
// of `item`, -3 - code = its pool slot | its index in the row group's list << 16. (Keys < 2^29:
// cuattn.decode.PERSISTENT_MAX_KEYS.)
constexpr int kOwnerEnd = -1, kOwnerEndStolen = -2;
constexpr int kOwnerLone = -0x7fffffff - 1;  // (thieves' codes stay above: list indices < 2^15)
// A tile's code that ends the owner's partial (code & 1) -> the end record it stands for
__device__ __forceinline__ int owner_end(int code) { return code & 2 ? kOwnerLone : kOwnerEnd; }
// The rows' only partial: an unstolen owner's partial of a row group that has one split (written
// straight into the output, uncounted)
__device__ __forceinline__ bool lone_partial(const Work& w, int rg) {
#ifdef CUATTN_DECODE_LONE_PARTIAL
    return false;  // (the probe's old way: written as a partial, merged by its own block)
#else
    return split_parts(w, rg) == 1;
#endif
}

// The consumers' side of the ring (both persistent kernels): ring position `it`'s stage once full.
// The item of the partial that starts there (its header's first int; < 0: no more work)
template <int kStages>
__device__ __forceinline__ int wait_item(u32 s_full, u32 s_hdr, int it) {
    mbar_wait(s_full + 8 * (it % kStages), (it / kStages) & 1);
    return ld_shared_s32(s_hdr + 8 * (it % kStages));
}
// The stage's header code (its second int): true for a tile; false for an end record (code < 0),
// a header-only stage, handed back at once with `it` moved past it
template <int kStages>
__device__ __forceinline__ bool wait_tile(u32 s_full, u32 s_empty, u32 s_hdr, int& it, int& code) {
    const int stage = it % kStages;
    mbar_wait(s_full + 8 * stage, (it / kStages) & 1);
    code = ld_shared_s32(s_hdr + 8 * stage + 4);
    if (code < 0) {
        mbar_arrive(s_empty + 8 * stage);
        ++it;
        return false;
    }
    return true;
}

// The producer warp of both persistent kernels: takes items and streams them, then steals. For
// each tile it waits for the tile's ring stage to be free, publishes the header and calls
// copy(stage, b, kv_head, t0, key1) (the whole warp calls; copy arrives on the stage's full
// barrier with the bytes it copies); ends of partials and of the work get header-only stages.
// Lane 0 makes the atomic claims and writes the headers; the warp scans for victims.
template <int kTile, int kStages, typename Copy>
__device__ __forceinline__ void walk_work(const Work w, u32 s_full, u32 s_empty, u32 s_hdr, int lane, Copy copy) {
    constexpr unsigned kAll = 0xffffffffu;
    int it = 0;
    auto next_stage = [&](int item, int code) {  // the next ring stage, free, with its header
        const int stage = it % kStages;
        if (it >= kStages) mbar_wait(s_empty + 8 * stage, ((it / kStages) - 1) & 1);
        if (lane == 0) {
            st_shared_s32(s_hdr + 8 * stage, item);
            st_shared_s32(s_hdr + 8 * stage + 4, code);
        }
        ++it;
        return stage;
    };
    auto mark = [&](int item, int code) {  // a header-only stage
        const int stage = next_stage(item, code);
        if (lane == 0) mbar_arrive(s_full + 8 * stage);
    };
    // the tiles of grain g; closes: its last tile ends the owner's partial (code & 1; lone: & 2 too)
    auto stream_grain = [&](int item, const ItemRange& r, int g, bool closes, bool lone) {
        const int k0 = r.key0 + g * w.grain, k1 = min(r.key1, k0 + w.grain);
        for (int t0 = k0; t0 < k1; t0 += kTile) {
            const int stage = next_stage(item, (t0 << 2) | (closes && t0 + kTile >= k1 ? (lone ? 3 : 1) : 0));
            copy(stage, r.b, r.y / w.row_chunks, t0, k1);
        }
    };

    // the owner's items: one per take, or with even pieces (w.span) the piece's splits
    auto own = [&](int item) {
        const ItemRange r = item_range(w, item);
        const bool shared = w.stealing() && r.grains > 1;
        const bool lone = !shared && lone_partial(w, r.b * w.ys + r.y);
        bool stolen = false;
        unsigned long long* word = w.words + item;
        // started (thieves wait for every item of their window to be), grain 0 the owner's
        if (w.stealing() && lane == 0) atomicExch(word, ((unsigned long long)w.launch << 32) | 1ull);
        if (r.grains > 0) {
            for (int g = 0, claimed = 1; g >= 0;) {
                const bool ask = shared && (w.owner_grains == 0 || claimed < w.owner_grains);
                unsigned long long got = 0;
                if (ask && lane == 0) got = atomicAdd(word, 1ull);  // the next grain, asked while this one streams
                stream_grain(item, r, g, !shared, lone);  // an item nobody steals from: one grain, no end record
                g = -1;
                if (ask) {
                    got = __shfl_sync(kAll, got, 0);
                    const int f = (int)(got & 0xffffu), s = (int)((got >> 16) & 0xffffu);
                    if (f + s < r.grains) {
                        g = f;
                        ++claimed;
                    } else {
                        stolen = s > 0;
                    }
                } else {
                    stolen = shared;  // owner_grains (tests): the rest is the thieves'
                }
            }
        }
        if (shared || r.grains == 0) mark(item, stolen ? kOwnerEndStolen : lone ? kOwnerLone : kOwnerEnd);
    };
    int taken = 0, failed = 0;
    if (lane == 0) taken = first_take(w.work(), w.num_items, w.bad, w.generation, failed);
    taken = __shfl_sync(kAll, taken, 0);
    failed = __shfl_sync(kAll, failed, 0);
    while (taken >= 0) {
        if (w.span == 0) {
            own(taken);
        } else {  // piece `taken`: split taken - (rg span / chunk) of each row group rg it meets, by one
                  // call site of own (and of the copies inlined in it): the producer's code stays small
            const unsigned u = (unsigned)w.span >> 7, c = (unsigned)w.chunk >> 7;  // (units: split_key)
            const unsigned p0 = (unsigned)taken * c, p1 = min(p0 + c, (unsigned)w.nrg * u);
            const unsigned first = p0 / u, last = (p1 - 1) / u;
            for (unsigned j = 0; j <= last - first; ++j) {
#ifdef CUATTN_DECODE_PIECE_IN_ORDER  // (probe build) the row groups in key order, the end fragment last
                const unsigned rg = first + j;
#else
                // the two ends first (the row groups the piece shares with its neighbours: their partials
                // counted and merged while the launch still streams), then the whole row groups between
                // them, whose outputs need no count: a launch's last items end without a merge
                const unsigned rg = j == 0 ? first : j == 1 ? last : first + j - 1;
#endif
                own((int)rg * w.num_splits + taken - (int)(rg * u / c));
            }
        }
        if (lane == 0) taken = take_item(w.work(), w.num_items);
        taken = __shfl_sync(kAll, taken, 0);
    }
    // thief: the item of the last `window` with the most unclaimed grains, once every item there
    // has started (all are taken by now; an owner may not have made its first claim yet)
    while (w.stealing() && !failed) {
        unsigned long long best = 0;  // unclaimed << 48 | a tie-break hash << 32 | item
        int pending = 0;
        for (int i = max(0, w.num_items - w.window) + lane; i < w.num_items; i += 32) {
            const unsigned long long c = __ldcg(w.words + i);
            if ((unsigned)(c >> 32) != w.launch) {  // not started yet
                pending = 1;
                continue;
            }
            const int left = item_range(w, i).grains - (int)(c & 0xffffu) - (int)((c >> 16) & 0xffffu);
            const unsigned tie = (((unsigned)i ^ (blockIdx.x * 0x9e3779b9u)) * 0x85ebca6bu) >> 16;
            const unsigned long long key =
                left > 0 ? ((unsigned long long)left << 48) | ((unsigned long long)tie << 32) | (unsigned)i : 0ull;
            best = key > best ? key : best;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const unsigned long long other = __shfl_xor_sync(kAll, best, o);
            best = other > best ? other : best;
        }
        if (best == 0) {
            if (!__any_sync(kAll, pending)) break;
            __nanosleep(1000);
            continue;
        }
        const int victim = (int)(best & 0xffffffffu);
        // room in the pool for this partial, whatever the other thieves allocate meanwhile (each
        // holds at most one steal without a slot)
        int room = 0;
        if (lane == 0) room = __ldcg(w.pool_used()) + (int)gridDim.x <= w.pool_cap;
        if (!__shfl_sync(kAll, room, 0)) break;
        const ItemRange r = item_range(w, victim);
        unsigned long long* word = w.words + victim;
        unsigned long long got = 0;
        if (lane == 0) got = atomicAdd(word, 1ull << 16);
        got = __shfl_sync(kAll, got, 0);
        int f = (int)(got & 0xffffu), s = (int)((got >> 16) & 0xffffu);
        if (f + s >= r.grains) continue;  // claimed meanwhile: look again
        int ref = 0;
        if (lane == 0) {
            const int slot = atomicAdd(w.pool_used(), 1);
            const int index = atomicAdd(w.thieves() + r.b * w.ys + r.y, 1);
            ref = slot | (index << 16);
        }
        for (int g = r.grains - 1 - s; g >= 0;) {
            const bool ask = f + s + 1 < r.grains;  // a grain was left after this one when last seen
            if (ask && lane == 0) got = atomicAdd(word, 1ull << 16);
            stream_grain(victim, r, g, false, false);
            g = -1;
            if (ask) {
                got = __shfl_sync(kAll, got, 0);
                f = (int)(got & 0xffffu), s = (int)((got >> 16) & 0xffffu);
                if (f + s < r.grains) g = r.grains - 1 - s;
            }
        }
        mark(victim, -3 - __shfl_sync(kAll, ref, 0));
    }
    mark(-1, 0);
    if (w.stealing() && lane == 0) {  // the last producer out sets the pool's count back to 0
        __threadfence();
        if (atomicAdd(w.exits(), 1) == (int)gridDim.x - 1) {
            *w.pool_used() = 0;
            *w.exits() = 0;
        }
    }
}

// The producer warp of decode_split_tma (walk_work): a stage is a K tile, then a V tile,
// kTileBytes each, key rows row_bytes apart in shared memory. run_keys 0: one copy per tile,
// issued by one lane (the tile's keys back to back in the cache); else one copy per run of keys
// back to back, spread over the warp: runs start at multiples of run_keys (a paged cache's pages
// of dense rows: page_size; strided rows: 1, a copy per key row). Copies are slow: one per
// 256-byte row streams ~0.9 TB/s where one per 16-key page streams 2.5 (H200, one row per block).
template <typename T, bool kPaged, int kTile, int kTileBytes, int kStages>
__device__ __forceinline__ void produce_tiles(const Work w, const T* __restrict__ k, const T* __restrict__ v,
                                              const int* __restrict__ block_table, i64 k_sb, i64 k_sh, i64 k_ss,
                                              i64 v_sb, i64 v_sh, i64 v_ss, i64 bt_stride, int page_size,
                                              int row_bytes, int run_keys, u32 s_ring, u32 s_full, u32 s_empty,
                                              u32 s_hdr, int lane) {
    walk_work<kTile, kStages>(w, s_full, s_empty, s_hdr, lane, [&](int stage, int b, int kv_head, int t0, int key1) {
        const T* kbase = k + (kPaged ? 0 : b * k_sb) + kv_head * k_sh;
        const T* vbase = v + (kPaged ? 0 : b * v_sb) + kv_head * v_sh;
        const int* pages = block_table + b * bt_stride;
        const int nkeys = min(kTile, key1 - t0);
        const u32 dk = s_ring + 2 * kTileBytes * stage, dv = dk + kTileBytes;
        const u32 full = s_full + 8 * stage;
        if (run_keys == 0) {  // the tile is contiguous in K and in V
            if (lane == 0) {
                const u32 bytes = (u32)(nkeys * row_bytes);
                const T *kp, *vp;
                key_rows<T, kPaged>(kbase, vbase, pages, t0, page_size, k_sb, k_ss, v_sb, v_ss, kp, vp);
                mbar_expect_bytes(full, 2 * bytes);
                bulk_load(dk, kp, bytes, full);
                bulk_load(dv, vp, bytes, full);
            }
            if (!kPaged && row_bytes == (int)(k_ss * sizeof(T)) && k_ss == v_ss) {  // (probe option)
                DECODE_L2_AHEAD(kbase, vbase, t0, key1, kTile, k_ss)
            }
        } else {  // one copy per run (per key row where run_keys is 1): keys [j0, j1) of the tile,
                  // back to back in the cache, spread over the warp
            if (lane == 0) mbar_expect_bytes(full, (u32)(2 * nkeys * row_bytes));
            __syncwarp();
            const int first = t0 / run_keys, runs = (t0 + nkeys - 1) / run_keys - first + 1;
            for (int i = lane; i < runs; i += 32) {
                const int j0 = max(t0, (first + i) * run_keys), j1 = min(t0 + nkeys, (first + i + 1) * run_keys);
                const T *kp, *vp;
                key_rows<T, kPaged>(kbase, vbase, pages, j0, page_size, k_sb, k_ss, v_sb, v_ss, kp, vp);
                bulk_load(dk + (j0 - t0) * row_bytes, kp, (u32)((j1 - j0) * row_bytes), full);
                bulk_load(dv + (j0 - t0) * row_bytes, vp, (u32)((j1 - j0) * row_bytes), full);
            }
        }
    });
}

// After a consumer block wrote a partial of rows row0 .. row0 + rows_here - 1 of row group rg
// (b, kv head): an owner's partial (unstolen: no thief took any of its keys) of a row group with
// one split is merged at once, uncounted; else it is counted (done: thieves << 48 | owners << 32 |
// keys), and the block that completes the row group (all its split_parts owners, all len keys)
// merges it (merge_rows, owners + the thieves' partials) and sets its counts back to 0 for the
// next launch on this stream. A thief's partial goes into the row group's list first (list_slot:
// its pool slot; list_index: where). s_merge: shared memory for one int, free on entry and on
// exit. The 128 consumer threads call it together; it returns the number of partials this block
// merges (0: none), ps.list set for merge_rows (the callers' one call site: a second inlined
// merge spilled registers in the tensor-core kernel).
__device__ __forceinline__ int count_partial(const Work w, PartialSet& ps, float* s_merge, bool owner, bool unstolen,
                                             int keys, int len, int rg, int list_slot, int list_index, int tid) {
    int* list = w.lists + (i64)rg * w.pool_cap;
    ps.list = list;
    if (!owner && tid == 0) list[list_index] = list_slot;
#ifdef CUATTN_DECODE_SC_FENCE
    __threadfence();
#endif
    named_barrier(1, 128);  // the block's partial is written (and, with it, seen by thread 0)
    const int owners = split_parts(w, rg);
    const unsigned long long add = (owner ? kCountOwner : kCountThief) + (unsigned)keys;  // (thread 0's)
#ifdef CUATTN_DECODE_COUNT_NO_WAIT  // (timing probe: the count sent, its answer never awaited, no merge)
    if (tid == 0) {
#ifdef CUATTN_DECODE_RELAXED_COUNT
        asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;\n" ::"l"(w.done() + rg), "l"(add) : "memory");
#else
        asm volatile("red.release.gpu.global.add.u64 [%0], %1;\n" ::"l"(w.done() + rg), "l"(add) : "memory");
#endif
    }
    return 0;
#endif
    int parts = 1;  // alone: the rows' only partial, no count, no other block's partial to wait for
    if (!(owner && unstolen && owners == 1)) {
        int* s_flag = reinterpret_cast<int*>(s_merge);
        if (tid == 0) {
            // release: the block's partial (and list entry) before the count, for the block that
            // merges; acquire: every counted partial before this block's merge (the barriers below
            // pass both on to the other threads, as a cumulative fence would)
            const unsigned long long done = atom_add_acq_rel_gpu(w.done() + rg, add) + add;
            int last = 0;
            if (count_complete(done, owners, len)) {  // the last: reset for the next launch
                const int thieves = (int)(done >> 48);
                w.done()[rg] = 0;
                if (thieves) w.thieves()[rg] = 0;
                last = owners + thieves;
            }
            s_flag[0] = last;
        }
        named_barrier(1, 128);
        parts = s_flag[0];
        named_barrier(1, 128);  // every thread has read the flag: s_merge is free for the next item
#ifdef CUATTN_DECODE_SKIP_MERGE
        parts = 0;  // (timing probe: the count and its answer, no merge; wrong results)
#endif
#ifdef CUATTN_DECODE_SC_FENCE
        if (parts) __threadfence();
#endif
    }
    return parts;
}

// (Probe option -DCUATTN_DECODE_TICKETS) After a consumer block wrote an owner's partial of row group rg (split
// `split`), counted by tickets (Work; ticket: thread 0's, taken when the key loop ended): returns the number of
// partials to merge, the row group's split_parts where the ticket was the last (every other
// owner's flag seen, then set back to 0, as is the count), else 0 (this split's flag set).
// s_merge: shared memory for one int, free on entry and on exit. The 128 consumer threads call it
// together.
__device__ __forceinline__ int ticketed_partial(const Work w, int ticket, int rg, int split, float* s_merge,
                                                int tid) {
    const int owners = split_parts(w, rg);
    int* s_flag = reinterpret_cast<int*>(s_merge);
    if (tid == 0) s_flag[0] = ticket == owners - 1;
    named_barrier(1, 128);  // the block's partial is written (and, with it, seen by thread 0); the flag
    const int merger = s_flag[0];
    int* flags = w.flags() + (i64)rg * w.num_splits;
    if (!merger) {
        if (tid == 0) st_release_gpu_s32(flags + split, 1);
    } else if (tid < 32) {
        for (int s = tid; s < owners; s += 32) {
            if (s == split) continue;
            while (ld_acquire_gpu_s32(flags + s) == 0) {
            }
            flags[s] = 0;
        }
        if (tid == 0) w.done()[rg] = 0;
    }
    named_barrier(1, 128);  // the flag read (s_merge free); the merge after warp 0's acquires
    return merger ? owners : 0;
}

struct ConsumerSync {
    __device__ __forceinline__ void operator()() const { named_barrier(1, 128); }
};

template <typename T, int kHeadDim, int kRows>
struct DecodeTmaShape {
    using S = DecodeShape<T, kHeadDim, kRows>;
    static constexpr int kTile = S::kSlots * S::kUnroll;
    static constexpr int kTileBytes = kTile * kHeadDim * (int)sizeof(T);  // one of K, V
    static constexpr int kMinBlocks = kRows * S::kPerLane <= 8 ? 3 : kRows * S::kPerLane <= 32 ? 2 : 1;
    static constexpr int kMergeBytes = S::kMergeFloats * 4;
#ifndef CUATTN_DECODE_MERGE_VEC
    static constexpr int kMergeVec = kRows == 1 ? (kHeadDim <= 128 ? 1 : 2) : 4;  // merge_rows' columns a thread
#else
    static constexpr int kMergeVec = CUATTN_DECODE_MERGE_VEC;  // (probe builds)
#endif
#ifndef CUATTN_DECODE_MERGE_IN_FLIGHT
    static constexpr int kMergeInFlight = kDecodeMergeInFlight;  // merge_rows' partials per round
#else
    static constexpr int kMergeInFlight = CUATTN_DECODE_MERGE_IN_FLIGHT;  // (probe builds)
#endif
};

// The kernel arguments of work stealing, after `generation` in both persistent kernels
#define DECODE_STEAL_PARAMS                                                                                 \
    unsigned long long *__restrict__ words, int *__restrict__ lists, float *__restrict__ pool, int grain, \
        int pool_cap, int window, int owner_grains, unsigned launch

__device__ __forceinline__ Work make_work(const int* seqlens, int batch, int ys, int row_chunks, int num_splits,
                                          int chunk, int span, int* counters, const int* bad, int generation,
                                          unsigned long long* words, int* lists, int grain, int pool_cap,
                                          int window, int owner_grains, unsigned launch) {
    Work w;
    w.seqlens = seqlens;
    // takes: items, or pieces of the row groups' keys end to end
    w.num_items = span == 0 ? num_splits * ys * batch
                            : (int)(((unsigned)(batch * ys) * ((unsigned)span >> 7) + (chunk >> 7) - 1) / (chunk >> 7));
    w.num_splits = num_splits;
    w.span = span;
    w.ys = ys;
    w.row_chunks = row_chunks;
    w.chunk = chunk;
    w.grain = grain;
    w.nrg = batch * ys;
    w.counters = counters;
    w.bad = bad;
    w.generation = generation;
    w.words = words;
    w.lists = lists;
    w.pool_cap = pool_cap;
    w.window = window;
    w.owner_grains = owner_grains;
    w.launch = launch;
    return w;
}

template <typename T, int kHeadDim, int kRows, bool kPaged, int kStages>
__global__ void __launch_bounds__(160, (DecodeTmaShape<T, kHeadDim, kRows>::kMinBlocks))
decode_split_tma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 const int* __restrict__ seqlens, const int* __restrict__ block_table,
                 const float* __restrict__ slopes, float* __restrict__ o_part, float* __restrict__ lse_part,
                 i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb, i64 v_sh, i64 v_ss,
                 i64 bt_stride, int page_size, int batch, int num_kv_heads, int seqlen_q, int head_dim,
                 int group, int num_rows, int row_chunks, int chunk, float scale_log2, int run_keys,
                 int num_splits, int span, T* __restrict__ o, float* __restrict__ lse, int* __restrict__ counters,
                 int num_q_heads, const int* __restrict__ bad, int generation, DECODE_STEAL_PARAMS) {
    using S = DecodeShape<T, kHeadDim, kRows>;
    using TS = DecodeTmaShape<T, kHeadDim, kRows>;
    constexpr int kLanesPerKey = S::kLanesPerKey, kElems = S::kElems;
    constexpr int kChunksPerLane = S::kChunksPerLane, kUnroll = S::kUnroll, kSlots = S::kSlots;
    constexpr int kTile = TS::kTile, kTileBytes = TS::kTileBytes;

    // [ring: kStages x (K tile, V tile)] [merge: S::kMergeFloats floats] [full][empty][hdr]
    extern __shared__ __align__(128) unsigned char smem[];
    float* s_merge = reinterpret_cast<float*>(smem + 2 * kTileBytes * kStages);
    const u32 s_ring = smem_addr(smem);
    const u32 s_full = s_ring + 2 * kTileBytes * kStages + TS::kMergeBytes;
    const u32 s_empty = s_full + 8 * kStages;
    const u32 s_hdr = s_empty + 8 * kStages;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int row_bytes = head_dim * (int)sizeof(T);
    const int ys = num_kv_heads * row_chunks;
    // the work's arguments (built where used: not held in registers through the consumers' loop)
#define DECODE_WORK                                                                                                  \
    make_work(seqlens, batch, ys, row_chunks, num_splits, chunk, span, counters, bad, generation, words, lists, grain, \
              pool_cap, window, owner_grains, launch)

    if (tid == 0) init_ring_barriers(s_full, s_empty, kStages, S::kThreads);
    __syncthreads();
    DECODE_GRID_WAIT();  // (-DCUATTN_DECODE_PDL: the kernel before this one in the stream is done)

    // The ring position `it` runs on across items and partials, so the producer streams the next
    // partial's first tiles while the consumers merge and write the previous one.
    if (warp == S::kWarps) {  // producer
        produce_tiles<T, kPaged, kTile, kTileBytes, kStages>(
            DECODE_WORK, k, v, block_table, k_sb, k_sh, k_ss, v_sb, v_sh, v_ss, bt_stride, page_size, row_bytes,
            run_keys, s_ring, s_full, s_empty, s_hdr, lane);
        DECODE_LAUNCH_DEPENDENTS();
        return;
    }

    // consumers: a partial is the tiles of one item up to its end record (walk_work's headers)
    const int slot = warp * S::kKeysPerWarp + lane / kLanesPerKey;
    const int cl = lane % kLanesPerKey;
    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    for (int it = 0, n = 0;; ++n) {
        const int item = wait_item<kStages>(s_full, s_hdr, it);
        if (item < 0) break;  // no more work (a plain arrival: nothing to hand back)
        const int split = item % num_splits, y = (item / num_splits) % ys, b = item / (num_splits * ys);
        const int len = seqlens[b];
        // the keys to mask past: splits, pieces and grains end on whole CHUNK_ALIGN keys and tiles (at
        // most 128 keys) divide that, so within an item only the row's end cuts a tile
        const int key1 = len;
        DECODE_TRACE(n, 0, global_ns());
        DECODE_TRACE(n, 5, sm_id());
        DECODE_TRACE(n, 7, item);
        DecodeState<T, kHeadDim, kRows> st;
        st.init(q, slopes, q_sb, q_sh, q_ss, b, y / row_chunks, (y % row_chunks) * kRows, num_rows, seqlen_q, group,
                len, head_dim, cl, scale_log2);
        int keys = 0, code;
        for (;;) {  // the partial's tiles (the first header is read again: it is in shared memory)
            const int stage = it % kStages;
            if (!wait_tile<kStages>(s_full, s_empty, s_hdr, it, code)) break;  // an end record (handed back)
            const int t0 = code >> 2;
            DECODE_SKIP_MATH_TILE();
            if (keys == 0) DECODE_TRACE(n, 1, global_ns());
            const u32 dk = s_ring + 2 * kTileBytes * stage, dv = dk + kTileBytes;
            uint4 kraw[kUnroll][kChunksPerLane];
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
                for (int c = 0; c < kChunksPerLane; ++c) {
                    const int col = (c * kLanesPerKey + cl) * kElems;
                    const bool valid = t0 + u * kSlots + slot < key1 && col < head_dim;
                    kraw[u][c] = valid
                                     ? ld_shared_16(dk + (u32)((u * kSlots + slot) * row_bytes + col * (int)sizeof(T)))
                                     : make_uint4(0, 0, 0, 0);
                }
            }
            st.update(kraw, [&](int u, int c) {
                const int col = (c * kLanesPerKey + cl) * kElems;
                const bool valid = t0 + u * kSlots + slot < key1 && col < head_dim;
                return valid ? ld_shared_16(dv + (u32)((u * kSlots + slot) * row_bytes + col * (int)sizeof(T)))
                             : make_uint4(0, 0, 0, 0);
            }, t0, slot, key1);
            keys += min(kTile, key1 - t0);
            mbar_arrive(s_empty + 8 * stage);  // every consumer thread: its reads of the stage are done
            ++it;
            if (code & 1) {  // the owner's last tile
                code = owner_end(code);
                break;
            }
        }
        DECODE_TRACE(n, 2, global_ns());
        // (tickets, a probe option: the row group's ticket sent now, its answer read after the finish; Work)
        int ticket = 0;
        if (DECODE_WORK.tickets() && code != kOwnerLone && tid == 0)
            ticket = take_ticket(DECODE_WORK, item / num_splits);
#ifndef CUATTN_DECODE_SKIP_END
        {  // recomputed here rather than kept live through the key loop (registers)
            const int split2 = item % num_splits, y2 = (item / num_splits) % ys, b2 = item / (num_splits * ys);
            const int kv_head = y2 / row_chunks, row0 = (y2 % row_chunks) * kRows;
            const int rows_here = min(kRows, num_rows - row0);
            const bool lone = code == kOwnerLone, owner = lone || code >= kOwnerEndStolen;
            const int ref = owner ? 0 : -3 - code;
            const i64 group_row = ((i64)b2 * num_kv_heads + kv_head) * num_rows + row0;
            const float* pool_lse = pool + (i64)pool_cap * kRows * head_dim;
            // the rows' only partial (an unstolen owner's, one split) straight into the output: no
            // partial, no merge; else the owner's partial in its split's rows, a thief's in its pool
            // slot (three calls: one with selected pointers spills registers)
            if (lone)
                st.finish(s_merge, ConsumerSync(),
                          RowsOut<T>{o, lse, output_row(b2, kv_head, row0, num_q_heads, group, seqlen_q), head_dim},
                          rows_here, head_dim, tid, cl);
            else if (owner)
                st.finish(s_merge, ConsumerSync(),
                          PartialOut{o_part, lse_part, split2 * split_stride + group_row, head_dim}, rows_here,
                          head_dim, tid, cl);
            else
                st.finish(s_merge, ConsumerSync(),
                          PartialOut{pool, const_cast<float*>(pool_lse), (i64)(ref & 0xffff) * kRows, head_dim},
                          rows_here, head_dim, tid, cl);
            DECODE_TRACE(n, 3, global_ns());
            if (lone) {
                DECODE_TRACE(n, 4, global_ns());
                continue;
            }
#ifndef CUATTN_DECODE_SKIP_COUNT
            // the block that completes these rows merges them (no second launch)
            PartialSet ps{o_part, lse_part, group_row, split_stride, num_splits, pool, pool_lse, nullptr, kRows};
            const int parts = DECODE_WORK.tickets()
                                  ? ticketed_partial(DECODE_WORK, ticket, b2 * ys + y2, split2, s_merge, tid)
                                  : count_partial(DECODE_WORK, ps, s_merge, owner, code == kOwnerEnd, keys, seqlens[b2],
                                                  b2 * ys + y2, ref & 0xffff, ref >> 16, tid);
            if (parts)
                merge_rows<T, TS::kMergeVec, TS::kMergeInFlight>(ps, parts, o, lse, rows_here, row0, b2, kv_head, group,
                                                                 seqlen_q, head_dim, num_q_heads, tid);
#endif
            DECODE_TRACE(n, 4, global_ns());
        }
#else
        {  // keep the math: a store that depends on it (and never happens)
            float x = 0.f;
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                x += st.l[r];
#pragma unroll
                for (int e = 0; e < S::kPerLane; ++e) x += st.acc[r][e];
            }
            if (x == 1.0e-30f) o_part[tid] = x;
        }
#endif
    }
}

// ---------------------------------------------------------------- tensor-core kernel (sm_90)
// decode_split_mma<T, kHeadDim, kPaged, kStages, kCpAsync> (T = half_t / bf16_t, kHeadDim = 64 or 128):
// decode_split_tma's persistent producer/consumer structure and in-kernel merge, but the scores
// and the value sums run on tensor cores (mma.sync m16n8k16), for up to 16 query rows per block
// (a whole GQA group of up to 16 heads x tokens reads its kv head once). Warp w takes keys
// [16 w, 16 w + 16) of each 64-key tile: S (16 rows x 16 keys) = Q K^T over kHeadDim / 16
// k-steps with Q fragments held in registers, then the online softmax per row (rows g and g + 8
// of lane 4 g + t), then O += P V with P split into P_hi + P_lo (both in T; P_lo = P - P_hi), so
// the weights keep ~22 (fp16) or ~16 (bf16) bits instead of T's 11 or 8 and the result stays as
// accurate as the FMA kernels'. K and V tiles land in shared memory by tensor copies (TMA, two
// tensor maps built by cuattn._tma): one per 64-column box of 64 keys, 128-byte swizzled (16-byte
// chunk c of row r at c ^ (r % 8): ldmatrix without bank conflicts), zero-filled past D and past
// the cache's end; a paged cache needs pages of a multiple of 64 keys (the dispatcher checks).
// kCpAsync: the producer warp writes the same swizzled tiles by 16-byte cp.async instead
// (produce_tiles_cp_async: no tensor maps; rows past the item's keys arrive as zeros; any page
// size from 4 keys: pages of part tiles are looked up per row).
// A warp zeroes its V rows past the item's keys in a tail tile (another split's or stale bytes
// must not reach P V as 0 * NaN; the K rows there are masked to -inf whatever they hold).
// Shared memory: kStages x 2 x 64 x kHeadDim x 2 bytes of ring (1024-byte aligned), then
// max(Q 16 x (kHeadDim + 8) x 2, merge (16 x (kHeadDim + 8) + 8 x 16) x 4) bytes (Q and the merge
// take turns), barriers and item headers (24 bytes per stage).
template <typename T, int kHeadDim>
struct DecodeMmaShape {
    static constexpr int kWarps = 4, kThreads = 128, kRows = 16;
    static constexpr int kTile = 64;                                   // keys per stage (16 per warp)
    static constexpr int kBoxes = kHeadDim / 64;                       // 64-column swizzle atoms per row
    static constexpr int kBoxBytes = kTile * 128;                      // one box: 64 keys x 128 bytes
    static constexpr int kTileBytes = kBoxes * kBoxBytes;              // one of K, V
    static constexpr int kStride = kHeadDim + 8;                       // padded Q row, elements
    static constexpr int kQBytes = kRows * kStride * 2;
    static constexpr int kAccStride = kHeadDim + 8;                    // merge rows, floats (64-bit stores
                                                                       // without bank conflicts)
#ifdef CUATTN_DECODE_MMA_SLABS
    static constexpr int kMergeRows = kWarps * 8;  // a slab of 8 rows per warp (P_lo packed: rows g only)
#else
    static constexpr int kMergeRows = kRows;
#endif
    static constexpr int kMergeBytes = (kMergeRows * kAccStride + 2 * kWarps * kRows) * 4;
    static constexpr int kSharedBytes = kQBytes > kMergeBytes ? kQBytes : kMergeBytes;
    static constexpr int kKTiles = kHeadDim / 16, kDTiles = kHeadDim / 8;
    static_assert(kHeadDim == 64 || kHeadDim == 128, "head dims 64, 128 (whole 128-byte swizzle atoms)");
    // blocks per SM that a ring of `stages` leaves shared memory for (at most 2; cuattn.decode's
    // _mma_resident): the launch bound, so that a one-block ring's kernel may hold up to 255
    // registers a thread, not the 168 that two blocks of 5 warps leave (3 warps on a scheduler)
    // (-DCUATTN_DECODE_MMA_BOUND_2, probe: 2 everywhere, the bound before the 40th session)
    static constexpr __host__ __device__ int min_blocks(int stages) {
#ifdef CUATTN_DECODE_MMA_BOUND_2
        return 2;
#else
        return (2 * kTileBytes + 24) * stages + kSharedBytes + 1024 > 228 * 1024 / 2 ? 1 : 2;
#endif
    }
};

// Ring tiles written by tensor copies: boxes of 64 columns x 64 rows of 128 bytes, 16-byte chunk c
// of row r at c ^ (r % 8). A lane's ldmatrix row r and chunk parity b (column 8 b of each 16-column
// step) are fixed, so its address for the 16-column step at even chunk 2 m of box x is
//     (tile + r * 128 + ((b ^ (r % 8)) << 4) + x * 8192) ^ (2 m << 4)
// (the base has bits 4-6 = (b ^ r) and 2 m only flips bits 5-6): one XOR per step.
__device__ __forceinline__ u32 swizzle_base(u32 tile, int r, int b) {
    return tile + (u32)(r * 128 + ((b ^ (r & 7)) << 4));
}
__device__ __forceinline__ u32 swizzle_at(u32 base, int col) {  // col: a multiple of 16
    return (base + (u32)((col >> 6) * 64 * 128)) ^ (u32)(((col & 63) >> 3) << 4);
}

// The producer of decode_split_mma (walk_work; lane 0 issues the copies): per tile, one tensor copy
// per 64-column box of K and of V at (column, key, kv head, batch row) of a contiguous cache or
// (column, key in page, kv head, page) of a paged one; tiles start at multiples of 64 keys (splits
// and grains are whole CHUNK_ALIGN keys, pages whole tiles), so a paged tile lies in one page.
template <bool kPaged, int kTile, int kTileBytes, int kBoxes, int kStages>
__device__ __forceinline__ void produce_tiles_tensor(const Work w, const unsigned char* tmaps,
                                                     const int* __restrict__ block_table, i64 bt_stride,
                                                     int page_size, u32 s_ring, u32 s_full, u32 s_empty, u32 s_hdr,
                                                     int lane) {
    const void* kmap = tmaps;
    const void* vmap = tmaps + 128;
    walk_work<kTile, kStages>(w, s_full, s_empty, s_hdr, lane, [&](int stage, int b, int kv_head, int t0, int) {
        if (lane != 0) return;
        const u32 dk = s_ring + 2 * kTileBytes * stage, dv = dk + kTileBytes;
        const u32 full = s_full + 8 * stage;
        const int row = kPaged ? t0 % page_size : t0;
        const int outer = kPaged ? block_table[b * bt_stride + t0 / page_size] : b;
        mbar_expect_bytes(full, 2 * kTileBytes);  // whole boxes, zero-filled parts included
#pragma unroll
        for (int x = 0; x < kBoxes; ++x) {
            tma_load_4d(dk + x * kTile * 128, kmap, 64 * x, row, kv_head, outer, full);
            tma_load_4d(dv + x * kTile * 128, vmap, 64 * x, row, kv_head, outer, full);
        }
    });
}

// The cp.async producer of decode_split_mma (kCpAsync; walk_work, the whole warp copies): the same
// swizzled tiles as the tensor copies, written 16 bytes a lane by cp.async (lane: chunk lane %
// kChunks of key rows lane / kChunks + i * kRowsPerPass), so tiles need no tensor map and any
// 16-byte-aligned strides work; chunks past head_dim and key rows past the item's keys are zero-
// filled and read nothing. Each lane's copies arrive on the stage's full barrier when they land
// (raising its count first), then lane 0 arrives as for the other producers. On an H200 the
// tensor copies streamed at most ~4.2 TB/s with the consumers' math left out, 1-d bulk copies and
// a 16-byte cp.async ring 4.55-4.67 (benchmarks/NOTES.md, 9th session). Not inlined: inline,
// its pointers and strides pushed the bf16 D 128 kernel over its registers (a 4-byte spill).
template <typename T, bool kPaged, int kTile, int kTileBytes, int kBoxes, int kStages>
__device__ __noinline__ void produce_tiles_cp_async(const Work w, const T* __restrict__ k, const T* __restrict__ v,
                                                    const int* __restrict__ block_table, i64 k_sb, i64 k_sh, i64 k_ss,
                                                    i64 v_sb, i64 v_sh, i64 v_ss, i64 bt_stride, int page_size,
                                                    int head_dim, u32 s_ring, u32 s_full, u32 s_empty, u32 s_hdr,
                                                    int lane) {
    constexpr int kHeadDim = kBoxes * 64;       // padded
    constexpr int kChunks = kBoxes * 8;         // 16-byte chunks of a key row
    constexpr int kRowsPerPass = 32 / kChunks;  // key rows the warp copies per pass
    const int c = lane % kChunks, r0 = lane / kChunks;
    const bool col_ok = c * 8 < head_dim;
    // this lane's offset in a tile for row r0: half c / 8 at 64 x 128 bytes, row r at 128 r, chunk
    // (c % 8) ^ (r % 8) (the tensor copies' 128-byte swizzle, added per row below)
    const u32 lane_off = (u32)((c / 8) * kTile * 128 + r0 * 128);
    // rows r0 + i kRowsPerPass repeat their r % 8 every kSwizzles passes: the swizzled chunk per phase
    constexpr int kPasses = kTile / kRowsPerPass, kSwizzles = 8 / kRowsPerPass;
    u32 swz[kSwizzles];
#pragma unroll
    for (int j = 0; j < kSwizzles; ++j) swz[j] = (u32)(((c & 7) ^ ((r0 + j * kRowsPerPass) & 7)) << 4);
    // this lane's offset in a tile for pass i (rows r0 + i kRowsPerPass, swizzled)
    const auto pass_off = [&](int i) { return lane_off + (u32)(i * kRowsPerPass * 128) + swz[i % kSwizzles]; };
    // rows of exactly kHeadDim elements back to back: a whole tile's addresses are constant offsets
    const bool dense = head_dim == kHeadDim && k_ss == kHeadDim && v_ss == kHeadDim;
#ifdef CUATTN_DECODE_PAGE_PREFETCH
    // (opt-in, cuattn.decode.PAGE_PREFETCH) block table entries: the current page's kept, the next
    // page's loaded one page ahead, so a page's first tile does not wait for its entry
    int cur_b = -1, cur_index = -1, cur_page = 0, next_index = -1, next_page = 0;
#endif
    walk_work<kTile, kStages>(w, s_full, s_empty, s_hdr, lane, [&](int stage, int b, int kv_head, int t0, int key1) {
        const u32 dk = s_ring + 2 * kTileBytes * stage, dv = dk + kTileBytes;
        if (kPaged && page_size % kTile) {  // a tile may cross pages: each row's own page
            // lane p holds the entry of the tile's page first + p (the host's page_size >= 4: at
            // most 17 pages)
            const int first = t0 / page_size, pages_here = (min(t0 + kTile, key1) - 1) / page_size - first + 1;
            const int mine = lane < pages_here ? block_table[b * bt_stride + first + lane] : 0;
            const T* kh = k + kv_head * k_sh + c * 8;
            const T* vh = v + kv_head * v_sh + c * 8;
            int at = t0 % page_size, pi = 0;  // the first row's place in its page, and the page
            // 16-row groups in one page each: a page's address per group, its rows ks / vs apart
            auto groups = [&](i64 ks, i64 vs) {
#pragma unroll
                for (int g = 0; g < kTile / 16; ++g) {
                    const i64 page = __shfl_sync(0xffffffffu, mine, pi);
                    const T* kp = kh + page * k_sb + (i64)(at + r0) * ks;
                    const T* vp = vh + page * v_sb + (i64)(at + r0) * vs;
#pragma unroll
                    for (int i = 0; i < 16 / kRowsPerPass; ++i) {
                        const int pass = g * (16 / kRowsPerPass) + i;
                        const u32 off = pass_off(pass);
                        cp_async_16(dk + off, kp + i * kRowsPerPass * ks, true);
                        cp_async_16(dv + off, vp + i * kRowsPerPass * vs, true);
                    }
                    at += 16;
                    if (at == page_size) {
                        at = 0;
                        ++pi;
                    }
                }
            };
            if (head_dim == kHeadDim && t0 + kTile <= key1 && page_size % 16 == 0 && t0 % 16 == 0) {
                if (dense) {
                    groups(kHeadDim, kHeadDim);  // (the common case) rows at constant offsets
                } else {
                    groups(k_ss, v_ss);  // vLLM's (pages, page_size, Hkv, D) passed as its transpose
                }
            } else {  // any rows: a lane's rows step kRowsPerPass <= 4 <= page_size keys a pass
                at = (t0 + r0) % page_size;
                pi = (t0 + r0) / page_size - first;
                const i64 page = __shfl_sync(0xffffffffu, mine, pi & 31);
                const T* kp = kh + page * k_sb + (i64)at * k_ss;
                const T* vp = vh + page * v_sb + (i64)at * v_ss;
                const i64 k_step = (i64)kRowsPerPass * k_ss, v_step = (i64)kRowsPerPass * v_ss;
#pragma unroll 4
                for (int i = 0; i < kPasses; ++i) {
                    const bool ok = col_ok && t0 + r0 + i * kRowsPerPass < key1;
                    const u32 off = pass_off(i);
                    cp_async_16(dk + off, ok ? kp : k, ok);
                    cp_async_16(dv + off, ok ? vp : v, ok);
                    const i64 next = __shfl_sync(0xffffffffu, mine, (pi + 1) & 31);
                    at += kRowsPerPass;
                    kp += k_step;
                    vp += v_step;
                    if (at >= page_size) {  // the next page
                        at -= page_size;
                        ++pi;
                        kp = kh + next * k_sb + (i64)at * k_ss;
                        vp = vh + next * v_sb + (i64)at * v_ss;
                    }
                }
            }
            mbar_arrive_cp_async_inc(s_full + 8 * stage);
            __syncwarp();
            if (lane == 0) mbar_arrive(s_full + 8 * stage);
            return;
        }
        const T* kb;
        const T* vb;
        int row0;
        if (kPaged) {
#ifdef CUATTN_DECODE_PAGE_PREFETCH
            const int index = t0 / page_size;
            if (b != cur_b || index != cur_index) {
                cur_page = b == cur_b && index == next_index ? next_page : block_table[b * bt_stride + index];
                cur_b = b;
                cur_index = index;
                next_index = -1;
                if ((index + 1) * page_size < key1) {  // the item goes on into the next page
                    next_index = index + 1;
                    next_page = block_table[b * bt_stride + next_index];
                }
            }
            const int page = cur_page;
#else
            const int page = block_table[b * bt_stride + t0 / page_size];
#endif
            kb = k + page * k_sb + kv_head * k_sh;
            vb = v + page * v_sb + kv_head * v_sh;
            row0 = t0 % page_size;
        } else {
            kb = k + b * k_sb + kv_head * k_sh;
            vb = v + b * v_sb + kv_head * v_sh;
            row0 = t0;
        }
        kb += (i64)(row0 + r0) * k_ss + c * 8;
        vb += (i64)(row0 + r0) * v_ss + c * 8;
        // a whole tile, rows ks / vs apart: no zero-fill, so no per-pass predicate or select
        auto whole = [&](i64 ks, i64 vs) {
#ifdef CUATTN_DECODE_K_THEN_V
            // (probe option) the tile's K rows, then its V rows: runs of kTile rows of one cache
            // (16 KB at D 128) instead of K and V pieces taking turns (cuDNN's sm80 decode kernel
            // copies 128-key tiles of K, then of V, by all four warps: 34th session's SASS)
#pragma unroll
            for (int i = 0; i < kPasses; ++i) cp_async_16(dk + pass_off(i), kb + i * kRowsPerPass * ks, true);
#pragma unroll
            for (int i = 0; i < kPasses; ++i) cp_async_16(dv + pass_off(i), vb + i * kRowsPerPass * vs, true);
#else
#pragma unroll
            for (int i = 0; i < kPasses; ++i) {
                const u32 off = pass_off(i);
                cp_async_16(dk + off, kb + i * kRowsPerPass * ks, true);
                cp_async_16(dv + off, vb + i * kRowsPerPass * vs, true);
            }
#endif
        };
        if (!kPaged && dense) {  // (probe option)
            DECODE_L2_AHEAD(k + b * k_sb + kv_head * k_sh, v + b * v_sb + kv_head * v_sh, t0, key1, kTile, kHeadDim)
        }
        if (head_dim == kHeadDim && t0 + kTile <= key1) {
            if (dense) {
                whole(kHeadDim, kHeadDim);  // (the common case) rows at constant offsets
            } else {
                whole(k_ss, v_ss);  // FlashAttention's (B, L, Hkv, D) passed as its transpose, other strides
            }
        } else {  // a tile's end past the item's keys, or D < kHeadDim: zero-fill
            const i64 k_step = (i64)kRowsPerPass * k_ss, v_step = (i64)kRowsPerPass * v_ss;
#pragma unroll 4
            for (int i = 0; i < kPasses; ++i) {
                const bool ok = col_ok && t0 + r0 + i * kRowsPerPass < key1;
                const u32 off = pass_off(i);
                cp_async_16(dk + off, ok ? kb : k, ok);
                cp_async_16(dv + off, ok ? vb : v, ok);
                kb += k_step;  // (pointer steps: no 64-bit products a pass)
                vb += v_step;
            }
        }
        mbar_arrive_cp_async_inc(s_full + 8 * stage);
        __syncwarp();
        if (lane == 0) mbar_arrive(s_full + 8 * stage);
    });
}

__device__ __forceinline__ void st_shared_zero_16(u32 addr) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0) : "memory");
}
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

template <typename T, int kHeadDim, bool kPaged, int kStages, bool kCpAsync>
__global__ void __launch_bounds__(160, DecodeMmaShape<T, kHeadDim>::min_blocks(kStages))
decode_split_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                 const int* __restrict__ seqlens, const int* __restrict__ block_table,
                 const float* __restrict__ slopes, float* __restrict__ o_part, float* __restrict__ lse_part,
                 i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb, i64 v_sh, i64 v_ss,
                 i64 bt_stride, int page_size, int batch, int num_kv_heads, int seqlen_q, int head_dim,
                 int group, int num_rows, int row_chunks, int chunk, float scale_log2,
                 const unsigned char* __restrict__ tmaps,  // K and V tensor maps (128 bytes each)
                 int num_splits, int span, T* __restrict__ o, float* __restrict__ lse, int* __restrict__ counters,
                 int num_q_heads, const int* __restrict__ bad, int generation, DECODE_STEAL_PARAMS) {
    using M = DecodeMmaShape<T, kHeadDim>;
    constexpr int kTile = M::kTile, kStride = M::kStride, kTileBytes = M::kTileBytes, kRows = M::kRows;
    constexpr int kKTiles = M::kKTiles, kDTiles = M::kDTiles, kWarps = M::kWarps, kBoxes = M::kBoxes;
    constexpr float kLog2e = 1.4426950408889634f;
#if defined(CUATTN_DECODE_MMA_SLABS) && !defined(CUATTN_DECODE_MMA_PACK_LO)
#error "CUATTN_DECODE_MMA_SLABS: slabs of 8 rows, for row groups of at most 8 query rows (P_lo packed)"
#endif
#ifdef CUATTN_DECODE_MMA_PACK_LO
    // (the host asks where a row group has at most 8 query rows; MMA_PACK_LO False: off) rows g + 8 of the
    // P V product carry P_lo of rows g: one product a tile for P_hi and P_lo, not two
    constexpr bool kPackLo = true;
#else
    constexpr bool kPackLo = false;
#endif

    extern __shared__ __align__(1024) unsigned char smem[];
    const u32 s_ring = smem_addr(smem);
    unsigned char* s_shared = smem + 2 * kTileBytes * kStages;  // Q, then the merge, per item
    u16* sQ = reinterpret_cast<u16*>(s_shared);
    float* s_merge = reinterpret_cast<float*>(s_shared);
    const u32 s_full = s_ring + 2 * kTileBytes * kStages + M::kSharedBytes;
    const u32 s_empty = s_full + 8 * kStages;
    const u32 s_hdr = s_empty + 8 * kStages;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int ys = num_kv_heads * row_chunks;

    if (s_ring & 1023) __trap();  // the swizzle pattern repeats every 1024 bytes: tiles must align
    if (kPackLo && num_rows > 8) __trap();  // (the host never asks)
    if (tid == 0) init_ring_barriers(s_full, s_empty, kStages, M::kThreads);
    __syncthreads();
    DECODE_GRID_WAIT();  // (-DCUATTN_DECODE_PDL: the kernel before this one in the stream is done)

    if (warp == kWarps) {  // producer: tensor copies of whole tiles, issued by one lane
#if defined(CUATTN_DECODE_MMA_BULK) && defined(CUATTN_DECODE_SKIP_MATH)  // stream probe (see the top)
        produce_tiles<T, kPaged, kTile, kTileBytes, kStages>(DECODE_WORK, k, v, block_table, k_sb, k_sh, k_ss, v_sb,
                                                             v_sh, v_ss, bt_stride, page_size, kHeadDim * 2, 0, s_ring,
                                                             s_full, s_empty, s_hdr, lane);
        DECODE_LAUNCH_DEPENDENTS();
        return;
#endif
        if (kCpAsync) {
            produce_tiles_cp_async<T, kPaged, kTile, kTileBytes, kBoxes, kStages>(
                DECODE_WORK, k, v, block_table, k_sb, k_sh, k_ss, v_sb, v_sh, v_ss, bt_stride, page_size, head_dim,
                s_ring, s_full, s_empty, s_hdr, lane);
            DECODE_LAUNCH_DEPENDENTS();
            return;
        }
        if (lane == 0) {
            prefetch_tensormap(tmaps);  // the maps' fetch overlaps the first take
            prefetch_tensormap(tmaps + 128);
        }
        produce_tiles_tensor<kPaged, kTile, kTileBytes, kBoxes, kStages>(DECODE_WORK, tmaps, block_table, bt_stride,
                                                                         page_size, s_ring, s_full, s_empty, s_hdr,
                                                                         lane);
        DECODE_LAUNCH_DEPENDENTS();
        return;
    }

    // consumers. ldmatrix addressing (fragment layouts: Mma in common.cuh)
    const int a_row = lane & 15, a_col = (lane >> 4) * 8;                              // Q
    const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) * 8;  // K
    const int t_row = (lane & 7) + (((lane >> 3) & 1) << 3), t_col = (lane >> 4) * 8;  // V (trans)
    const int g = lane / 4, tq = lane % 4;
    const int kb = warp * 16;  // this warp's first key of a tile
    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    // a partial is the tiles of one item up to its end record (walk_work's headers)
    for (int it = 0, n = 0;; ++n) {
        const int item = wait_item<kStages>(s_full, s_hdr, it);
        if (item < 0) break;  // no more work (a plain arrival: nothing to hand back)
        const int split = item % num_splits, y = (item / num_splits) % ys, b = item / (num_splits * ys);
        const int kv_head = y / row_chunks, row0 = (y % row_chunks) * kRows;
        const int len = seqlens[b];
        // the keys to mask past: splits, pieces and grains end on whole CHUNK_ALIGN keys and tiles (at
        // most 128 keys) divide that, so within an item only the row's end cuts a tile
        const int key1 = len;
        const int rows_here = min(kRows, num_rows - row0);
        DECODE_TRACE(n, 0, global_ns());
        DECODE_TRACE(n, 5, sm_id());
        DECODE_TRACE_ITEM(n, item);
#ifdef CUATTN_DECODE_OUT_PREFETCH  // (probe) the item's output rows, partial and final, touched early
        if (tid == 0) {
            const i64 grow = ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
            const i64 orow = output_row(b, kv_head, row0, num_q_heads, group, seqlen_q);
            prefetch_global_l2(o_part + (split * split_stride + grow) * head_dim);
            prefetch_global_l2(lse_part + split * split_stride + grow);
            prefetch_global_l2(o + orow * head_dim);
            if (lse) prefetch_global_l2(lse + orow);
        }
#endif

        // Q rows of this item (zeros past rows_here and past D), then its fragments
        named_barrier(1, 128);  // the previous partial's merge is done with this buffer
        for (int i = tid; i < kRows * (kHeadDim / 8); i += M::kThreads) {
            const int r = i / (kHeadDim / 8), c = (i % (kHeadDim / 8)) * 8;
            uint4 val = make_uint4(0, 0, 0, 0);
            if (r < rows_here && c < head_dim) {
                const int row = row0 + r, t = row % seqlen_q, h = kv_head * group + row / seqlen_q;
                val = *reinterpret_cast<const uint4*>(q + b * q_sb + h * q_sh + t * q_ss + c);
            }
            *reinterpret_cast<uint4*>(sQ + r * kStride + c) = val;
        }
        named_barrier(1, 128);
        u32 qf[kKTiles][4];
#pragma unroll
        for (int kk = 0; kk < kKTiles; ++kk) ldmatrix_x4(qf[kk], smem_addr(sQ + a_row * kStride + kk * 16 + a_col));
        int pos[2];
        float slope[2], m[2], l[2];
#ifdef CUATTN_DECODE_MMA_LEAN_MASK
        // the first real row's position, the least of the item's (rows not real score Q's zeros, with
        // slope 0: finite, never written out, and a row of the mma is its own)
        const int pos_min = len - seqlen_q + (row0 % seqlen_q + rows_here > seqlen_q ? 0 : row0 % seqlen_q);
#endif
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = g + 8 * h, row = row0 + r;
            const bool real = r < rows_here;
            pos[h] = real ? len - seqlen_q + row % seqlen_q : -1;
            slope[h] = real ? slopes[kv_head * group + row / seqlen_q] * kLog2e : 0.f;
            m[h] = -CUATTN_INF;
            l[h] = 0.f;
        }
        float acc[kDTiles][4];
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;

        int keys = 0, code;
        for (;;) {  // the partial's tiles (the first header is read again: it is in shared memory)
            const int stage = it % kStages;
            if (!wait_tile<kStages>(s_full, s_empty, s_hdr, it, code)) break;  // an end record (handed back)
            const int t0 = code >> 2;
            DECODE_SKIP_MATH_TILE();
            if (keys == 0) DECODE_TRACE(n, 1, global_ns());
            const u32 dk = s_ring + 2 * kTileBytes * stage, dv = dk + kTileBytes;
            const bool tail = !kCpAsync && t0 + kTile > key1;  // (cp.async zero-fills those rows itself)
            if (tail) {  // V rows of this warp's keys past the item hold other bytes: zero whole rows
                for (int i = lane; i < 16 * kBoxes * 8; i += 32) {
                    const int r = kb + i / (kBoxes * 8), x = (i / 8) % kBoxes, c = i % 8;
                    if (t0 + r >= key1) st_shared_zero_16(dv + (u32)(x * kTile * 128 + r * 128 + 16 * c));
                }
                __syncwarp();
            }
            float s[2][4];
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[nt][e] = 0.f;
            const u32 k_base = swizzle_base(dk, kb + b_row, b_col >> 3);
#pragma unroll
            for (int kk = 0; kk < kKTiles; ++kk) {
                u32 bb[4];
                ldmatrix_x4(bb, swizzle_at(k_base, kk * 16));
                Mma<T>::run(s[0], qf[kk], bb[0], bb[1]);
                Mma<T>::run(s[1], qf[kk], bb[2], bb[3]);
            }
            // log2 units, bias, exact masking (invisible keys are -inf)
#ifdef CUATTN_DECODE_MMA_LEAN_MASK  // (opt-in: see the top)
            // (row groups of at most 8 rows, P_lo packed: a lane's rows g only, e < 2; with both halves real
            // the two paths spilled 4-8 bytes at bfloat16 D 128)
            if (kPackLo && t0 + kTile <= key1 && t0 + kTile - 1 <= pos_min) {  // every real row sees the tile
                // j - pos[0] as a float: an integer below 2^24 in magnitude, so the sum of the two exact
                // conversions is exact, as (float)(j - pos[h]) below (the same bits)
                const float d0 = (float)(t0 + kb + 2 * tq - pos[0]);
#pragma unroll
                for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        s[nt][e] = fmaf(slope[0], d0 + (float)(nt * 8 + e), s[nt][e] * scale_log2);
            } else
#endif
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int j = t0 + kb + nt * 8 + 2 * tq + (e & 1), h = e >> 1;
                    s[nt][e] = (j < key1 && j <= pos[h]) ? fmaf(slope[h], (float)(j - pos[h]), s[nt][e] * scale_log2)
                                                         : -CUATTN_INF;
                }
#pragma unroll
            for (int h = 0; h < (kPackLo ? 1 : 2); ++h) {  // (kPackLo: rows g + 8 are not real)
                float mx = fmaxf(m[h], fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1])));
                mx = quad_max(mx);
                const float shift = softmax_shift(mx);
                const float alpha = fast_exp2(m[h] - shift);
                m[h] = mx;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < 2; ++nt) {
                    s[nt][2 * h] = fast_exp2(s[nt][2 * h] - shift);
                    s[nt][2 * h + 1] = fast_exp2(s[nt][2 * h + 1] - shift);
                    sum += s[nt][2 * h] + s[nt][2 * h + 1];
                }
                l[h] = fmaf(l[h], alpha, sum);  // this lane's share; quad_sum at the end
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    acc[dt][2 * h] *= alpha;
                    acc[dt][2 * h + 1] *= alpha;
                    if constexpr (kPackLo) {  // rows g + 8: the P_lo sums of rows g
                        acc[dt][2] *= alpha;
                        acc[dt][3] *= alpha;
                    }
                }
            }
            // P = P_hi + P_lo, both exact in T up to the rounding of P_lo. A fragment registers: (row
            // g, keys 2 tq..), (row g + 8, keys 2 tq..), (row g, keys 8 + 2 tq..), (row g + 8, keys 8 + 2 tq..)
            u32 p_hi[4], p_lo[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int row_h = kPackLo ? 0 : i & 1;  // kPackLo: P_hi of rows g in p_hi[0, 2], P_lo in p_hi[1, 3]
                const float a = s[i >> 1][2 * row_h], c = s[i >> 1][2 * row_h + 1];
                const float ah = Num<T>::to_float(Num<T>::from_float(a)), ch = Num<T>::to_float(Num<T>::from_float(c));
                const u32 hi = Num<T>::pack2(ah, ch), lo = Num<T>::pack2(a - ah, c - ch);
                p_hi[i] = kPackLo && (i & 1) ? lo : hi;
                p_lo[i] = lo;
            }
            const u32 v_base = swizzle_base(dv, kb + t_row, t_col >> 3);
#pragma unroll
            for (int dt = 0; dt < kDTiles; dt += 2) {
                u32 bb[4];
                ldmatrix_x4_trans(bb, swizzle_at(v_base, dt * 8));
                Mma<T>::run(acc[dt], p_hi, bb[0], bb[1]);
                Mma<T>::run(acc[dt + 1], p_hi, bb[2], bb[3]);
#ifndef CUATTN_DECODE_MMA_P_HI_ONLY  // (timing probe: P rounded to T, one P V product, as FlashAttention does)
                if constexpr (!kPackLo) {
                    Mma<T>::run(acc[dt], p_lo, bb[0], bb[1]);
                    Mma<T>::run(acc[dt + 1], p_lo, bb[2], bb[3]);
                }
#endif
            }
            if (tail) fence_proxy_async_shared();  // the zeros before the copy engine's next writes
            keys += min(kTile, key1 - t0);
            mbar_arrive(s_empty + 8 * stage);  // every consumer thread: its reads of the stage are done
            ++it;
            if (code & 1) {  // the owner's last tile
                code = owner_end(code);
                break;
            }
        }
        const bool lone = code == kOwnerLone, owner = lone || code >= kOwnerEndStolen;
        const int ref = owner ? 0 : -3 - code;

        DECODE_TRACE(n, 2, global_ns());
        // (tickets, a probe option: the row group's ticket sent now, its answer read after the warps' merge; Work)
        int ticket = 0;
        if (DECODE_WORK.tickets() && !lone && tid == 0) ticket = take_ticket(DECODE_WORK, b * ys + y);
        if constexpr (kPackLo) {  // rows g + 8 held the P_lo sums of rows g
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt) {
                acc[dt][0] += acc[dt][2];
                acc[dt][1] += acc[dt][3];
                acc[dt][2] = acc[dt][3] = 0.f;
            }
        }
        // merge the warps (rows g, g + 8 of each lane) through shared memory, write the partial
        constexpr int kAcc = M::kAccStride;
        float* s_acc = s_merge;
        float(*s_m)[kRows] = reinterpret_cast<float(*)[kRows]>(s_merge + M::kMergeRows * kAcc);
        float(*s_l)[kRows] = reinterpret_cast<float(*)[kRows]>(s_merge + M::kMergeRows * kAcc + kWarps * kRows);
#pragma unroll
        for (int h = 0; h < 2; ++h) l[h] = quad_sum(l[h]);
        named_barrier(1, 128);  // every warp is done with sQ (its fragments are in registers)
        DECODE_TRACE(n, 6, global_ns());
        if (tq == 0) {
#pragma unroll
            for (int h = 0; h < 2; ++h) { s_m[warp][g + 8 * h] = m[h]; s_l[warp][g + 8 * h] = l[h]; }
        }
        named_barrier(1, 128);
        float factor[2], total[2], block_max[2];
#pragma unroll
        for (int h = 0; h < 2; ++h)
            merge_warp_stats<kWarps, kRows>(s_m, s_l, g + 8 * h, m[h], factor[h], total[h], block_max[h]);
        // warp by warp (a fixed order), the real rows only: lane (g, tq) holds columns 2 tq, 2 tq + 1
        // of each 8-column tile for rows g (h = 0) and g + 8 (h = 1). With MMA_SLABS (P_lo packed:
        // rows g only) every warp writes its rows into a slab of its own at once, and the rows' writes
        // below add the slabs warp by warp: the same sums in the same order, one barrier, not four
#if defined(CUATTN_DECODE_MMA_SLABS)
        {  // (rows past rows_here too: never read)
            float* row_acc = s_acc + (warp * 8 + g) * kAcc + 2 * tq;
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
                *reinterpret_cast<float2*>(row_acc + dt * 8) =
                    make_float2(acc[dt][0] * factor[0], acc[dt][1] * factor[0]);
        }
        named_barrier(1, 128);
#else
#ifdef CUATTN_DECODE_SKIP_WARP_MERGE  // (timing probe: every warp at once, one step; wrong results)
        for (int w = warp; w == warp; ++w) {
#else
        for (int w = 0; w < kWarps; ++w) {
#endif
            if (warp == w) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    if (g + 8 * h < rows_here) {
                        float* row_acc = s_acc + (g + 8 * h) * kAcc + 2 * tq;
#pragma unroll
                        for (int dt = 0; dt < kDTiles; ++dt) {
                            float2 x = make_float2(acc[dt][2 * h] * factor[h], acc[dt][2 * h + 1] * factor[h]);
                            float2* p = reinterpret_cast<float2*>(row_acc + dt * 8);
                            if (w > 0) {
                                const float2 before = *p;
                                x = make_float2(before.x + x.x, before.y + x.y);
                            }
                            *p = x;
                        }
                    }
                }
            }
            named_barrier(1, 128);
        }
#endif
        DECODE_TRACE_FINISH(n);
        // the rows' only partial (an unstolen owner's, one split) straight into the output (rows
        // base + r, consecutive: decode_split_tma's RowsOut); else the owner's partial in its
        // split's rows, a thief's in its pool slot
        const i64 group_row = ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
        const float* pool_lse = pool + (i64)pool_cap * kRows * head_dim;
        float* out_o = owner ? o_part : pool;
        float* out_lse = lone ? lse : owner ? lse_part : const_cast<float*>(pool_lse);
        const i64 part_row = lone    ? output_row(b, kv_head, row0, num_q_heads, group, seqlen_q)
                             : owner ? split * split_stride + group_row
                                     : (i64)(ref & 0xffff) * kRows;
#ifndef CUATTN_DECODE_BARRIER_STORE
        // every warp its own 1 / total (merge_warp_stats gave each warp the totals of rows g, g + 8:
        // lanes tq 0 write them), so no barrier publishes them; warp 0 writes the lse. Four columns
        // a thread: 16-byte loads of the slabs and, where head_dim is the kernel's (rows 16-byte
        // aligned), one 16-byte (partial) or 8-byte (output) store, else a store a column (padded
        // head dims); the same sums in the same order as the column a thread of the probe option
        // -DCUATTN_DECODE_BARRIER_STORE below (the default to the 41st session), so the same bits.
        // The store phase 1.06 -> 0.54 us an item end (H200, B 1 32/8); on an H100 (42nd session,
        // stream probe) B 4 32/4 D 64 +1.3%, B 8 32/8 L 8192 +0.7%, B 1 32/8 +0.4%, the rest level.
        // One loop for whole and padded head dims, not rolled out: a second loop or unrolling
        // spilled 4-8 bytes in the two-block D 128 kernels.
        float* s_inv = s_m[warp];  // s_m is read by now (the barriers above)
        if (tq == 0) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = g + 8 * h;
                s_inv[r] = CUATTN_INV_TOTAL(total[h]);
                if (warp == 0 && r < rows_here) out_lse[part_row + r] = lse_from_log2(block_max[h], total[h]);
            }
        }
        __syncwarp();
        DECODE_TRACE_FINISH_AT(n, 1);
        DECODE_TRACE_FINISH_AT(n, 2);
        {
            constexpr int kVecs = kHeadDim / 4;  // the kernel's columns; head_dim's may be fewer (padded)
            const bool whole = head_dim == kHeadDim;
#pragma unroll 1
            for (int i = tid; i < rows_here * kVecs; i += M::kThreads) {
                const int r = i / kVecs, col = (i % kVecs) * 4;
                if (col >= head_dim) continue;
                float4 x = *reinterpret_cast<const float4*>(s_acc + r * kAcc + col);
#ifdef CUATTN_DECODE_MMA_SLABS
#pragma unroll
                for (int w = 1; w < kWarps; ++w) {
                    const float4 y = *reinterpret_cast<const float4*>(s_acc + (w * 8 + r) * kAcc + col);
                    x = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
                }
#endif
                const float inv = s_inv[r];
                x = make_float4(x.x * inv, x.y * inv, x.z * inv, x.w * inv);
                const i64 at = (part_row + r) * head_dim + col;
                if (whole) {  // 16-byte aligned rows
                    if (lone)
                        *reinterpret_cast<uint2*>(o + at) =
                            make_uint2(Num<T>::pack2(x.x, x.y), Num<T>::pack2(x.z, x.w));
                    else
                        *reinterpret_cast<float4*>(out_o + at) = x;
                } else {
                    const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        if (col + e < head_dim) {
                            if (lone)
                                o[at + e] = Num<T>::from_float(xs[e]);
                            else
                                out_o[at + e] = xs[e];
                        }
                    }
                }
            }
        }
#else
        // (probe option, the default to the 41st session) warp 0 holds every row's total (lanes 4 g
        // and 4 g + 8 ... via g, g + 8): publish 1 / total to all warps through a barrier, then a
        // column a thread
        float* s_inv = s_m[0];  // s_m is read by now (the barriers of the loop above)
        if (warp == 0 && tq == 0) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int r = g + 8 * h;
                s_inv[r] = CUATTN_INV_TOTAL(total[h]);
                if (r < rows_here) out_lse[part_row + r] = lse_from_log2(block_max[h], total[h]);
            }
        }
        DECODE_TRACE_FINISH_AT(n, 1);
        named_barrier(1, 128);
        DECODE_TRACE_FINISH_AT(n, 2);
        for (int i = tid; i < rows_here * head_dim; i += M::kThreads) {
            const int r = i / head_dim, col = i % head_dim;
#ifdef CUATTN_DECODE_MMA_SLABS
            float sum = s_acc[r * kAcc + col];
#pragma unroll
            for (int w = 1; w < kWarps; ++w) sum += s_acc[(w * 8 + r) * kAcc + col];
            const float x = sum * s_inv[r];
#else
            const float x = s_acc[r * kAcc + col] * s_inv[r];
#endif
            if (lone)
                o[(part_row + r) * head_dim + col] = Num<T>::from_float(x);
            else
                out_o[(part_row + r) * head_dim + col] = x;
        }
#endif
        if (lone) {
            DECODE_TRACE(n, 3, global_ns());
            DECODE_TRACE(n, 4, global_ns());
            continue;
        }
        // the block that completes these rows merges them (no second launch)
        DECODE_TRACE(n, 3, global_ns());
        PartialSet ps{o_part, lse_part, group_row, split_stride, num_splits, pool, pool_lse, nullptr, kRows};
        const int parts = DECODE_WORK.tickets()
                              ? ticketed_partial(DECODE_WORK, ticket, b * ys + y, split, s_merge, tid)
                              : count_partial(DECODE_WORK, ps, s_merge, owner, code == kOwnerEnd, keys, len, b * ys + y,
                                              ref & 0xffff, ref >> 16, tid);
        if (parts)
            merge_rows<T, 4, 16>(ps, parts, o, lse, rows_here, row0, b, kv_head, group, seqlen_q, head_dim, num_q_heads,
                                 tid);
        DECODE_TRACE(n, 4, global_ns());
    }
}

// decode_merge<T>: the register kernel's second launch: one 128-thread block per (batch row, kv
// head, row chunk) merges its rows with merge_rows, as decode_split_tma's last block does.
template <typename T>
__global__ void __launch_bounds__(128)
decode_merge(const float* __restrict__ o_part, const float* __restrict__ lse_part, T* __restrict__ o,
             float* __restrict__ lse, int num_splits, int batch, int num_q_heads, int num_kv_heads,
             int seqlen_q, int head_dim, int group, int num_rows, int rows_per_block, int row_chunks,
             const int* __restrict__ bad, int generation) {
    if (generation != 0 && (bad[0] == generation || bad[1] == generation)) return;  // failed: outputs untouched
    const int y = blockIdx.x % (num_kv_heads * row_chunks), b = blockIdx.x / (num_kv_heads * row_chunks);
    const int kv_head = y / row_chunks, row0 = (y % row_chunks) * rows_per_block;
    const i64 part_row = ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
    const PartialSet ps{o_part, lse_part, part_row, (i64)batch * num_kv_heads * num_rows, num_splits,
                        nullptr, nullptr, nullptr, 0};
    merge_rows<T, 4, kDecodeMergeInFlight>(ps, num_splits, o, lse, min(rows_per_block, num_rows - row0), row0, b,
                                           kv_head, group, seqlen_q, head_dim, num_q_heads, threadIdx.x);
}

// decode_validate<I>: the value checks of cache_seqlens and the block table in one launch. A
// length outside [0, cache_len] sets flag 0, a used page (index < ceil(len / page_size)) outside
// [0, num_pages) flag 1: in `flags` (device memory, read by the split kernels) to `generation`
// (the call's number on this stream, so nobody has to zero them between calls) and in
// `host_flags` (mapped pinned host memory, zeroed by the host before the launch, read after an
// event behind this kernel) to 1. Every writer stores the same value, so plain stores do.
template <typename I>
__global__ void __launch_bounds__(256)
decode_validate(const I* __restrict__ lens, const I* __restrict__ table, int batch, int max_pages,
                int cache_len, int page_size, int num_pages, int paged, int generation, I* __restrict__ flags,
                I* __restrict__ host_flags) {
    const int cols = max_pages > 0 ? max_pages : 1;
    const i64 total = (i64)batch * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const int b = (int)(i / cols), p = (int)(i % cols);
        const I len = lens[b];
        if (p == 0 && (len < 0 || len > cache_len)) {
            flags[0] = generation;
            host_flags[0] = 1;
        }
        if (paged && p < max_pages && len > 0) {
            const i64 used = ((i64)len + page_size - 1) / page_size;
            if (p < used) {
                const I e = table[(i64)b * max_pages + p];
                if (e < 0 || e >= num_pages) {
                    flags[1] = generation;
                    host_flags[1] = 1;
                }
            }
        }
    }
}
