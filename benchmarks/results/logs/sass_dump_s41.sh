# SASS of the decode kernels one call of each given row compiles (fresh CuPy cache), through the
# device's cuobjdump: the cubin starts at the ELF magic in cupy's cache file.
export CUPY_CACHE_DIR=/tmp/sass_cache
rm -rf $CUPY_CACHE_DIR
python3 - <<'PY'
import cupy as cp, cuattn
for (b, hq, hkv, d, L) in [(1, 32, 8, 128, 131072), (16, 32, 8, 128, 33001)]:
    q = cp.random.standard_normal((b, hq, 1, d), dtype=cp.float32).astype(cp.float16)
    k = cp.random.standard_normal((b, hkv, L, d), dtype=cp.float32).astype(cp.float16)
    v = cp.random.standard_normal((b, hkv, L, d), dtype=cp.float32).astype(cp.float16)
    cuattn.decode(q, k, v, alibi_slopes="default")
cp.cuda.Device().synchronize()
PY
n=0
for f in $CUPY_CACHE_DIR/*; do
  python3 -c "import sys; d=open(sys.argv[1],'rb').read(); i=d.find(b'\x7fELF'); open(sys.argv[2],'wb').write(d[i:]); print('ELF at', i)" "$f" /tmp/k$n.cubin
  echo "=== $f" ; cuobjdump -sass /tmp/k$n.cubin 2>&1 || nvdisasm -c /tmp/k$n.cubin 2>&1 | head -5
  n=$((n+1))
done > $OUT/sass_raw.txt
gzip -f $OUT/sass_raw.txt; ls -la $OUT
