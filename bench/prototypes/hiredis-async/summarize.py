import re, sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("round="): continue
    kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
    key = (kv["mode"], kv["nio_executor"])
    rows.setdefault(key, []).append(kv)
def fmt(vals, d):
    m = st.median(vals)
    return f"{m:.{d}f} ({min(vals):.{d}f}–{max(vals):.{d}f})"
print("| client | executor | pairs/s | CPU µs/pair | user / sys µs | ctx sw/pair | vol / invol per pair | redis-server µs/pair | loads (1-min) | failures |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key, rs in rows.items():
    g = lambda k: [float(r[k]) for r in rs]
    vol = [int(r["vcsw"])/int(r["pairs"]) for r in rs]; inv = [int(r["ivcsw"])/int(r["pairs"]) for r in rs]
    loads = ", ".join(r["load"].strip('"').split()[0] for r in rs)
    print(f"| {key[0]} | {'NIO' if key[1]=='true' else 'Swift pool'} | {fmt(g('pairs_per_s'),0)} | {fmt(g('cpu_us_per_pair'),1)} | {st.median(g('user_us')):.1f} / {st.median(g('sys_us')):.1f} | {fmt(g('csw_per_pair'),3)} | {st.median(vol):.3f} / {st.median(inv):.3f} | {fmt(g('redis_cpu_us_per_pair'),1)} | {loads} | {sum(int(r['failures']) for r in rs)} |")
