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
//   Masked keys get exactly -inf; a slot that saw nothing keeps m = -inf and l = 0.
//   Traffic: K and V of the chunk once; partials (num_splits * rows * D * 4 bytes) are small.
//
// decode_split_smem<T, kHeadDim, kRows, kPaged>: decode_split's math, key order and results
//   (bit-identical), with K and V streamed through a 3-stage cp.async ring in shared memory
//   (48 KB static, each thread copies and reads only its own 16-byte pieces, so the loop needs no
//   barrier); two tiles (32 KB) per block stay in flight while one is scored. The default
//   (cuattn/decode.py KERNEL = "smem"; "regs" selects decode_split).
//
// decode_validate<I>: the value checks of cache_seqlens and the used block-table entries in one
//   launch (the host reads back 8 bytes).
//
// decode_merge<T>: one block per output row merges the splits' partials with weights
//   exp(lse_s - max): a split with lse -inf weighs 0; all -inf gives zeros and lse -inf; a NaN
//   lse (NaN input) gives NaN for that row only.

#include "common.cuh"

// 16-byte global load that bypasses L1 allocation: K/V are read exactly once. volatile keeps the
// compiler from speculating it past the bounds check that guards it.
__device__ __forceinline__ uint4 ld_stream_16(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
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
    static constexpr int kUnroll = 4 / kChunksPerLane;                 // keys in flight per thread
    // 4 blocks per SM (<= 128 registers) where the rows' registers fit, else 2
    static constexpr int kMinBlocks =
        (kRows * kPerLane <= 16 || (kRows <= 4 && kRows * kPerLane <= 32 && kHeadDim >= 64)) ? 4 : 2;
};

template <typename T, int kHeadDim, int kRows, bool kPaged>
__global__ void __launch_bounds__(128, (DecodeShape<T, kHeadDim, kRows>::kMinBlocks))
decode_split(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int* __restrict__ seqlens, const int* __restrict__ block_table,
             const float* __restrict__ slopes, float* __restrict__ o_part, float* __restrict__ lse_part,
             i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb, i64 v_sh, i64 v_ss,
             i64 bt_stride, int page_size, int batch, int num_kv_heads, int seqlen_q, int head_dim,
             int group, int num_rows, int row_chunks, int chunk, float scale_log2) {
    using S = DecodeShape<T, kHeadDim, kRows>;
    constexpr int kLanesPerKey = S::kLanesPerKey, kPerLane = S::kPerLane, kElems = S::kElems;
    constexpr int kChunksPerLane = S::kChunksPerLane, kUnroll = S::kUnroll, kSlots = S::kSlots;
    constexpr float kLog2e = 1.4426950408889634f;

    __shared__ float s_acc[kRows * kHeadDim];
    __shared__ float s_m[S::kWarps][kRows], s_l[S::kWarps][kRows];

    const int split = blockIdx.x;
    const int kv_head = blockIdx.y / row_chunks;
    const int row0 = (blockIdx.y % row_chunks) * kRows;
    const int b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int slot = warp * S::kKeysPerWarp + lane / kLanesPerKey;
    const int cl = lane % kLanesPerKey;
    const int len = seqlens[b];
    const int key0 = split * chunk;
    const int key1 = min(len, key0 + chunk);

    // query rows: pre-scaled into log2 units; rows past num_rows see nothing (position -1)
    float qr[kRows][kPerLane];
    int pos[kRows];
    float slope[kRows];
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
        for (int c = 0; c < kChunksPerLane; ++c) {
#pragma unroll
            for (int e = 0; e < kElems; ++e) {
                const int col = (c * kLanesPerKey + cl) * kElems + e;
                qr[r][c * kElems + e] = (real && col < head_dim) ? Num<T>::to_float(qp[col]) * scale_log2 : 0.f;
            }
        }
    }

    float m[kRows], l[kRows], acc[kRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        m[r] = -CUATTN_INF;
        l[r] = 0.f;
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) acc[r][e] = 0.f;
    }

    const T* kbase = k + (kPaged ? 0 : b * k_sb) + kv_head * k_sh;
    const T* vbase = v + (kPaged ? 0 : b * v_sb) + kv_head * v_sh;
    const int* pages = block_table + b * bt_stride;

    for (int base = key0; base < key1; base += kSlots * kUnroll) {
        uint4 kraw[kUnroll][kChunksPerLane], vraw[kUnroll][kChunksPerLane];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int j = base + u * kSlots + slot;
            const T* kp = kbase;
            const T* vp = vbase;
            if (j < key1) {
                if (kPaged) {
                    const i64 page = pages[j / page_size];
                    const i64 off = j % page_size;
                    kp += page * k_sb + off * k_ss;
                    vp += page * v_sb + off * v_ss;
                } else {
                    kp += (i64)j * k_ss;
                    vp += (i64)j * v_ss;
                }
            }
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                const int col = (c * kLanesPerKey + cl) * kElems;
                const bool valid = j < key1 && col < head_dim;
                kraw[u][c] = valid ? ld_stream_16(kp + col) : make_uint4(0, 0, 0, 0);
                vraw[u][c] = valid ? ld_stream_16(vp + col) : make_uint4(0, 0, 0, 0);
            }
        }
        float s[kUnroll][kRows];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int r = 0; r < kRows; ++r) s[u][r] = 0.f;
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
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
                for (int o = 1; o < kLanesPerKey; o <<= 1) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], o);
                const int j = base + u * kSlots + slot;
                // exact masking: invisible keys are -inf, never a finite stand-in
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
            for (int e = 0; e < kPerLane; ++e) acc[r][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                float vf[kElems];
                Unpack16<T>::run(vraw[u][c], vf);
#pragma unroll
                for (int r = 0; r < kRows; ++r)
#pragma unroll
                    for (int e = 0; e < kElems; ++e) acc[r][c * kElems + e] = fmaf(s[u][r], vf[e], acc[r][c * kElems + e]);
            }
        }
    }

    // merge the key slots of a warp (lanes cl, cl + kLanesPerKey, ... hold the same columns)
#pragma unroll
    for (int o = kLanesPerKey; o < 32; o <<= 1) {
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
            for (int e = 0; e < kPerLane; ++e) {
                const float acc_o = __shfl_xor_sync(0xffffffffu, acc[r][e], o);
                acc[r][e] = fmaf(acc[r][e], a, acc_o * c);
            }
        }
    }
    // merge the warps through shared memory
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) { s_m[warp][r] = m[r]; s_l[warp][r] = l[r]; }
    }
    __syncthreads();
    float factor[kRows], total[kRows], block_max[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        float mx = -CUATTN_INF;
#pragma unroll
        for (int w = 0; w < S::kWarps; ++w) mx = fmaxf(mx, s_m[w][r]);
        const float shift = softmax_shift(mx);
        float t = 0.f;
#pragma unroll
        for (int w = 0; w < S::kWarps; ++w) t = fmaf(s_l[w][r], fast_exp2(s_m[w][r] - shift), t);
        factor[r] = fast_exp2(m[r] - shift);
        total[r] = t;
        block_max[r] = mx;
    }
    for (int w = 0; w < S::kWarps; ++w) {
        if (warp == w && lane < kLanesPerKey) {
#pragma unroll
            for (int r = 0; r < kRows; ++r)
#pragma unroll
                for (int c = 0; c < kChunksPerLane; ++c)
#pragma unroll
                    for (int e = 0; e < kElems; ++e) {
                        const int col = (c * kLanesPerKey + cl) * kElems + e;
                        const float x = acc[r][c * kElems + e] * factor[r];
                        s_acc[r * kHeadDim + col] = w == 0 ? x : s_acc[r * kHeadDim + col] + x;
                    }
        }
        __syncthreads();
    }
    const int rows_here = min(kRows, num_rows - row0);
    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    const i64 part_row = (i64)split * split_stride + ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
            const float inv = total[r] > 0.f ? 1.f / total[r] : (total[r] == 0.f ? 0.f : total[r]);
            for (int col = tid; col < head_dim; col += S::kThreads)
                o_part[(part_row + r) * head_dim + col] = s_acc[r * kHeadDim + col] * inv;
            if (tid == 0) lse_part[part_row + r] = lse_from_log2(block_max[r], total[r]);
        }
    }
}

// ---------------------------------------------------------------- shared-memory streaming variant
// decode_split_smem: the same math, key order and results as decode_split (bit-identical), but K
// and V stream through a kStages-deep cp.async ring in shared memory, so that about
// (kStages - 1) * 16 KB per block stays in flight independent of registers.

// 16-byte shared load; volatile keeps it after the cp.async wait (which has no memory clobber)
__device__ __forceinline__ uint4 ld_shared_16(u32 addr) {
    uint4 r;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(addr));
    return r;
}

template <typename T, int kHeadDim>
struct DecodeSmemShape {
    using S = DecodeShape<T, kHeadDim, 1>;
    static constexpr int kStages = 3;
    // [stage][K|V][piece][thread] 16-byte pieces: 3 * 2 * 4 * 128 * 16 = 48 KB (static limit)
    static constexpr int kBufU4 = kStages * 2 * S::kUnroll * S::kChunksPerLane * S::kThreads;
};

template <typename T, int kHeadDim, int kRows, bool kPaged>
__global__ void __launch_bounds__(128, (DecodeShape<T, kHeadDim, kRows>::kMinBlocks))
decode_split_smem(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int* __restrict__ seqlens, const int* __restrict__ block_table,
             const float* __restrict__ slopes, float* __restrict__ o_part, float* __restrict__ lse_part,
             i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss, i64 v_sb, i64 v_sh, i64 v_ss,
             i64 bt_stride, int page_size, int batch, int num_kv_heads, int seqlen_q, int head_dim,
             int group, int num_rows, int row_chunks, int chunk, float scale_log2) {
    using S = DecodeShape<T, kHeadDim, kRows>;
    constexpr int kLanesPerKey = S::kLanesPerKey, kPerLane = S::kPerLane, kElems = S::kElems;
    constexpr int kChunksPerLane = S::kChunksPerLane, kUnroll = S::kUnroll, kSlots = S::kSlots;
    constexpr float kLog2e = 1.4426950408889634f;

    // Staging ring: kStages tiles of kTile keys; thread tid owns the 16-byte pieces it copies and
    // reads ([stage][K|V][piece][tid]), so only its own cp.async groups need waiting for (no
    // barrier in the loop) and a warp's reads are 512 contiguous bytes (no bank conflicts).
    // After the loop the same bytes hold the cross-warp merge (s_acc, s_m, s_l).
    constexpr int kStages = DecodeSmemShape<T, kHeadDim>::kStages;
    constexpr int kPieces = kUnroll * kChunksPerLane;
    constexpr int kTile = kSlots * kUnroll;
    constexpr int kBufU4 = DecodeSmemShape<T, kHeadDim>::kBufU4;
    static_assert(kBufU4 * 16 >= (kRows * kHeadDim + 2 * S::kWarps * kRows) * 4, "merge must fit in the ring");
    __shared__ uint4 s_buf[kBufU4];
    float* s_acc = reinterpret_cast<float*>(s_buf);
    float (*s_m)[kRows] = reinterpret_cast<float (*)[kRows]>(s_acc + kRows * kHeadDim);
    float (*s_l)[kRows] = reinterpret_cast<float (*)[kRows]>(s_acc + kRows * kHeadDim + S::kWarps * kRows);
    const u32 s_base = smem_addr(s_buf);

    const int split = blockIdx.x;
    const int kv_head = blockIdx.y / row_chunks;
    const int row0 = (blockIdx.y % row_chunks) * kRows;
    const int b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int slot = warp * S::kKeysPerWarp + lane / kLanesPerKey;
    const int cl = lane % kLanesPerKey;
    const int len = seqlens[b];
    const int key0 = split * chunk;
    const int key1 = min(len, key0 + chunk);

    // query rows: pre-scaled into log2 units; rows past num_rows see nothing (position -1)
    float qr[kRows][kPerLane];
    int pos[kRows];
    float slope[kRows];
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
        for (int c = 0; c < kChunksPerLane; ++c) {
#pragma unroll
            for (int e = 0; e < kElems; ++e) {
                const int col = (c * kLanesPerKey + cl) * kElems + e;
                qr[r][c * kElems + e] = (real && col < head_dim) ? Num<T>::to_float(qp[col]) * scale_log2 : 0.f;
            }
        }
    }

    float m[kRows], l[kRows], acc[kRows][kPerLane];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        m[r] = -CUATTN_INF;
        l[r] = 0.f;
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) acc[r][e] = 0.f;
    }

    const T* kbase = k + (kPaged ? 0 : b * k_sb) + kv_head * k_sh;
    const T* vbase = v + (kPaged ? 0 : b * v_sb) + kv_head * v_sh;
    const int* pages = block_table + b * bt_stride;

    // copies tile `tile_base` into ring stage `stage`; keys past key1 and columns past head_dim
    // are zero-filled without a read (the same zeros the register kernel uses)
    auto issue = [&](int tile_base, int stage) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int j = tile_base + u * kSlots + slot;
            const T* kp = kbase;
            const T* vp = vbase;
            if (j < key1) {
                if (kPaged) {
                    const i64 page = pages[j / page_size];
                    const i64 off = j % page_size;
                    kp += page * k_sb + off * k_ss;
                    vp += page * v_sb + off * v_ss;
                } else {
                    kp += (i64)j * k_ss;
                    vp += (i64)j * v_ss;
                }
            }
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                const int col = (c * kLanesPerKey + cl) * kElems;
                const bool valid = j < key1 && col < head_dim;
                const int piece = u * kChunksPerLane + c;
                const u32 dk = s_base + (u32)((((stage * 2 + 0) * kPieces + piece) * S::kThreads + tid) * 16);
                const u32 dv = s_base + (u32)((((stage * 2 + 1) * kPieces + piece) * S::kThreads + tid) * 16);
                cp_async_16(dk, valid ? (const void*)(kp + col) : (const void*)kbase, valid);
                cp_async_16(dv, valid ? (const void*)(vp + col) : (const void*)vbase, valid);
            }
        }
    };
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        issue(key0 + s * kTile, s);
        cp_async_commit();
    }
    int stage = 0;
    for (int base = key0; base < key1; base += kTile) {
        // refill the stage read in the previous iteration (its reads are done: they fed the
        // math), then wait until this tile's own copies have landed
        const int next = stage == 0 ? kStages - 1 : stage - 1;
        issue(base + (kStages - 1) * kTile, next);
        cp_async_commit();
        cp_async_wait<kStages - 1>();
        uint4 kraw[kUnroll][kChunksPerLane], vraw[kUnroll][kChunksPerLane];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                const int piece = u * kChunksPerLane + c;
                kraw[u][c] = ld_shared_16(s_base + (u32)((((stage * 2 + 0) * kPieces + piece) * S::kThreads + tid) * 16));
                vraw[u][c] = ld_shared_16(s_base + (u32)((((stage * 2 + 1) * kPieces + piece) * S::kThreads + tid) * 16));
            }
        stage = stage + 1 == kStages ? 0 : stage + 1;
        float s[kUnroll][kRows];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int r = 0; r < kRows; ++r) s[u][r] = 0.f;
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
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
                for (int o = 1; o < kLanesPerKey; o <<= 1) s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], o);
                const int j = base + u * kSlots + slot;
                // exact masking: invisible keys are -inf, never a finite stand-in
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
            for (int e = 0; e < kPerLane; ++e) acc[r][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int c = 0; c < kChunksPerLane; ++c) {
                float vf[kElems];
                Unpack16<T>::run(vraw[u][c], vf);
#pragma unroll
                for (int r = 0; r < kRows; ++r)
#pragma unroll
                    for (int e = 0; e < kElems; ++e) acc[r][c * kElems + e] = fmaf(s[u][r], vf[e], acc[r][c * kElems + e]);
            }
        }
    }

    // merge the key slots of a warp (lanes cl, cl + kLanesPerKey, ... hold the same columns)
#pragma unroll
    for (int o = kLanesPerKey; o < 32; o <<= 1) {
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
            for (int e = 0; e < kPerLane; ++e) {
                const float acc_o = __shfl_xor_sync(0xffffffffu, acc[r][e], o);
                acc[r][e] = fmaf(acc[r][e], a, acc_o * c);
            }
        }
    }
    // the ring becomes the merge buffer: drain the copies still in flight (tail tiles are
    // zero-fills, but they still write) and let every thread get there
    cp_async_wait<0>();
    __syncthreads();
    // merge the warps through shared memory
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) { s_m[warp][r] = m[r]; s_l[warp][r] = l[r]; }
    }
    __syncthreads();
    float factor[kRows], total[kRows], block_max[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        float mx = -CUATTN_INF;
#pragma unroll
        for (int w = 0; w < S::kWarps; ++w) mx = fmaxf(mx, s_m[w][r]);
        const float shift = softmax_shift(mx);
        float t = 0.f;
#pragma unroll
        for (int w = 0; w < S::kWarps; ++w) t = fmaf(s_l[w][r], fast_exp2(s_m[w][r] - shift), t);
        factor[r] = fast_exp2(m[r] - shift);
        total[r] = t;
        block_max[r] = mx;
    }
    for (int w = 0; w < S::kWarps; ++w) {
        if (warp == w && lane < kLanesPerKey) {
#pragma unroll
            for (int r = 0; r < kRows; ++r)
#pragma unroll
                for (int c = 0; c < kChunksPerLane; ++c)
#pragma unroll
                    for (int e = 0; e < kElems; ++e) {
                        const int col = (c * kLanesPerKey + cl) * kElems + e;
                        const float x = acc[r][c * kElems + e] * factor[r];
                        s_acc[r * kHeadDim + col] = w == 0 ? x : s_acc[r * kHeadDim + col] + x;
                    }
        }
        __syncthreads();
    }
    const int rows_here = min(kRows, num_rows - row0);
    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    const i64 part_row = (i64)split * split_stride + ((i64)b * num_kv_heads + kv_head) * num_rows + row0;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
            const float inv = total[r] > 0.f ? 1.f / total[r] : (total[r] == 0.f ? 0.f : total[r]);
            for (int col = tid; col < head_dim; col += S::kThreads)
                o_part[(part_row + r) * head_dim + col] = s_acc[r * kHeadDim + col] * inv;
            if (tid == 0) lse_part[part_row + r] = lse_from_log2(block_max[r], total[r]);
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(128)
decode_merge(const float* __restrict__ o_part, const float* __restrict__ lse_part, T* __restrict__ o,
             float* __restrict__ lse, int num_splits, int batch, int num_q_heads, int num_kv_heads,
             int seqlen_q, int head_dim, int group, int num_rows) {
    const int row = blockIdx.x;  // (b, h, t) of the output, row-major
    const int t = row % seqlen_q, h = (row / seqlen_q) % num_q_heads, b = row / (seqlen_q * num_q_heads);
    const int r = (h % group) * seqlen_q + t;
    const i64 split_stride = (i64)batch * num_kv_heads * num_rows;
    const i64 part_row = ((i64)b * num_kv_heads + h / group) * num_rows + r;
    float mx = -CUATTN_INF;
    bool nan = false;
    for (int s = 0; s < num_splits; ++s) {
        const float x = lse_part[s * split_stride + part_row];
        nan |= x != x;
        mx = fmaxf(mx, x);
    }
    T* out = o + (i64)row * head_dim;
    if (nan || mx == -CUATTN_INF) {  // NaN input, or a row that sees no key
        const float fill = nan ? __int_as_float(0x7fc00000) : 0.f;
        for (int col = threadIdx.x; col < head_dim; col += blockDim.x) out[col] = Num<T>::from_float(fill);
        if (threadIdx.x == 0) lse[row] = nan ? fill : -CUATTN_INF;
        return;
    }
    float sum = 0.f;
    for (int s = 0; s < num_splits; ++s) sum += __expf(lse_part[s * split_stride + part_row] - mx);
    const float inv = 1.f / sum;
    for (int col = threadIdx.x; col < head_dim; col += blockDim.x) {
        float x = 0.f;
        for (int s = 0; s < num_splits; ++s) {
            const i64 pr = s * split_stride + part_row;
            const float w = __expf(lse_part[pr] - mx);
            if (w > 0.f) x = fmaf(w, o_part[pr * head_dim + col], x);
        }
        out[col] = Num<T>::from_float(x * inv);
    }
    if (threadIdx.x == 0) lse[row] = mx + __logf(sum);
}

// decode_validate<I>: the value checks of cache_seqlens and the block table in one launch, so the
// host pays one small kernel and one 8-byte copy. flags (zeroed by the caller): flags[0] = 1 when
// a length lies outside [0, cache_len]; flags[1] = 1 when a used page (index < ceil(len /
// page_size)) lies outside [0, num_pages). Every writer stores the same 1, so plain stores do.
template <typename I>
__global__ void __launch_bounds__(256)
decode_validate(const I* __restrict__ lens, const I* __restrict__ table, int batch, int max_pages,
                int cache_len, int page_size, int num_pages, int paged, I* __restrict__ flags) {
    const int cols = max_pages > 0 ? max_pages : 1;
    const i64 total = (i64)batch * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const int b = (int)(i / cols), p = (int)(i % cols);
        const I len = lens[b];
        if (p == 0 && (len < 0 || len > cache_len)) flags[0] = 1;
        if (paged && p < max_pages && len > 0) {
            const i64 used = ((i64)len + page_size - 1) / page_size;
            if (p < used) {
                const I e = table[(i64)b * max_pages + p];
                if (e < 0 || e >= num_pages) flags[1] = 1;
            }
        }
    }
}
