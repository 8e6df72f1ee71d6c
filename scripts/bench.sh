#!/usr/bin/env bash
# Speed-and-memory benchmark of `cloudtrail-changes process`, against `zcat` as the baseline.
#
#   scripts/bench.sh           ~100 MB corpus of many files + one ~1 GiB file, 7 runs each
#   scripts/bench.sh --quick   20 MB + 128 MB, 3 runs (for CI; its own corpus cache)
#
# Measures, on the many-file corpus: wall time of `zcat FILES > /dev/null` and of
# `process DIR > /dev/null` (runs alternate zcat/process to spread the noise of a shared machine),
# MB/s of JSON, records/s, CPU (user+sys) and peak RSS of process; the ratio process/zcat
# (target <= 1.00). On the single large file: wall time, MB/s and peak RSS (target <= 64 MiB).
# All figures are medians over RUNS runs measured in the same run as the zcat baseline, never
# against numbers from another day. A report, not a test: exits 0 even when a target is missed.
#
# Env: RUNS (7), BENCH_MB (100), BENCH_BIG_MB (1024), BENCH_DIR (target/bench: corpora cache),
#      MAKE_CORPUS (default scripts/make-corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MAKE_CORPUS=${MAKE_CORPUS:-$REPO/scripts/make-corpus}
MB=${BENCH_MB:-100} BIG_MB=${BENCH_BIG_MB:-1024} RUNS=${RUNS:-7} SUFFIX=""
if [[ ${1:-} == --quick ]]; then MB=20 BIG_MB=128 RUNS=3 SUFFIX=-quick; fi
DIR=${BENCH_DIR:-target/bench}$SUFFIX
BIN=target/release/cloudtrail-changes

if [[ -f Cargo.lock ]]; then cargo build --release --locked; else cargo build --release; fi

# corpus NAME MB RECORDS_PER_FILE: build $DIR/NAME once; its marker .made holds the arguments and
# make-corpus's line, so a change of size regenerates it. Built aside, then moved in place.
corpus() {
  local out=$DIR/$1 args="--mb $2 --records-per-file $3" line
  if [[ -f $out/.made && $(head -n1 "$out/.made") == "$args" ]]; then return; fi
  echo "bench: generating $out ($args)..." >&2
  rm -rf "$out" "$out.tmp"
  # shellcheck disable=SC2086
  line=$(python3 "$MAKE_CORPUS" "$out.tmp" $args)
  printf '%s\n%s\n' "$args" "$line" > "$out.tmp/.made"
  mv "$out.tmp" "$out"
}
mkdir -p "$DIR"
corpus corpus-100mb "$MB" 2000
corpus corpus-1gib "$BIG_MB" 0

python3 - "$BIN" "$DIR" "$RUNS" <<'PY'
import glob, os, resource, statistics, subprocess, sys, tempfile, time
bin_, dir_, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
med = statistics.median

def run(cmd, summary=None):
    """Run cmd with stdout to /dev/null: (wall s, user+sys CPU s, peak RSS KiB)."""
    with tempfile.NamedTemporaryFile("r") as tf:
        full = [GNU_TIME, "-f", "%U %S %M", "-o", tf.name, *cmd] if GNU_TIME else cmd
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} exited {p.returncode}: {p.stderr[-800:]}")
        if summary:
            open(summary, "w").write(p.stderr)
        if GNU_TIME:
            u, s, m = tf.read().split()[-3:]
            return wall, float(u) + float(s), int(m)
        # Fallback: ru_maxrss of children is the max over every child so far (an upper bound).
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu, after.ru_maxrss

def made(path):
    return dict(kv.split("=") for kv in open(os.path.join(path, ".made")).read().split()[-4:])

def summary_records(path):
    for line in open(path):
        if line.startswith("records:"):
            return int(line.split()[1])

def runs_line(name, xs):
    print(f"  {name:8} runs: " + "  ".join(f"{x:.3f}" for x in xs))

def verdict(ok):
    return "PASS" if ok else "FAIL  <<<<<<<<<<"

# --- throughput: many files ---
many = os.path.join(dir_, "corpus-100mb")
files = sorted(glob.glob(os.path.join(many, "*.json.gz")))
info = made(many)
mb, recs = int(info["json_bytes"]) / 1e6, int(info["records"])
summary = os.path.join(dir_, "summary-100mb.txt")
zcat, proc = [], []
for _ in range(runs):
    zcat.append(run(["zcat", *files]))
    proc.append(run([bin_, "process", many], summary))
zw, pw = med([r[0] for r in zcat]), med([r[0] for r in proc])
pcpu, prss = med([r[1] for r in proc]), max(r[2] for r in proc)
print(f"corpus: {info['files']} files, {recs:,} records, {mb:.1f} MB JSON, "
      f"{int(info['gzip_bytes']) / 1e6:.1f} MB gzip   (runs: {runs}, alternating zcat/process)")
runs_line("zcat", [r[0] for r in zcat])
runs_line("process", [r[0] for r in proc])
print(f"zcat     median {zw:.3f} s  {mb / zw:7.1f} MB/s   cpu {med([r[1] for r in zcat]):.2f} s")
print(f"process  median {pw:.3f} s  {mb / pw:7.1f} MB/s   {recs / pw:,.0f} records/s   "
      f"cpu {pcpu:.2f} s   peak RSS {prss / 1024:.1f} MiB")
got = summary_records(summary)
if got != recs:
    print(f"WARNING: process summary says records: {got}, make-corpus wrote {recs}")
ratio = pw / zw
print(f"ratio process/zcat (median wall): {ratio:.2f}   target <= 1.00   {verdict(ratio <= 1.0)}")

# --- memory: one large file ---
print()
one = os.path.join(dir_, "corpus-1gib")
big = made(one)
bmb = int(big["json_bytes"]) / 1e6
summary = os.path.join(dir_, "summary-1gib.txt")
bz, bp = [], []
for _ in range(runs):
    bz.append(run(["zcat", *glob.glob(os.path.join(one, "*.json.gz"))]))
    bp.append(run([bin_, "process", one], summary))
bzw, bpw = med([r[0] for r in bz]), med([r[0] for r in bp])
rss = [r[2] / 1024 for r in bp]
print(f"single file ({int(big['records']):,} records in one .json.gz):")
runs_line("zcat", [r[0] for r in bz])
runs_line("process", [r[0] for r in bp])
print(f"  peak RSS runs (MiB): " + "  ".join(f"{x:.1f}" for x in rss))
if summary_records(summary) != int(big["records"]):
    print(f"WARNING: process summary says records: {summary_records(summary)}, "
          f"make-corpus wrote {big['records']}")
print(f"single file: {big['files']} file, {bmb / 1000:.2f} GB JSON: process median {bpw:.2f} s "
      f"({bmb / bpw:.0f} MB/s; zcat {bzw:.2f} s, ratio {bpw / bzw:.2f}), peak RSS {max(rss):.1f} MiB "
      f"(max of {runs}, median {med(rss):.1f})   target <= 64 MiB   {verdict(max(rss) <= 64)}")
if not GNU_TIME:
    print("note: /usr/bin/time missing; CPU and peak RSS come from getrusage (RSS = max so far)")
PY
