use tableflip::Handle;

#[tableflip::main]
async fn main(tf: tableflip::Handle, again: Handle) {
    drop((tf, again));
}
