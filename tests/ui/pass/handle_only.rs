//! No listeners at all, only the Handle (which may be renamed and `mut`).

use tableflip::Handle;

#[tableflip::main]
async fn main(mut handle: Handle) {
    handle = handle.clone();
    assert_eq!(handle.in_flight(), 0);
}
