#!/usr/bin/env bash
# Speed and memory of `process`, measured against `zcat` on the same files in the same run.
#
#   scripts/bench.sh           ~100 MB corpus (many files) + one ~1 GiB file, 7 runs each
#   scripts/bench.sh --quick   20 MB + 128 MB, 3 runs (a smoke run)
#
# Reports medians of wall time (runs alternate zcat/process to spread the noise of a shared
# machine), the ratio process/zcat (target <= 1.0), and the peak RSS of `process` over the single
# large file (target <= 64 MiB). A report, not a test: it exits 0 whether targets are met or not.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
MAKE_CORPUS=${MAKE_CORPUS:-$REPO/../shared/tools/make-corpus}
MB=${BENCH_MB:-100} BIG_MB=${BENCH_BIG_MB:-1024} RUNS=${RUNS:-7} SUFFIX=""
if [[ ${1:-} == --quick ]]; then MB=20 BIG_MB=128 RUNS=3 SUFFIX=-quick; fi
DIR=${BENCH_DIR:-target/bench}$SUFFIX
BIN=target/release/cloudtrail-changes

[[ -x /usr/bin/time ]] || { apt-get update -qq && apt-get install -y -qq time; }  # GNU time: peak RSS
cargo build --release --locked -q

corpus() { # corpus NAME MB RECORDS_PER_FILE
  local out=$DIR/$1
  if [[ ! -f $out/.made ]]; then
    rm -rf "$out"
    python3 "$MAKE_CORPUS" "$out/files" --mb "$2" --records-per-file "$3" > "$out.line"
    mv "$out.line" "$out/.made"
  fi
  echo "$out"
}
mkdir -p "$DIR"
MANY=$(corpus many "$MB" 2000)
ONE=$(corpus one "$BIG_MB" 0)

# python3 measures each command: wall seconds, CPU seconds of the children, peak RSS (KiB).
python3 - "$BIN" "$MANY" "$ONE" "$RUNS" <<'PY'
import glob, resource, statistics, subprocess, sys, time
bin_, many, one, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def measure(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stderr.decode()

def made(path):
    return dict(kv.split("=") for kv in open(path + "/.made").read().split())

files = sorted(glob.glob(many + "/files/*.json.gz"))
info = made(many)
mb = int(info["json_bytes"]) / 1e6
zcat, proc, cpu = [], [], []
for _ in range(runs):
    zcat.append(measure(["zcat", *files])[0])
    w, c, _ = measure([bin_, "process", many + "/files"])
    proc.append(w); cpu.append(c)
zm, pm = statistics.median(zcat), statistics.median(proc)
print(f"corpus: {info['files']} files, {info['records']} records, {mb:.1f} MB JSON, "
      f"{int(info['gzip_bytes'])/1e6:.1f} MB gzip   (runs: {runs})")
print("zcat    runs: " + " ".join(f"{x:.3f}" for x in zcat))
print("process runs: " + " ".join(f"{x:.3f}" for x in proc))
print(f"zcat     median {zm:.3f} s   {mb/zm:7.1f} MB/s")
print(f"process  median {pm:.3f} s   {mb/pm:7.1f} MB/s   {int(info['records'])/pm:,.0f} records/s   "
      f"cpu {statistics.median(cpu):.3f} s")
ratio = pm / zm
print(f"ratio process/zcat (median wall): {ratio:.2f}   target <= 1.00   {'PASS' if ratio <= 1.0 else 'FAIL'}")

big = made(one)
rss, walls = [], []
for _ in range(min(runs, 3)):
    # Peak RSS of the child alone: GNU time's %M.
    p = subprocess.run(["/usr/bin/time", "-f", "%M", bin_, "process", one + "/files"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss.append(int(p.stderr.strip().splitlines()[-1]) / 1024)
    walls.append(measure([bin_, "process", one + "/files"])[0])
bmb = int(big["json_bytes"]) / 1e6
print(f"single file: {big['records']} records, {bmb:.0f} MB JSON: process median {statistics.median(walls):.2f} s "
      f"({bmb/statistics.median(walls):.0f} MB/s), peak RSS median {statistics.median(rss):.1f} MiB, "
      f"max {max(rss):.1f} MiB   target <= 64 MiB   {'PASS' if max(rss) <= 64 else 'FAIL'}")
PY
