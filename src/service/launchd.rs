//! The macOS LaunchAgent that runs `klaxon run` at login: the plist (built as a
//! `plist::Value`, never from a text template) and the `launchctl` plans that load and
//! unload it in the user's `gui/UID` domain.

use std::path::PathBuf;

use plist::{Dictionary, Value};

use super::{Invocation, Plan, ServiceError, Step, argv};

/// The label when `--label` is not given. Reverse DNS, like every LaunchAgent.
pub const DEFAULT_LABEL: &str = "io.klaxon.agent";

/// Seconds launchd waits before starting the agent again after it exited. 10 is
/// launchd's own default; it is written out so the plist says what happens.
pub const THROTTLE_INTERVAL: i64 = 10;

/// Searched after the binary's own directory: Homebrew on Apple silicon, then on Intel,
/// then the system. launchd's own default is only the last four.
pub const STANDARD_PATH: &[&str] = &[
    "/opt/homebrew/bin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
];

/// A LaunchAgent label: reverse-DNS-like words of letters, digits, `-` and `_`, joined
/// by dots. It names the plist file and the service in `launchctl`, so no slashes,
/// spaces or empty words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    pub fn try_new(label: &str) -> Result<Self, String> {
        let problem = if label.is_empty() {
            Some("it is empty")
        } else if label.len() > 200 {
            Some("it is longer than 200 characters")
        } else if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            Some("only letters, digits, `.`, `-` and `_` are allowed")
        } else if !label.contains('.') {
            Some("it has no dot (use reverse DNS, like `io.klaxon.agent`)")
        } else if label.split('.').any(str::is_empty) {
            Some("it has an empty part between dots")
        } else {
            None
        };
        match problem {
            Some(why) => Err(format!("invalid launchd label `{label}`: {why}")),
            None => Ok(Self(label.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Label {
    fn default() -> Self {
        Self(DEFAULT_LABEL.to_owned())
    }
}

/// Where a LaunchAgent lives and how launchctl names it; what it runs is given to
/// [`LaunchAgent::plist`] and [`LaunchAgent::install_plan`] (uninstalling needs no
/// config).
#[derive(Debug, Clone)]
pub struct LaunchAgent {
    pub label: Label,
    /// The user's home directory.
    pub home: PathBuf,
    /// The user's id, for launchctl's `gui/UID` domain.
    pub uid: u32,
}

impl LaunchAgent {
    /// `~/Library/LaunchAgents/LABEL.plist`: where launchd loads per-user agents from at
    /// login.
    pub fn plist_path(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents")
            .join(format!("{}.plist", self.label.as_str()))
    }

    /// `~/Library/Logs/klaxon/`: where Console.app looks for a user's logs.
    pub fn log_dir(&self) -> PathBuf {
        self.home.join("Library/Logs/klaxon")
    }

    fn log_file(&self, stream: &str) -> Result<String, ServiceError> {
        let path = self
            .log_dir()
            .join(format!("{}.{stream}.log", self.label.as_str()));
        path.to_str()
            .map(str::to_owned)
            .ok_or(ServiceError::NotUtf8(path))
    }

    /// The plist, key by key.
    pub fn plist(&self, invocation: &Invocation) -> Result<Value, ServiceError> {
        let mut dict = Dictionary::new();
        dict.insert("Label".into(), self.label.as_str().into());
        dict.insert(
            "ProgramArguments".into(),
            Value::Array(
                invocation
                    .arguments()
                    .iter()
                    .map(|a| Value::from(*a))
                    .collect(),
            ),
        );
        // Start at login (and at `bootstrap`), not on demand.
        dict.insert("RunAtLoad".into(), true.into());
        // Restart after a crash or a non-zero exit (a config error while starting, too:
        // it starts again, ThrottleInterval apart, once the file is fixed), but not after
        // a clean exit: klaxon exits 0 only when asked to stop (SIGTERM), and a plain
        // `KeepAlive = true` would fight `launchctl kill` and the user.
        let mut keep_alive = Dictionary::new();
        keep_alive.insert("SuccessfulExit".into(), false.into());
        dict.insert("KeepAlive".into(), keep_alive.into());
        // A monitor is background work: launchd applies background CPU and I/O limits
        // instead of treating it as something the user is waiting on. (Homebrew's
        // services set this for daemons the same way.)
        dict.insert("ProcessType".into(), "Background".into());
        dict.insert("ThrottleInterval".into(), THROTTLE_INTERVAL.into());
        // launchd discards a job's output unless told where to put it; klaxon logs to
        // stderr, so without this its logs would be lost.
        dict.insert("StandardOutPath".into(), self.log_file("out")?.into());
        dict.insert("StandardErrorPath".into(), self.log_file("err")?.into());
        let mut env = Dictionary::new();
        env.insert("PATH".into(), invocation.path_env(STANDARD_PATH).into());
        dict.insert("EnvironmentVariables".into(), env.into());
        // launchd starts jobs in `/`; the home directory is where a script check run by
        // hand from a terminal would most likely have started, and it is what systemd
        // uses for user services. Paths in the config are relative to the config file
        // anyway.
        let home = self
            .home
            .to_str()
            .ok_or_else(|| ServiceError::NotUtf8(self.home.clone()))?;
        dict.insert("WorkingDirectory".into(), home.into());
        Ok(dict.into())
    }

    /// The plist as XML, as `launchd print` shows it and `install` writes it.
    pub fn xml(&self, invocation: &Invocation) -> Result<Vec<u8>, ServiceError> {
        let mut out = Vec::new();
        self.plist(invocation)?.to_writer_xml(&mut out)?;
        out.push(b'\n');
        Ok(out)
    }

    fn domain(&self) -> String {
        format!("gui/{}", self.uid)
    }

    fn target(&self) -> String {
        format!("gui/{}/{}", self.uid, self.label.as_str())
    }

    fn loaded_probe(&self) -> Step {
        Step::Probe {
            args: argv(&["launchctl", "print", &self.target()]),
            question: LOADED,
        }
    }

    fn bootout_if_loaded(&self) -> Step {
        Step::Run {
            args: argv(&["launchctl", "bootout", &self.target()]),
            only_if: Some(LOADED),
        }
    }

    /// Writes the plist and (re)loads it. An agent already loaded is booted out first,
    /// so a second install loads the new plist and ends where the first did.
    pub fn install_plan(&self, invocation: &Invocation) -> Result<Plan, ServiceError> {
        let plist = self.plist_path();
        let plist_arg = plist
            .to_str()
            .ok_or_else(|| ServiceError::NotUtf8(plist.clone()))?
            .to_owned();
        Ok(Plan {
            tool: "launchctl",
            steps: vec![
                Step::CreateDir(self.log_dir()),
                Step::Write {
                    path: plist.clone(),
                    contents: self.xml(invocation)?,
                },
                self.loaded_probe(),
                self.bootout_if_loaded(),
                // `launchctl disable` is remembered across reboots and makes bootstrap
                // fail ("service is disabled"); installing means the user wants it on.
                Step::Run {
                    args: argv(&["launchctl", "enable", &self.target()]),
                    only_if: None,
                },
                Step::Run {
                    args: vec![
                        "launchctl".into(),
                        "bootstrap".into(),
                        self.domain(),
                        plist_arg,
                    ],
                    only_if: None,
                },
            ],
        })
    }

    /// Unloads the agent if it is loaded and removes the plist; does nothing, and
    /// succeeds, when neither is there.
    pub fn uninstall_plan(&self) -> Plan {
        Plan {
            tool: "launchctl",
            steps: vec![
                self.loaded_probe(),
                self.bootout_if_loaded(),
                Step::Remove(self.plist_path()),
            ],
        }
    }
}

const LOADED: &str = "is the agent loaded?";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    fn agent(label: &str) -> LaunchAgent {
        LaunchAgent {
            label: Label::try_new(label).unwrap(),
            home: PathBuf::from("/Users/ann"),
            uid: 501,
        }
    }

    fn invocation() -> Invocation {
        Invocation::new(
            Path::new("/opt/homebrew/bin/klaxon"),
            Path::new("/Users/ann/My Config/klaxon.toml"),
        )
        .unwrap()
    }

    #[test]
    fn the_printed_plist_parses_back_key_by_key() {
        let xml = agent("io.klaxon.agent").xml(&invocation()).unwrap();
        let value = Value::from_reader_xml(xml.as_slice()).unwrap();
        let dict = value.as_dictionary().unwrap();
        let keys: Vec<&str> = dict.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "Label",
                "ProgramArguments",
                "RunAtLoad",
                "KeepAlive",
                "ProcessType",
                "ThrottleInterval",
                "StandardOutPath",
                "StandardErrorPath",
                "EnvironmentVariables",
                "WorkingDirectory",
            ]
        );
        assert_eq!(dict["Label"].as_string(), Some("io.klaxon.agent"));
        let args: Vec<&str> = dict["ProgramArguments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "/opt/homebrew/bin/klaxon",
                "--config",
                "/Users/ann/My Config/klaxon.toml",
                "run"
            ]
        );
        assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
        let keep_alive = dict["KeepAlive"].as_dictionary().unwrap();
        assert_eq!(keep_alive.len(), 1);
        assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
        assert_eq!(dict["ProcessType"].as_string(), Some("Background"));
        assert_eq!(dict["ThrottleInterval"].as_signed_integer(), Some(10));
        assert_eq!(
            dict["StandardOutPath"].as_string(),
            Some("/Users/ann/Library/Logs/klaxon/io.klaxon.agent.out.log")
        );
        assert_eq!(
            dict["StandardErrorPath"].as_string(),
            Some("/Users/ann/Library/Logs/klaxon/io.klaxon.agent.err.log")
        );
        let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(
            env["PATH"].as_string(),
            Some("/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        );
        assert_eq!(dict["WorkingDirectory"].as_string(), Some("/Users/ann"));
    }

    #[test]
    fn xml_special_characters_survive_the_round_trip() {
        let mut inv = invocation();
        inv.config = "/Users/ann/<&>\"'/klaxon.toml".into();
        let xml = agent("io.klaxon.agent").xml(&inv).unwrap();
        let value = Value::from_reader_xml(xml.as_slice()).unwrap();
        let args = value.as_dictionary().unwrap()["ProgramArguments"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(args[2].as_string(), Some("/Users/ann/<&>\"'/klaxon.toml"));
    }

    #[test]
    fn labels_are_reverse_dns_words() {
        for good in ["io.klaxon.agent", "com.example.klaxon-2", "a.b_c"] {
            assert_eq!(Label::try_new(good).unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("klaxon", "it has no dot"),
            ("io..klaxon", "empty part"),
            (".io.klaxon", "empty part"),
            ("io.klaxon.", "empty part"),
            ("io/klaxon.agent", "only letters"),
            ("../../evil.x", "only letters"),
            ("a/b", "only letters"),
            ("io.klaxon agent", "only letters"),
            ("io.kläxon", "only letters"),
        ] {
            let err = Label::try_new(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(
                err.starts_with(&format!("invalid launchd label `{bad}`")),
                "{err}"
            );
        }
        assert!(Label::try_new(&format!("a.{}", "b".repeat(199))).is_err());
    }

    #[test]
    fn install_boots_out_a_loaded_agent_then_bootstraps_the_file() {
        let a = agent("com.example.mon");
        let plan = a.install_plan(&invocation()).unwrap();
        assert_eq!(
            plan.describe(),
            "  1. create the directory /Users/ann/Library/Logs/klaxon\n\
             \x20 2. write /Users/ann/Library/LaunchAgents/com.example.mon.plist\n\
             \x20 3. run `launchctl print gui/501/com.example.mon` (is the agent loaded?)\n\
             \x20 4. run `launchctl bootout gui/501/com.example.mon` if yes to \"is the agent loaded?\"\n\
             \x20 5. run `launchctl enable gui/501/com.example.mon`\n\
             \x20 6. run `launchctl bootstrap gui/501 /Users/ann/Library/LaunchAgents/com.example.mon.plist`\n"
        );
        let Step::Write { contents, .. } = &plan.steps[1] else {
            panic!("step 2 writes the plist");
        };
        assert_eq!(contents, &a.xml(&invocation()).unwrap());
    }

    #[test]
    fn uninstall_boots_out_only_a_loaded_agent() {
        let plan = agent("io.klaxon.agent").uninstall_plan();
        assert_eq!(
            plan.describe(),
            "  1. run `launchctl print gui/501/io.klaxon.agent` (is the agent loaded?)\n\
             \x20 2. run `launchctl bootout gui/501/io.klaxon.agent` if yes to \"is the agent loaded?\"\n\
             \x20 3. remove /Users/ann/Library/LaunchAgents/io.klaxon.agent.plist\n"
        );
    }
}
