#!/usr/bin/env bash
# aarch64 (Raspberry Pi OS 64-bit) and armv7l (32-bit) install check, by emulation. Correctness, not timing.
#
#   sudo bash scripts/aarch64_check.sh            # ~5-10 min the first time (debootstrap), ~3-5 min after
#
# What it proves:
#   1. `pip install '.[edge]'` works in a fresh venv on Debian 12 arm64 with its Python 3.11 (pip inside
#      the emulated root resolves wheels natively, so it picks what a Pi picks);
#   2. `moodmic predict` there gives the same labels and probabilities as x86 on a handful of RAVDESS
#      files (within TOL, default 0.02: the shipped model is dynamic-range, whose activations are
#      quantized at run time by each CPU's kernels), and the packaged model loads without --model;
#   3. without a TFLite runtime `moodmic` stops with one clear line and exit code 78 (what a 32-bit Pi
#      would see if the install got that far), and on armv7l no TFLite runtime wheel exists at all:
#      our `[edge]` marker picks tflite-runtime there, and pip stops with "No matching distribution".
#
# Needs root (chroot, mounts, binfmt), apt (qemu-user-static, debootstrap; installed if missing) and
# network to the Debian mirror and PyPI. The arm64 root is cached outside git, in $MOODMIC_AARCH64_ROOT
# (default /var/cache/moodmic-aarch64/bookworm-arm64, ~620 MB + venv). The result is written to
# $MOODMIC_AARCH64_OUT (default $ROOT/../last-result.md) and printed; BENCHMARKS.md keeps the last one.
#
# Environment: MOODMIC_AARCH64_ROOT, MOODMIC_AARCH64_OUT, MOODMIC_DEBIAN_MIRROR (default: the mirror
# apt uses), MOODMIC_X86_PYTHON (default .venv/bin/python), MOODMIC_DATA (default ../shared/data/ravdess),
# TOL (default 0.02). Exit status: 0 all checks passed, 1 a check failed, 2 cannot run here.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=$(dirname "${MOODMIC_AARCH64_ROOT:-/var/cache/moodmic-aarch64/bookworm-arm64}")
R=${MOODMIC_AARCH64_ROOT:-$CACHE/bookworm-arm64}
OUT=${MOODMIC_AARCH64_OUT:-$CACHE/last-result.md}
X86_PY=${MOODMIC_X86_PYTHON:-$REPO/.venv/bin/python}
DATA=${MOODMIC_DATA:-$REPO/../shared/data/ravdess}
TOL=${TOL:-0.02}
# One clip per emotion (01 neutral .. 08 surprised), different actors, speech.
FILES=(speech/Actor_01/03-01-01-01-01-01-01.flac speech/Actor_02/03-01-02-01-01-01-02.flac
       speech/Actor_03/03-01-03-02-01-01-03.flac speech/Actor_04/03-01-04-01-02-01-04.flac
       speech/Actor_05/03-01-05-02-01-01-05.flac speech/Actor_06/03-01-06-01-01-02-06.flac
       speech/Actor_07/03-01-07-02-02-01-07.flac speech/Actor_08/03-01-08-01-01-01-08.flac)

log() { printf '[aarch64_check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "$*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount, binfmt_misc); run with sudo"
[ -x "$X86_PY" ] || die "no x86 Python with moodmic at $X86_PY (set MOODMIC_X86_PYTHON)"
for f in "${FILES[@]}"; do [ -f "$DATA/$f" ] || die "missing $DATA/$f (set MOODMIC_DATA)"; done

# --- 1. tools and binfmt -------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null || ! [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
  log "installing qemu-user-static debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || /lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-aarch64.conf
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "could not register qemu-aarch64 with binfmt_misc"

# --- 2. the arm64 root (cached) ------------------------------------------------------------------
MIRROR=${MOODMIC_DEBIAN_MIRROR:-$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [ ! -e "$R/.moodmic-second-stage-done" ]; then
  log "debootstrap arm64 bookworm into $R from $MIRROR (first stage ~20 s, second stage ~140 s)"
  rm -rf "$R"; mkdir -p "$R"
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$R" "$MIRROR" >/dev/null
  chroot "$R" /debootstrap/debootstrap --second-stage >/dev/null
  touch "$R/.moodmic-second-stage-done"
fi

MOUNTED=()
cleanup() {
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    mountpoint -q "${MOUNTED[$i]}" && umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
# /proc only while installing: under qemu-user (7.2, Debian 12) the chroot's /proc/cpuinfo is the x86
# host's, and LiteRT's CPU detection crashes on it (SIGSEGV when any Interpreter is built, with or
# without XNNPACK). Without /proc it falls back to defaults and runs. A real Pi has a real /proc.
if ! mountpoint -q "$R/sys"; then mount -t sysfs sysfs "$R/sys"; MOUNTED+=("$R/sys"); fi
if ! mountpoint -q "$R/proc"; then mount -t proc proc "$R/proc"; MOUNTED+=("$R/proc"); fi
if [ ! -c "$R/dev/null" ] || [ ! -c "$R/dev/urandom" ]; then
  mount --bind /dev "$R/dev"; MOUNTED+=("$R/dev")
fi
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
# The host's extra CA certificates (a TLS-inspecting proxy, if any) before pip can reach PyPI.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$R/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
fi
in_root() {
  chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
}
in_root update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the arm64 root"
[ "$(in_root uname -m)" = aarch64 ] || die "the chroot does not run aarch64 code"

# --- 3. the committed source, a fresh venv, pip install .[edge] ----------------------------------
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
rm -rf "$R/opt/moodmic"; mkdir -p "$R/opt/moodmic/src" "$R/opt/moodmic/data"
git -C "$REPO" archive HEAD | tar -x -C "$R/opt/moodmic/src"
for f in "${FILES[@]}"; do cp "$DATA/$f" "$R/opt/moodmic/data/"; done
PYV=$(in_root python3 -c 'import sys; print(sys.version.split()[0])')
log "fresh venv on aarch64 Python $PYV; pip install '.[edge]' (commit $COMMIT) - a few minutes under emulation"
t0=$(date +%s)
in_root python3 -m venv /opt/moodmic/venv
if ! in_root /opt/moodmic/venv/bin/pip install -q '/opt/moodmic/src[edge]' >"$CACHE/pip-install.log" 2>&1; then
  tail -20 "$CACHE/pip-install.log" >&2; log "FAIL: pip install '.[edge]' on aarch64"; exit 1
fi
INSTALL_S=$(( $(date +%s) - t0 ))
PKGS=$(in_root /opt/moodmic/venv/bin/pip list --format=freeze 2>/dev/null \
       | grep -iE '^(ai-edge-litert|numpy|soundfile|soxr|tflite-runtime|tensorflow|librosa)=' | tr '\n' ' ')
log "installed in ${INSTALL_S}s: $PKGS"
in_root /opt/moodmic/venv/bin/moodmic --version >/dev/null
umount -l "$R/proc" || die "cannot unmount $R/proc (needed: see above)"

# --- 4. predict on aarch64 and on x86, compare ---------------------------------------------------
WORK=$(mktemp -d); trap 'cleanup; rm -rf "$WORK"' EXIT
ARM_FILES=(); X86_FILES=()
for f in "${FILES[@]}"; do ARM_FILES+=("/opt/moodmic/data/$(basename "$f")"); X86_FILES+=("$R/opt/moodmic/data/$(basename "$f")"); done
log "moodmic predict on ${#FILES[@]} files: aarch64 (emulated) and x86, same bundle (edge/models/default @ $COMMIT)"
t0=$(date +%s)
in_root /opt/moodmic/venv/bin/moodmic predict "${ARM_FILES[@]}" >"$WORK/arm.jsonl" 2>"$WORK/arm.err" \
  || { cat "$WORK/arm.err" >&2; log "FAIL: moodmic predict on aarch64"; exit 1; }
ARM_S=$(( $(date +%s) - t0 ))
env -i PATH=/usr/bin:/bin HOME="$WORK" LANG=C.UTF-8 "$X86_PY" -m edge.cli predict \
  --model "$R/opt/moodmic/src/edge/models/default" "${X86_FILES[@]}" >"$WORK/x86.jsonl" 2>"$WORK/x86.err" \
  || { cat "$WORK/x86.err" >&2; log "FAIL: moodmic predict on x86"; exit 1; }
in_root /opt/moodmic/venv/bin/moodmic predict --sample >"$WORK/arm-sample.jsonl" 2>/dev/null \
  || { log "FAIL: the packaged model does not load on aarch64 (moodmic predict --sample)"; exit 1; }

# --- 5. armv7l: no runtime wheel, and a clear stop without a runtime -----------------------------
log "armv7l: which runtime our [edge] marker picks, and whether PyPI has a wheel for it"
in_root /opt/moodmic/venv/bin/pip uninstall -q -y ai-edge-litert >/dev/null 2>&1
set +e
in_root /opt/moodmic/venv/bin/moodmic predict "${ARM_FILES[0]}" >/dev/null 2>"$WORK/noruntime.err"
NORUNTIME_RC=$?
set -e
NORUNTIME_MSG=$(grep -v '^INFO' "$WORK/noruntime.err" | tail -1)
"$X86_PY" - "$REPO/pyproject.toml" >"$WORK/armv7-markers.txt" <<'EOF'
import sys, tomllib
from packaging.requirements import Requirement
from packaging.markers import default_environment
env = default_environment() | {"platform_machine": "armv7l", "python_version": "3.11", "python_full_version": "3.11.2"}
edge = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["edge"]
reqs = [Requirement(r) for r in edge]
picked = [f"{r.name}{r.specifier}" for r in reqs if r.marker is None or r.marker.evaluate(env)]
print(" ".join(picked))
EOF
ARMV7_PICKS=$(cat "$WORK/armv7-markers.txt")
armv7_wheel() {  # $1: requirement -> prints "found <file>" or pip's last error line
  local d; d=$(mktemp -d -p "$WORK")
  if PIP_FIND_LINKS= "$X86_PY" -m pip download -q --no-deps --only-binary=:all: --no-cache-dir --isolated -d "$d" \
      --python-version 3.11 --platform linux_armv7l --platform manylinux2014_armv7l --platform manylinux_2_31_armv7l \
      --platform manylinux_2_36_armv7l "$1" >"$d.log" 2>&1; then
    echo "found $(ls "$d")"
  else
    grep -m1 'No matching distribution' "$d.log" || tail -1 "$d.log"
  fi
}
ARMV7_TFLITE=$(armv7_wheel 'tflite-runtime>=2.14')
ARMV7_LITERT=$(armv7_wheel 'ai-edge-litert')

# --- 6. verdict ----------------------------------------------------------------------------------
set +e
"$X86_PY" - "$WORK" "$TOL" "$COMMIT" "$PYV" "$INSTALL_S" "$ARM_S" "$PKGS" "$NORUNTIME_RC" "$NORUNTIME_MSG" \
  "$ARMV7_PICKS" "$ARMV7_TFLITE" "$ARMV7_LITERT" >"$WORK/result.md" <<'EOF'
import json, sys, datetime
work, tol, commit, pyv, install_s, arm_s, pkgs, nr_rc, nr_msg, v7_picks, v7_tflite, v7_litert = sys.argv[1:]
tol = float(tol)
read = lambda name: [json.loads(line) for line in open(f"{work}/{name}") if line.strip()]
arm, x86 = read("arm.jsonl"), read("x86.jsonl")
sample = read("arm-sample.jsonl")
ok = len(arm) == len(x86) > 0 and bool(sample) and "label" in sample[0]
rows, worst = [], 0.0
for a, x in zip(arm, x86):
    diff = max(abs(a["probabilities"][k] - x["probabilities"][k]) for k in x["probabilities"])
    worst = max(worst, diff)
    same = a["label"] == x["label"]
    ok &= same and diff <= tol
    rows.append(f"| {a['path'].rsplit('/', 1)[-1]} | {x['label']} {x['confidence']:.4f} | {a['label']} {a['confidence']:.4f} "
                f"| {diff:.4f} | {'ok' if same and diff <= tol else 'MISMATCH'} |")
armv7_ok = "No matching distribution" in v7_tflite and "No matching distribution" in v7_litert
clear_stop = nr_rc != "0" and "TFLite runtime" in nr_msg
ok &= armv7_ok and clear_stop
print(f"### aarch64 / armv7l check ({'PASS' if ok else 'FAIL'}), {datetime.date.today().isoformat()}, commit {commit}\n")
print(f"`sudo bash scripts/aarch64_check.sh`: Debian 12 arm64 root under qemu-user-static, Python {pyv}, a fresh venv, "
      f"`pip install '.[edge]'` resolved natively in {install_s} s (emulated): {pkgs.strip()}. "
      f"`moodmic predict` on {len(arm)} RAVDESS speech clips took {arm_s} s emulated; labels and probabilities "
      f"against x86 (same bundle), tolerance {tol}: max |dp| = {worst:.4f}. "
      f"The packaged model loads on aarch64 without --model (`moodmic predict --sample`: {sample[0].get('label') if sample else '-'}). "
      "Emulation detail: predict runs with the root's /proc unmounted, because qemu-user 7.2 shows the x86 host's "
      "/proc/cpuinfo there and LiteRT's CPU detection segfaults on it when any Interpreter is built; a real Pi has "
      "its own /proc/cpuinfo.\n")
print("| file | x86 label, confidence | aarch64 label, confidence | max abs diff of the 8 probabilities | |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print(f"\narmv7l (32-bit Pi OS): the `[edge]` markers evaluated for platform_machine=armv7l pick `{v7_picks}`. "
      f"PyPI wheels for armv7l, Python 3.11: tflite-runtime: {v7_tflite.strip()}; ai-edge-litert: {v7_litert.strip()}. "
      f"So `pip install '.[edge]'` on armv7l stops in pip with \"No matching distribution found for tflite-runtime>=2.14\". "
      f"If moodmic is installed without a runtime anyway (e.g. `pip install moodmic` without `[edge]`), it stops at start with "
      f"exit {nr_rc} and one line: `{nr_msg.strip()}` (checked here by uninstalling ai-edge-litert from the aarch64 venv).")
sys.exit(0 if ok else 1)
EOF
RC=$?
set -e
cp "$WORK/result.md" "$OUT"
cat "$WORK/result.md"
log "result written to $OUT (exit $RC)"
exit $RC
