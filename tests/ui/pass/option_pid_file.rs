//! `pid_file`.

#[tableflip::main(pid_file = "/tmp/tableflip-ui-option-pid-file.pid")]
async fn main() {
    let pid = std::fs::read_to_string("/tmp/tableflip-ui-option-pid-file.pid").unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
}
