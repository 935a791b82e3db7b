//! `subscriber = true`, the default: the default subscriber is installed.

#[tableflip::main(subscriber = true)]
async fn main() {
    assert!(
        tracing::dispatcher::has_been_set(),
        "the default subscriber is missing"
    );
}
