#!/usr/bin/env python3
"""Cost curves of the large-set pipelines: training wall time and peak tensor memory against the
deployment set size N, pair-trained DeepSet vs the end-to-end baseline, from asbi_set_bench's JSON
lines. The figure is drawn by gnuplot (pngcairo).

    python3 bench/sbi/set_cost_plot.py bench/results/sets.jsonl docs/img/set_cost.png
"""
import json
import os
import subprocess
import sys
import tempfile


def main(results: str, out: str, task: str = "gaussian_nuisance") -> None:
    rows = {}
    with open(results) as f:
        for line in f:
            r = json.loads(line)
            if r["task"] != task:
                continue
            pairs = r["training"] == "pairs"
            if pairs and r["encoder_set_size"] != 2:
                continue  # the ablation's encoders are not the pipeline
            key = ("pairs" if pairs else "end_to_end", r["set_size"])
            rows[key] = (r["train_seconds"], r["peak_tensor_bytes"] / 2**20)
    if not rows:
        sys.exit(f"{results}: no {task} rows")
    with tempfile.TemporaryDirectory() as tmp:
        for training in ("pairs", "end_to_end"):
            with open(os.path.join(tmp, training + ".dat"), "w") as d:
                for (t, n), (seconds, mib) in sorted(rows.items(), key=lambda kv: kv[0][1]):
                    if t == training:
                        d.write(f"{n} {seconds} {mib}\n")
        script = f"""
set terminal pngcairo size 1100,450 font ",11" noenhanced
set output "{out}.tmp"
set multiplot layout 1,2 title "{task}: training cost against the deployment set size N (one thread)"
set logscale xy
set xlabel "set size N"
set grid
set key top left
set xrange [5:20000]
set ylabel "training wall time (s)"
plot "{tmp}/pairs.dat" using 1:2 with linespoints lw 2 pt 7 title "pair-trained DeepSet (stages 1-3)", \\
     "{tmp}/end_to_end.dat" using 1:2 with linespoints lw 2 pt 5 title "end-to-end at N"
set ylabel "peak tensor memory (MiB)"
plot "{tmp}/pairs.dat" using 1:3 with linespoints lw 2 pt 7 title "pair-trained DeepSet", \\
     "{tmp}/end_to_end.dat" using 1:3 with linespoints lw 2 pt 5 title "end-to-end at N"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.replace(out + ".tmp", out)  # atomically: a failed plot leaves the old figure


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
