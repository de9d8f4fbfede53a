// attention.cu: fused exact softmax attention, forward (FlashAttention-2 style).
//
// Names: B batch, H query heads, Sq/Sk lengths, D/Dv head dims (runtime), kHeadDim the padded
// compile-time head dim (>= max(D, Dv), a multiple of 32); group = Hq / Hkv (GQA).
//
// attention_fwd_mma<T, kHeadDim, kBlockN, kNWarps, kMTiles, kCausal> (T = half_t or bf16_t):
//   one block computes kBlockM = 16 * kMTiles * kNWarps query rows of one (batch, head); each
//   warp owns 16 * kMTiles rows, so every K/V fragment read from shared memory feeds kMTiles mmas.
//   The Q tile is loaded once (cp.async, zero-filled past Sq and D) and, when
//   kMTiles * kHeadDim <= 128, kept in registers as mma A fragments. K and V tiles of kBlockN keys stream
//   through shared memory: V of block n loads while S = Q K^T of block n runs; K of block n+1
//   loads while O += P V runs. S and O accumulate in fp32 registers (mma.sync m16n8k16); the
//   online softmax keeps a running max (log2 units) and a per-thread partial row sum. P goes
//   from the S accumulators straight into A fragments (same register layout), so no score
//   ever touches shared or global memory. Causal blocks above the diagonal are never loaded.
//   Shared memory rows are padded by 16 bytes so ldmatrix and cp.async hit distinct banks:
//   (kBlockM + 2 kBlockN) * (kHeadDim + 8) * 2 bytes.
//   Traffic per (batch, head): Q and O once, K and V once per query block (L2-resident).
//
// attention_fwd_f32<kHeadDim, kCausal> (float32, exact FFMA, no TF32):
//   4 warps, each owning 4 query rows; K/V tiles of 32 keys in shared memory; lane j scores
//   key j, lanes own output columns lane, lane+32, ...
//
// Masking: key j is visible to query i iff j < Sk and (!causal or j <= i + Sk - Sq). A row that
// sees no key writes zeros and lse = -inf.

#include "common.cuh"

template <typename T, int kHeadDim, int kBlockN, int kNWarps, int kMTiles, bool kCausal>
__global__ void __launch_bounds__(kNWarps * 32, kNWarps >= 8 ? 1 : 2)
attention_fwd_mma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                  T* __restrict__ o, float* __restrict__ lse,
                  i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss,
                  i64 v_sb, i64 v_sh, i64 v_ss, i64 o_sb, i64 o_sh, i64 o_ss,
                  int seqlen_q, int seqlen_k, int head_dim, int head_dim_v, int group,
                  float scale_log2) {
    constexpr int kWarpRows = 16 * kMTiles;   // query rows per warp: kMTiles mma row tiles
    constexpr int kBlockM = kWarpRows * kNWarps;
    constexpr int kThreads = kNWarps * 32;
    constexpr int kStride = kHeadDim + 8;     // padded shared-memory row, in elements
    constexpr int kChunks = kHeadDim / 8;     // 16-byte chunks per row
    constexpr int kKTiles = kHeadDim / 16;    // k-steps of the S = Q K^T product
    constexpr int kNTiles = kBlockN / 8;      // n-tiles of S
    constexpr int kDTiles = kHeadDim / 8;     // n-tiles of O
    constexpr bool kQInRegs = kMTiles * kHeadDim <= 128;
    static_assert(kHeadDim % 32 == 0 && kBlockN % 16 == 0, "tile shapes");

    extern __shared__ __align__(16) u16 smem[];
    u16* sQ = smem;
    u16* sK = sQ + kBlockM * kStride;
    u16* sV = sK + kBlockN * kStride;

    const int m_block = kCausal ? (gridDim.x - 1 - blockIdx.x) : blockIdx.x;  // heavy blocks first
    const int head = blockIdx.y;
    const int batch = blockIdx.z;
    const int m0 = m_block * kBlockM;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int offset = seqlen_k - seqlen_q;  // bottom-right causal alignment

    const T* qb = q + batch * q_sb + head * q_sh;
    const T* kb = k + batch * k_sb + (head / group) * k_sh;
    const T* vb = v + batch * v_sb + (head / group) * v_sh;

    int n_end = seqlen_k;
    if (kCausal) n_end = min(seqlen_k, max(0, m0 + kBlockM + offset));
    const int num_n_blocks = (n_end + kBlockN - 1) / kBlockN;

    // rows [row0, row0 + rows) of a (seq, dim) tensor into shared memory, zero past limits
    auto load_tile = [&](u16* dst, const T* src, i64 row_stride, int row0, int rows, int row_limit, int col_limit) {
#pragma unroll 4
        for (int i = tid; i < rows * kChunks; i += kThreads) {
            const int r = i / kChunks, c = i % kChunks;
            const bool valid = (row0 + r < row_limit) && (c * 8 < col_limit);
            const T* g = valid ? src + (i64)(row0 + r) * row_stride + c * 8 : src;
            cp_async_16(smem_addr(dst + r * kStride + c * 8), g, valid);
        }
    };

    load_tile(sQ, qb, q_ss, m0, kBlockM, seqlen_q, head_dim);
    cp_async_commit();
    if (num_n_blocks > 0) load_tile(sK, kb, k_ss, 0, kBlockN, seqlen_k, head_dim);
    cp_async_commit();

    float acc_o[kMTiles][kDTiles][4];
    float row_max[kMTiles][2], row_sum[kMTiles][2];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int i = 0; i < kDTiles; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc_o[mt][i][j] = 0.f;
        row_max[mt][0] = row_max[mt][1] = -CUATTN_INF;
        row_sum[mt][0] = row_sum[mt][1] = 0.f;
    }

    // ldmatrix addressing (see Mma in common.cuh for the fragment layouts)
    const int a_row = warp * kWarpRows + (lane & 15), a_col = (lane >> 4) * 8;            // Q (+16 per m-tile)
    const int b_row = (lane & 7) + ((lane >> 4) << 3), b_col = ((lane >> 3) & 1) * 8;  // K
    const int t_row = (lane & 7) + (((lane >> 3) & 1) << 3), t_col = (lane >> 4) * 8;  // V (trans)

    cp_async_wait<1>();
    __syncthreads();
    u32 q_frag[kQInRegs ? kMTiles : 1][kQInRegs ? kKTiles : 1][4];
    if constexpr (kQInRegs) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int kk = 0; kk < kKTiles; ++kk)
                ldmatrix_x4(q_frag[mt][kk], smem_addr(sQ + (a_row + mt * 16) * kStride + kk * 16 + a_col));
    }

    const int row_g = m0 + warp * kWarpRows + lane / 4;  // global row of c0/c1 in m-tile 0

    for (int nb = 0; nb < num_n_blocks; ++nb) {
        const int n0 = nb * kBlockN;
        cp_async_wait<0>();
        __syncthreads();  // K[nb] is in; every warp is done with V[nb-1]
        load_tile(sV, vb, v_ss, n0, kBlockN, seqlen_k, head_dim_v);
        cp_async_commit();

        float s[kMTiles][kNTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int i = 0; i < kNTiles; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) s[mt][i][j] = 0.f;
#pragma unroll
        for (int kk = 0; kk < kKTiles; ++kk) {
            u32 a_tmp[kQInRegs ? 1 : kMTiles][4];
            if constexpr (!kQInRegs) {
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt)
                    ldmatrix_x4(a_tmp[mt], smem_addr(sQ + (a_row + mt * 16) * kStride + kk * 16 + a_col));
            }
#pragma unroll
            for (int nt = 0; nt < kNTiles; nt += 2) {
                u32 b[4];
                ldmatrix_x4(b, smem_addr(sK + (nt * 8 + b_row) * kStride + kk * 16 + b_col));
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    const u32* a = kQInRegs ? q_frag[kQInRegs ? mt : 0][kQInRegs ? kk : 0] : a_tmp[kQInRegs ? 0 : mt];
                    Mma<T>::run(s[mt][nt], a, b[0], b[1]);
                    Mma<T>::run(s[mt][nt + 1], a, b[2], b[3]);
                }
            }
        }

        // scale into log2 units (before the max: scale may be negative), mask, then update the
        // running max and the per-thread partial sums
        const bool need_mask = (n0 + kBlockN > seqlen_k) || (kCausal && n0 + kBlockN - 1 > m0 + offset);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[mt][nt][e] *= scale_log2;
                    if (need_mask) {
                        const int col = n0 + nt * 8 + 2 * (lane % 4) + (e & 1);
                        const int row = row_g + mt * 16 + (e >> 1) * 8;
                        if (col >= seqlen_k || (kCausal && col > row + offset)) s[mt][nt][e] = -CUATTN_INF;
                    }
                }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float mx = row_max[mt][h];
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
                mx = quad_max(mx);
                const float shift = softmax_shift(mx);
                const float alpha = fast_exp2(row_max[mt][h] - shift);
                row_max[mt][h] = mx;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                    s[mt][nt][2 * h] = fast_exp2(s[mt][nt][2 * h] - shift);
                    s[mt][nt][2 * h + 1] = fast_exp2(s[mt][nt][2 * h + 1] - shift);
                    sum += s[mt][nt][2 * h] + s[mt][nt][2 * h + 1];
                }
                row_sum[mt][h] = row_sum[mt][h] * alpha + sum;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    acc_o[mt][dt][2 * h] *= alpha;
                    acc_o[mt][dt][2 * h + 1] *= alpha;
                }
            }
        }

        cp_async_wait<0>();
        __syncthreads();  // V[nb] is in; every warp is done with K[nb]
        if (nb + 1 < num_n_blocks) load_tile(sK, kb, k_ss, n0 + kBlockN, kBlockN, seqlen_k, head_dim);
        cp_async_commit();

#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk) {
            u32 p[kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) {
                p[mt][0] = Num<T>::pack2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                p[mt][1] = Num<T>::pack2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                p[mt][2] = Num<T>::pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                p[mt][3] = Num<T>::pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dt = 0; dt < kDTiles; dt += 2) {
                u32 b[4];
                ldmatrix_x4_trans(b, smem_addr(sV + (kk * 16 + t_row) * kStride + dt * 8 + t_col));
#pragma unroll
                for (int mt = 0; mt < kMTiles; ++mt) {
                    Mma<T>::run(acc_o[mt][dt], p[mt], b[0], b[1]);
                    Mma<T>::run(acc_o[mt][dt + 1], p[mt], b[2], b[3]);
                }
            }
        }
    }

    // epilogue: normalize, write O (zeros for rows that saw nothing) and the natural-log LSE
    T* ob = o + batch * o_sb + head * o_sh;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float total = quad_sum(row_sum[mt][h]);
            const float inv = CUATTN_INV_TOTAL(total);
            const int row = row_g + mt * 16 + 8 * h;
            if (row < seqlen_q) {
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    const int col = dt * 8 + 2 * (lane % 4);
                    if (col < head_dim_v)  // Dv is a multiple of 8: pairs never straddle it
                        *reinterpret_cast<u32*>(ob + (i64)row * o_ss + col) =
                            Num<T>::pack2(acc_o[mt][dt][2 * h] * inv, acc_o[mt][dt][2 * h + 1] * inv);
                }
                if (lse != nullptr && lane % 4 == 0)
                    lse[((i64)batch * gridDim.y + head) * seqlen_q + row] = lse_from_log2(row_max[mt][h], total);
            }
        }
}

template <int kHeadDim, bool kCausal>
__global__ void __launch_bounds__(128, 4)
attention_fwd_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                  float* __restrict__ o, float* __restrict__ lse,
                  i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss,
                  i64 v_sb, i64 v_sh, i64 v_ss, i64 o_sb, i64 o_sh, i64 o_ss,
                  int seqlen_q, int seqlen_k, int head_dim, int head_dim_v, int group,
                  float scale_log2) {
    constexpr int kRows = 4;              // query rows per warp
    constexpr int kBlockM = 4 * kRows;    // 4 warps
    constexpr int kBlockN = 32;           // one key per lane
    constexpr int kStride = kHeadDim + 1; // odd stride: lane j reading row j hits bank j
    constexpr int kCols = kHeadDim / 32;  // output columns per lane
    extern __shared__ float fsmem[];
    float* sQ = fsmem;                       // kBlockM x kHeadDim
    float* sK = sQ + kBlockM * kHeadDim;     // kBlockN x kStride
    float* sV = sK + kBlockN * kStride;      // kBlockN x kHeadDim

    const int m_block = kCausal ? (gridDim.x - 1 - blockIdx.x) : blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int m0 = m_block * kBlockM;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int offset = seqlen_k - seqlen_q;
    const float* qb = q + batch * q_sb + head * q_sh;
    const float* kb = k + batch * k_sb + (head / group) * k_sh;
    const float* vb = v + batch * v_sb + (head / group) * v_sh;

    int n_end = seqlen_k;
    if (kCausal) n_end = min(seqlen_k, max(0, m0 + kBlockM + offset));

    for (int i = tid; i < kBlockM * kHeadDim; i += 128) {
        const int r = i / kHeadDim, c = i % kHeadDim;
        sQ[i] = (m0 + r < seqlen_q && c < head_dim) ? qb[(i64)(m0 + r) * q_ss + c] : 0.f;
    }
    float acc[kRows][kCols];
    float row_max[kRows], row_sum[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        row_max[r] = -CUATTN_INF;
        row_sum[r] = 0.f;
#pragma unroll
        for (int c = 0; c < kCols; ++c) acc[r][c] = 0.f;
    }

    for (int n0 = 0; n0 < n_end; n0 += kBlockN) {
        __syncthreads();
        for (int i = tid; i < kBlockN * kHeadDim; i += 128) {
            const int r = i / kHeadDim, c = i % kHeadDim;
            const bool ok = n0 + r < seqlen_k;
            sK[r * kStride + c] = (ok && c < head_dim) ? kb[(i64)(n0 + r) * k_ss + c] : 0.f;
            sV[i] = (ok && c < head_dim_v) ? vb[(i64)(n0 + r) * v_ss + c] : 0.f;
        }
        __syncthreads();
        const int key = n0 + lane;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int lrow = warp * kRows + r, row = m0 + lrow;
            float dot = 0.f;
#pragma unroll 8
            for (int d = 0; d < kHeadDim; ++d) dot = fmaf(sQ[lrow * kHeadDim + d], sK[lane * kStride + d], dot);
            float x = dot * scale_log2;
            if (key >= seqlen_k || (kCausal && key > row + offset)) x = -CUATTN_INF;
            const float mx = warp_max(fmaxf(row_max[r], x));
            const float shift = softmax_shift(mx);
            const float alpha = fast_exp2(row_max[r] - shift);
            const float p = fast_exp2(x - shift);
            row_max[r] = mx;
            row_sum[r] = row_sum[r] * alpha + warp_sum(p);
#pragma unroll
            for (int c = 0; c < kCols; ++c) acc[r][c] *= alpha;
            for (int j = 0; j < kBlockN; ++j) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
                for (int c = 0; c < kCols; ++c) acc[r][c] = fmaf(pj, sV[j * kHeadDim + c * 32 + lane], acc[r][c]);
            }
        }
    }

    float* ob = o + batch * o_sb + head * o_sh;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int row = m0 + warp * kRows + r;
        if (row >= seqlen_q) continue;
        const float total = row_sum[r];
        const float inv = CUATTN_INV_TOTAL(total);
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
            const int col = c * 32 + lane;
            if (col < head_dim_v) ob[(i64)row * o_ss + col] = acc[r][c] * inv;
        }
        if (lse != nullptr && lane == 0)
            lse[((i64)batch * gridDim.y + head) * seqlen_q + row] = lse_from_log2(row_max[r], total);
    }
}

// ---------------------------------------------------------------- Hopper (sm_90a) path
// attention_fwd_wgmma<T, kHeadDim, kBlockN, kWarpGroups, kStages, kQStages, kCausal>:
//   Warp-specialized: kWarpGroups consumer warpgroups (128 threads each, 64 query rows each,
//   kBlockM = 64 * kWarpGroups) and one producer warpgroup, of which one thread streams Q and K/V
//   blocks into kStages shared-memory stages with the bulk tensor copy engine (TMA; tensor maps
//   from cuattn/_tma.py, read from global memory), zero-filling rows past the sequence and
//   columns past D; setmaxnreg moves the producer's registers to the consumers. Stages hand over
//   through mbarriers (full: the copy landed; empty: every consumer is done with the stage), so
//   the warpgroups never wait on a block-wide barrier and drift apart: one's softmax runs while
//   another's matrix products keep the tensor cores busy.
//   Consumers: S = Q K^T is one chain of wgmma m64nBNk16 with Q and K read from shared memory by
//   descriptor; O += P V runs as wgmma with P from registers and V (d contiguous: MN-major)
//   from shared memory. Iteration n issues S_n and then P_{n-1} V_{n-1}, waits for S_n only, and
//   computes the softmax of block n while the tensor cores still work on P_{n-1} V_{n-1}.
//   Layout: 128-byte swizzle as wgmma reads it (and TMA writes it): 64-column atoms, rows of 128
//   bytes, 16-byte chunk c of row r stored at c ^ (r % 8).
//   Bytes: 2 (kQStages kBlockM + 2 kStages kBlockN) kHeadDim + barriers.
//   Persistent grid (one block per SM): the producer loads the next tile's Q (into a second Q
//   buffer when kQStages = 2) and K/V while the consumers finish the current tile and write it.
#include "wgmma.cuh"
#include "hopper.cuh"

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keep the compiler from moving accesses of wgmma registers across a wait.
template <int N> __device__ __forceinline__ void pin_registers(float (&r)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("" : "+f"(r[i][j])::"memory");
}

// Descriptor of a 128-byte-swizzled operand at shared address addr: 8-row groups 1024 bytes
// apart (stride byte offset); lbo_bytes = distance between 64-element atoms along the
// contiguous dim (used by MN-major operands; K-major ones step atoms by address instead).
__device__ __forceinline__ u64 sw128_desc(u32 addr, u32 lbo_bytes) {
    return (u64)((addr & 0x3FFFF) >> 4) | ((u64)(lbo_bytes >> 4) << 16) | ((u64)(1024 >> 4) << 32) | (1ull << 62);
}

template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <typename T, int kHeadDim, int kBlockN, int kWarpGroups, int kStages, int kQStages, bool kCausal>
__global__ void __launch_bounds__((kWarpGroups + 1) * 128, 1)
attention_fwd_wgmma(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                    T* __restrict__ o, float* __restrict__ lse,
                    i64 q_sb, i64 q_sh, i64 q_ss, i64 k_sb, i64 k_sh, i64 k_ss,
                    i64 v_sb, i64 v_sh, i64 v_ss, i64 o_sb, i64 o_sh, i64 o_ss,
                    int seqlen_q, int seqlen_k, int head_dim, int head_dim_v, int group,
                    float scale_log2, int num_m_blocks, int num_heads, int num_batch,
                    const unsigned char* __restrict__ tmaps) {
    constexpr int kBlockM = 64 * kWarpGroups;
    constexpr int kConsumers = 128 * kWarpGroups;
    constexpr int kNTiles = kBlockN / 8;
    constexpr int kDTiles = kHeadDim / 8;
    constexpr u32 kQBytes = kBlockM * kHeadDim * 2;
    constexpr u32 kKVBytes = kBlockN * kHeadDim * 2;
    static_assert(kHeadDim % 64 == 0 && kBlockN % 64 == 0, "128-byte swizzle atoms");
    // registers per thread for each role: the block's share, with the producer's moved to the consumers
    constexpr int kShare = (65536 / ((kWarpGroups + 1) * 128)) & ~7;
    constexpr int kProducerRegs = 40;
    constexpr int kConsumerRegsRaw = (kShare + (kShare - kProducerRegs) / kWarpGroups) & ~7;
    constexpr int kConsumerRegs = kConsumerRegsRaw > 240 ? 240 : kConsumerRegsRaw;

    extern __shared__ __align__(1024) unsigned char smem_bytes[];
    const u32 sQ0 = smem_addr(smem_bytes);  // tile number `count` uses Q buffer count % kQStages
    const u32 sKV = sQ0 + kQStages * kQBytes;  // K/V block `it`: K at sKV + 2 (it % kStages) kKVBytes, V after
    const u32 bars = sKV + 2 * kStages * kKVBytes;
    auto q_full = [&](int count) { return bars + 8 * (count % kQStages); };
    auto q_empty = [&](int count) { return bars + 8 * kQStages + 8 * (count % kQStages); };
    auto full_bar = [&](int stage) { return bars + 16 * kQStages + 8 * stage; };
    auto empty_bar = [&](int stage) { return bars + 16 * kQStages + 8 * kStages + 8 * stage; };
    auto stage_k = [&](int it) { return sKV + (u32)(it % kStages) * 2 * kKVBytes; };
    if (sQ0 & 1023) __trap();  // the swizzle pattern repeats every 1024 bytes: bases must align

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int offset = seqlen_k - seqlen_q;
    const int num_tiles = num_m_blocks * num_heads * num_batch;

    // Persistent: block b takes tiles b, b + gridDim.x, ...; tiles run heaviest (last causal
    // query block) first across all heads, so the causal tail is spread over every SM.
    struct Tile { int m0, head, batch, num_n_blocks; };
    auto tile_at = [&](int t) {
        Tile tile;
        const int per_m = num_heads * num_batch;
        const int mb = t / per_m, rest = t % per_m;
        tile.m0 = (kCausal ? num_m_blocks - 1 - mb : mb) * kBlockM;
        tile.head = rest % num_heads;
        tile.batch = rest / num_heads;
        int n_end = seqlen_k;
        if (kCausal) n_end = min(seqlen_k, max(0, tile.m0 + kBlockM + offset));
        tile.num_n_blocks = (n_end + kBlockN - 1) / kBlockN;
        return tile;
    };

    if (tid == 0) {
        for (int qs = 0; qs < kQStages; ++qs) {
            mbar_init(q_full(qs), 1);
            mbar_init(q_empty(qs), kConsumers);
        }
        for (int st = 0; st < kStages; ++st) {
            mbar_init(full_bar(st), 1);
            mbar_init(empty_bar(st), kConsumers);
        }
    }
    __syncthreads();

    if (warp >= 4 * kWarpGroups) {
        // ---------------- producer warpgroup: one thread drives the copy engine (TMA)
        setmaxnreg_dec<kProducerRegs>();
        if (tid != kConsumers) return;
        const void* tq = tmaps;
        const void* tk = tmaps + 128;
        const void* tv = tmaps + 256;
        int it = 0;
        for (int t = blockIdx.x, count = 0; t < num_tiles; t += gridDim.x, ++count) {
            const Tile tile = tile_at(t);
            const int kv_head = tile.head / group;
            if (count >= kQStages) mbar_wait(q_empty(count), ((count / kQStages) - 1) & 1);
            mbar_expect_bytes(q_full(count), kQBytes);
            const u32 sQ = sQ0 + (count % kQStages) * kQBytes;
#pragma unroll
            for (int a = 0; a < kHeadDim / 64; ++a)
                tma_load_4d(sQ + a * kBlockM * 128, tq, a * 64, tile.m0, tile.head, tile.batch, q_full(count));
            for (int nb = 0; nb < tile.num_n_blocks; ++nb, ++it) {
                const int st = it % kStages;
                if (it >= kStages) mbar_wait(empty_bar(st), ((it / kStages) - 1) & 1);
                mbar_expect_bytes(full_bar(st), 2 * kKVBytes);
#pragma unroll
                for (int a = 0; a < kHeadDim / 64; ++a) {
                    tma_load_4d(stage_k(it) + a * kBlockN * 128, tk, a * 64, nb * kBlockN, kv_head, tile.batch,
                                full_bar(st));
                    tma_load_4d(stage_k(it) + kKVBytes + a * kBlockN * 128, tv, a * 64, nb * kBlockN, kv_head,
                                tile.batch, full_bar(st));
                }
            }
        }
        return;
    }

    // ---------------- consumer warpgroups
    setmaxnreg_inc<kConsumerRegs>();
    const int wg = warp / 4;
    auto issue_pv = [&](float (&acc)[kDTiles][4], const u32 (&p)[kBlockN / 16][4], int it) {
        const u32 sV = stage_k(it) + kKVBytes;
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk)
            WgmmaRS<T, kHeadDim, 1>::run(acc, p[kk], sw128_desc(sV + kk * 16 * 128, kBlockN * 128), 1);
        wgmma_commit();
    };

    int it = 0;
    for (int t = blockIdx.x, count = 0; t < num_tiles; t += gridDim.x, ++count) {
        const Tile tile = tile_at(t);
        const int m0 = tile.m0, num_n_blocks = tile.num_n_blocks;
        float acc_o[kDTiles][4];
#pragma unroll
        for (int i = 0; i < kDTiles; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc_o[i][j] = 0.f;
        float row_max[2] = {-CUATTN_INF, -CUATTN_INF};
        float row_sum[2] = {0.f, 0.f};
        u32 p[kBlockN / 16][4];
        const int row_g = m0 + warp * 16 + lane / 4;  // warpgroup wg covers rows 64 wg .. 64 wg + 63

        mbar_wait(q_full(count), (count / kQStages) & 1);
        const u32 sQ = sQ0 + (count % kQStages) * kQBytes;
        for (int nb = 0; nb < num_n_blocks; ++nb, ++it) {
            const int n0 = nb * kBlockN;
            mbar_wait(full_bar(it % kStages), (it / kStages) & 1);

            float s[kNTiles][4];
            wgmma_fence();
            const u32 sK = stage_k(it);
#pragma unroll
            for (int ks = 0; ks < kHeadDim / 16; ++ks) {
                const u32 kin = (ks % 4) * 32, atom = ks / 4;
                const u64 dq = sw128_desc(sQ + atom * (kBlockM * 128) + wg * (64 * 128) + kin, 16);
                const u64 dk = sw128_desc(sK + atom * (kBlockN * 128) + kin, 16);
                WgmmaSS<T, kBlockN, 0, 0>::run(s, dq, dk, ks > 0);
            }
            wgmma_commit();
            if (nb > 0) {
                issue_pv(acc_o, p, it - 1);
                wgmma_wait<1>();  // S_nb is done; P_{nb-1} V_{nb-1} may still run
            } else {
                wgmma_wait<0>();
            }
            pin_registers(s);
            if (nb + 1 == num_n_blocks) mbar_arrive(q_empty(count));  // Q is read for the last time

            // Blocks with masked entries are scaled and masked first (c = 1 after that); full
            // blocks fold the scale into the exponent: exp2(s c - m) is one FFMA, and the row
            // max of s c is c max(s), or c min(s) when c < 0.
            const bool need_mask = (n0 + kBlockN > seqlen_k) || (kCausal && n0 + kBlockN - 1 > m0 + offset);
            float c = scale_log2;
            if (need_mask) {
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int col = n0 + nt * 8 + 2 * (lane % 4) + (e & 1);
                        const int row = row_g + (e >> 1) * 8;
                        s[nt][e] *= scale_log2;
                        if (col >= seqlen_k || (kCausal && col > row + offset)) s[nt][e] = -CUATTN_INF;
                    }
                c = 1.f;
            }
            float alpha[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float ext;
                if (c >= 0.f) {
                    ext = -CUATTN_INF;
#pragma unroll
                    for (int nt = 0; nt < kNTiles; ++nt) ext = fmaxf(ext, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
                    ext = quad_max(ext);
                } else {
                    ext = CUATTN_INF;
#pragma unroll
                    for (int nt = 0; nt < kNTiles; ++nt) ext = fminf(ext, fminf(s[nt][2 * h], s[nt][2 * h + 1]));
                    ext = quad_min(ext);
                }
                const float mx = fmaxf(row_max[h], ext * c);
                const float shift = softmax_shift(mx);
                alpha[h] = fast_exp2(row_max[h] - shift);
                row_max[h] = mx;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < kNTiles; ++nt) {
                    s[nt][2 * h] = fast_exp2(fmaf(s[nt][2 * h], c, -shift));
                    s[nt][2 * h + 1] = fast_exp2(fmaf(s[nt][2 * h + 1], c, -shift));
                    sum += s[nt][2 * h] + s[nt][2 * h + 1];
                }
                row_sum[h] = row_sum[h] * alpha[h] + sum;
            }

            wgmma_wait<0>();  // P_{nb-1} V_{nb-1} is done: O and P are free, and so is that stage
            pin_registers(acc_o);
            if (nb > 0) mbar_arrive(empty_bar((it - 1) % kStages));
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc_o[dt][e] *= alpha[e >> 1];
#pragma unroll
            for (int kk = 0; kk < kBlockN / 16; ++kk) {
                p[kk][0] = Num<T>::pack2(s[2 * kk][0], s[2 * kk][1]);
                p[kk][1] = Num<T>::pack2(s[2 * kk][2], s[2 * kk][3]);
                p[kk][2] = Num<T>::pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                p[kk][3] = Num<T>::pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
        }
        if (num_n_blocks > 0) {
            wgmma_fence();
            issue_pv(acc_o, p, it - 1);
            wgmma_wait<0>();
            pin_registers(acc_o);
            mbar_arrive(empty_bar((it - 1) % kStages));
        } else {
            mbar_arrive(q_empty(count));
        }

        T* ob = o + tile.batch * o_sb + tile.head * o_sh;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float total = quad_sum(row_sum[h]);
            const float inv = CUATTN_INV_TOTAL(total);
            const int row = row_g + 8 * h;
            if (row < seqlen_q) {
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt) {
                    const int col = dt * 8 + 2 * (lane % 4);
                    if (col < head_dim_v)  // Dv is a multiple of 8: pairs never straddle it
                        *reinterpret_cast<u32*>(ob + (i64)row * o_ss + col) =
                            Num<T>::pack2(acc_o[dt][2 * h] * inv, acc_o[dt][2 * h + 1] * inv);
                }
                if (lse != nullptr && lane % 4 == 0)
                    lse[((i64)tile.batch * num_heads + tile.head) * seqlen_q + row] = lse_from_log2(row_max[h], total);
            }
        }
    }
}
