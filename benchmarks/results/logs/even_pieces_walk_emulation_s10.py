import sys, random
sys.path.insert(0,'.')
import cuattn.decode as _d
mod = sys.modules["cuattn.decode"]
def split_key(rg, s, chunk, span):
    u, c = span >> 7, chunk >> 7; start = rg*u
    key = (start//c + s)*c - start
    return max(0, min(key, u)) << 7
def split_parts(rg, chunk, span, ns):
    u, c = span >> 7, chunk >> 7; start = rg*u
    return (start+u-1)//c - start//c + 1
random.seed(1)
for trial in range(3000):
    groups = random.randint(1, 40); length = random.randint(1, 20000); pieces = random.randint(1, 140)
    r = mod.plan_even(groups, length, pieces, 128)
    if r is None: continue
    ns, chunk, span, takes = r
    u, c = span>>7, chunk>>7
    seen = {}
    for taken in range(takes):
        p0 = taken*c; p1 = min(p0+c, groups*u)
        rg = p0//u
        while rg*u < p1:
            item = rg*ns + taken - (rg*u//c)
            split = item % ns; g = item // ns
            assert g == rg and 0 <= split < ns, (groups, length, pieces)
            assert item not in seen
            seen[item] = (split_key(rg, split, chunk, span), split_key(rg, split+1, chunk, span))
            rg += 1
    for rg in range(groups):
        sp = [seen[rg*ns+s] for s in range(ns) if rg*ns+s in seen]
        assert len(sp) == split_parts(rg, chunk, span, ns)
        assert sp[0][0] == 0 and sp[-1][1] == span and all(sp[i][1] == sp[i+1][0] for i in range(len(sp)-1)), (sp, span)
        assert all(a % 128 == 0 for a, b in sp)
print("ok")
