//! Every `Backend` op, table-driven, on odd non-square shapes, zero sizes, column views at the
//! edges of their rows and shapes that must be refused: the CPU reference always, the CUDA
//! backend when a device is present, on the same inputs and compared case by case.

use crate::common::ops;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
use crate::common::cuda;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use anyhow::Result;
use ops::randn;
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Cols, Nchw, Op, Pool, Window};

/// Largest max|a − r| / max|r| a CUDA result may show against the CPU.
const TOL: f64 = 1e-5;
const EPS: f32 = 1e-6;

/// A column view of input buffer `buf` (an index into the case's inputs, never 0: input 0 is
/// the op's main operand).
#[derive(Clone, Copy, Debug)]
struct View {
    buf: usize,
    stride: usize,
    offset: usize,
}

fn v(buf: usize, stride: usize, offset: usize) -> View {
    View {
        buf,
        stride,
        offset,
    }
}

/// An op and its scalar parameters; the buffers come from the case's input lengths.
#[rustfmt::skip]
#[derive(Clone, Debug)]
enum Args {
    Linear { m: usize, k: usize, n: usize, bias: bool },
    LayerNorm { rows: usize, d: usize },
    Modulate { b: usize, t: usize, d: usize, shift: View, scale: View },
    LayerNormModulate { b: usize, t: usize, d: usize, shift: View, scale: View },
    GatedAdd { b: usize, t: usize, d: usize, gate: View },
    AddRow { b: usize, r: usize },
    Add { n: usize },
    /// silu, gelu_tanh, gelu_erf, relu, quick_gelu over `n` values.
    Unary { op: Op, n: usize },
    Attention { b: usize, t: usize, heads: usize, dh: usize },
    Patchify { b: usize, c: usize, h: usize, w: usize, p: usize },
    Unpatchify { b: usize, c_out: usize, c_keep: usize, h: usize, w: usize, p: usize },
    GatherRows { vocab: usize, ids: Vec<usize>, d: usize },
    LayerNormAffine { rows: usize, d: usize },
    Conv2d { x: Nchw, co: usize, win: Window, relu: bool },
    Pool2d { x: Nchw, win: Window, pool: Pool },
    Concat { channels: Vec<usize>, n: usize, hw: usize },
    GroupNorm { n: usize, c: usize, hw: usize, groups: usize, silu: bool },
    Upsample { n: usize, c: usize, h: usize, w: usize },
    Transpose { b: usize, r: usize, c: usize },
    LinearGelu { m: usize, k: usize, n: usize, bias: bool },
    LinearOperand { m: usize, k: usize, n: usize, bias: bool },
    /// `n` values in rows of `k`.
    Operand { n: usize, k: usize },
    /// The mutated x and the result, one after the other.
    GatedAddLnMod { b: usize, t: usize, d: usize, gate: View, shift: View, scale: View },
    /// Input 1 is replaced by the ids as exact f32 integers.
    GatherRowsIdf { vocab: usize, ids: Vec<usize>, d: usize },
}

impl Args {
    fn op(&self) -> Op {
        match self {
            Args::Linear { .. } => Op::Linear,
            Args::LayerNorm { .. } => Op::LayerNorm,
            Args::Modulate { .. } => Op::Modulate,
            Args::LayerNormModulate { .. } => Op::LayerNormModulate,
            Args::GatedAdd { .. } => Op::GatedAdd,
            Args::AddRow { .. } => Op::AddRow,
            Args::Add { .. } => Op::Add,
            Args::Unary { op, .. } => *op,
            Args::Attention { .. } => Op::Attention,
            Args::Patchify { .. } => Op::Patchify,
            Args::Unpatchify { .. } => Op::Unpatchify,
            Args::GatherRows { .. } => Op::GatherRows,
            Args::LayerNormAffine { .. } => Op::LayerNormAffine,
            Args::Conv2d { .. } => Op::Conv2d,
            Args::Pool2d { .. } => Op::Pool2d,
            Args::Concat { .. } => Op::ConcatChannels,
            Args::GroupNorm { .. } => Op::GroupNorm,
            Args::Upsample { .. } => Op::UpsampleNearest2x,
            Args::Transpose { .. } => Op::Transpose,
            Args::LinearGelu { .. } => Op::LinearGelu,
            Args::LinearOperand { .. } => Op::LinearOperand,
            Args::Operand { .. } => Op::Operand,
            Args::GatedAddLnMod { .. } => Op::GatedAddLayerNormModulate,
            Args::GatherRowsIdf { .. } => Op::GatherRowsIdf,
        }
    }

    /// Pure data movement: results must be bit-identical.
    fn exact(&self) -> bool {
        matches!(
            self.op(),
            Op::Patchify
                | Op::Unpatchify
                | Op::GatherRows
                | Op::GatherRowsIdf
                | Op::Operand
                | Op::Transpose
                | Op::ConcatChannels
                | Op::UpsampleNearest2x
        )
    }

    /// The input lengths of a well-formed call.
    fn lens(&self) -> Vec<usize> {
        // Buffers behind column views: each as long as its longest view needs.
        fn with_views(mut lens: Vec<usize>, b: usize, views: &[View]) -> Vec<usize> {
            for w in views {
                if lens.len() <= w.buf {
                    lens.resize(w.buf + 1, 0);
                }
                lens[w.buf] = lens[w.buf].max(b * w.stride);
            }
            lens
        }
        match *self {
            Args::Linear { m, k, n, bias }
            | Args::LinearGelu { m, k, n, bias }
            | Args::LinearOperand { m, k, n, bias } => {
                let mut l = vec![m * k, n * k];
                if bias {
                    l.push(n);
                }
                l
            }
            Args::LayerNorm { rows, d } => vec![rows * d],
            Args::Modulate {
                b,
                t,
                d,
                shift,
                scale,
            }
            | Args::LayerNormModulate {
                b,
                t,
                d,
                shift,
                scale,
            } => with_views(vec![b * t * d], b, &[shift, scale]),
            Args::GatedAdd { b, t, d, gate } => with_views(vec![b * t * d, b * t * d], b, &[gate]),
            Args::AddRow { b, r } => vec![b * r, r],
            Args::Add { n } => vec![n, n],
            Args::Unary { n, .. } => vec![n],
            Args::Attention { b, t, heads, dh } => vec![b * t * 3 * heads * dh],
            Args::Patchify { b, c, h, w, .. } => vec![b * c * h * w],
            Args::Unpatchify { b, c_out, h, w, .. } => vec![b * h * w * c_out],
            Args::GatherRows { vocab, d, .. } => vec![vocab * d],
            Args::LayerNormAffine { rows, d } => vec![rows * d, d, d],
            Args::Conv2d { x, co, win, .. } => vec![x.len(), co * x.c * win.kh * win.kw, co],
            Args::Pool2d { x, .. } => vec![x.len()],
            Args::Concat {
                ref channels,
                n,
                hw,
            } => channels.iter().map(|c| n * c * hw).collect(),
            Args::GroupNorm { n, c, hw, .. } => vec![n * c * hw, c, c],
            Args::Upsample { n, c, h, w } => vec![n * c * h * w],
            Args::Transpose { b, r, c } => vec![b * r * c],
            Args::Operand { n, .. } => vec![n],
            Args::GatedAddLnMod {
                b,
                t,
                d,
                gate,
                shift,
                scale,
            } => with_views(vec![b * t * d, b * t * d], b, &[gate, shift, scale]),
            Args::GatherRowsIdf { vocab, ref ids, d } => vec![vocab * d, ids.len()],
        }
    }

    /// The output length of a well-formed call.
    fn out_len(&self, inputs: &[Vec<f32>]) -> usize {
        match *self {
            Args::Linear { m, n, .. }
            | Args::LinearGelu { m, n, .. }
            | Args::LinearOperand { m, n, .. } => m * n,
            Args::Operand { n, .. } => n,
            Args::GatedAddLnMod { b, t, d, .. } => 2 * b * t * d,
            Args::GatherRowsIdf { ref ids, d, .. } => ids.len() * d,
            Args::LayerNorm { rows, d } | Args::LayerNormAffine { rows, d } => rows * d,
            Args::Modulate { b, t, d, .. }
            | Args::LayerNormModulate { b, t, d, .. }
            | Args::GatedAdd { b, t, d, .. } => b * t * d,
            Args::AddRow { b, r } => b * r,
            Args::Add { .. } | Args::Unary { .. } => inputs[0].len(),
            Args::Attention { b, t, heads, dh } => b * t * heads * dh,
            Args::Patchify { b, c, h, w, .. } => b * c * h * w,
            Args::Unpatchify {
                b, c_keep, h, w, ..
            } => b * c_keep * h * w,
            Args::GatherRows { ref ids, d, .. } => ids.len() * d,
            Args::Conv2d { x, co, win, .. } => {
                win.output(x.h, x.w).map_or(0, |(h, w)| x.n * co * h * w)
            }
            Args::Pool2d { x, win, .. } => {
                win.output(x.h, x.w).map_or(0, |(h, w)| x.n * x.c * h * w)
            }
            Args::Concat {
                ref channels,
                n,
                hw,
            } => n * channels.iter().sum::<usize>() * hw,
            Args::GroupNorm { n, c, hw, .. } => n * c * hw,
            Args::Upsample { n, c, h, w } => 4 * n * c * h * w,
            Args::Transpose { b, r, c } => b * r * c,
        }
    }
}

struct Case {
    label: &'static str,
    args: Args,
    /// Input lengths, when they differ from the well-formed ones.
    lens: Option<Vec<usize>>,
    /// Both backends must refuse the call.
    bad: bool,
    /// Input 0 cycles through infinities, NaN, signed zeros and large magnitudes.
    specials: bool,
}

impl Case {
    fn lens(mut self, lens: &[usize]) -> Self {
        self.lens = Some(lens.to_vec());
        self
    }
    fn bad(mut self) -> Self {
        self.bad = true;
        self
    }
    fn specials(mut self) -> Self {
        self.specials = true;
        self
    }

    /// The inputs, a pure function of the op, the label and the input's position.
    fn inputs(&self) -> Vec<Vec<f32>> {
        let seed = self
            .label
            .bytes()
            .chain(self.args.op().name().bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        let lens = self.lens.clone().unwrap_or_else(|| self.args.lens());
        let gain = if matches!(self.args, Args::Unary { .. }) {
            4.0
        } else {
            1.0
        };
        let mut inputs: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                randn(seed.wrapping_add(i as u64), n)
                    .iter()
                    .map(|v| gain * v)
                    .collect()
            })
            .collect();
        if self.specials {
            #[rustfmt::skip]
            const S: [f32; 16] = [
                0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 30.0, -30.0, 88.5, -88.5, 1e4, -1e4,
                f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX,
            ];
            for (x, s) in inputs[0].iter_mut().zip(S.iter().cycle()) {
                *x = *s;
            }
        }
        inputs
    }
}

fn case(label: &'static str, args: Args) -> Case {
    Case {
        label,
        args,
        lens: None,
        bad: false,
        specials: false,
    }
}

fn nchw(n: usize, c: usize, h: usize, w: usize) -> Nchw {
    Nchw { n, c, h, w }
}

fn win(kh: usize, kw: usize, stride: usize, ph: usize, pw: usize) -> Window {
    Window {
        kh,
        kw,
        stride,
        ph,
        pw,
    }
}

/// The cases: per op, odd and non-square sizes, a zero in each dimension that may be zero,
/// views at the edges of their rows, and calls both backends must refuse. Cases named "256 B"
/// make every buffer a multiple of 64 floats: the emulated device puts a guard page right after
/// such an allocation, so a read one element past the end faults instead of reading slack.
#[rustfmt::skip]
fn table() -> Vec<Case> {
    use Args::*;
    let mut t = Vec::new();

    // linear: x (M, K), w (N, K), b (N)
    let lin = |m, k, n, bias| Linear { m, k, n, bias };
    t.push(case("3x17x129 bias", lin(3, 17, 129, true)));
    t.push(case("5x33x7 no bias", lin(5, 33, 7, false)));
    t.push(case("1x1x1 bias", lin(1, 1, 1, true)));
    t.push(case("2x32x64 bias 256 B", lin(2, 32, 64, true)));
    t.push(case("65x129x3 no bias", lin(65, 129, 3, false)));
    t.push(case("M=0", lin(0, 5, 7, true)));
    t.push(case("N=0", lin(3, 5, 0, true)));
    t.push(case("K=0 bias", lin(4, 0, 6, true)));
    t.push(case("K=0 no bias", lin(4, 0, 6, false)));
    t.push(case("bias of N+1", lin(3, 5, 7, true)).lens(&[15, 35, 8]).bad());
    t.push(case("x one short", lin(3, 5, 7, false)).lens(&[14, 35]).bad());
    t.push(case("w one long", lin(3, 5, 7, true)).lens(&[15, 36, 7]).bad());

    // layer_norm: (R, D)
    let ln = |rows, d| LayerNorm { rows, d };
    t.push(case("51x129", ln(51, 129)));
    t.push(case("5x33", ln(5, 33)));
    t.push(case("1x1", ln(1, 1)));
    t.push(case("2x32 256 B", ln(2, 32)));
    t.push(case("7x300", ln(7, 300)));
    t.push(case("rows=0", ln(0, 17)));
    t.push(case("D=0", ln(3, 0)));
    t.push(case("x one short", ln(5, 33)).lens(&[164]).bad());

    // modulate and layer_norm_modulate: x (B, T, D), shift and scale column views.
    for fused in [false, true] {
        let m = |b, t, d, shift, scale| {
            if fused {
                LayerNormModulate { b, t, d, shift, scale }
            } else {
                Modulate { b, t, d, shift, scale }
            }
        };
        let d = 129;
        t.push(case("3x17x129 adaLN chunks, scale last", m(3, 17, d, v(1, 6 * d, d), v(1, 6 * d, 5 * d))));
        t.push(case("2x5x33 different strides", m(2, 5, 33, v(1, 36, 3), v(2, 67, 34))));
        t.push(case("3x4x7 stride = D", m(3, 4, 7, v(1, 7, 0), v(2, 7, 0))));
        t.push(case("1x1x1", m(1, 1, 1, v(1, 1, 0), v(2, 3, 2))));
        t.push(case("2x3x32 views end 256 B", m(2, 3, 32, v(1, 64, 32), v(2, 32, 0))));
        t.push(case("view buffers longer than B rows", m(2, 3, 5, v(1, 5, 0), v(2, 6, 1))).lens(&[30, 11, 13]));
        t.push(case("B=0", m(0, 5, 7, v(1, 14, 7), v(2, 9, 0))));
        t.push(case("T=0", m(3, 0, 7, v(1, 14, 7), v(2, 9, 2))));
        t.push(case("D=0", m(3, 5, 0, v(1, 4, 4), v(2, 2, 1))));
        t.push(case("shift view past its row", m(2, 3, 7, v(1, 14, 8), v(2, 7, 0))).bad());
        t.push(case("scale buffer one short", m(2, 3, 7, v(1, 14, 7), v(2, 9, 2))).lens(&[42, 28, 17]).bad());
        t.push(case("x one long", m(2, 3, 7, v(1, 7, 0), v(2, 7, 0))).lens(&[43, 14, 14]).bad());
    }

    // gated_add: x, y (B, T, D), gate column view.
    let ga = |b, t, d, gate| GatedAdd { b, t, d, gate };
    t.push(case("3x17x129 last chunk", ga(3, 17, 129, v(2, 6 * 129, 5 * 129))));
    t.push(case("2x5x33 stride != D", ga(2, 5, 33, v(2, 40, 7))));
    t.push(case("1x1x1", ga(1, 1, 1, v(2, 1, 0))));
    t.push(case("2x2x64 gate ends 256 B", ga(2, 2, 64, v(2, 96, 32))));
    t.push(case("B=0", ga(0, 3, 5, v(2, 5, 0))));
    t.push(case("T=0", ga(2, 0, 5, v(2, 10, 5))));
    t.push(case("D=0", ga(2, 3, 0, v(2, 3, 3))));
    t.push(case("gate view past its row", ga(2, 3, 5, v(2, 10, 6))).bad());
    t.push(case("gate buffer one short", ga(2, 3, 5, v(2, 10, 5))).lens(&[30, 30, 19]).bad());
    t.push(case("y one short", ga(2, 3, 5, v(2, 5, 0))).lens(&[30, 29, 10]).bad());

    // add_row: x (B, R), row (R)
    let ar = |b, r| AddRow { b, r };
    t.push(case("3x129", ar(3, 129)));
    t.push(case("17x5", ar(17, 5)));
    t.push(case("1x1", ar(1, 1)));
    t.push(case("3x64 256 B", ar(3, 64)));
    t.push(case("B=0", ar(0, 5)));
    t.push(case("R=0", ar(4, 0)));
    t.push(case("row one long", ar(3, 5)).lens(&[15, 6]).bad());
    t.push(case("x one short", ar(3, 5)).lens(&[14, 5]).bad());

    // add
    t.push(case("2193", Add { n: 2193 }));
    t.push(case("1", Add { n: 1 }));
    t.push(case("64 256 B", Add { n: 64 }));
    t.push(case("0", Add { n: 0 }));
    t.push(case("y one short", Add { n: 7 }).lens(&[7, 6]).bad());

    // the activations
    for op in [Op::Silu, Op::GeluTanh, Op::GeluErf, Op::Relu, Op::QuickGelu] {
        let u = |n| Unary { op, n };
        t.push(case("3x17x129", u(3 * 17 * 129)));
        t.push(case("1", u(1)));
        t.push(case("64 256 B", u(64)));
        t.push(case("0", u(0)));
        t.push(case("inf, nan, ±0, large", u(37)).specials());
    }

    // attention: qkv (B, T, 3·H·Dh)
    let at = |b, t, heads, dh| Attention { b, t, heads, dh };
    t.push(case("2x17 3 heads of 5", at(2, 17, 3, 5)));
    t.push(case("T=1 head_dim 1", at(1, 1, 1, 1)));
    t.push(case("1x8 2 heads of 4 256 B", at(1, 8, 2, 4)));
    t.push(case("3x7 2 heads of 1", at(3, 7, 2, 1)));
    t.push(case("T=1 4 heads of 3", at(2, 1, 4, 3)));
    t.push(case("1x129 2 heads of 3", at(1, 129, 2, 3)));
    t.push(case("1x33 head_dim 130", at(1, 33, 1, 130)));
    t.push(case("B=0", at(0, 5, 2, 3)));
    t.push(case("T=0", at(2, 0, 3, 4)));
    t.push(case("heads=0", at(2, 5, 0, 4)));
    t.push(case("head_dim=0", at(2, 5, 3, 0)));
    t.push(case("qkv one short", at(2, 3, 2, 2)).lens(&[71]).bad());

    // patchify: x (B, C, H, W), patch p
    let pf = |b, c, h, w, p| Patchify { b, c, h, w, p };
    t.push(case("2x3x6x10 p2", pf(2, 3, 6, 10, 2)));
    t.push(case("1x4x5x7 p1", pf(1, 4, 5, 7, 1)));
    t.push(case("3x1x9x3 p3", pf(3, 1, 9, 3, 3)));
    t.push(case("1x1x8x8 p2 256 B", pf(1, 1, 8, 8, 2)));
    t.push(case("B=0", pf(0, 3, 4, 4, 2)));
    t.push(case("C=0", pf(2, 0, 4, 4, 2)));
    t.push(case("H=0", pf(2, 3, 0, 4, 2)));
    t.push(case("W=0", pf(2, 3, 4, 0, 2)));
    t.push(case("p=0", pf(1, 2, 4, 4, 0)).bad());
    t.push(case("5x4 by p2", pf(1, 2, 5, 4, 2)).bad());
    t.push(case("x one short", pf(1, 2, 4, 4, 2)).lens(&[31]).bad());

    // unpatchify: o (B, T, p·p·C_out) → (B, C_keep, H, W)
    let up = |b, c_out, c_keep, h, w, p| Unpatchify { b, c_out, c_keep, h, w, p };
    t.push(case("2x6x10 p2 keep 3 of 5", up(2, 5, 3, 6, 10, 2)));
    t.push(case("1x5x7 p1 keep 4 of 4", up(1, 4, 4, 5, 7, 1)));
    t.push(case("1x9x3 p3 keep 1 of 8", up(1, 8, 1, 9, 3, 3)));
    t.push(case("1x4x4 p2 keep 4 of 4 256 B", up(1, 4, 4, 4, 4, 2)));
    t.push(case("keep 0", up(2, 3, 0, 4, 4, 2)));
    t.push(case("B=0", up(0, 3, 2, 4, 4, 2)));
    t.push(case("H=0", up(2, 3, 2, 0, 4, 2)));
    t.push(case("keep 5 of 4", up(1, 4, 5, 4, 4, 2)).bad());
    t.push(case("p=0", up(1, 4, 2, 4, 4, 0)).bad());
    t.push(case("6x5 by p2", up(1, 4, 2, 6, 5, 2)).bad());
    t.push(case("o one long", up(1, 4, 2, 4, 4, 2)).lens(&[65]).bad());

    // gather_rows: table (V, D), ids
    let gr = |vocab, ids: &[usize], d| GatherRows { vocab, ids: ids.to_vec(), d };
    t.push(case("5 of V=5 D=33, repeats", gr(5, &[4, 0, 4, 2, 1], 33)));
    t.push(case("1 of V=1 D=1", gr(1, &[0], 1)));
    t.push(case("last row of V=1001 D=3", gr(1001, &[1000, 0], 3)));
    t.push(case("last row of V=16 D=4 256 B", gr(16, &[15, 0, 15], 4)));
    t.push(case("no ids", gr(4, &[], 7)));
    t.push(case("D=0", gr(4, &[3, 1], 0)));
    t.push(case("id = V", gr(5, &[1, 5], 3)).bad());
    t.push(case("id = usize::MAX", gr(5, &[usize::MAX], 3)).bad());
    t.push(case("id·D wraps around", gr(5, &[usize::MAX / 2], 4)).bad());
    t.push(case("table one short", gr(5, &[4], 3)).lens(&[14]).bad());

    // layer_norm_affine: x (R, D), gamma, beta (D)
    let lna = |rows, d| LayerNormAffine { rows, d };
    t.push(case("51x129", lna(51, 129)));
    t.push(case("5x33", lna(5, 33)));
    t.push(case("1x1", lna(1, 1)));
    t.push(case("rows=0", lna(0, 17)));
    t.push(case("D=0", lna(3, 0)));
    t.push(case("gamma one short", lna(5, 33)).lens(&[165, 32, 33]).bad());
    t.push(case("beta one long", lna(5, 33)).lens(&[165, 33, 34]).bad());

    // conv2d: x (N, Ci, H, W), w (Co, Ci, kh, kw), b (Co)
    let cv = |x, co, win, relu| Conv2d { x, co, win, relu };
    t.push(case("2x3x7x5 3x3 pad 1 to 4", cv(nchw(2, 3, 7, 5), 4, Window::square(3, 1, 1), false)));
    t.push(case("1x5x3x9 1x1 relu", cv(nchw(1, 5, 3, 9), 7, Window::square(1, 1, 0), true)));
    t.push(case("1x2x9x6 3x3 stride 2 pad 1", cv(nchw(1, 2, 9, 6), 3, Window::square(3, 2, 1), false)));
    t.push(case("1x3x5x11 1x7", cv(nchw(1, 3, 5, 11), 2, Window::rect(1, 7, 0, 3), true)));
    t.push(case("1x3x11x5 7x1", cv(nchw(1, 3, 11, 5), 2, Window::rect(7, 1, 3, 0), false)));
    t.push(case("1x1x1x1 1x1", cv(nchw(1, 1, 1, 1), 1, Window::square(1, 1, 0), false)));
    t.push(case("N=0", cv(nchw(0, 3, 5, 5), 2, Window::square(3, 1, 1), false)));
    t.push(case("Co=0", cv(nchw(1, 3, 5, 5), 0, Window::square(3, 1, 1), false)));
    t.push(case("Ci=0 gives the bias", cv(nchw(2, 0, 4, 3), 3, Window::square(3, 1, 1), true)));
    t.push(case("H=0 all padding", cv(nchw(1, 2, 0, 4), 3, Window::square(1, 1, 1), false)));
    t.push(case("5x5 over 3x3", cv(nchw(1, 2, 3, 3), 2, Window::square(5, 1, 0), false)).bad());
    t.push(case("stride 0", cv(nchw(1, 2, 3, 3), 2, win(1, 1, 0, 0, 0), false)).bad());
    t.push(case("bias one long", cv(nchw(1, 2, 3, 3), 2, Window::square(1, 1, 0), false)).lens(&[18, 4, 3]).bad());
    t.push(case("w one short", cv(nchw(1, 2, 3, 3), 2, Window::square(3, 1, 1), false)).lens(&[18, 35, 2]).bad());

    // pool2d: x (N, C, H, W)
    let pl = |x, win, pool| Pool2d { x, win, pool };
    t.push(case("max 2x3x9x7 3x3 s2 p1", pl(nchw(2, 3, 9, 7), Window::square(3, 2, 1), Pool::Max)));
    t.push(case("avg 1x2x5x8 3x3 s1 p1", pl(nchw(1, 2, 5, 8), Window::square(3, 1, 1), Pool::Avg)));
    t.push(case("avg over the whole 5x7 map", pl(nchw(2, 4, 5, 7), win(5, 7, 1, 0, 0), Pool::Avg)));
    t.push(case("max 1x1x7x5 2x2 s2", pl(nchw(1, 1, 7, 5), Window::square(2, 2, 0), Pool::Max)));
    t.push(case("max 1x1x1x1", pl(nchw(1, 1, 1, 1), Window::square(1, 1, 0), Pool::Max)));
    t.push(case("N=0", pl(nchw(0, 3, 5, 5), Window::square(3, 2, 1), Pool::Max)));
    t.push(case("C=0", pl(nchw(2, 0, 5, 5), Window::square(3, 2, 1), Pool::Avg)));
    t.push(case("H=0 padding only", pl(nchw(1, 1, 0, 3), Window::square(2, 1, 1), Pool::Avg)).bad());
    t.push(case("W=0 padding only", pl(nchw(1, 1, 3, 0), Window::square(2, 1, 1), Pool::Max)).bad());
    t.push(case("pad above k/2", pl(nchw(1, 1, 5, 5), Window::square(3, 1, 2), Pool::Max)).bad());
    t.push(case("window past the map", pl(nchw(1, 1, 3, 3), Window::square(4, 1, 0), Pool::Avg)).bad());
    t.push(case("stride 0", pl(nchw(1, 1, 3, 3), win(2, 2, 0, 0, 0), Pool::Max)).bad());
    t.push(case("x one short", pl(nchw(1, 2, 3, 3), Window::square(2, 1, 0), Pool::Max)).lens(&[17]).bad());

    // concat_channels: parts (N, C_i, HW)
    let cc = |channels: &[usize], n, hw| Concat { channels: channels.to_vec(), n, hw };
    t.push(case("3+1+5 channels 2x35", cc(&[3, 1, 5], 2, 35)));
    t.push(case("one part", cc(&[7], 3, 5)));
    t.push(case("a part of 0 channels", cc(&[0, 4, 0], 2, 3)));
    t.push(case("N=0", cc(&[2, 3], 0, 5)));
    t.push(case("HW=0", cc(&[2, 3], 2, 0)));
    t.push(case("all parts empty", cc(&[0, 0], 2, 5)));
    t.push(case("no parts", cc(&[], 2, 5)));
    t.push(case("part 1 one short", cc(&[2, 3], 2, 5)).lens(&[20, 29]).bad());

    // group_norm: x (N, C, HW), gamma, beta (C)
    let gn = |n, c, hw, groups, silu| GroupNorm { n, c, hw, groups, silu };
    t.push(case("2x6x35 3 groups silu", gn(2, 6, 35, 3, true)));
    t.push(case("1x8x17 8 groups", gn(1, 8, 17, 8, false)));
    t.push(case("3x5x7 1 group", gn(3, 5, 7, 1, true)));
    t.push(case("1x1x1", gn(1, 1, 1, 1, false)));
    t.push(case("N=0", gn(0, 4, 5, 2, true)));
    t.push(case("HW=0", gn(2, 4, 0, 2, false)));
    t.push(case("C=0", gn(2, 0, 5, 1, true)));
    t.push(case("groups=0", gn(1, 4, 5, 0, false)).bad());
    t.push(case("6 channels in 4 groups", gn(1, 6, 5, 4, false)).bad());
    t.push(case("gamma one long", gn(1, 4, 5, 2, false)).lens(&[20, 5, 4]).bad());

    // upsample_nearest2x: (N, C, H, W)
    let us = |n, c, h, w| Upsample { n, c, h, w };
    t.push(case("2x3x5x7", us(2, 3, 5, 7)));
    t.push(case("1x1x1x1", us(1, 1, 1, 1)));
    t.push(case("1x2x1x9", us(1, 2, 1, 9)));
    t.push(case("N=0", us(0, 3, 2, 2)));
    t.push(case("H=0", us(2, 3, 0, 4)));
    t.push(case("W=0", us(2, 3, 4, 0)));
    t.push(case("x one long", us(1, 2, 3, 3)).lens(&[19]).bad());

    // The fused forms a GPU runs in one pass: linear + GELU, linear for attention, a GEMM operand.
    for gelu in [true, false] {
        let l = |m, k, n, bias| if gelu { LinearGelu { m, k, n, bias } } else { LinearOperand { m, k, n, bias } };
        t.push(case("3x17x129 bias", l(3, 17, 129, true)));
        t.push(case("5x33x7 no bias", l(5, 33, 7, false)));
        t.push(case("2x32x64 bias 256 B", l(2, 32, 64, true)));
        t.push(case("M=0", l(0, 5, 7, true)));
        t.push(case("K=0 bias", l(4, 0, 6, true)));
        t.push(case("bias of N+1", l(3, 5, 7, true)).lens(&[15, 35, 8]).bad());
    }
    t.push(case("3x17x129", Operand { n: 3 * 17 * 129, k: 129 }));
    t.push(case("64 256 B", Operand { n: 64, k: 64 }));
    t.push(case("0", Operand { n: 0, k: 5 }));

    // gated_add_layer_norm_modulate: x, y (B, T, D); gate, shift, scale column views.
    let gl = |b, t, d, gate, shift, scale| GatedAddLnMod { b, t, d, gate, shift, scale };
    let d = 129;
    t.push(case("3x17x129 gate_msa, next shift/scale", gl(3, 17, d, v(2, 6 * d, 2 * d), v(3, 6 * d, 3 * d), v(3, 6 * d, 4 * d))));
    t.push(case("2x5x33 three strides", gl(2, 5, 33, v(2, 40, 7), v(3, 66, 33), v(4, 34, 1))));
    t.push(case("1x1x1", gl(1, 1, 1, v(2, 1, 0), v(3, 1, 0), v(4, 2, 1))));
    t.push(case("2x2x64 views end 256 B", gl(2, 2, 64, v(2, 128, 64), v(3, 64, 0), v(4, 64, 0))));
    t.push(case("B=0", gl(0, 3, 5, v(2, 5, 0), v(3, 5, 0), v(4, 5, 0))));
    t.push(case("D=0", gl(2, 3, 0, v(2, 3, 3), v(3, 2, 1), v(4, 1, 0))));
    t.push(case("gate view past its row", gl(2, 3, 5, v(2, 10, 6), v(3, 5, 0), v(4, 5, 0))).bad());

    // gather_rows_idf: ids as exact f32 (the CUDA side trusts them: the caller checks).
    let gi = |vocab, ids: &[usize], d| GatherRowsIdf { vocab, ids: ids.to_vec(), d };
    t.push(case("5 of V=7 D=33", gi(7, &[6, 0, 3, 3, 1], 33)));
    t.push(case("empty ids", gi(4, &[], 9)));
    t.push(case("D=0", gi(4, &[1, 2], 0)));
    t.push(case("1 of V=1 D=1", gi(1, &[0], 1)));

    // transpose: (B, R, C) → (B, C, R)
    let tr = |b, r, c| Transpose { b, r, c };
    t.push(case("3x17x5", tr(3, 17, 5)));
    t.push(case("1x1x1", tr(1, 1, 1)));
    t.push(case("2x1x9", tr(2, 1, 9)));
    t.push(case("B=0", tr(0, 3, 4)));
    t.push(case("R=0", tr(2, 0, 4)));
    t.push(case("C=0", tr(2, 3, 0)));
    t.push(case("x one short", tr(2, 3, 4)).lens(&[23]).bad());

    t
}

/// Runs one case on `be`: uploads the inputs, calls the op, downloads its result (the mutated
/// buffer of an in-place op).
fn exec<B: Backend>(be: &B, args: &Args, inputs: &[Vec<f32>]) -> Result<Vec<f32>> {
    let mut bufs = inputs
        .iter()
        .map(|x| be.upload(x))
        .collect::<Result<Vec<_>>>()?;
    if let Args::Concat { channels, n, hw } = args {
        let parts: Vec<(&B::Buf, usize)> = bufs.iter().zip(channels.iter().copied()).collect();
        return be.download(&be.concat_channels(&parts, *n, *hw)?);
    }
    let (x, rest) = bufs
        .split_first_mut()
        .expect("every op but concat has a first input");
    let rest: &[B::Buf] = rest;
    let view = |w: &View| Cols::<B> {
        buf: &rest[w.buf - 1],
        stride: w.stride,
        offset: w.offset,
    };
    let out = match *args {
        Args::Linear { m, k, n, bias } => {
            be.linear(x, &rest[0], bias.then(|| &rest[1]), m, k, n)?
        }
        Args::LayerNorm { rows, d } => be.layer_norm(x, rows, d, EPS)?,
        Args::Modulate {
            b,
            t,
            d,
            ref shift,
            ref scale,
        } => {
            be.modulate(x, view(shift), view(scale), b, t, d)?;
            return be.download(x);
        }
        Args::LayerNormModulate {
            b,
            t,
            d,
            ref shift,
            ref scale,
        } => be.layer_norm_modulate(x, view(shift), view(scale), b, t, d, EPS)?,
        Args::GatedAdd { b, t, d, ref gate } => {
            be.gated_add(x, &rest[0], view(gate), b, t, d)?;
            return be.download(x);
        }
        Args::AddRow { b, r } => {
            be.add_row(x, &rest[0], b, r)?;
            return be.download(x);
        }
        Args::Add { .. } => {
            be.add(x, &rest[0])?;
            return be.download(x);
        }
        Args::Unary { op, .. } => {
            match op {
                Op::Silu => return be.download(&be.silu(x)?),
                Op::GeluTanh => be.gelu_tanh(x)?,
                Op::GeluErf => be.gelu_erf(x)?,
                Op::Relu => be.relu(x)?,
                Op::QuickGelu => be.quick_gelu(x)?,
                other => panic!("{} is not an activation", other.name()),
            }
            return be.download(x);
        }
        Args::Attention { b, t, heads, dh } => be.attention(x, b, t, heads, dh)?,
        Args::Patchify { b, c, h, w, p } => be.patchify(x, b, c, h, w, p)?,
        Args::Unpatchify {
            b,
            c_out,
            c_keep,
            h,
            w,
            p,
        } => be.unpatchify(x, b, c_out, c_keep, h, w, p)?,
        Args::GatherRows { ref ids, d, .. } => be.gather_rows(x, ids, d)?,
        Args::LayerNormAffine { rows, d } => {
            be.layer_norm_affine(x, &rest[0], &rest[1], rows, d, EPS)?
        }
        Args::Conv2d {
            x: dims,
            co,
            win,
            relu,
        } => be.conv2d(x, dims, &rest[0], &rest[1], co, win, relu)?,
        Args::Pool2d { x: dims, win, pool } => be.pool2d(x, dims, win, pool)?,
        Args::GroupNorm {
            n,
            c,
            hw,
            groups,
            silu,
        } => be.group_norm(x, &rest[0], &rest[1], n, c, hw, groups, EPS, silu)?,
        Args::Upsample { n, c, h, w } => be.upsample_nearest2x(x, n, c, h, w)?,
        Args::Transpose { b, r, c } => be.transpose(x, b, r, c)?,
        Args::LinearGelu { m, k, n, bias } => {
            be.linear_gelu(x, &rest[0], bias.then(|| &rest[1]), m, k, n)?
        }
        Args::LinearOperand { m, k, n, bias } => {
            be.linear_operand(x, &rest[0], bias.then(|| &rest[1]), m, k, n)?
        }
        Args::Operand { k, .. } => be.operand(be.upload(&inputs[0])?, k)?,
        Args::GatedAddLnMod {
            b,
            t,
            d,
            ref gate,
            ref shift,
            ref scale,
        } => {
            let y = be.gated_add_layer_norm_modulate(
                x,
                &rest[0],
                view(gate),
                view(shift),
                view(scale),
                b,
                t,
                d,
                EPS,
            )?;
            let mut both = be.download(x)?;
            both.extend(be.download(&y)?);
            return Ok(both);
        }
        Args::GatherRowsIdf { ref ids, d, .. } => {
            let idf: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
            be.gather_rows_idf(x, &be.upload(&idf)?, d)?
        }
        Args::Concat { .. } => unreachable!("handled above"),
    };
    be.download(&out)
}

/// What a backend did with a case: a result, an error, or a panic (never acceptable).
enum Outcome {
    Done(Vec<f32>),
    Refused(String),
    Panicked(String),
}

fn run_on<B: Backend>(be: &B, args: &Args, inputs: &[Vec<f32>]) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| exec(be, args, inputs))) {
        Ok(Ok(y)) => Outcome::Done(y),
        Ok(Err(e)) => Outcome::Refused(format!("{e:#}")),
        Err(p) => Outcome::Panicked(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into()),
        ),
    }
}

/// max|a − r| / max|r| over the finite references; positions where both agree exactly (same
/// infinity, both NaN) count 0, any other non-finite mismatch is infinite.
fn rel_err(a: &[f32], r: &[f32]) -> f64 {
    let mut num = 0f64;
    for (&a, &r) in a.iter().zip(r) {
        let d = if a == r || (a.is_nan() && r.is_nan()) {
            0.0
        } else if !a.is_finite() || !r.is_finite() {
            f64::INFINITY
        } else {
            (a as f64 - r as f64).abs()
        };
        num = num.max(d);
    }
    let den = r
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (v as f64).abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    if num == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Bit-identical, except that any NaN matches any NaN.
fn same_bits(a: &[f32], r: &[f32]) -> bool {
    a.iter()
        .zip(r)
        .all(|(&a, &r)| a.to_bits() == r.to_bits() || (a.is_nan() && r.is_nan()))
}

#[derive(Default)]
struct OpStats {
    cases: usize,
    on_cuda: usize,
    not_on_cuda: bool,
    worst: f64,
    worst_case: &'static str,
}

/// The CUDA backend under test, or `None` (said loudly) when there is none.
#[cfg(any(feature = "cuda", feature = "cuda12"))]
fn gpu() -> Option<sitdiv::backend::cuda::Cuda> {
    let g = cuda::device();
    if g.is_none() {
        eprintln!(
            "\n*** CUDA SIDE SKIPPED: no CUDA device; only the CPU side of every case ran ***\n"
        );
    }
    g
}

#[cfg(not(any(feature = "cuda", feature = "cuda12")))]
fn gpu() -> Option<Cpu> {
    eprintln!(
        "\n*** CUDA SIDE SKIPPED: built without --features cuda; only the CPU side of every case ran \
         (scripts/emulated-gpu.sh cargo test --features cuda --test ops -- backend_ops::) ***\n"
    );
    None
}

#[test]
fn every_op_on_cpu_and_cuda() {
    let cases = table();
    let mut stats: BTreeMap<Op, OpStats> =
        Op::ALL.iter().map(|&op| (op, OpStats::default())).collect();
    for c in &cases {
        stats
            .get_mut(&c.args.op())
            .expect("Op::ALL lists every op")
            .cases += 1;
    }
    let thin: Vec<&str> = stats
        .iter()
        .filter(|(_, s)| s.cases < 3)
        .map(|(op, _)| op.name())
        .collect();
    assert!(
        thin.is_empty(),
        "ops with fewer than 3 cases in the table: {thin:?}"
    );

    // Panics are caught and reported per case: one line each, not a backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| eprintln!("caught {info}")));

    let mut gpu = gpu();
    let mut failures: Vec<String> = Vec::new();
    let (mut cpu_time, mut gpu_time) = (0f64, 0f64);
    let mut fail = |op: Op, label: &str, what: String| {
        failures.push(format!("{} [{label}]: {what}", op.name()))
    };

    for c in &cases {
        let op = c.args.op();
        let inputs = c.inputs();
        let t0 = Instant::now();
        let cpu = run_on(&Cpu, &c.args, &inputs);
        cpu_time += t0.elapsed().as_secs_f64();
        match (&cpu, c.bad) {
            (Outcome::Panicked(m), _) => fail(op, c.label, format!("cpu panicked: {m}")),
            (Outcome::Done(_), true) => {
                fail(op, c.label, "cpu accepted a call it must refuse".into())
            }
            (Outcome::Refused(e), false) => fail(op, c.label, format!("cpu refused: {e}")),
            (Outcome::Done(y), false) if y.len() != c.args.out_len(&inputs) => fail(
                op,
                c.label,
                format!(
                    "cpu returned {} values, expected {}",
                    y.len(),
                    c.args.out_len(&inputs)
                ),
            ),
            _ => {}
        }
        let Some(g) = gpu.as_ref() else { continue };
        let t0 = Instant::now();
        let dev = run_on(g, &c.args, &inputs);
        gpu_time += t0.elapsed().as_secs_f64();
        let s = stats.get_mut(&op).expect("Op::ALL lists every op");
        if !g.supports(op) {
            s.not_on_cuda = true;
            match dev {
                Outcome::Refused(e) if e.contains("not implemented") => {}
                Outcome::Refused(e) => fail(
                    op,
                    c.label,
                    format!("unsupported on cuda, but its error is: {e}"),
                ),
                Outcome::Done(_) => fail(
                    op,
                    c.label,
                    "supports() says no, yet cuda computed it".into(),
                ),
                Outcome::Panicked(m) => fail(op, c.label, format!("cuda panicked: {m}")),
            }
            continue;
        }
        match (&cpu, dev) {
            (_, Outcome::Panicked(m)) => fail(op, c.label, format!("cuda panicked: {m}")),
            (_, Outcome::Refused(e)) if e.contains("not implemented") => {
                fail(op, c.label, format!("supports() says yes, yet: {e}"))
            }
            (Outcome::Done(r), Outcome::Done(a)) => {
                s.on_cuda += 1;
                if a.len() != r.len() {
                    fail(
                        op,
                        c.label,
                        format!("cuda returned {} values, cpu {}", a.len(), r.len()),
                    );
                    continue;
                }
                let e = rel_err(&a, r);
                if e > s.worst || s.worst_case.is_empty() {
                    (s.worst, s.worst_case) = (s.worst.max(e), c.label);
                }
                if c.args.exact() && !same_bits(&a, r) {
                    fail(
                        op,
                        c.label,
                        format!("data movement differs from the cpu (rel {e:.2e})"),
                    );
                } else if e > TOL {
                    fail(
                        op,
                        c.label,
                        format!("rel error {e:.2e} > {TOL:e} against the cpu"),
                    );
                }
            }
            (Outcome::Done(_), Outcome::Refused(e)) => {
                fail(op, c.label, format!("cpu computed it, cuda refused: {e}"))
            }
            (Outcome::Refused(e), Outcome::Done(_)) => {
                fail(op, c.label, format!("cpu refused ({e}), cuda computed it"))
            }
            (Outcome::Refused(_), Outcome::Refused(_)) => s.on_cuda += 1,
            // A cpu panic is reported above.
            (Outcome::Panicked(_), _) => {}
        }
        // A device error is sticky: stop the CUDA side rather than blame every later case on it.
        let alive = g.upload(&[1.0]).and_then(|b| g.download(&b)).is_ok();
        if !alive {
            fail(
                op,
                c.label,
                "the CUDA context is dead after this case; later CUDA cases did not run".into(),
            );
            gpu = None;
        }
    }

    std::panic::set_hook(hook);

    // The report.
    let ran_cuda = stats.values().any(|s| s.on_cuda > 0 || s.not_on_cuda);
    println!(
        "\n{:<20} {:>5} {:>7} {:>10}  worst case",
        "op", "cases", "on cuda", "worst rel"
    );
    for (op, s) in &stats {
        let cuda = if s.not_on_cuda {
            "no".to_string()
        } else if ran_cuda {
            s.on_cuda.to_string()
        } else {
            "-".to_string()
        };
        let worst = if s.on_cuda > 0 {
            format!("{:.2e}", s.worst)
        } else {
            "-".into()
        };
        println!(
            "{:<20} {:>5} {:>7} {:>10}  {}",
            op.name(),
            s.cases,
            cuda,
            worst,
            s.worst_case
        );
    }
    let total = stats.values().map(|s| s.on_cuda).sum::<usize>();
    if ran_cuda {
        let not_on = stats.values().filter(|s| s.not_on_cuda).count();
        let (worst_op, worst) = stats
            .iter()
            .filter(|(_, s)| s.on_cuda > 0)
            .map(|(op, s)| (op.name(), s.worst))
            .fold(("-", 0.0), |a, b| if b.1 > a.1 { b } else { a });
        println!(
            "{} ops, {total} cases on cpu+cuda, {not_on} ops not on cuda, worst rel {worst:.2e} ({worst_op}); \
             {} cases in all, cpu {cpu_time:.3} s, cuda {gpu_time:.3} s",
            stats.len(),
            cases.len()
        );
    } else {
        println!(
            "{} ops, {} cases on cpu only ({cpu_time:.3} s), CUDA SIDE SKIPPED",
            stats.len(),
            cases.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
