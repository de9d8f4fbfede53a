// hopper.cuh: mbarrier and bulk-copy (TMA) helpers shared by the sm_90 kernels.
//
// mbarriers hand shared-memory stages between a producer and consumers (full: the bytes landed;
// empty: every consumer is done with the stage); the copy engine counts the bytes it writes on a
// barrier (complete_tx), so a consumer waits for data without any thread polling memory.
// The mbarrier instructions need sm_80+, the bulk copies sm_90; only templates that are
// instantiated for sm_90 use the latter.
#pragma once

__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// arrive once every cp.async this thread issued so far has landed
__device__ __forceinline__ void mbar_arrive_cp_async(u32 bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// arrive once every cp.async this thread issued so far has landed, raising the barrier's pending
// count first (so the phase cannot complete before they land, whatever the expected count)
__device__ __forceinline__ void mbar_arrive_cp_async_inc(u32 bar) {
    asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_bytes(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// TMA: box (64 columns x rows) at (col, row, head, batch) of a 4-d tensor map into shared memory,
// 128-byte swizzled, zero-filled out of bounds; completion is counted in bytes on bar.
__device__ __forceinline__ void tma_load_4d(u32 dst, const void* tmap, int col, int row, int head, int batch, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
        "[%0], [%1, {%2, %3, %4, %5}], [%6];\n"
        ::"r"(dst), "l"(tmap), "r"(col), "r"(row), "r"(head), "r"(batch), "r"(bar) : "memory");
}
// Fetch a tensor map (128 bytes in global memory) into the copy engine's descriptor cache ahead of
// its first copy, so that copy does not wait for it.
__device__ __forceinline__ void prefetch_tensormap(const void* tmap) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(tmap) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
    asm volatile(
        "{\n.reg .pred done;\nWAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT;\n}\n" ::"r"(bar), "r"(parity) : "memory");
}

// 1-d bulk copy of `bytes` (a multiple of 16; both addresses 16-byte aligned) global -> shared,
// completion counted in bytes on bar.
__device__ __forceinline__ void bulk_load(u32 dst, const void* src, u32 bytes, u32 bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
        ::"r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
// Prefetch `bytes` (a multiple of 16) at src (16-byte aligned) into L2: a hint (no result depends on
// it; nothing waits for it).
__device__ __forceinline__ void prefetch_l2_bulk(const void* src, u32 bytes) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}
// Named barrier over `threads` threads (a multiple of 32); id 0 is __syncthreads'.
__device__ __forceinline__ void named_barrier(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
