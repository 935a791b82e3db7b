//! `-> Result<(), Box<dyn std::error::Error>>`: `?` converts any error.

#[tableflip::main]
async fn main(tf: tableflip::Handle) -> Result<(), Box<dyn std::error::Error>> {
    let n: u16 = "8080".parse()?;
    assert_eq!(n, 8080);
    if tf.has_parent() {
        tf.wait_for_parent().await?;
    }
    Ok(())
}
