//! `ready = "auto"`, the default, written out.

#[tableflip::main(ready = "auto")]
async fn main(tf: tableflip::Handle) {
    tf.ready().unwrap();
}
