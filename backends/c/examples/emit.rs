//! Emit C for an ONNX model (imported and optimized with the default pipeline), for
//! inspection and size measurements until the CLI has `qc compile --target c`:
//!
//! `cargo run -p qc-cgen --example emit -- MODEL.onnx OUT_DIR [fixed|fixed-single|float] [cortex-m4]`
//!
//! Writes `OUT_DIR/NAME.h` and `OUT_DIR/NAME.c` (NAME from the file stem) and prints
//! the arena size beside the planner's lower bound.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: emit MODEL.onnx OUT_DIR [contract] [cpu]".into());
    };
    let contract: qc_cgen::Contract = args.get(3).map_or("fixed", String::as_str).parse()?;
    let cpu = match args.get(4).map(String::as_str) {
        Some("cortex-m4") => qc_cgen::Cpu::CortexM4,
        Some("cortex-m7") => qc_cgen::Cpu::CortexM7,
        Some("cortex-m33") => qc_cgen::Cpu::CortexM33,
        _ => qc_cgen::Cpu::Generic,
    };
    let bytes = std::fs::read(model)?;
    let mut g = qc_onnx::import(&bytes, &Default::default(), &qc_onnx::NoExternalData)?;
    let p = qc_passes::Pipeline::parse("default")?;
    p.run(&mut g, &mut qc_passes::PassCx::new(Default::default()))?;
    let stem = Path::new(model)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    let opts = qc_cgen::CgenOptions {
        name: qc_cgen::c_identifier(stem),
        contract,
        cpu,
        external_arena: false,
    };
    let src = qc_cgen::emit(&g, &opts)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(Path::new(out).join(format!("{}.h", src.name)), &src.header)?;
    std::fs::write(Path::new(out).join(format!("{}.c", src.name)), &src.source)?;
    println!(
        "{}: arena {} bytes, lower bound {} bytes, run_quantized: {}",
        src.name, src.arena_bytes, src.arena_lower_bound, src.has_run_quantized
    );
    Ok(())
}
