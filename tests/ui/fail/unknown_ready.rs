#[tableflip::main(ready = "later")]
async fn main(tf: tableflip::Handle) {
    drop(tf);
}
