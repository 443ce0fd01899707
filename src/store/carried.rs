//! What a check carries from one run to the next ([`klaxon_checks::Probe::commit`]): one
//! text per job, the check's own (a `log` check's read position), kept across restarts.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// What the job's check last committed; `None` when it never did.
    pub fn carried(&self, job: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT state FROM check_state WHERE job = ?1")?
            .query_row(params![job], |r| r.get(0))
            .optional()?)
    }

    /// Keeps what the job's check committed, in place of what it kept before.
    pub fn carry(&self, job: &str, state: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO check_state (job, state) VALUES (?1, ?2)
             ON CONFLICT (job) DO UPDATE SET state = excluded.state",
            params![job, state],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn what_a_check_carries_survives_reopening_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.carried("app-log").unwrap(), None);
        store.carry("app-log", "{\"offset\":10}").unwrap();
        store.carry("app-log", "{\"offset\":42}").unwrap();
        store.carry("other", "x").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.carried("app-log").unwrap().as_deref(),
            Some("{\"offset\":42}")
        );
        assert_eq!(store.carried("other").unwrap().as_deref(), Some("x"));
    }
}
