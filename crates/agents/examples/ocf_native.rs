//! A native agent with the OCF calling convention: `ocf_native TYPE ACTION`, parameters from
//! the environment. Wrap it in a script (`exec ocf_native vip "$1"`) under an OCF provider
//! directory to hand it to a cluster manager or to `ocf-tester`. `crmctl agent ocf-exec` is
//! the same for installed systems.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(action)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ocf_native TYPE ACTION");
        return ExitCode::from(2);
    };
    let agent = match agents::Registry::default().get(kind) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ocf-exit-reason:{e}");
            return ExitCode::from(5);
        }
    };
    let env = std::env::vars().collect();
    let out = agents::run_as_ocf_script(agent.as_ref(), action, &env);
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(out.code)
}
