//! `qemu-io` against an NBD unix socket: how the tests write and read a replicated volume
//! through its frontend with a client we did not write.

use std::path::Path;
use std::process::Command;

/// Runs `qemu-io` commands (`write -P 0x5a 0 1M`, `read -P 0x5a 0 1M`, `flush`) on the NBD
/// export at `socket`; true when every command succeeded (patterns verified), and the output.
pub fn qemu_io(socket: &Path, cmds: &[&str]) -> (bool, String) {
    let mut c = Command::new("qemu-io");
    c.args(["-t", "none", "-f", "raw"]);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    let out = c.arg(format!("nbd+unix:///?socket={}", socket.display())).output().expect("qemu-io runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && !text.contains("Pattern verification failed") && !text.contains("failed"), text)
}
