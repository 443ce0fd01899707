//! `klaxon launchd print|install|uninstall [--label L]` and
//! `klaxon systemd print|install|uninstall`: run the agent at login as a per-user
//! service. The service definitions and plans live in [`crate::service`]; this module
//! finds the binary, the config and the home directory, and reports.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::UsageError;
use crate::config::{self, Env};
use crate::service::launchd::{self, Label, LaunchAgent};
use crate::service::systemd::{self, UserUnit};
use crate::service::{Invocation, Plan};

#[derive(Debug, Args)]
pub struct LaunchdArgs {
    #[command(subcommand)]
    action: Action,
    /// The LaunchAgent's label, which also names its plist
    #[arg(long, global = true, value_name = "L", default_value = launchd::DEFAULT_LABEL)]
    label: String,
}

#[derive(Debug, Args)]
pub struct SystemdArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Action {
    /// Print the service definition for the current binary and config
    Print,
    /// Write the service definition and start the agent (again, if it runs)
    Install,
    /// Stop the agent and remove the service definition
    Uninstall,
}

/// Variables a service manager gives a user's service besides the `PATH` klaxon sets:
/// launchd passes HOME, USER, LOGNAME, SHELL and TMPDIR; systemd's user manager HOME,
/// USER, LOGNAME, SHELL, XDG_RUNTIME_DIR and LANG. Nothing from the user's shell profile.
const SERVICE_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "LANG",
];

pub fn launchd(
    config: Option<&Path>,
    env: &dyn Env,
    args: LaunchdArgs,
) -> anyhow::Result<ExitCode> {
    let label = Label::try_new(&args.label).map_err(UsageError)?;
    let agent = LaunchAgent {
        label,
        home: home(env)?,
        uid: nix::unistd::getuid().as_raw(),
    };
    let path_env = env.var("PATH").map(OsString::from);
    match args.action {
        Action::Print => {
            let invocation = invocation(config, env, "launchd", launchd::STANDARD_PATH)?;
            std::io::stdout().write_all(&agent.xml(&invocation)?)?;
        }
        Action::Install => {
            let invocation = invocation(config, env, "launchd", launchd::STANDARD_PATH)?;
            let plan = agent.install_plan(&invocation)?;
            if !execute(&plan, path_env, "launchd install", LAUNCHCTL_MISSING)? {
                return Ok(ExitCode::from(1));
            }
            println!(
                "installed {} (`{}`); it runs `{}`, logs go to {}",
                agent.plist_path().display(),
                agent.label.as_str(),
                invocation.arguments().join(" "),
                agent.log_dir().display()
            );
        }
        Action::Uninstall => {
            let existed = agent.plist_path().exists();
            let plan = agent.uninstall_plan();
            if !execute(&plan, path_env, "launchd uninstall", LAUNCHCTL_MISSING)? {
                return Ok(ExitCode::from(1));
            }
            if existed {
                println!("uninstalled {}", agent.plist_path().display());
            } else {
                println!(
                    "{} was not installed; `{}` is not loaded",
                    agent.plist_path().display(),
                    agent.label.as_str()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn systemd(
    config: Option<&Path>,
    env: &dyn Env,
    args: SystemdArgs,
) -> anyhow::Result<ExitCode> {
    let home = home(env)?;
    let unit = UserUnit {
        config_home: UserUnit::config_home(env.var("XDG_CONFIG_HOME").as_deref(), &home),
    };
    let path_env = env.var("PATH").map(OsString::from);
    match args.action {
        Action::Print => {
            let invocation = invocation(config, env, "systemd", systemd::STANDARD_PATH)?;
            print!("{}", unit.text(&invocation));
        }
        Action::Install => {
            let invocation = invocation(config, env, "systemd", systemd::STANDARD_PATH)?;
            let plan = unit.install_plan(&invocation);
            if !execute(&plan, path_env, "systemd install", SYSTEMCTL_MISSING)? {
                return Ok(ExitCode::from(1));
            }
            println!(
                "installed {}; it runs `{}`; logs: journalctl --user -u {}",
                unit.path().display(),
                invocation.arguments().join(" "),
                systemd::UNIT_NAME
            );
            println!("to keep it running after you log out: loginctl enable-linger \"$USER\"");
        }
        Action::Uninstall => match unit.uninstall_plan() {
            None => println!("{} was not installed", unit.path().display()),
            Some(plan) => {
                if !execute(&plan, path_env, "systemd uninstall", SYSTEMCTL_MISSING)? {
                    return Ok(ExitCode::from(1));
                }
                println!("uninstalled {}", unit.path().display());
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

const LAUNCHCTL_MISSING: &str =
    "launchd is the service manager of macOS; on Linux, use `klaxon systemd install`";
const SYSTEMCTL_MISSING: &str = "this system does not use systemd; run `klaxon run` from its own service manager, \
     or see `klaxon launchd print` on macOS";

/// Carries out `plan`, echoing commands to stderr. When its tool is not on `PATH`,
/// prints what it would have done and why it cannot, and answers `false`: nothing was
/// written.
fn execute(plan: &Plan, path_env: Option<OsString>, what: &str, why: &str) -> anyhow::Result<bool> {
    let done = plan.execute(path_env.as_deref(), &mut std::io::stderr())?;
    if !done {
        eprintln!(
            "error: `{}` is not on PATH, so `klaxon {what}` cannot work here ({why})\n\
             it would:\n{}nothing was changed",
            plan.tool,
            plan.describe()
        );
    }
    Ok(done)
}

fn home(env: &dyn Env) -> anyhow::Result<PathBuf> {
    env.var("HOME")
        .filter(|h| Path::new(h).is_absolute())
        .map(PathBuf::from)
        .or_else(config::paths::home_dir)
        .context("cannot find the home directory: set HOME")
}

/// The running binary and the config, both absolute with symlinks resolved, so the
/// service runs them from wherever it starts. The config must load as the service will
/// load it (without the user's shell variables): a service that fails at every start is
/// worse than an error now.
fn invocation(
    flag: Option<&Path>,
    env: &dyn Env,
    manager: &str,
    standard_path: &[&str],
) -> anyhow::Result<Invocation> {
    let exe = std::env::current_exe().context("cannot find the klaxon binary")?;
    let program = exe
        .canonicalize()
        .with_context(|| format!("cannot resolve the klaxon binary `{}`", exe.display()))?;
    let path = config::locate(flag, env).map_err(UsageError)?;
    let config_file = path
        .canonicalize()
        .with_context(|| format!("cannot read the config file `{}`", path.display()))
        .map_err(|e| UsageError(format!("{e:#}")))?;
    // The PATH only matters through `${PATH}`; the real one is set from the binary.
    let service_path = Invocation::new(&program, &config_file)?.path_env(standard_path);
    let service_env = |name: &str| {
        if name == "PATH" {
            Some(service_path.clone())
        } else if SERVICE_ENV.contains(&name) {
            env.var(name)
        } else {
            None
        }
    };
    if let Err(e) = super::load(Some(&config_file), &service_env) {
        if config::load(&config_file, env).is_ok() {
            return Err(UsageError(format!(
                "{e:#}\nnote: the config loads in this shell but not as a {manager} service, \
                 which does not see your shell's variables (only {} and PATH); \
                 put them in a file named by `agent.env_file`",
                SERVICE_ENV.join(", ")
            ))
            .into());
        }
        return Err(e);
    }
    Ok(Invocation::new(&program, &config_file)?)
}
