//! A backend that runs the CPU reference and records which ops were called: the test that each
//! network's declared op list (`OPS`, checked by `backend::require` before a job computes
//! anything) is exactly what its forward uses.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Mutex;

use anyhow::Result;
use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::{Backend, Cols, Nchw, Op, Pool, Window};

#[derive(Default)]
pub struct Recording {
    seen: Mutex<BTreeSet<Op>>,
}

impl Recording {
    fn note(&self, op: Op) {
        self.seen.lock().unwrap().insert(op);
    }

    /// The ops called so far, sorted.
    pub fn seen(&self) -> Vec<Op> {
        self.seen.lock().unwrap().iter().copied().collect()
    }
}

fn cols<'a>(c: Cols<'a, Recording>) -> Cols<'a, Cpu> {
    Cols {
        buf: c.buf,
        stride: c.stride,
        offset: c.offset,
    }
}

impl Backend for Recording {
    type Buf = Vec<f32>;

    fn name(&self) -> String {
        "recording cpu".into()
    }
    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        Cpu.upload(data)
    }
    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Cpu.download(buf)
    }
    fn linear(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::Linear);
        Cpu.linear(x, w, b, m, k, n)
    }
    fn layer_norm(&self, x: &Vec<f32>, rows: usize, d: usize, eps: f32) -> Result<Vec<f32>> {
        self.note(Op::LayerNorm);
        Cpu.layer_norm(x, rows, d, eps)
    }
    fn modulate(
        &self,
        x: &mut Vec<f32>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        self.note(Op::Modulate);
        Cpu.modulate(x, cols(shift), cols(scale), b, t, d)
    }
    fn layer_norm_modulate(
        &self,
        x: &Vec<f32>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        self.note(Op::LayerNormModulate);
        Cpu.layer_norm_modulate(x, cols(shift), cols(scale), b, t, d, eps)
    }
    fn gated_add(
        &self,
        x: &mut Vec<f32>,
        y: &Vec<f32>,
        gate: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        self.note(Op::GatedAdd);
        Cpu.gated_add(x, y, cols(gate), b, t, d)
    }
    fn add_row(&self, x: &mut Vec<f32>, row: &Vec<f32>, b: usize, r: usize) -> Result<()> {
        self.note(Op::AddRow);
        Cpu.add_row(x, row, b, r)
    }
    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>) -> Result<()> {
        self.note(Op::Add);
        Cpu.add(x, y)
    }
    fn silu(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        self.note(Op::Silu);
        Cpu.silu(x)
    }
    fn gelu_tanh(&self, x: &mut Vec<f32>) -> Result<()> {
        self.note(Op::GeluTanh);
        Cpu.gelu_tanh(x)
    }
    fn attention(
        &self,
        qkv: &Vec<f32>,
        b: usize,
        t: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::Attention);
        Cpu.attention(qkv, b, t, heads, head_dim)
    }
    fn patchify(
        &self,
        x: &Vec<f32>,
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::Patchify);
        Cpu.patchify(x, b, c, h, w, p)
    }
    fn unpatchify(
        &self,
        o: &Vec<f32>,
        b: usize,
        c_out: usize,
        c_keep: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::Unpatchify);
        Cpu.unpatchify(o, b, c_out, c_keep, h, w, p)
    }
    fn gather_rows(&self, table: &Vec<f32>, ids: &[usize], d: usize) -> Result<Vec<f32>> {
        self.note(Op::GatherRows);
        Cpu.gather_rows(table, ids, d)
    }
    fn layer_norm_affine(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        rows: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        self.note(Op::LayerNormAffine);
        Cpu.layer_norm_affine(x, gamma, beta, rows, d, eps)
    }
    fn gelu_erf(&self, x: &mut Vec<f32>) -> Result<()> {
        self.note(Op::GeluErf);
        Cpu.gelu_erf(x)
    }
    fn relu(&self, x: &mut Vec<f32>) -> Result<()> {
        self.note(Op::Relu);
        Cpu.relu(x)
    }
    fn quick_gelu(&self, x: &mut Vec<f32>) -> Result<()> {
        self.note(Op::QuickGelu);
        Cpu.quick_gelu(x)
    }
    fn conv2d(
        &self,
        x: &Vec<f32>,
        d: Nchw,
        w: &Vec<f32>,
        b: &Vec<f32>,
        co: usize,
        win: Window,
        relu: bool,
    ) -> Result<Vec<f32>> {
        self.note(Op::Conv2d);
        Cpu.conv2d(x, d, w, b, co, win, relu)
    }
    fn pool2d(&self, x: &Vec<f32>, d: Nchw, win: Window, p: Pool) -> Result<Vec<f32>> {
        self.note(Op::Pool2d);
        Cpu.pool2d(x, d, win, p)
    }
    fn concat_channels(
        &self,
        parts: &[(&Vec<f32>, usize)],
        n: usize,
        hw: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::ConcatChannels);
        Cpu.concat_channels(parts, n, hw)
    }
    fn group_norm(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Vec<f32>> {
        self.note(Op::GroupNorm);
        Cpu.group_norm(x, gamma, beta, n, c, hw, groups, eps, silu)
    }
    fn upsample_nearest2x(
        &self,
        x: &Vec<f32>,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::UpsampleNearest2x);
        Cpu.upsample_nearest2x(x, n, c, h, w)
    }
    fn transpose(&self, x: &Vec<f32>, b: usize, r: usize, c: usize) -> Result<Vec<f32>> {
        self.note(Op::Transpose);
        Cpu.transpose(x, b, r, c)
    }
    fn operand(&self, x: Vec<f32>, k: usize) -> Result<Vec<f32>> {
        self.note(Op::Operand);
        Cpu.operand(x, k)
    }
    fn linear_gelu(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::LinearGelu);
        Cpu.linear_gelu(x, w, b, m, k, n)
    }
    fn linear_operand(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        self.note(Op::LinearOperand);
        Cpu.linear_operand(x, w, b, m, k, n)
    }
    fn gated_add_layer_norm_modulate(
        &self,
        x: &mut Vec<f32>,
        y: &Vec<f32>,
        gate: Cols<Self>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        self.note(Op::GatedAddLayerNormModulate);
        Cpu.gated_add_layer_norm_modulate(x, y, cols(gate), cols(shift), cols(scale), b, t, d, eps)
    }
    fn gather_rows_idf(&self, table: &Vec<f32>, ids: &Vec<f32>, d: usize) -> Result<Vec<f32>> {
        self.note(Op::GatherRowsIdf);
        Cpu.gather_rows_idf(table, ids, d)
    }
}
