//! Test gates. A suite of this crate that needs something beyond Rust (see `GATES`) runs only
//! when its variable is set; otherwise libtest lists it as ignored, with the reason, never as
//! passed. Each variable `KITH_TEST_X` that is set (not empty, not `0`) turns on the cfg
//! `kith_test_x`, which the tests read as `#[cfg_attr(not(kith_test_x), ignore = "why")]`.
//! README "Tests" lists the variables; `.ci/run` sets them all.

const GATES: &[&str] = &[
    "KITH_TEST_POSTGRES",
    "KITH_TEST_PYTHON",
    "KITH_TEST_BROWSER",
];

fn main() {
    for var in GATES {
        let cfg = var.to_ascii_lowercase();
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        let value = std::env::var(var).unwrap_or_default();
        if !value.trim().is_empty() && value.trim() != "0" {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
