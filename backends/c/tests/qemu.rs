//! The emitted C on bare metal: cross-compiled for a Cortex-M4 with the startup file
//! and linker script of `backends/c/baremetal/`, run under
//! `qemu-system-arm -M mps2-an386 -semihosting`, outputs compared with `qc_interp::run`
//! under the same contract.
//!
//! **Invariants.**
//! - Golden values are independent of the code under test: hand computation for the
//!   tool-chain check, the reference interpreter for models. The quantized entry point
//!   is checked against the interpreter run on the same graph with its boundary
//!   `quantize`/`dequantize` nodes cut off (so the interpreter computes exactly the
//!   quantized buffers `NAME_run_quantized` exchanges).
//! - Comparisons are bit for bit (the little-endian bytes of every element).
//! - Missing tools make the tests fail with the install line, never skip silently
//!   (CI installs them); only `QC_SKIP_QEMU=1` skips.
//! - Every qemu run is killed after [`QEMU_TIMEOUT`]; a fault in the guest spins in the
//!   startup file's default handler and shows up as that timeout.
//! - The image built around `NAME_run_quantized` for a fully quantized model contains
//!   no soft-float routine (`__aeabi_f*`, `__aeabi_d*`, ...): the driver prints with
//!   newlib's integer-only `iprintf`, and `--gc-sections` keeps only what the entry
//!   point reaches.
//!
//! `cargo test -p qc-cgen --test qemu -- --ignored --nocapture measure` runs
//! `baremetal/measure.sh` (code size, arena, stack, instruction count) on the
//! benchmark models instead.

#![allow(clippy::panic)] // test code: a panic is how a test fails

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qc_cgen::{CgenOptions, Contract, Cpu};
use qc_ir::{Graph, NodeId, Op, Tensor, TensorData, ValueDef};

const QEMU_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL: &str =
    "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm";

/// Soft-float ABI and no FPU: a quantized model must run on an M4 without one, and
/// newlib's matching multilib (thumb/v7e-m/nofp) is then linked.
const CPU_FLAGS: &[&str] = &["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"];

fn baremetal() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("baremetal")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory for one build.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("qemu")
        .join(name);
    // A leftover from an earlier run is only removed to start clean.
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// False when the tests are to be skipped (`QC_SKIP_QEMU=1`); fails when a tool is
/// missing.
fn tools_present() -> bool {
    if std::env::var("QC_SKIP_QEMU").is_ok_and(|v| v == "1") {
        eprintln!("QC_SKIP_QEMU=1: bare-metal tests skipped");
        return false;
    }
    for tool in ["arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{tool} is not installed: run `{INSTALL}` (or set QC_SKIP_QEMU=1 to skip these tests)"
        );
    }
    // gcc without newlib prints the bare name back instead of a path.
    let rdimon = Command::new("arm-none-eabi-gcc")
        .args(CPU_FLAGS)
        .arg("-print-file-name=librdimon.a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        Path::new(&rdimon).is_absolute(),
        "newlib's librdimon.a is not installed: run `{INSTALL}` (or set QC_SKIP_QEMU=1 to skip these tests)"
    );
    true
}

fn run_tool(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Compile the model source alone with the warnings the emitted C must not have.
fn compile_model(c: &Path, obj: &Path) -> Result<(), String> {
    run_tool(
        Command::new("arm-none-eabi-gcc")
            .args(CPU_FLAGS)
            .args([
                "-O2",
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ])
            .args(["-ffunction-sections", "-fdata-sections", "-c"])
            .arg(c)
            .arg("-o")
            .arg(obj),
    )
    .map(drop)
}

/// Link `main.c` (and any objects) with the startup file and linker script into `elf`.
fn link(dir: &Path, main_c: &Path, objs: &[&Path], elf: &Path) -> Result<(), String> {
    let bm = baremetal();
    run_tool(
        Command::new("arm-none-eabi-gcc")
            .args(CPU_FLAGS)
            .args([
                "-O2",
                "-std=c99",
                "-Wall",
                "-ffunction-sections",
                "-fdata-sections",
            ])
            // Integer-only printf: the float check is about the model, not stdio.
            .arg("-Dprintf=iprintf")
            .arg("-I")
            .arg(dir)
            .args(["--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections"])
            .arg("-T")
            .arg(bm.join("mps2_an386.ld"))
            .arg(bm.join("startup.c"))
            .arg(main_c)
            .args(objs)
            .arg("-o")
            .arg(elf),
    )
    .map(drop)
}

struct QemuRun {
    status: i32,
    stdout: String,
}

fn run_qemu(elf: &Path) -> Result<QemuRun, String> {
    let (out_path, err_path) = (elf.with_extension("stdout"), elf.with_extension("stderr"));
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = Command::new("qemu-system-arm")
        .args(["-M", "mps2-an386", "-nographic", "-semihosting", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("qemu-system-arm: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{}: qemu still running after {QEMU_TIMEOUT:?} (killed); a guest fault spins in Default_Handler",
                elf.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = std::fs::read_to_string(&out_path).map_err(|e| e.to_string())?;
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let status = status
        .code()
        .ok_or_else(|| format!("qemu killed by a signal; stderr: {stderr}"))?;
    Ok(QemuRun { status, stdout })
}

/// gcc's soft-float helpers, by their run-time ABI names and their libgcc names.
fn is_float_routine(sym: &str) -> bool {
    if let Some(rest) = sym.strip_prefix("__aeabi_") {
        return ["f", "d", "cf", "cd"].iter().any(|p| rest.starts_with(p))
            || rest.ends_with("2f")
            || rest.ends_with("2d");
    }
    let Some(rest) = sym.strip_prefix("__") else {
        return false;
    };
    const STEMS: [&str; 17] = [
        "add", "sub", "mul", "div", "neg", "cmp", "eq", "ne", "lt", "le", "gt", "ge", "unord",
        "float", "fix", "extend", "trunc",
    ];
    STEMS.iter().any(|s| rest.starts_with(s)) && (rest.contains("sf") || rest.contains("df"))
}

fn float_routines(elf: &Path) -> Result<Vec<String>, String> {
    let syms = run_tool(Command::new("arm-none-eabi-nm").arg(elf))?;
    Ok(syms
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| is_float_routine(s))
        .map(str::to_string)
        .collect())
}

/// A 4-element int8 dot product, printed one decimal per line: proves compiler,
/// startup, linker script, semihosting output and exit status end to end.
#[test]
fn toolchain_runs_int8_dot_product() {
    if !tools_present() {
        return;
    }
    let a: [i8; 4] = [-128, 127, 3, -7];
    let b: [i8; 4] = [127, -128, 5, 9];
    // Hand computation: -16256 - 16256 + 15 - 63.
    let expected: i32 = -32560;
    assert_eq!(
        a.iter()
            .zip(&b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum::<i32>(),
        expected
    );

    let dir = scratch("dot");
    let main_c = dir.join("main.c");
    std::fs::write(
        &main_c,
        "#include <stdint.h>\n#include <stdio.h>\n\
         static const int8_t a[4] = {-128, 127, 3, -7};\n\
         static const int8_t b[4] = {127, -128, 5, 9};\n\
         int main(void) {\n\
         \x20   int32_t acc = 0;\n\
         \x20   for (int i = 0; i < 4; i++) acc += (int32_t)a[i] * b[i];\n\
         \x20   printf(\"%ld\\n\", (long)acc);\n\
         \x20   return 7;\n}\n",
    )
    .expect("write main.c");
    let elf = dir.join("app.elf");
    link(&dir, &main_c, &[], &elf).unwrap_or_else(|e| panic!("{e}"));
    let run = run_qemu(&elf).unwrap_or_else(|e| panic!("{e}"));
    // main's return value reaches the host: a failing driver is seen as failing.
    assert_eq!(run.status, 7, "stdout: {}", run.stdout);
    let got: Vec<i64> = run
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("decimal line"))
        .collect();
    assert_eq!(got, vec![i64::from(expected)]);
    assert_eq!(float_routines(&elf).expect("nm"), Vec::<String>::new());
}

/// The float check can fail: a soft-float multiply links `__aeabi_fmul`.
#[test]
fn float_check_sees_soft_float() {
    if !tools_present() {
        return;
    }
    let dir = scratch("float");
    let main_c = dir.join("main.c");
    std::fs::write(
        &main_c,
        "#include <stdio.h>\nvolatile float x = 1.5f, y = 2.25f;\n\
         int main(void) { printf(\"%d\\n\", (int)(x * y)); return 0; }\n",
    )
    .expect("write main.c");
    let elf = dir.join("app.elf");
    link(&dir, &main_c, &[], &elf).unwrap_or_else(|e| panic!("{e}"));
    let f = float_routines(&elf).expect("nm");
    assert!(f.iter().any(|s| s == "__aeabi_fmul"), "found {f:?}");
    assert!(!is_float_routine("__aeabi_idiv") && !is_float_routine("__aeabi_uldivmod"));
    assert!(is_float_routine("__aeabi_i2f") && is_float_routine("__aeabi_cdcmple"));
}

/// The model file: the fixture, or for local runs before it is committed the
/// benchmark model `bench/gen_models.py` writes.
fn model_path(stem: &str) -> PathBuf {
    let ws = workspace();
    let fixture = ws.join("fixtures/models").join(format!("{stem}.onnx"));
    if fixture.exists() {
        return fixture;
    }
    let bench = ws.join("bench/models").join(format!("{stem}.onnx"));
    assert!(
        bench.exists(),
        "{} is missing (fixtures/gen/cgen_models.py makes it)",
        fixture.display()
    );
    bench
}

fn load_optimized(path: &Path) -> Graph {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut g = qc_onnx::import(&bytes, &Default::default(), &qc_onnx::NoExternalData)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = qc_passes::Pipeline::parse("default").expect("default pipeline");
    let mut cx = qc_passes::PassCx::new(qc_passes::PassOptions::default());
    p.run(&mut g, &mut cx)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    g
}

/// `g` without its boundary conversions: inputs are the results of the `quantize`
/// nodes the inputs feed, outputs the operands of the `dequantize` nodes that make
/// the outputs. `None` if the boundaries are not of that form.
fn quantized_core(g: &Graph) -> Option<Graph> {
    let mut h = g.clone();
    let mut cut: HashSet<NodeId> = HashSet::new();
    for i in 0..h.inputs.len() {
        let v = h.inputs[i].value;
        let (id, n) = g
            .iter_nodes()
            .find(|(_, n)| n.op == Op::Quantize && n.inputs.first() == Some(&v))?;
        cut.insert(id);
        h.inputs[i].value = *n.outputs.first()?;
    }
    for o in &mut h.outputs {
        let ValueDef::Node { node, .. } = g.value(o.value).def else {
            return None;
        };
        let n = g.node(node);
        if n.op != Op::Dequantize {
            return None;
        }
        cut.insert(node);
        o.value = *n.inputs.first()?;
    }
    let nodes = std::mem::take(&mut h.nodes);
    for (i, n) in nodes.into_iter().enumerate() {
        if cut.contains(&NodeId::from_index(i)) {
            continue;
        }
        let id = NodeId::from_index(h.nodes.len());
        for (slot, &v) in n.outputs.iter().enumerate() {
            h.value_mut(v).def = ValueDef::Node {
                node: id,
                slot: slot as u32,
            };
        }
        h.nodes.push(n);
    }
    for i in 0..h.inputs.len() {
        let v = h.inputs[i].value;
        h.value_mut(v).def = ValueDef::Input(i as u32);
    }
    h.compact();
    Some(h)
}

/// Deterministic pseudo-random numbers (64-bit LCG, high bits).
struct Lcg(u64);
impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
    fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// Inputs of `core` (the quantized graph): stored integers over the dtype's full
/// range, or within `spread` of the zero point.
fn quantized_inputs(core: &Graph, rng: &mut Lcg, spread: Option<i64>) -> Vec<Tensor> {
    core.inputs
        .iter()
        .map(|p| {
            let ty = core.ty(p.value);
            let n = ty.numel().expect("static shape");
            let qp = ty.quant.clone().expect("quantized input type");
            let (lo, hi) = match spread {
                None => (qp.storage.min(), qp.storage.max()),
                Some(s) => {
                    let zp = i64::from(qp.zero_point(0));
                    (
                        (zp - s).max(qp.storage.min()),
                        (zp + s).min(qp.storage.max()),
                    )
                }
            };
            let mut draw = || lo + i64::from(rng.next_u32()) % (hi - lo + 1);
            let data = match ty.dtype {
                qc_ir::DType::I8 => TensorData::I8((0..n).map(|_| draw() as i8).collect()),
                qc_ir::DType::U8 => TensorData::U8((0..n).map(|_| draw() as u8).collect()),
                d => panic!("quantized input of dtype {d}"),
            };
            Tensor::new(ty.shape.clone(), data).expect("input tensor")
        })
        .collect()
}

/// Float inputs of `g`, spread over the range the input's quantization covers and a
/// tenth beyond it on both sides (so saturation is exercised).
fn float_inputs(g: &Graph, core: &Graph, rng: &mut Lcg) -> Vec<Tensor> {
    g.inputs
        .iter()
        .zip(&core.inputs)
        .map(|(p, q)| {
            let ty = g.ty(p.value);
            let qp = core
                .ty(q.value)
                .quant
                .clone()
                .expect("quantized input type");
            let (s, zp) = (qp.scale(0), qp.zero_point(0) as f32);
            let lo = s * (qp.storage.min() as f32 - zp);
            let hi = s * (qp.storage.max() as f32 - zp);
            let (lo, hi) = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo));
            let n = ty.numel().expect("static shape");
            let v = (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect();
            Tensor::from_f32(ty.shape.clone(), v).expect("input tensor")
        })
        .collect()
}

fn assert_bit_exact(what: &str, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.dtype(), w.dtype(), "{what}: output {k} dtype");
        assert_eq!(g.dims(), w.dims(), "{what}: output {k} shape");
        let (gb, wb) = (g.data().to_le_bytes(), w.data().to_le_bytes());
        if gb != wb {
            let (gv, wv) = (g.to_f64_vec(), w.to_f64_vec());
            let bad: Vec<usize> = (0..gv.len())
                .filter(|&i| gv[i].to_bits() != wv[i].to_bits())
                .collect();
            panic!(
                "{what}: output {k}: {} of {} elements differ from qc-interp; first at {}: got {}, want {}",
                bad.len(),
                gv.len(),
                bad[0],
                gv[bad[0]],
                wv[bad[0]]
            );
        }
    }
}

/// The comparison can fail: one flipped bit in one element is reported.
#[test]
fn comparison_sees_one_bit() {
    let want = Tensor::new(vec![1, 3], TensorData::U8(vec![1, 2, 3])).expect("tensor");
    let got = Tensor::new(vec![1, 3], TensorData::U8(vec![1, 2, 2])).expect("tensor");
    assert_bit_exact(
        "same",
        std::slice::from_ref(&want),
        std::slice::from_ref(&want),
    );
    let r = std::panic::catch_unwind(|| assert_bit_exact("differ", &[got], &[want]));
    assert!(r.is_err());
    let neg = Tensor::from_f32(vec![1], vec![-0.0]).expect("tensor");
    let pos = Tensor::from_f32(vec![1], vec![0.0]).expect("tensor");
    let r = std::panic::catch_unwind(|| assert_bit_exact("signed zero", &[neg], &[pos]));
    assert!(r.is_err(), "-0.0 and 0.0 differ in their bits");
}

/// Emit, cross-compile, run under qemu and compare with the interpreter, for both
/// entry points and both kernel sets, under `contract` (the quantized entry point
/// links no float routine except under the `float` contract).
fn check_model(stem: &str, contract: Contract) {
    if !tools_present() {
        return;
    }
    let t0 = Instant::now();
    let path = model_path(stem);
    let g = load_optimized(&path);
    let core = quantized_core(&g)
        .unwrap_or_else(|| panic!("{stem}: boundaries are not quantize/dequantize"));
    let iopts = qc_interp::Options { contract };
    let mut rng = Lcg(0x5eed_0000 ^ stem.len() as u64);
    // Two quantized input sets (the full integer range, and a narrow band around the
    // zero point as real activations look) and one float set.
    let mut cases = Vec::new();
    for (tag, spread) in [("q-full", None), ("q-narrow", Some(24))] {
        let q_in = quantized_inputs(&core, &mut rng, spread);
        let want = qc_interp::run(&core, &q_in, &iopts).unwrap_or_else(|e| panic!("{stem}: {e}"));
        cases.push((tag, true, q_in, want));
    }
    let f_in = float_inputs(&g, &core, &mut rng);
    let f_want = qc_interp::run(&g, &f_in, &iopts).unwrap_or_else(|e| panic!("{stem}: {e}"));
    cases.push(("f", false, f_in, f_want));

    for cpu in [Cpu::Generic, Cpu::CortexM4] {
        let name = qc_cgen::c_identifier(stem);
        let opts = CgenOptions {
            name: name.clone(),
            contract,
            cpu,
            external_arena: false,
        };
        let src = qc_cgen::emit(&g, &opts).unwrap_or_else(|e| panic!("{stem} {cpu:?}: {e}"));
        assert!(src.has_run_quantized, "{stem}: no {name}_run_quantized");
        let dir = scratch(&format!("{stem}-{cpu:?}-{contract}"));
        std::fs::write(dir.join(format!("{name}.h")), &src.header).expect("write header");
        let model_c = dir.join(format!("{name}.c"));
        std::fs::write(&model_c, &src.source).expect("write source");
        let obj = dir.join(format!("{name}.o"));
        compile_model(&model_c, &obj).unwrap_or_else(|e| panic!("{stem} {cpu:?}: {e}"));

        for (tag, quantized, inputs, want) in &cases {
            let quantized = *quantized;
            let entry = if quantized { "run_quantized" } else { "run" };
            let what = format!("{stem} {cpu:?} {contract} {name}_{entry} inputs {tag}");
            let main = qc_cgen::test_main(&g, &src, inputs, quantized)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let main_c = dir.join(format!("main-{tag}.c"));
            std::fs::write(&main_c, main).expect("write main");
            let elf = dir.join(format!("app-{tag}.elf"));
            link(&dir, &main_c, &[&obj], &elf).unwrap_or_else(|e| panic!("{what}: {e}"));
            let floats = float_routines(&elf).expect("nm");
            if quantized && contract != Contract::Float {
                assert!(floats.is_empty(), "{what}: links float routines {floats:?}");
            } else if !quantized && !floats.is_empty() {
                eprintln!("{what}: float entry point links {floats:?}");
            }
            let run = run_qemu(&elf).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                run.status, 0,
                "{what}: exit status; stdout:\n{}",
                run.stdout
            );
            let got = qc_cgen::parse_test_output(&g, &src, &run.stdout, quantized)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_bit_exact(&what, &got, want);
        }
    }
    eprintln!("{stem}: bare-metal checks took {:?}", t0.elapsed());
}

#[test]
fn kws_dscnn_int8_matches_interp_on_cortex_m4() {
    check_model("kws_dscnn_int8", Contract::Fixed);
}

#[test]
fn ic_resnet8_int8_matches_interp_on_cortex_m4() {
    check_model("ic_resnet8_int8", Contract::Fixed);
}

/// The `float` contract on the Cortex-M4, whose FPU is single precision: the fused
/// add's `double` arithmetic runs in the compiler's software routines; fused add,
/// softmax and global average against the interpreter.
#[test]
fn ic_resnet8_int8_float_contract_on_cortex_m4() {
    check_model("ic_resnet8_int8", Contract::Float);
}

/// Not a check: runs `baremetal/measure.sh` on the benchmark models (both kernel
/// sets) and prints its report. `QC_MEASURE_MODELS=a,b` picks other model stems.
#[test]
#[ignore = "measurement, run by hand"]
fn measure() {
    if !tools_present() {
        return;
    }
    let stems = std::env::var("QC_MEASURE_MODELS")
        .unwrap_or_else(|_| "kws_dscnn_int8,ic_resnet8_int8,ad_fcae_int8,vww_mbv1_int8".into());
    let mut failed = Vec::new();
    for stem in stems.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let ws = workspace();
        let path = [ws.join("fixtures/models"), ws.join("bench/models")]
            .iter()
            .map(|d| d.join(format!("{stem}.onnx")))
            .find(|p| p.exists());
        let Some(path) = path else {
            eprintln!("{stem}: no model file");
            continue;
        };
        let g = load_optimized(&path);
        let Some(core) = quantized_core(&g) else {
            eprintln!("{stem}: boundaries are not quantize/dequantize");
            continue;
        };
        let inputs = quantized_inputs(&core, &mut Lcg(1), Some(24));
        for cpu in [Cpu::Generic, Cpu::CortexM4] {
            let name = qc_cgen::c_identifier(stem);
            let opts = CgenOptions {
                name: name.clone(),
                contract: Contract::Fixed,
                cpu,
                external_arena: false,
            };
            let src = match qc_cgen::emit(&g, &opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{stem} {cpu:?}: emit: {e}");
                    failed.push(format!("{stem} {cpu:?}"));
                    continue;
                }
            };
            let dir = scratch(&format!("measure-{stem}-{cpu:?}"));
            std::fs::write(dir.join(format!("{name}.h")), &src.header).expect("write header");
            std::fs::write(dir.join(format!("{name}.c")), &src.source).expect("write source");
            let main = qc_cgen::test_main(&g, &src, &inputs, true).expect("test_main");
            std::fs::write(dir.join("main.c"), main).expect("write main");
            let out = Command::new("sh")
                .arg(baremetal().join("measure.sh"))
                .arg(&dir)
                .arg(&name)
                .output()
                .expect("run measure.sh");
            println!(
                "{stem} cpu={cpu:?} arena_bytes={} arena_lower_bound={}\n{}{}",
                src.arena_bytes,
                src.arena_lower_bound,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.status.success() {
                failed.push(format!("{stem} {cpu:?}"));
            }
        }
    }
    assert!(failed.is_empty(), "measurement failed for {failed:?}");
}
