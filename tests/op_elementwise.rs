//! Residual adds: plain, broadcast over the batch, gated (the gated form is in op_norm.rs with
//! the adaLN chunks it reads).

use sitdiv::backend::cpu::Cpu;
use sitdiv::backend::Backend;

#[test]
fn add_and_add_row() {
    let mut x = vec![1f32; 6];
    Cpu.add_row(&mut x, &vec![1.0, 2.0, 3.0], 2, 3).unwrap();
    assert_eq!(x, [2.0, 3.0, 4.0, 2.0, 3.0, 4.0]);
    Cpu.add(&mut x, &vec![1.0; 6]).unwrap();
    assert_eq!(x, [3.0, 4.0, 5.0, 3.0, 4.0, 5.0]);
    assert!(
        Cpu.add(&mut x, &vec![1.0; 5]).is_err(),
        "shape mismatch accepted"
    );
    assert!(
        Cpu.add_row(&mut x, &vec![1.0; 4], 2, 3).is_err(),
        "shape mismatch accepted"
    );
}
