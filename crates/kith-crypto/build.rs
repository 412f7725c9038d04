//! Test gates of kith-crypto: see build-support/gates.rs.

include!("../../build-support/gates.rs");

fn main() {
    gates(&["KITH_TEST_PYTHON"]);
}
