#!/usr/bin/env python3
"""Single-threaded latency benchmark: qc-jit vs onnxruntime vs tract.

For every model of bench/gen_models.py (generated first if missing), one after
the other and with the runners interleaved per model (so machine noise hits
all of them alike), this times:
  qc int8     `qc bench MODEL_int8.onnx` (the QDQ model through the JIT)
  qc fp32     `qc bench MODEL_fp32.onnx`
  ORT fp32    onnxruntime, in process, on MODEL_fp32.onnx
  ORT int8    onnxruntime, in process, on MODEL_int8.onnx (QDQ)
  tract fp32  bench/tract-runner (tract-onnx, optimized plan) on MODEL_fp32.onnx
qc int8, ORT fp32 and ORT int8 (the ratio the issue sets a bar on) run in R
interleaved rounds of N/R timed runs each (after W warm-up runs) and report the
lowest round median; qc fp32 and tract run once, the median of N timed runs.
onnxruntime runs with intra/inter-op threads 1, sequential execution, default
graph optimizations. qc and tract are single-threaded by
construction. A runner that fails records its error text in the table.

Writes the table (plus qc's compile time, code size and arena per model) to
BENCHMARKS.md at the repository root. Not part of .ci/run.

Usage: python3 bench/run.py [--iters-small 200] [--iters-large 20] [--warmup W]
                            [--rounds 5] [--models a,b] [--kernels auto|cranelift]
                            [--no-build]
"""

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS_DIR = os.path.join(HERE, "models")
QC = os.path.join(ROOT, "target", "release", "qc")
TRACT_DIR = os.path.join(HERE, "tract-runner")
TRACT = os.path.join(TRACT_DIR, "target", "release", "tract-runner")

sys.path.insert(0, HERE)
import gen_models  # noqa: E402

# Models whose input is 224x224 get the small iteration count.
LARGE = {"mbv2_224", "resnet18_224"}
TIMEOUT_S = 900


def short_err(text, limit=160):
    """The most telling line of a failure, fit for one table cell."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    pick = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "failed")
    pick = re.sub(r"^(error:\s*)+", "", pick, flags=re.I).replace("|", "/")
    pick = pick.replace(MODELS_DIR + os.sep, "")
    return pick if len(pick) <= limit else pick[: limit - 3] + "..."


def parse_kv(text):
    out = {}
    for ln in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_]+):\s*(\S+)", ln)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def run_cmd(cmd):
    """(ok, key-value dict or error text)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"timeout after {TIMEOUT_S} s"
    except OSError as e:
        return False, str(e)
    if p.returncode != 0:
        return False, short_err(p.stderr + "\n" + p.stdout)
    kv = parse_kv(p.stdout)
    if "median_ms" not in kv and "compile_ms" not in kv:
        return False, short_err(p.stdout + p.stderr or "no median_ms in output")
    return True, kv


def qc_bench(model, iters, warmup, kernels):
    ok, r = run_cmd([QC, "bench", model, "--iters", str(iters), "--warmup", str(warmup),
                     "--kernels", kernels])
    return (float(r["median_ms"]), r) if ok else (None, r)


def qc_compile(model, kernels):
    ok, r = run_cmd([QC, "compile", model, "--target", "jit", "--kernels", kernels])
    return r if ok else {"error": r}


def qc_has_profile():
    try:
        p = subprocess.run([QC, "bench", "--help"], capture_output=True, text=True)
    except OSError:
        return False
    return "--profile" in p.stdout


def qc_profile(model, kernels, lines=25):
    """The head of `qc bench --profile` (a few runs), verbatim."""
    try:
        p = subprocess.run([QC, "bench", model, "--iters", "5", "--warmup", "1", "--kernels", kernels,
                            "--profile"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"profile failed: {e}"
    if p.returncode != 0:
        return "profile failed: " + short_err(p.stderr + p.stdout)
    return "\n".join(p.stdout.rstrip().splitlines()[:lines])


def tract_bench(model, iters, warmup):
    ok, r = run_cmd([TRACT, model, "--iters", str(iters), "--warmup", str(warmup)])
    return (float(r["median_ms"]), r) if ok else (None, r)


def ort_session(model):
    """(session, feeds) for single-threaded onnxruntime, or (None, error text)."""
    import onnxruntime as ort
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(7)
        feeds = {}
        for i in sess.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        return sess, feeds
    except Exception as e:  # any ORT failure goes into the table
        return None, short_err(str(e))


def ort_bench(session, iters, warmup):
    """In-process: the timed region is session.run only (its Python call
    overhead, a few microseconds, is included; it matters only for the
    sub-0.1 ms models)."""
    sess, feeds = session
    if sess is None:
        return None, feeds
    try:
        for _ in range(warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times), {}
    except Exception as e:  # any ORT failure goes into the table
        return None, short_err(str(e))


def best_of_rounds(runners, rounds, iters, warmup):
    """Run each runner (name -> f(iters, warmup) -> (value, info)) in `rounds`
    interleaved rounds of `iters` runs; per runner the lowest round median (noise on
    a shared machine only ever slows a round down) and the last info."""
    out = {k: (None, None) for k in runners}
    for _ in range(rounds):
        for k, f in runners.items():
            v, info = f(iters, warmup)
            best = out[k][0]
            if v is not None and (best is None or v < best):
                out[k] = (v, info)
            elif best is None:
                out[k] = (None, info)
    return out


def build(args):
    notes = []
    if args.no_build:
        return notes
    cargo = shutil.which("cargo")
    if not cargo:
        notes.append("cargo not found: qc and tract binaries used as they are")
        return notes
    p = subprocess.run([cargo, "build", "--release", "-p", "qc"], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("cargo build --release -p qc failed:\n" + p.stderr[-4000:])
    p = subprocess.run([cargo, "build", "--release", "--manifest-path",
                        os.path.join(TRACT_DIR, "Cargo.toml")], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        notes.append("tract-runner build failed, tract skipped: " + short_err(p.stderr))
    return notes


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
    except OSError:
        return platform.processor() or "unknown", ""
    name = re.search(r"^model name\s*:\s*(.*)$", txt, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", txt, re.M)
    fl = set(flags.group(1).split()) if flags else set()
    shown = [f for f in ["sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                         "amx_int8"] if f in fl]
    ncpu = len(re.findall(r"^processor\s*:", txt, re.M))
    return (name.group(1) if name else "unknown"), f"{ncpu} logical CPUs; flags: {' '.join(shown)}"


def versions():
    import onnxruntime
    import onnx
    v = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
         "python": platform.python_version()}
    lock = os.path.join(TRACT_DIR, "Cargo.lock")
    if os.path.exists(lock):
        m = re.search(r'name = "tract-onnx"\nversion = "([^"]+)"', open(lock).read())
        if m:
            v["tract-onnx"] = m.group(1)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        v["qc"] = commit + (" (with uncommitted changes in the work tree)" if dirty else "")
    except OSError:
        v["qc"] = "unknown"
    try:
        v["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True,
                                    text=True).stdout.strip().removeprefix("rustc ")
    except OSError:
        pass
    return v


def fmt(x):
    if x is None:
        return "—"
    if isinstance(x, str):
        return "error: " + x
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters-small", type=int, default=200)
    ap.add_argument("--iters-large", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up runs (default: iters/10, at least 3)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds of qc int8 / ORT fp32 / ORT int8 (N/rounds runs each)")
    ap.add_argument("--models", default="")
    ap.add_argument("--kernels", default="auto", choices=["auto", "cranelift"])
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()

    names = [n for n in args.models.split(",") if n] or list(gen_models.MODELS)
    missing = [n for n in names if not all(os.path.exists(os.path.join(MODELS_DIR, f"{n}_{k}.onnx"))
                                           for k in ("fp32", "int8"))]
    if missing:
        print(f"generating {', '.join(missing)} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "gen_models.py"), "--only",
                        ",".join(missing)], check=True)

    notes = build(args)
    have_tract = os.path.exists(TRACT) and not any(n.startswith("tract-runner build failed") for n in notes)
    if not have_tract and not any("tract" in n for n in notes):
        notes.append("tract-runner binary missing, tract skipped")
    for n in notes:
        print("note:", n, flush=True)

    rows, comp = [], []
    for name in names:
        iters = args.iters_large if name in LARGE else args.iters_small
        warmup = args.warmup if args.warmup is not None else max(3, iters // 10)
        f32 = os.path.join(MODELS_DIR, f"{name}_fp32.onnx")
        i8 = os.path.join(MODELS_DIR, f"{name}_int8.onnx")
        print(f"== {name}: iters {iters}, warmup {warmup}", flush=True)
        r = {"name": name, "iters": iters, "warmup": warmup}
        ci8, cf32 = qc_compile(i8, args.kernels), qc_compile(f32, args.kernels)
        # The three runners of the ratio in interleaved rounds (best round median each).
        rounds = max(1, args.rounds)
        per = max(5, iters // rounds)
        s_f32, s_i8 = ort_session(f32), ort_session(i8)
        best = best_of_rounds({
            "qc_i8": lambda n, w: qc_bench(i8, n, w, args.kernels),
            "ort_f32": lambda n, w: ort_bench(s_f32, n, w),
            "ort_i8": lambda n, w: ort_bench(s_i8, n, w),
        }, rounds, per, warmup)
        r["rounds"], r["per_round"] = rounds, per
        r["qc_i8"], r["qc_i8_kv"] = best["qc_i8"]
        print(f"   qc int8   {fmt(r['qc_i8'] if r['qc_i8'] is not None else r['qc_i8_kv'])}", flush=True)
        r["ort_f32"], e1 = best["ort_f32"]
        print(f"   ORT fp32  {fmt(r['ort_f32'] if r['ort_f32'] is not None else e1)}", flush=True)
        r["ort_i8"], e2 = best["ort_i8"]
        print(f"   ORT int8  {fmt(r['ort_i8'] if r['ort_i8'] is not None else e2)}", flush=True)
        r["ort_f32_e"], r["ort_i8_e"] = e1, e2
        r["qc_f32"], r["qc_f32_kv"] = qc_bench(f32, iters, warmup, args.kernels)
        print(f"   qc fp32   {fmt(r['qc_f32'] if r['qc_f32'] is not None else r['qc_f32_kv'])}", flush=True)
        if have_tract:
            r["tract"], r["tract_kv"] = tract_bench(f32, iters, warmup)
            print(f"   tract fp32 {fmt(r['tract'] if r['tract'] is not None else r['tract_kv'])}", flush=True)
        else:
            r["tract"], r["tract_kv"] = None, "skipped (no tract-runner build)"
        ort_best = min([x for x in (r["ort_f32"], r["ort_i8"]) if x is not None], default=None)
        if r["qc_i8"] is not None and ort_best and r["qc_i8"] > ort_best and qc_has_profile():
            r["profile"] = qc_profile(i8, args.kernels)
        rows.append(r)
        comp.append((name, ci8, cf32, r))

    write_report(args, names, rows, comp, notes)


def cell(v, err):
    if v is None and isinstance(err, str) and err.startswith("skipped"):
        return err
    return fmt(v) if v is not None else fmt(err if isinstance(err, str) else "failed")


def write_report(args, names, rows, comp, notes):
    cpu, cpuextra = cpu_model()
    v = versions()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # The command as run, less `--out` (where the report goes does not change it).
    shown, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            shown.append(a)
    cmd = " ".join(["python3 bench/run.py"] + [shlex.quote(a) for a in shown])
    L = []
    L.append("# Benchmarks\n")
    L.append("Single-threaded inference latency, median in milliseconds (lower is better). "
             "Generated by `bench/run.py`; the models come from `bench/gen_models.py` "
             "(seeded random weights, MLPerf-Tiny-shaped plus MobileNetV2 and ResNet-18 at 224x224; "
             "int8 = QDQ from onnxruntime `quantize_static`, per-channel i8 weights, u8 activations).\n")
    L.append(f"- Date: {now}")
    L.append(f"- Machine: {cpu} ({cpuextra})")
    L.append("- **The machine is shared** (other work runs on its 2 cores), so absolute numbers are "
             "noisy; the interleaved rounds below make the ratios more trustworthy than absolute times.")
    L.append(f"- Command: `{cmd}`")
    L.append("- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    L.append(f"- qc kernels: `--kernels {args.kernels}`")
    L.append(f"- Timing: qc int8, ORT fp32 and ORT int8 (the three of the ratio) run in {args.rounds} "
             "interleaved rounds per model, each round the same warm-up then N/rounds timed runs (at "
             "least 5); each reports the lowest of its round medians (noise from other work on the "
             "machine only ever slows a round). qc fp32 and tract run once, N timed runs, median. "
             "qc and tract time inside their own process (`qc bench`, `bench/tract-runner`); "
             "onnxruntime is timed around `InferenceSession.run` from Python (intra/inter-op threads 1, "
             "sequential execution, default graph optimizations), which adds a few microseconds of call "
             "overhead that only matters for the sub-0.1 ms models.")
    for n in notes:
        L.append(f"- Note: {n}")
    L.append("")
    L.append("| model | input | N | qc-jit int8 | qc-jit fp32 | ORT fp32 | ORT int8 | tract fp32 | "
             "qc int8 / min(ORT fp32, ORT int8) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = gen_models.MODELS[r["name"]]()
        shape = "x".join(str(d) for d in gen_models.input_shape(m))
        ort_best = min([x for x in (r["ort_f32"], r["ort_i8"]) if x is not None], default=None)
        ratio = (f"**{r['qc_i8'] / ort_best:.2f}**" if r["qc_i8"] is not None and ort_best else "—")
        L.append(f"| {r['name']} | {shape} | {r['iters']} | {cell(r['qc_i8'], r['qc_i8_kv'])} | "
                 f"{cell(r['qc_f32'], r['qc_f32_kv'])} | {cell(r['ort_f32'], r['ort_f32_e'])} | "
                 f"{cell(r['ort_i8'], r['ort_i8_e'])} | {cell(r['tract'], r['tract_kv'])} | {ratio} |")
    L.append("")
    L.append("A ratio below 1 means qc's int8 JIT beats the faster of onnxruntime's two paths "
             "(the issue-4 target is ≤ 1 on every model).\n")
    L.append("## qc: compile time, code size, memory, throughput\n")
    L.append("From `qc compile MODEL --target jit` and `qc bench` (GMAC/s = MACs / median; peak = the "
             "machine's 128-bit int8 MAC peak as `qc bench` estimates it).\n")
    L.append("| model | variant | compile ms | code bytes | const bytes | arena bytes | MACs | GMAC/s | "
             "fraction of 128-bit int8 peak |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name, ci8, cf32, r in comp:
        for var, c, kv in (("int8", ci8, r["qc_i8_kv"]), ("fp32", cf32, r["qc_f32_kv"])):
            if "error" in c:
                L.append(f"| {name} | {var} | error: {c['error']} | | | | | | |")
                continue
            kvd = kv if isinstance(kv, dict) else {}
            L.append(f"| {name} | {var} | {c.get('compile_ms', '?')} | {c.get('code_bytes', '?')} | "
                     f"{c.get('const_bytes', '?')} | {c.get('arena_bytes', '?')} | {kvd.get('macs', '—')} | "
                     f"{kvd.get('gmac_per_s', '—')} | {kvd.get('peak_fraction', '—')} |")
    L.append("")
    profiled = [r for r in rows if r.get("profile")]
    L.append("## Where qc int8 is slower: per-op profile\n")
    if profiled:
        L.append("Head of `qc bench MODEL_int8.onnx --profile` (5 runs) for each model where qc int8 is "
                 "slower than the faster onnxruntime path.\n")
        for r in profiled:
            L.append(f"### {r['name']}\n")
            L.append("```")
            L.append(r["profile"])
            L.append("```\n")
    else:
        L.append("None: qc int8 is faster than the faster onnxruntime path on every model.\n"
                 if qc_has_profile() else
                 "No profile: `qc bench` of this build has no `--profile` option.\n")
    L.append("## Models\n")
    for name in names:
        doc = (gen_models.MODELS[name].__doc__ or "").split("\n")
        L.append(f"- `{name}`: " + " ".join(s.strip() for s in doc if s.strip()))
    L.append("- The anomaly-detection autoencoder keeps BatchNormalization after each Gemm in both files: "
             "onnxruntime's `quant_pre_process` folds BN into Conv but not into Gemm, so its QDQ model "
             "carries float BatchNormalization nodes whose input, scale and bias come through DequantizeLinear "
             "(quantize_static quantizes the BN scale and bias as weights).")
    L.append("")
    L.append("Reproduce: `" + cmd + "` (it runs `bench/gen_models.py` first when `bench/models/` lacks a "
             "model; that directory is not committed).")
    # Sections other scripts measure (the C backend on the emulated Cortex-M4,
    # post-training quantization accuracy), kept in their own files and appended
    # here with their headings one level down.
    for extra in ("C.md", "PTQ.md"):
        path = os.path.join(ROOT, "bench", extra)
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            L.append("")
            L.extend(("#" + line) if line.startswith("#") else line for line in text.split("\n"))
            L.append("")
    with open(args.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("\n".join(L))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
