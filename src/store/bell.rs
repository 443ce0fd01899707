//! The doorbell: how a delivery loop learns that messages were committed, by this
//! process (an in-memory `Notify`) or by another one (`once`, `ping`, `exec` send one
//! byte to the agent's Unix datagram socket `outbox.bell` in the state directory;
//! without one, `PRAGMA data_version` tells).

use std::path::PathBuf;

use super::Store;
/// The doorbell's file in the state directory: a Unix datagram socket the agent binds.
/// Another process (`once`, `ping`, `exec`) that commits sends it one byte, so the
/// agent reads the outbox at once instead of polling for such writes.
pub(super) const BELL: &str = "outbox.bell";

impl Store {
    /// Binds the doorbell in the state directory (the agent, holding the agent lock,
    /// so a file left there is a dead agent's and is replaced). Must run on a tokio
    /// runtime. Without it the delivery loop polls [`Store::written_elsewhere`].
    pub fn listen_for_others(&self) -> std::io::Result<()> {
        let Some(path) = self.bell_path() else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = tokio::net::UnixDatagram::bind(&path)?;
        let _ = self.bell.set(socket);
        Ok(())
    }

    /// Whether this store listens for other processes' writes.
    pub fn listens(&self) -> bool {
        self.bell.get().is_some()
    }

    /// Resolves when another process has rung the doorbell since the last time (never,
    /// when this store does not listen).
    pub async fn rung(&self) {
        let Some(bell) = self.bell.get() else {
            return std::future::pending().await;
        };
        let mut buf = [0u8; 8];
        let _ = bell.recv(&mut buf).await;
        // Several rings while the loop was busy need one read.
        while bell.try_recv(&mut buf).is_ok() {}
    }

    /// Tells a listening agent that this process committed (nothing when this store is
    /// the listener, or when no agent listens).
    pub(super) fn ring(&self) {
        if !self.listens() {
            self.ring_for_a_read();
        }
    }

    /// Makes the listening agent's delivery loop read the whole outbox, even when that
    /// agent is this process: messages made due again by hand (`klaxon outbox retry`,
    /// the dashboard) are not handed over as new ones are.
    pub(super) fn ring_for_a_read(&self) {
        let Some(path) = self.bell_path() else {
            return;
        };
        if let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(b"w", path);
        }
    }

    fn bell_path(&self) -> Option<PathBuf> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty())?;
        (self.path.as_os_str() != ":memory:").then(|| dir.join(BELL))
    }

    /// Whether another connection (another klaxon process) committed since the last
    /// call: its messages are in the outbox only, not handed over.
    pub fn written_elsewhere(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let version: Result<i64, _> = self
            .conn()
            .pragma_query_value(None, "data_version", |r| r.get(0));
        match version {
            Ok(v) => self.data_version.swap(v, SeqCst) != v,
            Err(_) => true,
        }
    }

    /// Resolves when this process has committed messages since the last time it
    /// resolved (a commit before the first wait counts).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}
