//! `subscriber = false`: no `tracing` subscriber is installed; the body may set its own.

#[tableflip::main(subscriber = false)]
async fn main() {
    assert!(
        !tracing::dispatcher::has_been_set(),
        "subscriber = false installed a subscriber"
    );
    tracing_subscriber::fmt()
        .try_init()
        .expect("the body's own subscriber");
}
