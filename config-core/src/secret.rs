//! How a plugin names the keys of its table that hold secrets, so the agent can find them
//! in the file before `${…}` is replaced (to warn about a secret written literally, and to
//! mask it in error snippets) without a list of its own that could fall behind.

/// How a key holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The whole value is a secret (a token, a password, a webhook URL).
    Always,
    /// A URL: secret when it carries a password (`https://user:pass@host/`).
    UrlCredentials,
}

/// One step of a key's path inside a plugin's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    /// A fixed key.
    Key(&'static str),
    /// A key that names a secret: a header or variable like `Authorization` or
    /// `API_TOKEN` (the agent decides which names do).
    SecretName,
    /// An array item.
    Item,
}

/// A place in a plugin's table that may hold a secret: `basic_auth.password` is
/// `[Key("basic_auth"), Key("password")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKey {
    /// The path from the plugin's table to the value.
    pub path: &'static [Seg],
    /// Whether the whole value is a secret, or only a password inside a URL.
    pub kind: SecretKind,
}

impl SecretKey {
    /// The value at `path` is a secret.
    pub const fn always(path: &'static [Seg]) -> Self {
        Self {
            path,
            kind: SecretKind::Always,
        }
    }

    /// The value at `path` is a URL, secret when it carries a password.
    pub const fn url(path: &'static [Seg]) -> Self {
        Self {
            path,
            kind: SecretKind::UrlCredentials,
        }
    }
}
