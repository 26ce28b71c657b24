//! Memory owned by a compiled model: 64-byte aligned blocks for constants (weights
//! pre-packed at compile time, lookup tables, requantization tables) and arenas.
//!
//! **Invariants.** A [`Block`] vector is never resized after its address has been
//! handed to generated code: constant data is written once at compile time (before
//! any code runs) and then only read; an [`Arena`] is allocated once and reused. So
//! every address baked into the code stays valid for the life of the `CompiledModel`
//! that owns the memory.

/// 64 bytes, 64-byte aligned: the unit of every allocation here.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Block(pub(crate) [u8; 64]);

pub(crate) const BLOCK: usize = 64;

/// An aligned, zeroed byte buffer of at least `bytes` bytes.
pub(crate) fn blocks(bytes: usize) -> Vec<Block> {
    vec![Block([0; BLOCK]); bytes.div_ceil(BLOCK).max(1)]
}

/// Copy `bytes` into the start of `dst` (which must be large enough).
fn fill(dst: &mut [Block], bytes: &[u8]) {
    for (blk, chunk) in dst.iter_mut().zip(bytes.chunks(BLOCK)) {
        blk.0[..chunk.len()].copy_from_slice(chunk);
    }
}

/// The constant data of a model: each entry one aligned allocation.
#[derive(Default)]
pub(crate) struct ConstPool {
    items: Vec<Vec<Block>>,
    bytes: usize,
}

impl ConstPool {
    /// Store `bytes`; returns the (stable) address of the copy.
    pub(crate) fn add(&mut self, bytes: &[u8]) -> usize {
        let mut b = blocks(bytes.len());
        fill(&mut b, bytes);
        let addr = b.as_ptr() as usize;
        self.bytes += bytes.len();
        self.items.push(b);
        addr
    }

    /// A slice of plain numbers (weights, tables, kernel parameter blocks), in the
    /// host's byte order, which is the order the generated code and the native kernels
    /// read.
    pub(crate) fn add_slice<T: bytemuck::Pod>(&mut self, v: &[T]) -> usize {
        self.add(bytemuck::cast_slice(v))
    }

    pub(crate) fn add_f32(&mut self, v: &[f32]) -> usize {
        self.add_slice(v)
    }

    pub(crate) fn add_i16(&mut self, v: &[i16]) -> usize {
        self.add_slice(v)
    }

    pub(crate) fn add_i32(&mut self, v: &[i32]) -> usize {
        self.add_slice(v)
    }

    pub(crate) fn total_bytes(&self) -> usize {
        self.bytes
    }
}

/// One arena plus the pointer tables of one call, reused across calls.
pub(crate) struct Arena {
    pub(crate) mem: Vec<Block>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
}

impl Arena {
    pub(crate) fn new(bytes: usize, n_in: usize, n_out: usize) -> Arena {
        Arena {
            mem: blocks(bytes),
            inputs: vec![0; n_in],
            outputs: vec![0; n_out],
        }
    }
}
