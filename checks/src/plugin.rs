//! The anatomy of a check: what one kind's file implements ([`CheckPlugin`] on its raw
//! config, [`Probe`] on its runtime), the `checks!` macro whose one line per kind in the
//! crate root makes the one closed enum, [`CheckSpec`](crate::CheckSpec) (its `type`
//! names, its `parse` straight from the table to the validated spec, and every `match`
//! over the kinds), and the built [`Check`], one struct over any probe. Nothing is
//! registered at run time: a kind missing a method is a compile error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use klaxon_config_core::SecretKey;
use serde::de::DeserializeOwned;

use crate::{BuildError, CheckSpec, ConfigIssue, Outcome, Shared};

/// A kind's raw `[jobs.NAME.check]` table (less its `type`), and what the agent must know
/// about the kind beside its runtime.
pub trait CheckPlugin: DeserializeOwned + fmt::Debug {
    /// The validated settings: typed values, nothing opened or connected yet. It has
    /// a `fn target(&self) -> String` saying what is checked, for messages and
    /// `status`, which never contains a secret.
    type Spec: Clone + fmt::Debug + Send + Sync;
    /// The runtime that runs one try; [`Passive`] for a kind the agent does not run.
    type Runtime: Probe;

    /// The keys of this kind's table that hold secrets (found in the file before `${…}`
    /// is replaced, to warn about literal secrets and mask them in errors).
    const SECRET_KEYS: &'static [SecretKey] = &[];

    /// Whether the agent runs this check itself (`false` for passive heartbeats, which
    /// are fed by pings).
    const ACTIVE: bool = true;

    /// Whether a run of this check needs the network to say anything about its target
    /// (`http`, `tcp`, `dns`, `ping`): with `agent.online`, the agent does not judge
    /// such a run while the machine is offline. A job can say so of any check
    /// (`network = true`, for a script that needs the network).
    const NETWORK: bool = false;

    /// Turns the raw table into typed settings, pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<Self::Spec>;

    /// Builds the runtime, reusing `shared` clients where it can.
    fn build(spec: &Self::Spec, shared: &Shared) -> Result<Self::Runtime, BuildError>;
}

/// A check ready to run. Running never fails: every problem with the target is an
/// [`Outcome`] with a severity and a summary.
pub trait Probe: fmt::Debug + Send + Sync {
    /// Runs one try. `timeout` bounds the whole try; when it fires the result is
    /// critical, "timed out after …", and everything the try started is stopped.
    fn run(&self, timeout: Duration) -> impl Future<Output = Outcome> + Send;

    /// [`Probe::run`], stopped early when `interrupt` completes (klaxon is stopping),
    /// for a kind that can stop (a script's group is killed); by default the try runs to
    /// its end, bounded by `timeout`.
    fn run_until(
        &self,
        timeout: Duration,
        interrupt: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Outcome> + Send {
        drop(interrupt);
        self.run(timeout)
    }

    /// Ends a run: what the check carries into the next one, as text for the agent to
    /// keep in its store across restarts (a `log` check's read position). The tries of
    /// one run all start from the last commit, so a retry judges the same lines.
    /// `None`, the default, when there is nothing new to keep.
    fn commit(&self) -> Option<String> {
        None
    }

    /// Whether the check wants what it last committed before this process started: a
    /// kind that commits says so until [`Probe::restore`] has been called.
    fn wants_restore(&self) -> bool {
        false
    }

    /// Hands back what the last [`Probe::commit`] returned, `None` when the store has
    /// nothing for the job.
    fn restore(&self, _state: Option<&str>) {}
}

/// The runtime of a kind the agent does not run itself (a heartbeat, fed by pings): no
/// value of it exists.
#[derive(Debug)]
pub enum Passive {}

impl Probe for Passive {
    async fn run(&self, _timeout: Duration) -> Outcome {
        match *self {}
    }
}

/// A future of a [`DynProbe`]: boxed, so the trait can be used as `dyn`.
type Running<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Probe`] with its futures boxed, so that one [`Check`] holds any probe. Its only
/// implementation is the one below, for every [`Probe`]: a kind's file never sees it.
pub(crate) trait DynProbe: fmt::Debug + Send + Sync {
    /// [`Probe::run_until`].
    fn run_until<'a>(
        &'a self,
        timeout: Duration,
        interrupt: Running<'a, ()>,
    ) -> Running<'a, Outcome>;

    /// [`Probe::commit`].
    fn commit(&self) -> Option<String>;

    /// [`Probe::wants_restore`].
    fn wants_restore(&self) -> bool;

    /// [`Probe::restore`].
    fn restore(&self, state: Option<&str>);
}

impl<P: Probe> DynProbe for P {
    fn run_until<'a>(
        &'a self,
        timeout: Duration,
        interrupt: Running<'a, ()>,
    ) -> Running<'a, Outcome> {
        Box::pin(Probe::run_until(self, timeout, interrupt))
    }

    fn commit(&self) -> Option<String> {
        Probe::commit(self)
    }

    fn wants_restore(&self) -> bool {
        Probe::wants_restore(self)
    }

    fn restore(&self, state: Option<&str>) {
        Probe::restore(self, state)
    }
}

/// A check ready to run: the probe its spec built (its `type` is the spec's).
#[derive(Debug)]
pub struct Check {
    probe: Box<dyn DynProbe>,
}

impl Check {
    /// Builds the runtime for a spec, reusing `shared` clients where it can.
    ///
    /// `heartbeat` checks are fed by pings the agent stores, and judged with
    /// [`heartbeat::evaluate`](crate::heartbeat::evaluate); they have no runtime here and
    /// report [`BuildError::Unsupported`].
    pub fn build(spec: &CheckSpec, shared: &Shared) -> Result<Check, BuildError> {
        Ok(Check {
            probe: spec.probe(shared)?,
        })
    }

    /// Runs one try. `timeout` bounds the whole try; when it fires the result is
    /// critical, "timed out after …", and everything the try started is stopped.
    pub async fn run(&self, timeout: Duration) -> Outcome {
        self.run_until(timeout, std::future::pending()).await
    }

    /// [`Check::run`], stopped early when `interrupt` completes (klaxon is stopping): a
    /// script's group gets SIGTERM, then SIGKILL after
    /// [`script::KILL_GRACE`](crate::script::KILL_GRACE), and the outcome is
    /// [`Outcome::interrupted`]; so is a `disk` run waiting for a `statfs` still stuck
    /// from an earlier run. Other kinds are bounded by `timeout` and run to their end.
    pub async fn run_until(
        &self,
        timeout: Duration,
        interrupt: impl Future<Output = ()> + Send,
    ) -> Outcome {
        self.probe.run_until(timeout, Box::pin(interrupt)).await
    }

    /// Ends a run (see [`Probe::commit`]): the state to keep for the next one.
    pub fn commit(&self) -> Option<String> {
        self.probe.commit()
    }

    /// Whether the check wants its committed state back (see [`Probe::wants_restore`]).
    pub fn wants_restore(&self) -> bool {
        self.probe.wants_restore()
    }

    /// Hands back the state the last commit returned (see [`Probe::restore`]).
    pub fn restore(&self, state: Option<&str>) {
        self.probe.restore(state)
    }
}

/// Declares the check kinds: one line each, `Variant(module::Config) = "type"`, where
/// `Config` implements [`CheckPlugin`]. Makes [`CheckSpec`] (one variant per kind,
/// holding its validated spec), the list of `type` names, the `parse` that reads a table
/// as the raw struct its `type` names and validates it, and the methods that forward to
/// each kind.
macro_rules! checks {
    ($($variant:ident($config:ty) = $kind:literal),+ $(,)?) => {
        /// A validated check: typed values, nothing opened or connected yet.
        // Few of these exist (one per job, made at load) and they are matched, not moved
        // in hot loops: boxing the HTTP variant would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone)]
        pub enum CheckSpec {
            $($variant(<$config as $crate::CheckPlugin>::Spec)),+
        }

        impl CheckSpec {
            /// The values `type` may take.
            pub const TYPES: &'static [&'static str] = &[$($kind),+];

            /// Every kind's secret keys (see [`CheckPlugin::SECRET_KEYS`]).
            pub const SECRET_KEYS: &'static [&'static [$crate::SecretKey]] =
                &[$(<$config as $crate::CheckPlugin>::SECRET_KEYS),+];

            /// Reads the rest of a `[jobs.NAME.check]` table whose `type` is `kind` (the
            /// spans of the file kept) as that kind's raw config, then validates it.
            /// Fails with the table's shape error (an unknown key or `type`, a wrong
            /// value type) or with every problem validation found, each located.
            pub fn parse(
                kind: &str,
                table: toml::Spanned<toml::de::DeValue<'_>>,
            ) -> Result<CheckSpec, $crate::ParseError> {
                match kind {
                    $($kind => klaxon_config_core::parse_table(table, |raw: $config, issues| {
                        $crate::CheckPlugin::validate(raw, issues).map(CheckSpec::$variant)
                    }),)+
                    other => Err(klaxon_config_core::unknown_type(other, Self::TYPES)),
                }
            }

            /// The check's type, as `type` names it in the config.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(CheckSpec::$variant(_) => $kind),+
                }
            }

            /// What is checked, for messages and `status`: a URL (without
            /// credentials), a command line, a process name, `host:port`, a path. Never
            /// contains a secret.
            pub fn target(&self) -> String {
                match self {
                    $(CheckSpec::$variant(s) => s.target()),+
                }
            }

            /// Whether the agent runs this check itself (`false` for passive
            /// heartbeats, which are fed by pings).
            pub fn is_active(&self) -> bool {
                match self {
                    $(CheckSpec::$variant(_) => <$config as $crate::CheckPlugin>::ACTIVE),+
                }
            }

            /// Whether a run needs the network to judge its target (see
            /// [`CheckPlugin::NETWORK`]).
            pub fn is_network(&self) -> bool {
                match self {
                    $(CheckSpec::$variant(_) => <$config as $crate::CheckPlugin>::NETWORK),+
                }
            }

            /// Builds the kind's probe, for [`Check::build`].
            fn probe(
                &self,
                shared: &Shared,
            ) -> Result<Box<dyn $crate::plugin::DynProbe>, BuildError> {
                Ok(match self {
                    $(CheckSpec::$variant(s) => {
                        Box::new(<$config as $crate::CheckPlugin>::build(s, shared)?)
                    })+
                })
            }
        }
    };
}
