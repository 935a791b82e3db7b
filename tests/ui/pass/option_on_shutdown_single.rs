//! `on_shutdown = path`: the hook runs when the body returns and the service stops.

async fn hook(reason: tableflip::ShutdownReason) {
    eprintln!("shutting down: {reason:?}");
}

#[tableflip::main(on_shutdown = hook)]
async fn main() {}
