//! Test gates of kith-value: see build-support/gates.rs.

include!("../../build-support/gates.rs");

fn main() {
    gates(&["KITH_TEST_PYTHON", "KITH_TEST_NODE"]);
}
