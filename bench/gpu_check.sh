#!/usr/bin/env bash
# The GPU check of fmnist, for a machine with an NVIDIA GPU: one script, about 10 minutes, one JSON with every figure.
#
#   bash bench/gpu_check.sh [RESULT.json]
#
# In order, each stage timed, its failure recorded and the next stage run anyway:
#   env        what is installed: nvidia-smi, Python, NumPy, CuPy, PyTorch, pytest, and fmnist's other dependencies
#              (typer, rich, platformdirs, threadpoolctl, numba, jinja2, matplotlib, pyyaml): the missing ones listed
#   probe      the GPU probe fmnist runs before choosing the GPU (its kernels compiled and run), then `fmnist info`
#   tests      the GPU tests: python3 -m pytest -m "gpu and not slow" tests/backend tests/network (the slow one runs
#              the simulated GPU on the real data set and says nothing about this GPU)
#   train_mlp  fmnist train --device gpu                                  (the default MLP, 20 epochs)
#   train_cnn  fmnist train --device gpu --preset cnn-best -e 2
#   bench_mlp  fmnist bench --device gpu --batch-sizes 64,1024,16384      (against PyTorch CUDA when installed)
#   bench_cnn  fmnist bench --device gpu --model cnn --preset cnn-best
# then writes RESULT.json (default: $OUT/gpu_check.json, else ./gpu_check_out/gpu_check.json): every stage's command,
# exit status, seconds and last output lines; the per-epoch figures and test accuracy of both runs; the benchmark
# records; the test counts and failures.
#
# Environment:
#   OUT              the folder for the results (the device tool's output folder); default ./gpu_check_out
#   PYTHON           the interpreter (default python3); fmnist runs from this checkout (PYTHONPATH), not installed
#   FMNIST_DATA_DIR  a folder with the Fashion-MNIST files, where fmnist cannot find or download them
#   WHEELS           a folder of wheels (pure-Python ones such as platformdirs, typer, rich) to install missing
#                    dependencies from, without any package index, into the results folder (nothing else changes)
#   BUDGET_S         the whole script's time limit in seconds (default 570)
# NVIDIA_TF32_OVERRIDE=0 is set for every stage: cuBLAS and cuDNN then compute in FP32, so PyTorch's convolutions
# and products on Ampere/Hopper do not run in TF32 while fmnist computes in FP32 (an unfair ratio); fmnist bench also
# turns PyTorch's TF32 flags off itself and records them. CuPy uses FP32 unless asked otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT_DIR=${OUT:-$ROOT/gpu_check_out}
RESULT=${1:-$OUT_DIR/gpu_check.json}
WORK=$OUT_DIR/gpu_check
PY=${PYTHON:-python3}
BUDGET=${BUDGET_S:-570}
START=$(date +%s)
mkdir -p "$WORK" "$(dirname "$RESULT")"
STAGES=$WORK/stages.jsonl
: >"$STAGES"
RUNS=$(mktemp -d "${TMPDIR:-/tmp}/fmnist-gpu-check.XXXXXX")  # run directories (models, reports): their figures go
trap 'rm -rf "$RUNS"' EXIT                                    # into the JSON, the files stay out of $OUT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export NVIDIA_TF32_OVERRIDE=0 COLUMNS=100 PYTHONUNBUFFERED=1

record() {  # record NAME STATUS SECONDS LIMIT LOG COMMAND...: one line of stages.jsonl
  "$PY" - "$STAGES" "$@" <<'PY'
import json, sys
path, name, status, seconds, limit, log, *command = sys.argv[1:]
try:
    lines = open(log, errors="replace").read().splitlines()
except OSError:
    lines = []
entry = {"stage": name, "status": status, "seconds": float(seconds), "limit_s": int(limit),
         "command": " ".join(command), "log": log, "tail": lines[-25:]}
with open(path, "a") as f:
    f.write(json.dumps(entry) + "\n")
PY
}

stage() {  # stage NAME LIMIT_S COMMAND...: run with a time limit, record it, never stop the script
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START) - 20))
  local log=$WORK/$name.log
  if ((left < 15)); then
    echo "no time left in the ${BUDGET}s budget" >"$log"
    record "$name" skipped 0 0 "$log" "$@"
    echo "== $name: skipped (no time left)"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (up to ${limit}s): $*"
  local t0 rc status ms
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" bash -c '"$@"' stage "$@" >"$log" 2>&1  # bash -c: the functions too
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  case $rc in
  0) status=ok ;;
  124 | 137) status=timeout ;;
  *) status="failed (exit $rc)" ;;
  esac
  record "$name" "$status" "$((ms / 1000)).$(printf %03d $((ms % 1000)))" "$limit" "$log" "$@"
  echo "   $status, $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
  tail -n 3 "$log" | sed 's/^/   | /'
}

environment() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "nvidia-smi failed"
  "$PY" - "$WORK/env.json" <<'PY'
import importlib, importlib.metadata, json, platform, sys
wanted = ["numpy", "cupy", "torch", "pytest", "typer", "rich", "platformdirs", "threadpoolctl", "numba", "jinja2",
          "matplotlib", "yaml", "nvidia.cuda_nvrtc"]
found, missing = {}, []
for name in wanted:
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "?")
    except Exception as err:  # a broken install counts as missing, with its reason
        missing.append(name)
        found[name] = f"missing ({type(err).__name__}: {err})"
cupy_packages = sorted(f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                       if (d.metadata["Name"] or "").lower().startswith("cupy"))
record = {"python": platform.python_version(), "modules": found, "missing": missing, "cupy_packages": cupy_packages}
try:
    import torch
    record["torch_cuda"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        record["torch_device"] = torch.cuda.get_device_name(0)
        record["torch_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
except Exception as err:
    record["torch_cuda"] = f"{type(err).__name__}: {err}"
json.dump(record, open(sys.argv[1], "w"), indent=1)
for name in wanted:
    print(f"{name:18s} {found[name]}")
print(f"cupy packages: {', '.join(cupy_packages) or 'none'}")
print("missing: " + (", ".join(missing) if missing else "nothing"))
PY
}

install_missing() {  # fmnist's dependencies from $WHEELS into the results folder, when some are missing
  local missing
  missing=$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1]))['missing']; print(' '.join(x.replace('yaml','pyyaml') for x in m if x in ('typer','rich','platformdirs','threadpoolctl','numba','jinja2','matplotlib','yaml')))" "$WORK/env.json" 2>/dev/null)
  if [ -z "$missing" ]; then
    echo "nothing to install"
  elif [ -z "${WHEELS:-}" ]; then
    echo "missing: $missing (set WHEELS to a folder of their wheels to install them here; the stages that need them fail)"
  else
    "$PY" -m pip install --no-index --find-links "$WHEELS" --target "$WORK/site" $missing
  fi
}

probe() {
  "$PY" - <<'PY'
import time
t = time.perf_counter()
from fmnist.backend import get_backend
backend = get_backend("gpu")  # compiles fmnist's kernels, runs one, one of each kind of operation a step uses
print(f"probe passed in {time.perf_counter() - t:.2f} s: {backend.info()}")
PY
  local rc=$?
  "$PY" -m fmnist info
  return $rc
}

export PY WORK WHEELS
export -f environment install_missing probe
stage env 30 environment
stage install 60 install_missing
[ -d "$WORK/site" ] && export PYTHONPATH="$PYTHONPATH:$WORK/site"
stage probe 90 probe
stage tests 170 "$PY" -m pytest -o addopts= -ra -q -p no:cacheprovider --continue-on-collection-errors \
  -m "gpu and not slow" --junitxml="$WORK/pytest.xml" tests/backend tests/network
stage train_mlp 100 "$PY" -m fmnist train --device gpu --out "$RUNS/mlp"
stage train_cnn 120 "$PY" -m fmnist train --device gpu --preset cnn-best -e 2 --out "$RUNS/cnn"
stage bench_mlp 110 "$PY" -m fmnist bench --device gpu --batch-sizes 64,1024,16384 --json "$WORK/bench_mlp.json"
stage bench_cnn 80 "$PY" -m fmnist bench --device gpu --model cnn --preset cnn-best --json "$WORK/bench_cnn.json"

"$PY" - "$WORK" "$RESULT" "$(($(date +%s) - START))" "$RUNS" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

work, result, seconds, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"missing": f"{path.name}: {err}"}


def run(name):
    folder = runs / name
    try:
        epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    except OSError as err:
        return {"missing": str(err)}
    return {"epochs": epochs, "summary": load(folder / "summary.json"),
            "environment": load(folder / "config.json").get("environment")}


def tests():
    try:
        root = ET.parse(work / "pytest.xml").getroot()
    except (OSError, ET.ParseError) as err:
        return {"missing": str(err)}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "time_s": float(suite.get("time", 0)), "failed": failed}


stages = [json.loads(line) for line in (work / "stages.jsonl").read_text().splitlines()]
record = {
    "seconds": seconds,
    "stages": stages,
    "environment": load(work / "env.json"),
    "tests": tests(),
    "train_mlp": run("mlp"),
    "train_cnn": run("cnn"),
    "bench_mlp": load(work / "bench_mlp.json"),
    "bench_cnn": load(work / "bench_cnn.json"),
}
result.write_text(json.dumps(record, indent=1) + "\n")
print(f"\n{result}: {len(stages)} stages in {seconds} s")
for s in stages:
    print(f"  {s['stage']:10s} {s['status']:16s} {s['seconds']:7.1f} s")
PY
