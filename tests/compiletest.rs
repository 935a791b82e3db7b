//! UI tests for `#[tableflip::main]`: `pass` cases compile and run (each starts a real
//! service on loopback or a temporary socket and returns at once, so it must exit 0);
//! `fail` cases must fail with exactly the committed `.stderr`. Regenerate those with
//! `TRYBUILD=overwrite cargo test --test compiletest`, then read every diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
