//! Test gates of kith: see build-support/gates.rs.

include!("../../build-support/gates.rs");

fn main() {
    gates(&[
        "KITH_TEST_POSTGRES",
        "KITH_TEST_PYTHON",
        "KITH_TEST_NETNS",
        "KITH_TEST_BROWSER",
    ]);
}
