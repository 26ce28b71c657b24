//! The `qc` command-line tool.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use qc::ir::{Graph, Tensor};
use qc::onnx::ImportOptions;

#[derive(Parser)]
#[command(
    name = "qc",
    version,
    about = "A compiler for quantized neural networks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a model's IR and a summary (op counts, parameter bytes, MACs, activation bytes).
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// Print the IR after each pass, with the pass's statistics.
        #[arg(long)]
        print_after_all: bool,
    },
    /// Compile a model and report compile time and code size.
    Compile {
        /// The ONNX model.
        model: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// What to compile for.
        #[arg(long, value_enum, default_value_t = CompileTarget::Jit)]
        target: CompileTarget,
        #[command(flatten)]
        codegen: CodegenArgs,
    },
    /// Time the JIT-compiled model: median latency, MAC/s, fraction of the 128-bit int8 MAC peak.
    Bench {
        /// The ONNX model.
        model: PathBuf,
        /// NAME=FILE.npy inputs (default: seeded random inputs).
        #[arg(long = "input", value_name = "[NAME=]FILE")]
        inputs: Vec<String>,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        opt: OptArgs,
        #[command(flatten)]
        codegen: CodegenArgs,
        /// Timed runs.
        #[arg(long, default_value_t = 50)]
        iters: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Also time every node (median over the timed runs of a separately compiled,
        /// instrumented model) and print a per-op and per-node table.
        #[arg(long)]
        profile: bool,
    },
    /// Run a model on .npy inputs and write each output as DIR/<name>.npy.
    Run {
        /// The ONNX model.
        model: PathBuf,
        /// NAME=FILE.npy for each input, or FILE.npy for a single-input model.
        #[arg(long = "input", value_name = "[NAME=]FILE")]
        inputs: Vec<String>,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        opt: OptArgs,
        /// Where to execute the model.
        #[arg(long, value_enum, default_value_t = Target::Jit)]
        target: Target,
        #[command(flatten)]
        codegen: CodegenArgs,
        /// Directory the outputs are written to (created if missing).
        #[arg(long, value_name = "DIR")]
        output_dir: PathBuf,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// Bind an input's dims: NAME=D,D,... (repeatable). Required for every dynamic dim.
    #[arg(long = "input-shape", value_name = "NAME=D,D,..")]
    input_shapes: Vec<String>,
    /// Freeze a graph input to the contents of a .npy file: NAME=FILE.npy (repeatable).
    #[arg(long = "const-input", value_name = "NAME=FILE")]
    const_inputs: Vec<String>,
}

#[derive(Args)]
struct OptArgs {
    /// The pass pipeline: `default`, `none`, or a comma-separated list of pass names.
    #[arg(long, value_name = "LIST", default_value = "default")]
    passes: String,
    /// Skip optimization (same as --passes none): run or print the graph as imported.
    #[arg(long, conflicts_with = "passes")]
    no_opt: bool,
    /// Run the IR verifier after every pass (always on in debug builds).
    #[arg(long)]
    verify: bool,
}

impl OptArgs {
    fn pipeline(&self) -> &str {
        if self.no_opt {
            "none"
        } else {
            &self.passes
        }
    }

    fn options(&self) -> qc::passes::PassOptions {
        qc::passes::PassOptions {
            verify: self.verify,
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// Machine code for this CPU through the Cranelift JIT.
    Jit,
    /// The reference interpreter.
    Interp,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompileTarget {
    /// Machine code for this CPU, in process.
    Jit,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kernels {
    /// The best available for this CPU.
    Auto,
    /// Force the pure-Cranelift path.
    Cranelift,
}

#[derive(Args)]
struct CodegenArgs {
    /// Rounding contract of requantization: float, fixed or fixed-single.
    #[arg(long, default_value = "float")]
    requant: qc::qmath::Contract,
    /// Kernels of the JIT's innermost GEMM/conv tiles.
    #[arg(long, value_enum, default_value_t = Kernels::Auto)]
    kernels: Kernels,
}

impl CodegenArgs {
    fn jit(&self) -> qc::jit::JitOptions {
        let kernels = match self.kernels {
            Kernels::Auto => qc::jit::KernelSet::Auto,
            Kernels::Cranelift => qc::jit::KernelSet::Cranelift,
        };
        qc::jit::JitOptions {
            contract: self.requant,
            kernels,
            profile: false,
        }
    }
}

impl ImportArgs {
    fn options(&self) -> Result<ImportOptions> {
        let mut opts = ImportOptions::default();
        for s in &self.input_shapes {
            let (name, dims) = qc::parse_shape_binding(s)?;
            opts.input_shapes.insert(name, dims);
        }
        for s in &self.const_inputs {
            let (name, file) = s
                .split_once('=')
                .with_context(|| format!("--const-input '{s}' is not NAME=FILE.npy"))?;
            opts.const_inputs
                .insert(name.to_string(), qc::npy::read_npy(Path::new(file))?);
        }
        Ok(opts)
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, joined by ": ". A cause whose text the
/// message already contains (errors that print their source) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg.replace('\n', " ")
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Inspect {
            model,
            import,
            opt,
            print_after_all,
        } => inspect(&model, &import.options()?, &opt, print_after_all),
        Cmd::Run {
            model,
            inputs,
            import,
            opt,
            target,
            codegen,
            output_dir,
        } => {
            let mut g = qc::load_onnx(&model, &import.options()?)?;
            qc::optimize(&model, &mut g, opt.pipeline(), opt.options(), |_, _| {})?;
            let tensors = bind_inputs(&g, &inputs)?;
            let outputs = match target {
                Target::Interp => {
                    let opts = qc::interp::Options {
                        contract: codegen.requant,
                    };
                    qc::run_interp(&model, &g, &tensors, &opts)?
                }
                Target::Jit => {
                    let jit = compile_jit(&model, &g, &codegen)?;
                    jit.run(&tensors).map_err(|e| jit_err(&model, e))?
                }
            };
            write_outputs(&g, &outputs, &output_dir)
        }
        Cmd::Compile {
            model,
            import,
            opt,
            target: CompileTarget::Jit,
            codegen,
        } => {
            let mut g = qc::load_onnx(&model, &import.options()?)?;
            qc::optimize(&model, &mut g, opt.pipeline(), opt.options(), |_, _| {})?;
            let jit = compile_jit(&model, &g, &codegen)?;
            let s = jit.stats();
            emit(&format!(
                "compile_ms: {:.3}\ncode_bytes: {}\nkernels: {}\nconst_bytes: {}\narena_bytes: {}\narena_lower_bound: {}\n",
                s.compile_time.as_secs_f64() * 1e3,
                s.code_bytes,
                s.kernels,
                s.const_bytes,
                s.arena_bytes,
                s.arena_lower_bound
            ))
        }
        Cmd::Bench {
            model,
            inputs,
            import,
            opt,
            codegen,
            iters,
            warmup,
            profile,
        } => {
            let mut g = qc::load_onnx(&model, &import.options()?)?;
            qc::optimize(&model, &mut g, opt.pipeline(), opt.options(), |_, _| {})?;
            let tensors = if inputs.is_empty() {
                random_inputs(&g)?
            } else {
                bind_inputs(&g, &inputs)?
            };
            let jit = compile_jit(&model, &g, &codegen)?;
            bench(&model, &g, &jit, &tensors, iters.max(1), warmup)?;
            if profile {
                let mut opts = codegen.jit();
                opts.profile = true;
                let jit = qc::jit::compile(&g, &opts).map_err(|e| jit_err(&model, e))?;
                print_profile(&model, &g, &jit, &tensors, iters.max(1), warmup)?;
            }
            Ok(())
        }
    }
}

fn jit_err(model: &Path, e: qc::jit::Error) -> anyhow::Error {
    qc::Error::Jit {
        path: model.to_path_buf(),
        source: e,
    }
    .into()
}

fn compile_jit(model: &Path, g: &Graph, codegen: &CodegenArgs) -> Result<qc::jit::CompiledModel> {
    qc::jit::compile(g, &codegen.jit()).map_err(|e| jit_err(model, e))
}

/// Seeded inputs: quantized inputs get every code, float inputs values in [-1, 1).
fn random_inputs(g: &Graph) -> Result<Vec<Tensor>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    g.inputs
        .iter()
        .map(|p| {
            let ty = g.ty(p.value);
            let n = ty.numel()?;
            let data = match ty.dtype {
                qc::ir::DType::F32 => qc::ir::TensorData::F32(
                    (0..n)
                        .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
                        .collect(),
                ),
                qc::ir::DType::U8 => qc::ir::TensorData::U8((0..n).map(|_| next() as u8).collect()),
                qc::ir::DType::I8 => qc::ir::TensorData::I8((0..n).map(|_| next() as i8).collect()),
                other => bail!(
                    "input '{}': give an --input file for element type {other}",
                    p.name
                ),
            };
            Ok(Tensor::new(ty.shape.clone(), data)?)
        })
        .collect()
}

/// The nominal 128-bit int8 MAC peak of one core: two 8-lane `pmaddwd` per cycle
/// (16 MACs/cycle) at the clock /proc/cpuinfo reports. `None` where it cannot be read.
fn nominal_int8_peak() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(16.0 * mhz * 1e6)
}

fn bench(
    model: &Path,
    g: &Graph,
    jit: &qc::jit::CompiledModel,
    inputs: &[Tensor],
    iters: usize,
    warmup: usize,
) -> Result<()> {
    use std::fmt::Write as _;
    for _ in 0..warmup {
        jit.run(inputs).map_err(|e| jit_err(model, e))?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = std::time::Instant::now();
        jit.run(inputs).map_err(|e| jit_err(model, e))?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let macs = qc::ir::stats::summarize(g).macs as f64;
    let mut out = format!(
        "median_ms: {:.4}\nmin_ms: {:.4}\niters: {iters}\nmacs: {macs}\ngmac_per_s: {:.3}\n",
        median * 1e3,
        times[0] * 1e3,
        macs / median / 1e9
    );
    if let Some(peak) = nominal_int8_peak() {
        let frac = macs / median / peak;
        let _ = write!(
            out,
            "int8_peak_gmac_per_s: {:.1}\npeak_fraction: {frac:.4}\n",
            peak / 1e9
        );
    }
    emit(&out)
}

/// Per-node medians over `iters` profiled runs, summed per op kind, worst first.
fn print_profile(
    model: &Path,
    g: &Graph,
    jit: &qc::jit::CompiledModel,
    inputs: &[Tensor],
    iters: usize,
    warmup: usize,
) -> Result<()> {
    use std::fmt::Write as _;
    for _ in 0..warmup {
        jit.run(inputs).map_err(|e| jit_err(model, e))?;
    }
    let mut per_node: Vec<Vec<f64>> = vec![Vec::with_capacity(iters); g.nodes.len()];
    let mut labels: Vec<(&'static str, String)> = vec![("", String::new()); g.nodes.len()];
    for _ in 0..iters {
        let (_, times) = jit.profile(inputs).map_err(|e| jit_err(model, e))?;
        for t in times {
            if let Some(v) = per_node.get_mut(t.node) {
                v.push(t.time.as_secs_f64());
                labels[t.node] = (t.op, t.name);
            }
        }
    }
    let median = |v: &mut Vec<f64>| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows: Vec<(usize, f64, u64)> = Vec::new();
    for (i, v) in per_node.iter_mut().enumerate() {
        let macs = g.nodes.get(i).map_or(0, |n| qc::ir::stats::node_macs(g, n));
        rows.push((i, median(v), macs));
    }
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let mut by_op: Vec<(&'static str, f64, u64, usize)> = Vec::new();
    for &(i, t, m) in &rows {
        let op = labels[i].0;
        match by_op.iter_mut().find(|e| e.0 == op) {
            Some(e) => {
                e.1 += t;
                e.2 += m;
                e.3 += 1;
            }
            None => by_op.push((op, t, m, 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = format!(
        "profile: sum of per-node medians {:.4} ms over {} nodes\n\nper op:\n{:<20} {:>6} {:>10} {:>7} {:>10}\n",
        total * 1e3,
        rows.len(),
        "op",
        "nodes",
        "ms",
        "share",
        "GMAC/s"
    );
    for (op, t, m, n) in &by_op {
        let _ = writeln!(
            out,
            "{op:<20} {n:>6} {:>10.4} {:>6.1}% {:>10}",
            t * 1e3,
            100.0 * t / total.max(1e-12),
            if *m > 0 && *t > 0.0 {
                format!("{:.2}", *m as f64 / t / 1e9)
            } else {
                "-".into()
            }
        );
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let _ = writeln!(
        out,
        "\nslowest nodes:\n{:>5} {:<20} {:<28} {:>10} {:>10}  type",
        "node", "op", "name", "ms", "GMAC/s"
    );
    for &(i, t, m) in rows.iter().take(25) {
        let ty = g
            .nodes
            .get(i)
            .and_then(|n| n.outputs.first())
            .map(|&v| format!("{}{}", g.ty(v).dtype, g.ty(v).shape))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{i:>5} {:<20} {:<28} {:>10.4} {:>10}  {ty}",
            labels[i].0,
            labels[i].1.chars().take(28).collect::<String>(),
            t * 1e3,
            if m > 0 && t > 0.0 {
                format!("{:.2}", m as f64 / t / 1e9)
            } else {
                "-".into()
            }
        );
    }
    emit(&out)
}

fn inspect(model: &Path, opts: &ImportOptions, opt: &OptArgs, print_after_all: bool) -> Result<()> {
    use std::fmt::Write as _;
    let mut g = qc::load_onnx(model, opts)?;
    if print_after_all {
        g.compact();
        emit(&format!(
            "// ---- imported ----\n{}\n",
            qc::ir::text::print(&g)
        ))?;
    }
    let mut failed = None;
    qc::optimize(model, &mut g, opt.pipeline(), opt.options(), |r, g| {
        if print_after_all && failed.is_none() {
            let mut g = g.clone();
            g.compact();
            let mut head = format!(
                "// ---- after {} ({:.3} ms, {}) ----\n",
                r.pass,
                r.time.as_secs_f64() * 1e3,
                if r.changed == qc::passes::Changed::Yes {
                    "changed"
                } else {
                    "unchanged"
                }
            );
            for (k, v) in &r.stats {
                let _ = writeln!(head, "// {k}: {v}");
            }
            failed = emit(&format!("{head}{}\n", qc::ir::text::print(&g))).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if print_after_all {
        return Ok(());
    }
    g.compact();
    let mut out = qc::ir::text::print(&g);
    let s = qc::ir::stats::summarize(&g);
    let ops: Vec<String> = s
        .op_counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = write!(
        out,
        "\n; nodes: {}\n; ops: {}\n; parameters: {} bytes in {} constants\n; MACs: {}\n; activations: {} bytes in all, largest {} bytes\n",
        g.nodes.len(),
        ops.join(", "),
        s.param_bytes,
        g.consts.len(),
        s.macs,
        s.activation_bytes,
        s.largest_activation_bytes
    );
    emit(&out)
}

/// Write to stdout; a closed pipe (`qc inspect m.onnx | head`) ends quietly.
fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// Match `--input` arguments to the graph's inputs; check dtype and shape.
fn bind_inputs(g: &Graph, args: &[String]) -> Result<Vec<Tensor>> {
    let names: Vec<&str> = g.inputs.iter().map(|p| p.name.as_str()).collect();
    let mut files: HashMap<&str, PathBuf> = HashMap::new();
    for a in args {
        let (name, file) = match a.split_once('=') {
            Some((n, f)) if names.contains(&n) => (n, f),
            _ if names.len() == 1 => (names[0], a.as_str()),
            Some((n, _)) => bail!(
                "--input '{a}': the model has no input named '{n}' (inputs: {})",
                names.join(", ")
            ),
            None => bail!(
                "--input '{a}': the model has {} inputs, give NAME=FILE (inputs: {})",
                names.len(),
                names.join(", ")
            ),
        };
        if files.insert(name, PathBuf::from(file)).is_some() {
            bail!("input '{name}' is given twice");
        }
    }
    g.inputs
        .iter()
        .map(|p| {
            let file = files
                .get(p.name.as_str())
                .with_context(|| format!("no --input for model input '{}'", p.name))?;
            let t = qc::npy::read_npy(file)?;
            let ty = g.ty(p.value);
            if t.dtype() != ty.dtype || t.dims() != ty.shape.dims() {
                bail!(
                    "{}: input '{}' must be {}{}, the file holds {}{}",
                    file.display(),
                    p.name,
                    ty.dtype,
                    ty.shape,
                    t.dtype(),
                    t.shape()
                );
            }
            Ok(t)
        })
        .collect()
}

fn write_outputs(g: &Graph, outputs: &[Tensor], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut seen = BTreeSet::new();
    for (port, t) in g.outputs.iter().zip(outputs) {
        let file = qc::output_file_name(&port.name);
        if !seen.insert(file.clone()) {
            bail!("two outputs map to the same file name {file}");
        }
        let path = dir.join(&file);
        qc::npy::write_npy(&path, t)?;
        emit(&format!(
            "{}: {}{} -> {}\n",
            port.name,
            t.dtype(),
            t.shape(),
            path.display()
        ))?;
    }
    Ok(())
}
