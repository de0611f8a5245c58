cd /work/main; . .venv/bin/activate
for r in moons/glow-glow/seed0 circles/glow-glow/seed0 circles/glow-gmm/seed2; do
  out=/tmp/recheck/$r; rm -rf $out; mkdir -p $out
  python -m scnf --threads 1 train --config results/paper/runs/$r/RUN.yaml --out $out --no-final-eval --no-progress > $out.log 2>&1
  python - "$r" "$out" <<'PY'
import sys, torch, json
r, out = sys.argv[1], sys.argv[2]
a = torch.load(f"results/paper/runs/{r}/model.pt", map_location="cpu", weights_only=False)
b = torch.load(f"{out}/model.pt", map_location="cpu", weights_only=False)
sa = a.get("model", a) if isinstance(a, dict) else a
sb = b.get("model", b) if isinstance(b, dict) else b
same = all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k])) and sa.keys() == sb.keys()
ta = json.load(open(f"results/paper/runs/{r}/train_metrics.json")); tb = json.load(open(f"{out}/train_metrics.json"))
print(r, "weights bit-identical:", same, "| final val monitor:", {k: (ta.get(k), tb.get(k)) for k in ta if k.startswith("mon_") or k=="final_monitor"}, "| commit then/now:", ta["provenance"]["commit"][:8], ta["provenance"]["dirty"], tb["provenance"]["commit"][:8], tb["provenance"]["dirty"])
PY
done
