//! The `qc` command-line tool.
//!
//! Every subcommand prints its results to stdout (machine-readable `key: value` lines
//! or a table) and fails with one line on stderr and exit code 1. Progress bars go to
//! stderr and are hidden when it is not a terminal, so piped output stays clean.

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
        /// `text`: the IR and a summary; `dot`: Graphviz of the IR, quantized tensors
        /// labelled with their parameters.
        #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
        format: InspectFormat,
    },
    /// Compile a model (quantizing it first with --calib) and report what was built.
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
        #[command(flatten)]
        quant: QuantArgs,
        /// Output directory of --target c (gets NAME.h and NAME.c).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        /// C identifier prefixing the C API (default: the model file's stem made one).
        #[arg(long)]
        name: Option<String>,
        /// CPU the C is compiled for (Cortex-M4/M7/M33 get DSP-extension kernels).
        #[arg(long, value_enum, default_value_t = CpuArg::Generic)]
        cpu: CpuArg,
        /// The C arena is a pointer the caller passes instead of a static buffer.
        #[arg(long)]
        external_arena: bool,
    },
    /// Quantize a float model on calibration data and write a QDQ ONNX model.
    Quantize {
        /// The float ONNX model.
        model: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        quant: QuantArgs,
        /// Where calibration runs.
        #[arg(long, value_enum, default_value_t = Target::Jit)]
        target: Target,
        /// The QDQ ONNX model to write.
        #[arg(short = 'o', long = "output", value_name = "OUT.onnx")]
        output: PathBuf,
    },
    /// Per-layer SQNR and cosine similarity of quantized vs float activations, worst first.
    DebugAccuracy {
        /// The float ONNX model.
        model: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        quant: QuantArgs,
        /// Compare with this QDQ model (layers paired by node name) instead of
        /// quantizing with the options given.
        #[arg(long, value_name = "QDQ_MODEL")]
        quantized: Option<PathBuf>,
        /// Where the models run.
        #[arg(long, value_enum, default_value_t = Target::Jit)]
        target: Target,
        /// Also draw SQNR and cosine per layer as an SVG bar chart.
        #[arg(long, value_name = "OUT.svg")]
        plot: Option<PathBuf>,
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
    ///
    /// An input file with one more leading axis than the model input holds a batch of
    /// N samples: each runs in turn and every output is written stacked along a new
    /// first axis.
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
    /// C99 for bare metal (static arena, integer-only under fixed contracts).
    C,
}

#[derive(Clone, Copy, ValueEnum)]
enum InspectFormat {
    Text,
    Dot,
}

#[derive(Clone, Copy, ValueEnum)]
enum CpuArg {
    Generic,
    CortexM4,
    CortexM7,
    CortexM33,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    /// Observed minimum and maximum.
    Minmax,
    /// Moving average of per-sample extremes (--momentum).
    MovingAverage,
    /// Clip at a percentile of |x| (--percentile).
    Percentile,
    /// TensorRT's KL-divergence threshold.
    Entropy,
    /// Range minimizing the expected squared error.
    Mse,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActArg {
    U8,
    I8,
}

#[derive(Args)]
struct QuantArgs {
    /// Calibration data: FILE.npy (first axis indexes samples) or a DIR of .npy files
    /// (one sample each) for a single-input model; NAME=PATH per input otherwise
    /// (repeatable).
    #[arg(long = "calib", value_name = "[NAME=]PATH")]
    calib: Vec<String>,
    /// How activation ranges are chosen.
    #[arg(long, value_enum, default_value_t = MethodArg::Minmax)]
    method: MethodArg,
    /// Percentile of |x| kept by --method percentile.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// Momentum of --method moving-average.
    #[arg(long, default_value_t = 0.01)]
    momentum: f32,
    /// One weight scale per output channel (else per tensor).
    #[arg(long)]
    per_channel: bool,
    /// Activation storage type.
    #[arg(long, value_enum, default_value_t = ActArg::U8)]
    activations: ActArg,
    /// Symmetric activations (zero point 0 for i8, 128 for u8).
    #[arg(long)]
    symmetric_activations: bool,
    /// Cross-layer equalization of conv → relu → conv pairs before calibration.
    #[arg(long)]
    cle: bool,
    /// Shift biases by the mean quantization error of each layer's output.
    #[arg(long)]
    bias_correction: bool,
    /// Power-of-two scales (requantization by shifts only).
    #[arg(long)]
    power_of_two: bool,
    /// Layers (node names) whose results are quantized as int16.
    #[arg(long, value_delimiter = ',', value_name = "LAYER,...")]
    int16: Vec<String>,
    /// Layers (node names) whose results stay float.
    #[arg(long, value_delimiter = ',', value_name = "LAYER,...")]
    exclude: Vec<String>,
}

impl QuantArgs {
    /// Whether any quantization option other than the data was given.
    fn any_option(&self) -> bool {
        !matches!(self.method, MethodArg::Minmax)
            || !matches!(self.activations, ActArg::U8)
            || self.per_channel
            || self.symmetric_activations
            || self.cle
            || self.bias_correction
            || self.power_of_two
            || !self.int16.is_empty()
            || !self.exclude.is_empty()
    }

    fn options(&self) -> qc::quant::QuantizeOptions {
        use qc::quant::Method;
        qc::quant::QuantizeOptions {
            method: match self.method {
                MethodArg::Minmax => Method::MinMax,
                MethodArg::MovingAverage => Method::MovingAverageMinMax {
                    momentum: self.momentum,
                },
                MethodArg::Percentile => Method::Percentile(self.percentile),
                MethodArg::Entropy => Method::Entropy,
                MethodArg::Mse => Method::Mse,
            },
            per_channel: self.per_channel,
            activations: match self.activations {
                ActArg::U8 => qc::qmath::QType::U8,
                ActArg::I8 => qc::qmath::QType::I8,
            },
            symmetric_activations: self.symmetric_activations,
            power_of_two: self.power_of_two,
            int16: self.int16.clone(),
            exclude: self.exclude.clone(),
            cle: self.cle,
            bias_correction: self.bias_correction,
            optimize: true,
        }
    }
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
    /// Rounding contract of requantization: float, fixed or fixed-single
    /// (default: float for the JIT and the interpreter, fixed for C).
    #[arg(long)]
    requant: Option<qc::qmath::Contract>,
    /// Kernels of the JIT's innermost GEMM/conv tiles.
    #[arg(long, value_enum, default_value_t = Kernels::Auto)]
    kernels: Kernels,
}

impl CodegenArgs {
    /// The contract of the JIT and the interpreter.
    fn contract(&self) -> qc::qmath::Contract {
        self.requant.unwrap_or(qc::qmath::Contract::Float)
    }

    fn jit(&self) -> qc::jit::JitOptions {
        let kernels = match self.kernels {
            Kernels::Auto => qc::jit::KernelSet::Auto,
            Kernels::Cranelift => qc::jit::KernelSet::Cranelift,
        };
        qc::jit::JitOptions {
            contract: self.contract(),
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
            format,
        } => match format {
            InspectFormat::Text => inspect(&model, &import.options()?, &opt, print_after_all),
            InspectFormat::Dot => {
                if print_after_all {
                    bail!("--print-after-all prints the text IR; drop --format dot");
                }
                let mut g = qc::load_onnx(&model, &import.options()?)?;
                qc::optimize(&model, &mut g, opt.pipeline(), opt.options(), |_, _| {})?;
                g.compact();
                emit(&to_dot(&g))
            }
        },
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
            let (samples, batched) = bind_batch(&g, &inputs)?;
            let (interp, jit);
            let exec: &dyn qc::quant::Executor = match target {
                Target::Interp => {
                    interp = qc::quant::Interp {
                        options: qc::interp::Options {
                            contract: codegen.contract(),
                        },
                    };
                    &interp
                }
                Target::Jit => {
                    jit = qc::JitExecutor {
                        options: codegen.jit(),
                    };
                    &jit
                }
            };
            let mut runner = exec
                .prepare(&g)
                .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
            let mut per_sample = Vec::with_capacity(samples.len());
            for (i, s) in samples.iter().enumerate() {
                let out = runner.run(s).map_err(|e| {
                    if batched {
                        anyhow::anyhow!("{}: sample {i}: {e}", model.display())
                    } else {
                        anyhow::anyhow!("{}: {e}", model.display())
                    }
                })?;
                per_sample.push(out);
            }
            let outputs = if batched {
                (0..g.outputs.len())
                    .map(|k| {
                        let col: Vec<Tensor> = per_sample
                            .iter()
                            .filter_map(|o| o.get(k).cloned())
                            .collect();
                        qc::stack(&col)
                    })
                    .collect::<qc::Result<Vec<_>>>()?
            } else {
                per_sample.into_iter().next().unwrap_or_default()
            };
            write_outputs(&g, &outputs, &output_dir)
        }
        Cmd::Compile {
            model,
            import,
            opt,
            target,
            codegen,
            quant,
            output,
            name,
            cpu,
            external_arena,
        } => {
            let mut g = qc::load_onnx(&model, &import.options()?)?;
            let mut out = String::new();
            if quant.calib.is_empty() && quant.any_option() {
                bail!("quantization options need calibration data: --calib PATH");
            }
            if !quant.calib.is_empty() {
                let exec = qc::JitExecutor::default();
                let q = quantize(&model, &g, &quant, &exec)?;
                out.push_str(&quant_report(&q.report));
                g = q.qdq;
            }
            qc::optimize(&model, &mut g, opt.pipeline(), opt.options(), |_, _| {})?;
            match target {
                CompileTarget::Jit => {
                    if output.is_some() || name.is_some() || external_arena {
                        bail!("-o, --name and --external-arena apply to --target c");
                    }
                    let jit = compile_jit(&model, &g, &codegen)?;
                    let s = jit.stats();
                    out.push_str(&format!(
                        "compile_ms: {:.3}\ncode_bytes: {}\nkernels: {}\nconst_bytes: {}\narena_bytes: {}\narena_lower_bound: {}\n",
                        s.compile_time.as_secs_f64() * 1e3,
                        s.code_bytes,
                        s.kernels,
                        s.const_bytes,
                        s.arena_bytes,
                        s.arena_lower_bound
                    ));
                }
                CompileTarget::C => {
                    let dir = output.context("--target c needs -o DIR")?;
                    let name = match name {
                        Some(n) => {
                            if qc::cgen::c_identifier(&n) != n {
                                bail!(
                                    "--name '{n}' is not a C identifier (try '{}')",
                                    qc::cgen::c_identifier(&n)
                                );
                            }
                            n
                        }
                        None => qc::cgen::c_identifier(
                            &model.file_stem().unwrap_or_default().to_string_lossy(),
                        ),
                    };
                    let contract = codegen.requant.unwrap_or(qc::qmath::Contract::Fixed);
                    let opts = qc::cgen::CgenOptions {
                        name,
                        contract,
                        cpu: match cpu {
                            CpuArg::Generic => qc::cgen::Cpu::Generic,
                            CpuArg::CortexM4 => qc::cgen::Cpu::CortexM4,
                            CpuArg::CortexM7 => qc::cgen::Cpu::CortexM7,
                            CpuArg::CortexM33 => qc::cgen::Cpu::CortexM33,
                        },
                        external_arena,
                    };
                    let c = qc::write_c(&model, &g, &opts, &dir)?;
                    out.push_str(&format!(
                        "header: {}\nsource: {}\ncontract: {}\narena_bytes: {}\narena_lower_bound: {}\nrun_quantized: {}\n",
                        dir.join(format!("{}.h", c.name)).display(),
                        dir.join(format!("{}.c", c.name)).display(),
                        contract.name(),
                        c.arena_bytes,
                        c.arena_lower_bound,
                        if c.has_run_quantized { "yes" } else { "no" }
                    ));
                }
            }
            emit(&out)
        }
        Cmd::Quantize {
            model,
            import,
            quant,
            target,
            output,
        } => {
            let g = qc::load_onnx(&model, &import.options()?)?;
            let q = match target {
                Target::Jit => quantize(&model, &g, &quant, &qc::JitExecutor::default())?,
                Target::Interp => quantize(&model, &g, &quant, &qc::quant::Interp::default())?,
            };
            let bytes = qc::write_qdq_onnx(&output, &q.qdq)?;
            let mut out = quant_report(&q.report);
            out.push_str(&format!(
                "quantized_layers: {}\noutput: {} ({bytes} bytes)\n",
                q.layers.len(),
                output.display()
            ));
            emit(&out)
        }
        Cmd::DebugAccuracy {
            model,
            import,
            quant,
            quantized,
            target,
            plot,
        } => {
            let interp = qc::quant::Interp::default();
            let jit = qc::JitExecutor::default();
            let exec: &dyn qc::quant::Executor = match target {
                Target::Jit => &jit,
                Target::Interp => &interp,
            };
            let rows = debug_accuracy(
                &model,
                &import.options()?,
                &quant,
                quantized.as_deref(),
                exec,
            )?;
            let mut out = accuracy_table(&rows);
            if let Some(path) = plot {
                std::fs::write(&path, plot_svg(&rows))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                out.push_str(&format!("\nplot: {}\n", path.display()));
            }
            emit(&out)
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

/// A progress bar per stage of quantization (`calibration`, `bias correction`, ...),
/// on stderr; indicatif draws nothing when stderr is not a terminal.
#[derive(Default)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    stage: &'static str,
}

impl Progress {
    fn update(&mut self, stage: &'static str, done: usize, total: usize) {
        if self.bar.is_none() || self.stage != stage {
            self.finish();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:>27} [{bar:30}] {pos}/{len} samples {elapsed}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(stage);
            self.bar = Some(bar);
            self.stage = stage;
        }
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Read the calibration data and quantize `g`, with a progress bar.
fn quantize(
    model: &Path,
    g: &Graph,
    quant: &QuantArgs,
    exec: &dyn qc::quant::Executor,
) -> Result<qc::quant::Quantized> {
    if quant.calib.is_empty() {
        bail!("quantization needs calibration data: --calib PATH");
    }
    let samples = qc::read_calibration(g, &quant.calib)?;
    let mut progress = Progress::default();
    let q = qc::quant::quantize(g, &samples, &quant.options(), exec, &mut |s, d, t| {
        progress.update(s, d, t)
    });
    progress.finish();
    q.map_err(|e| {
        qc::Error::Quant {
            path: model.to_path_buf(),
            source: e,
        }
        .into()
    })
}

fn quant_report(r: &qc::quant::QuantReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "samples: {}\ncalibration_ms: {:.1}\nbias_overflow_fixes: {}\n",
        r.samples,
        r.calibration_time.as_secs_f64() * 1e3,
        r.bias_overflows.len()
    );
    if let Some(c) = &r.cle {
        let _ = writeln!(out, "cle_pairs: {}", c.pairs);
    }
    if !r.bias_corrections.is_empty() {
        let _ = writeln!(out, "bias_corrected_layers: {}", r.bias_corrections.len());
    }
    let _ = writeln!(out, "warnings: {}", r.warnings.len());
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {}", w.replace('\n', " "));
    }
    out
}

/// Per-layer accuracy: of the model quantized with `quant`'s options, or of the QDQ
/// model `quantized` against the float one (both as imported, layers paired by name).
fn debug_accuracy(
    model: &Path,
    import: &ImportOptions,
    quant: &QuantArgs,
    quantized: Option<&Path>,
    exec: &dyn qc::quant::Executor,
) -> Result<Vec<qc::quant::LayerAccuracy>> {
    let g = qc::load_onnx(model, import)?;
    let err = |e| qc::Error::Quant {
        path: model.to_path_buf(),
        source: e,
    };
    let (float, qdq, layers, samples) = match quantized {
        None => {
            let q = quantize(model, &g, quant, exec)?;
            let samples = qc::read_calibration(&g, &quant.calib)?;
            (q.float, q.qdq, q.layers, samples)
        }
        Some(qpath) => {
            if quant.calib.is_empty() {
                bail!("debug-accuracy needs calibration data: --calib PATH");
            }
            // Both through the default pipeline, so that a layer means the same
            // computation in both (BatchNorm folded, activations fused, the QDQ
            // model's convs integer ops) and pairs by name and op.
            let mut g = g;
            qc::optimize(model, &mut g, "default", Default::default(), |_, _| {})?;
            let mut qdq = qc::load_onnx(qpath, import)?;
            qc::optimize(qpath, &mut qdq, "default", Default::default(), |_, _| {})?;
            let layers = qc::quant::match_layers(&g, &qdq);
            if layers.is_empty() {
                bail!(
                    "{}: no layer of it matches a node of {} by name and op",
                    qpath.display(),
                    model.display()
                );
            }
            let samples = qc::read_calibration(&g, &quant.calib)?;
            (g, qdq, layers, samples)
        }
    };
    let mut progress = Progress::default();
    let rows = qc::quant::debug_accuracy(&float, &qdq, &layers, &samples, exec, &mut |s, d, t| {
        progress.update(s, d, t)
    });
    progress.finish();
    Ok(rows.map_err(err)?)
}

/// The accuracy table, worst layer (lowest SQNR) first.
fn accuracy_table(rows: &[qc::quant::LayerAccuracy]) -> String {
    use std::fmt::Write as _;
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(5);
    let o = rows.iter().map(|r| r.op.len()).max().unwrap_or(0).max(2);
    let mut out = format!(
        "{:<w$}  {:<o$}  {:>9} {:>10} {:>10}\n",
        "layer", "op", "sqnr_db", "cosine", "elements"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<w$}  {:<o$}  {:>9.2} {:>10.6} {:>10}",
            r.name, r.op, r.sqnr_db, r.cosine, r.elements
        );
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart per layer, worst first: SQNR (dB, scaled to the largest
/// finite value; an infinite one is a full bar marked ∞) and cosine similarity.
fn plot_svg(rows: &[qc::quant::LayerAccuracy]) -> String {
    use std::fmt::Write as _;
    const ROW: f64 = 20.0;
    const TOP: f64 = 50.0;
    const LABEL: f64 = 260.0;
    const SQNR_W: f64 = 360.0;
    const COS_X: f64 = LABEL + SQNR_W + 90.0;
    const COS_W: f64 = 200.0;
    let max_db = rows
        .iter()
        .map(|r| r.sqnr_db)
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let width = COS_X + COS_W + 80.0;
    let height = TOP + ROW * rows.len() as f64 + 20.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">per-layer accuracy of the quantized model (worst first)</text>\n\
         <text x=\"{LABEL}\" y=\"40\">SQNR (dB, 0 to {max_db:.1})</text>\n\
         <text x=\"{COS_X}\" y=\"40\">cosine similarity (0 to 1)</text>\n"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let frac = if r.sqnr_db.is_finite() {
            (r.sqnr_db / max_db).clamp(0.0, 1.0)
        } else if r.sqnr_db > 0.0 {
            1.0
        } else {
            0.0
        };
        let db = if r.sqnr_db.is_finite() {
            format!("{:.1}", r.sqnr_db)
        } else if r.sqnr_db > 0.0 {
            "∞".into()
        } else {
            "-∞".into()
        };
        let cos = r.cosine.clamp(0.0, 1.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} ({})</text>\n\
             <rect x=\"{LABEL}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"#4878a8\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{db}</text>\n\
             <rect x=\"{COS_X}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"#e08040\"/>\n\
             <text x=\"{:.1}\" y=\"{}\">{:.4}</text>\n",
            LABEL - 8.0,
            y + 14.0,
            xml_escape(&r.name),
            r.op,
            y + 3.0,
            frac * SQNR_W,
            ROW - 6.0,
            LABEL + frac * SQNR_W + 4.0,
            y + 14.0,
            y + 3.0,
            cos * COS_W,
            ROW - 6.0,
            COS_X + cos * COS_W + 4.0,
            y + 14.0,
            r.cosine
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A value's type as the dot labels show it: `u8[1,8,4,4] q(0.0235, 128)`, per-axis
/// parameters as `q(axis 0: 8 scales 0.001..0.004, zp 0)`.
fn type_label(ty: &qc::ir::TensorType) -> String {
    let mut s = format!("{}{}", ty.dtype, ty.shape);
    if let Some(q) = &ty.quant {
        if q.is_per_tensor() {
            s.push_str(&format!(" q({}, {})", q.scale(0), q.zero_point(0)));
        } else {
            let lo = q.scales.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = q.scales.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let zps: BTreeSet<i32> = q.zero_points.iter().copied().collect();
            let zp = if zps.len() == 1 {
                zps.iter()
                    .next()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            } else {
                "per-channel".into()
            };
            s.push_str(&format!(
                " q(per-axis {}: {} scales {lo}..{hi}, zp {zp})",
                q.axis.map_or_else(|| "?".into(), |a| a.to_string()),
                q.len()
            ));
        }
    }
    s
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz of the IR: one box per node (`nK`, K its index), one ellipse per graph
/// input (`inK`) and output (`outK`), one note per constant operand (`cK`, K the
/// value's index); edges carry the type of the value they move.
fn to_dot(g: &Graph) -> String {
    use qc::ir::ValueDef;
    use std::fmt::Write as _;
    let mut s = String::from(
        "digraph qc {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n",
    );
    for (i, p) in g.inputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  in{i} [shape=ellipse, label=\"{}\\n{}\"];",
            dot_escape(&p.name),
            dot_escape(&type_label(g.ty(p.value)))
        );
    }
    let mut consts_seen = BTreeSet::new();
    let mut source = |s: &mut String, v: qc::ir::ValueId| -> String {
        match g.value(v).def {
            ValueDef::Input(i) => format!("in{i}"),
            ValueDef::Node { node, .. } => format!("n{}", node.index()),
            ValueDef::Const(c) => {
                let id = format!("c{}", v.index());
                if consts_seen.insert(v.index()) {
                    let _ = writeln!(
                        s,
                        "  {id} [shape=note, label=\"{c}\\n{}\"];",
                        dot_escape(&type_label(g.ty(v)))
                    );
                }
                id
            }
        }
    };
    for (id, n) in g.iter_nodes() {
        let name = if n.name.is_empty() {
            String::new()
        } else {
            format!("\\n'{}'", dot_escape(&n.name))
        };
        let _ = writeln!(
            s,
            "  n{} [label=\"{} {}{name}\"];",
            id.index(),
            id,
            n.op.name()
        );
        for &v in &n.inputs {
            let from = source(&mut s, v);
            let _ = writeln!(
                s,
                "  {from} -> n{} [label=\"{}\"];",
                id.index(),
                dot_escape(&type_label(g.ty(v)))
            );
        }
    }
    for (i, p) in g.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{i} [shape=ellipse, label=\"{}\"];",
            dot_escape(&p.name)
        );
        let from = source(&mut s, p.value);
        let _ = writeln!(
            s,
            "  {from} -> out{i} [label=\"{}\"];",
            dot_escape(&type_label(g.ty(p.value)))
        );
    }
    s.push_str("}\n");
    s
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
    // Timed through the allocation-free `run_into` on buffers prepared once, as an
    // embedding caller runs it: no per-run input copy or output allocation.
    let in_bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.data().to_le_bytes()).collect();
    let ins: Vec<&[u8]> = in_bytes.iter().map(Vec::as_slice).collect();
    let mut out_bytes = Vec::with_capacity(jit.output_types().len());
    for ty in jit.output_types() {
        let n = ty
            .numel()
            .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        out_bytes.push(vec![0u8; n * ty.dtype.size()]);
    }
    let mut run = || -> Result<()> {
        let mut outs: Vec<&mut [u8]> = out_bytes.iter_mut().map(Vec::as_mut_slice).collect();
        jit.run_into(&ins, &mut outs).map_err(|e| jit_err(model, e))
    };
    for _ in 0..warmup {
        run()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = std::time::Instant::now();
        run()?;
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
    let (samples, batched) = bind_batch(g, args)?;
    if batched {
        bail!("this command takes one sample per input, not a batch");
    }
    Ok(samples.into_iter().next().unwrap_or_default())
}

/// Match `--input` arguments to the graph's inputs; check dtype and shape. An input
/// whose file has one more leading axis than the model input is a batch of samples;
/// every batched input must hold the same number, unbatched ones are used for every
/// sample. Returns the samples and whether any input was batched.
fn bind_batch(g: &Graph, args: &[String]) -> Result<(Vec<Vec<Tensor>>, bool)> {
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
    // Per input: one tensor, or a batch (Some(samples)).
    let mut bound: Vec<(Tensor, Option<Vec<Tensor>>)> = Vec::with_capacity(g.inputs.len());
    let mut batch: Option<(usize, &str)> = None;
    for p in &g.inputs {
        let file = files
            .get(p.name.as_str())
            .with_context(|| format!("no --input for model input '{}'", p.name))?;
        let t = qc::npy::read_npy(file)?;
        let ty = g.ty(p.value);
        let want = ty.shape.dims();
        if t.dtype() == ty.dtype && t.dims() == want {
            bound.push((t, None));
        } else if t.dtype() == ty.dtype && t.dims().get(1..) == Some(want) {
            let n = t.dims()[0];
            match batch {
                Some((m, other)) if m != n => bail!(
                    "{}: input '{}' holds a batch of {n}, input '{other}' one of {m}",
                    file.display(),
                    p.name
                ),
                _ => batch = Some((n, p.name.as_str())),
            }
            let samples = qc::unstack(&t)?;
            bound.push((t, Some(samples)));
        } else {
            bail!(
                "{}: input '{}' must be {}{} (or a batch [N,{}]), the file holds {}{}",
                file.display(),
                p.name,
                ty.dtype,
                ty.shape,
                want.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                t.dtype(),
                t.shape()
            );
        }
    }
    let Some((n, _)) = batch else {
        return Ok((vec![bound.into_iter().map(|(t, _)| t).collect()], false));
    };
    let samples = (0..n)
        .map(|i| {
            bound
                .iter()
                .map(|(t, b)| match b {
                    Some(s) => s.get(i).cloned().unwrap_or_else(|| t.clone()),
                    None => t.clone(),
                })
                .collect()
        })
        .collect();
    Ok((samples, true))
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
