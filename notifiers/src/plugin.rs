//! The anatomy of a notifier: what one channel's file implements ([`NotifierPlugin`] on
//! its raw config, [`Channel`] on its runtime), the `notifiers!` macro whose one line per
//! channel in the crate root makes the one closed enum,
//! [`NotifierSpec`](crate::NotifierSpec) (its `type` names, its `parse` straight from the
//! table to the validated spec, and every `match` over the channels), and the built
//! [`Notifier`], one struct over any channel. Nothing is registered at run time: a
//! channel missing a method is a compile error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use klaxon_config_core::SecretKey;
use serde::de::DeserializeOwned;

use crate::alertmanager::Posted;
use crate::buttons::Buttons;
use crate::{Alert, BuildError, ConfigIssue, DeliveryError, NotifierSpec};

/// A channel's raw `[notifiers.NAME]` table (less the keys every notifier shares), and
/// what the agent must know about the channel beside its runtime.
pub trait NotifierPlugin: DeserializeOwned + fmt::Debug {
    /// The validated settings: typed values, secrets in redacting types, nothing
    /// connected.
    type Spec: Clone + fmt::Debug + Send + Sync;
    /// The runtime that sends.
    type Channel: Channel;

    /// The keys of this channel's table that hold secrets (found in the file before
    /// `${…}` is replaced, to warn about literal secrets and mask them in errors).
    const SECRET_KEYS: &'static [SecretKey] = &[];

    /// Turns the raw table into typed settings, pushing every problem to `issues`.
    fn validate(self, issues: &mut Vec<ConfigIssue>) -> Option<Self::Spec>;

    /// Builds the runtime. `client` is the agent's [`delivery_client`](crate::delivery_client);
    /// a channel with a `ca_file` builds its own and fails with [`BuildError::Setup`]
    /// when that file cannot be read.
    fn build(spec: &Self::Spec, client: &reqwest::Client) -> Result<Self::Channel, BuildError>;

    /// Builds the runtime for an agent whose messages may carry [`Buttons`]
    /// (`agent.listen_url` and `listen_token` both set). A channel that can show buttons
    /// overrides it; the others build as [`NotifierPlugin::build`] does and show none.
    fn build_with(
        spec: &Self::Spec,
        client: &reqwest::Client,
        buttons: Option<&Buttons>,
    ) -> Result<Self::Channel, BuildError> {
        let _ = buttons;
        Self::build(spec, client)
    }

    /// The least time between two messages, for receivers that limit the rate.
    fn min_interval(_spec: &Self::Spec) -> Option<Duration> {
        None
    }

    /// How often a firing alert is posted again, for receivers that forget an alert
    /// that is not repeated.
    fn resend_every(_spec: &Self::Spec) -> Option<Duration> {
        None
    }
}

/// A channel ready to send. Every failure is classified: [`DeliveryError::Retry`] when
/// another try can help, [`DeliveryError::Reject`] when it cannot; nothing retries here.
pub trait Channel: fmt::Debug + Send + Sync {
    /// Whether several messages go out as one digest: the channels a person reads.
    const MERGES: bool = false;

    /// Delivers one message. Never logs a secret.
    fn send(&self, alert: &Alert) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// Delivers two or more messages. A channel that [merges](Channel::MERGES) sends one
    /// digest; the others send each in turn and stop at the first error.
    fn send_digest(
        &self,
        alerts: &[Alert],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        async move {
            for alert in alerts {
                self.send(alert).await?;
            }
            Ok(())
        }
    }

    /// [`Channel::send`], also naming every replica that did not take the message, for
    /// channels that post to several; the others have none.
    fn send_to_replicas(&self, alert: &Alert) -> impl Future<Output = Posted> + Send {
        async move {
            Posted {
                result: self.send(alert).await,
                failed: Vec::new(),
            }
        }
    }

    /// [`Channel::send_to_replicas`] once `release` resolves to `true`; `None`, having
    /// sent nothing, when it resolves to `false`. A channel that can builds its request
    /// meanwhile (body rendered and signed, headers, the request itself), so that only
    /// the write waits; the others wait, then send.
    fn send_when(
        &self,
        alert: &Alert,
        release: Release,
    ) -> impl Future<Output = Option<Posted>> + Send {
        async move {
            if !release.await {
                return None;
            }
            Some(self.send_to_replicas(alert).await)
        }
    }
}

/// When a prepared message may be written ([`Channel::send_when`]): resolves to `true`
/// once what it depends on is durable (the agent: the message's outbox row committed),
/// to `false` when it never will be (that transaction rolled back): then nothing is
/// sent.
pub type Release = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A future of a [`DynChannel`]: boxed, so the trait can be used as `dyn`.
type Sending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Channel`] with its futures boxed, so that one [`Notifier`] holds any channel. Its
/// only implementation is the one below, for every [`Channel`]: a channel's file never
/// sees it.
pub(crate) trait DynChannel: fmt::Debug + Send + Sync {
    /// [`Channel::MERGES`].
    fn merges(&self) -> bool;

    /// [`Channel::send`].
    fn send<'a>(&'a self, alert: &'a Alert) -> Sending<'a, Result<(), DeliveryError>>;

    /// [`Channel::send_digest`].
    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> Sending<'a, Result<(), DeliveryError>>;

    /// [`Channel::send_to_replicas`].
    fn send_to_replicas<'a>(&'a self, alert: &'a Alert) -> Sending<'a, Posted>;

    /// [`Channel::send_when`].
    fn send_when<'a>(&'a self, alert: &'a Alert, release: Release) -> Sending<'a, Option<Posted>>;
}

impl<C: Channel> DynChannel for C {
    fn merges(&self) -> bool {
        C::MERGES
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> Sending<'a, Result<(), DeliveryError>> {
        Box::pin(Channel::send(self, alert))
    }

    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> Sending<'a, Result<(), DeliveryError>> {
        Box::pin(Channel::send_digest(self, alerts))
    }

    fn send_to_replicas<'a>(&'a self, alert: &'a Alert) -> Sending<'a, Posted> {
        Box::pin(Channel::send_to_replicas(self, alert))
    }

    fn send_when<'a>(&'a self, alert: &'a Alert, release: Release) -> Sending<'a, Option<Posted>> {
        Box::pin(Channel::send_when(self, alert, release))
    }
}

/// A notifier ready to send: the runtime its spec built, and the `type` it was
/// configured as.
#[derive(Debug)]
pub struct Notifier {
    kind: &'static str,
    channel: Box<dyn DynChannel>,
}

impl Notifier {
    /// Builds the runtime for a spec. `client` is the agent's
    /// [`delivery_client`](crate::delivery_client), which follows no redirects (a 3xx is
    /// a rejection, not a delivery); a notifier with its own `ca_file` builds a client
    /// (or, for email, TLS settings) of its own, and fails with [`BuildError::Setup`]
    /// when that file cannot be read or holds no certificate. `buttons` are the agent's,
    /// for the channels that can show them ([`NotifierPlugin::build_with`]).
    pub fn build(
        spec: &NotifierSpec,
        client: &reqwest::Client,
        buttons: Option<&Buttons>,
    ) -> Result<Notifier, BuildError> {
        Ok(Notifier {
            kind: spec.kind(),
            channel: spec.channel(client, buttons)?,
        })
    }

    /// The notifier's type, as `type` names it in the config.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether this channel merges several messages into one digest: the channels a
    /// person reads ([`Channel::MERGES`]). The others take each message on its own, and
    /// the agent sends them one by one.
    pub fn merges(&self) -> bool {
        self.channel.merges()
    }

    /// Delivers several messages as one digest that names every job
    /// ([`text`](crate::text) words it; each channel's `render_digest` lays it out
    /// within its limits). With one message it is [`Notifier::send`]; with none it sends
    /// nothing. A channel that does not [merge](Notifier::merges) sends each message in
    /// turn and stops at the first error, which it returns. Never retries by itself;
    /// never logs a secret.
    pub async fn send_digest(&self, alerts: &[Alert]) -> Result<(), DeliveryError> {
        match alerts {
            [] => Ok(()),
            [alert] => self.send(alert).await,
            _ => self.channel.send_digest(alerts).await,
        }
    }

    /// [`Notifier::send`], also naming every replica of an Alertmanager cluster that did
    /// not take the message, even when another did and it counts as delivered (see
    /// [`Alertmanager::post`](crate::alertmanager::Alertmanager::post)). The other
    /// channels have no replicas.
    pub async fn send_to_replicas(&self, alert: &Alert) -> Posted {
        self.channel.send_to_replicas(alert).await
    }

    /// [`Notifier::send_to_replicas`] once `release` resolves to `true`, the request
    /// built meanwhile where the channel can ([`Channel::send_when`]); `None`, nothing
    /// sent, when it resolves to `false`.
    pub async fn send_when(&self, alert: &Alert, release: Release) -> Option<Posted> {
        self.channel.send_when(alert, release).await
    }

    /// Delivers one message. Never retries by itself; never logs a secret.
    pub async fn send(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.channel.send(alert).await
    }
}

/// Declares the notifier channels: one line each, `Variant(module::Config) = "type"`,
/// where `Config` implements [`NotifierPlugin`]. Makes [`NotifierSpec`] (one variant per
/// channel, holding its validated spec), the list of `type` names, the `parse` that
/// reads a table as the raw struct its `type` names and validates it, and the methods
/// that forward to each channel.
macro_rules! notifiers {
    ($($variant:ident($config:ty) = $kind:literal),+ $(,)?) => {
        /// A validated notifier: typed values (secrets in redacting types), nothing
        /// connected. The keys every notifier shares (`type`, `fallback`,
        /// `fallback_after`, `min_severity`, `quiet`) are the agent's, not part of it.
        #[derive(Debug, Clone)]
        pub enum NotifierSpec {
            $($variant(<$config as $crate::NotifierPlugin>::Spec)),+
        }

        impl NotifierSpec {
            /// The values `type` may take.
            pub const TYPES: &'static [&'static str] = &[$($kind),+];

            /// Every channel's secret keys (see [`NotifierPlugin::SECRET_KEYS`]).
            pub const SECRET_KEYS: &'static [&'static [$crate::SecretKey]] =
                &[$(<$config as $crate::NotifierPlugin>::SECRET_KEYS),+];

            /// Reads the rest of a `[notifiers.NAME]` table whose `type` is `kind` (the
            /// shared keys taken off, the spans of the file kept) as that channel's raw
            /// config, then validates it. Fails with the table's shape error (an
            /// unknown key or `type`, a wrong value type) or with every problem
            /// validation found, each located.
            pub fn parse(
                kind: &str,
                table: toml::Spanned<toml::de::DeValue<'_>>,
            ) -> Result<NotifierSpec, $crate::ParseError> {
                match kind {
                    $($kind => klaxon_config_core::parse_table(table, |raw: $config, issues| {
                        $crate::NotifierPlugin::validate(raw, issues).map(NotifierSpec::$variant)
                    }),)+
                    other => Err(klaxon_config_core::unknown_type(other, Self::TYPES)),
                }
            }

            /// The notifier's type, as `type` names it in the config.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(NotifierSpec::$variant(_) => $kind),+
                }
            }

            /// The least time between two messages to this notifier, for channels whose
            /// receiver limits the rate ([`NotifierPlugin::min_interval`]).
            pub fn min_interval(&self) -> Option<std::time::Duration> {
                match self {
                    $(NotifierSpec::$variant(s) => {
                        <$config as $crate::NotifierPlugin>::min_interval(s)
                    })+
                }
            }

            /// How often a firing alert is posted again, for receivers that forget an
            /// alert that is not repeated ([`NotifierPlugin::resend_every`]).
            pub fn resend_every(&self) -> Option<std::time::Duration> {
                match self {
                    $(NotifierSpec::$variant(s) => {
                        <$config as $crate::NotifierPlugin>::resend_every(s)
                    })+
                }
            }

            /// Builds the channel's runtime, for [`Notifier::build`].
            fn channel(
                &self,
                client: &reqwest::Client,
                buttons: Option<&$crate::buttons::Buttons>,
            ) -> Result<Box<dyn $crate::plugin::DynChannel>, $crate::BuildError> {
                Ok(match self {
                    $(NotifierSpec::$variant(s) => {
                        Box::new(<$config as $crate::NotifierPlugin>::build_with(s, client, buttons)?)
                    })+
                })
            }
        }
    };
}
