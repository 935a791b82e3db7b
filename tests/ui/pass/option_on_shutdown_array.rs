//! `on_shutdown = [paths]`: hooks run in order; paths may be qualified.

mod hooks {
    pub async fn first(reason: tableflip::ShutdownReason) {
        eprintln!("first: {reason:?}");
    }
}

async fn second(reason: tableflip::ShutdownReason) {
    eprintln!("second: {reason:?}");
}

#[tableflip::main(on_shutdown = [hooks::first, second],)]
async fn main() {}
