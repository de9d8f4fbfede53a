// common.cuh: device helpers shared by every cuattn kernel.
//
// No system headers: cuattn's sources compile with NVRTC alone (no CUDA include path), and the
// Python loader inlines this file into each .cu so CuPy's cache key covers it.
// 16-bit floats are carried as raw bits (half_t, bf16_t) and converted with PTX cvt.
// Tensor-core helpers wrap mma.sync m16n8k16 (sm_80+), ldmatrix and cp.async.
// Online softmax bookkeeping works in log2 units: scores are pre-multiplied by scale*log2(e).
#pragma once

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

struct half_t { u16 bits; };
struct bf16_t { u16 bits; };

#define CUATTN_INF __int_as_float(0x7f800000)
#define CUATTN_LN2 0.693147180559945309f

// ---------------------------------------------------------------- conversions
template <typename T> struct Num;

template <> struct Num<float> {
    static __device__ __forceinline__ float to_float(float x) { return x; }
    static __device__ __forceinline__ float from_float(float x) { return x; }
};

template <> struct Num<half_t> {
    static __device__ __forceinline__ float to_float(half_t x) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
        return f;
    }
    static __device__ __forceinline__ half_t from_float(float f) {
        half_t r;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
        return r;
    }
    // lo goes to the low 16 bits (the lower column / index), hi to the high 16 bits
    static __device__ __forceinline__ u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

template <> struct Num<bf16_t> {
    static __device__ __forceinline__ float to_float(bf16_t x) { return __uint_as_float(((u32)x.bits) << 16); }
    static __device__ __forceinline__ bf16_t from_float(float f) {
        bf16_t r;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
        return r;
    }
    static __device__ __forceinline__ u32 pack2(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

// 2**x with the hardware unit: ex2(-inf) = +0, NaN stays NaN.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float fast_log2(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// ---------------------------------------------------------------- memory
__device__ __forceinline__ u32 smem_addr(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}

// 16-byte global->shared copy; when !valid the 16 bytes are zero-filled and nothing is read.
// Probe option (decode's TMA_OPTIONS): -DCUATTN_CP_ASYNC_L2_PREFETCH=64/128/256 adds PTX's L2
// prefetch-size hint (.L2::128B etc.: L2 fetches that many bytes around each miss); not measured yet.
#ifndef CUATTN_CP_ASYNC_L2_PREFETCH
#define CUATTN_CP_ASYNC_L2_SUFFIX ""
#elif CUATTN_CP_ASYNC_L2_PREFETCH == 64
#define CUATTN_CP_ASYNC_L2_SUFFIX ".L2::64B"
#elif CUATTN_CP_ASYNC_L2_PREFETCH == 128
#define CUATTN_CP_ASYNC_L2_SUFFIX ".L2::128B"
#elif CUATTN_CP_ASYNC_L2_PREFETCH == 256
#define CUATTN_CP_ASYNC_L2_SUFFIX ".L2::256B"
#else
#error "CUATTN_CP_ASYNC_L2_PREFETCH must be 64, 128 or 256"
#endif
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool valid) {
    int src_size = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global" CUATTN_CP_ASYNC_L2_SUFFIX " [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(u32 r[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 r[4], u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// ---------------------------------------------------------------- tensor cores
// D = A(16x16, row) * B(16x8, col) + D, fp32 accumulate. Fragment layout (lane = 4*g + t):
//   A: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B: b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C: c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
template <typename T> struct Mma;

template <> struct Mma<half_t> {
    static __device__ __forceinline__ void run(float c[4], const u32 a[4], u32 b0, u32 b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

template <> struct Mma<bf16_t> {
    static __device__ __forceinline__ void run(float c[4], const u32 a[4], u32 b0, u32 b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// ---------------------------------------------------------------- softmax bookkeeping
// Shift used for exponentials: a running max of -inf (nothing seen yet) shifts by 0, so that
// exp2(-inf - shift) = 0 instead of exp2(-inf + inf) = NaN.
__device__ __forceinline__ float softmax_shift(float running_max) {
    return running_max == -CUATTN_INF ? 0.f : running_max;
}

// Natural-log LSE from a log2-unit max and a sum; an empty row (sum 0) gives -inf.
__device__ __forceinline__ float lse_from_log2(float max_log2, float sum) {
    return sum > 0.f ? (softmax_shift(max_log2) + fast_log2(sum)) * CUATTN_LN2
                     : (sum == 0.f ? -CUATTN_INF : sum);
}

// The factor that normalizes a row by its sum: 1 / sum; an empty row (sum 0, fully masked) gives 0
// (its output is 0), a NaN sum passes on. A macro, not a function: an inline function's ternary
// made NVRTC select (selp) where the written-out one branches, in the decode kernels' hot paths
// too (42nd session), so this keeps the kernels' PTX as it was measured. `sum` is evaluated up to
// four times: a variable or an array element, nothing with side effects.
#define CUATTN_INV_TOTAL(sum) ((sum) > 0.f ? 1.f / (sum) : ((sum) == 0.f ? 0.f : (sum)))

// Merge partial results (o_a, lse_a) and (o_b, lse_b) given in natural-log units:
// weights w = exp(lse - max). Returns the merged lse; an input with lse -inf weighs 0.
__device__ __forceinline__ float lse_merge_weights(float lse_a, float lse_b, float& wa, float& wb) {
    float m = fmaxf(lse_a, lse_b);
    if (m == -CUATTN_INF) { wa = 0.f; wb = 0.f; return -CUATTN_INF; }
    wa = __expf(lse_a - m);
    wb = __expf(lse_b - m);
    float s = wa + wb;
    wa /= s;
    wb /= s;
    return m + __logf(s);
}

// Reductions over the 4 lanes of an mma quad (lanes 4g..4g+3 hold one row's columns).
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_min(float x) {
    x = fminf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fminf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
