//! Compile tests of the derives: every misuse of `#[derive(Event)]` and `#[derive(Aggregate)]`
//! gives one error, on the offending token, that teaches the right form (`ui/`), and the valid
//! edge cases compile (`ui-pass/`).
//!
//! One program per rule under `ui/event/` and `ui/aggregate/`, its expected compiler output next
//! to it. After changing a message, regenerate the outputs with
//! `TRYBUILD=overwrite cargo test -p es-tests --test ui` and read every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/**/*.rs");
    cases.pass("ui-pass/*.rs");
}
