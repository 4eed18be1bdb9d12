//! The embedded metadata database: one redb file (`<root>/meta.redb`) holding typed
//! records, serialized as JSON, in named tables. Every change happens inside a write
//! transaction, so a crash at any instant leaves the previous committed state.
//!
//! Each core module declares its own tables with [`Table::new`] and keeps its key scheme
//! to itself (for example `"<namespace>/<id>"`); this module knows nothing of images,
//! containers or networks.
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("metadata store: {0}")]
    Database(String),
    #[error("metadata store: record {table}/{key} is not valid: {source}")]
    Decode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("metadata store: cannot encode record {table}/{key}: {source}")]
    Encode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! database_error_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                StoreError::Database(error.to_string())
            }
        }
    )*};
}
database_error_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A named table whose values are records of type `T`, keyed by strings.
pub struct Table<T> {
    name: &'static str,
    _record: PhantomData<fn() -> T>,
}

impl<T> Table<T> {
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            _record: PhantomData,
        }
    }

    fn definition(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Table<T> {}

/// The database handle; cheap to clone and shared by every core module.
#[derive(Clone)]
pub struct Store {
    database: Arc<redb::Database>,
}

impl Store {
    /// Opens (or creates) the database file. redb recovers from an interrupted commit
    /// on open, so a store left by a crash opens at its last committed state.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let database = redb::Database::create(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // The records hold containers' environments: root only, whatever the umask.
        crate::private_fs::set_mode(path, crate::private_fs::PRIVATE_FILE)
            .map_err(|error| StoreError::Database(format!("chmod {}: {error}", path.display())))?;
        Ok(Store {
            database: Arc::new(database),
        })
    }

    /// Runs `body` in a read transaction (a consistent snapshot).
    pub fn read<R, E>(&self, body: impl FnOnce(&ReadTxn) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let txn = self.database.begin_read().map_err(StoreError::from)?;
        body(&ReadTxn { txn })
    }

    /// Runs `body` in a write transaction; commits if it returns `Ok`, aborts otherwise.
    /// Write transactions are serialized by the database.
    pub fn write<R, E>(&self, body: impl FnOnce(&WriteTxn) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let txn = self.database.begin_write().map_err(StoreError::from)?;
        let write = WriteTxn { txn };
        let result = body(&write)?;
        write.txn.commit().map_err(StoreError::from)?;
        Ok(result)
    }

    /// Shorthand: one record, read in its own transaction.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table<T>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.read(|txn| txn.get(table, key))
    }

    /// Shorthand: every record of a table, read in its own transaction.
    pub fn list<T: DeserializeOwned>(&self, table: Table<T>) -> Result<Vec<(String, T)>, StoreError> {
        self.read(|txn| txn.list(table))
    }
}

fn decode<T: DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table,
        key: key.to_string(),
        source,
    })
}

/// Reads from any open table, read-only or read-write.
fn get_in<T: DeserializeOwned>(
    name: &'static str,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(value) => decode(name, key, value.value()).map(Some),
        None => Ok(None),
    }
}

fn list_in<T: DeserializeOwned>(
    name: &'static str,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut records = Vec::new();
    for entry in table.range(prefix..)? {
        let (key, value) = entry?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        // One malformed record (a disk error, a format from another version) must not
        // hide all the others, nor stop the daemon: it is reported and skipped.
        match decode(name, key, value.value()) {
            Ok(record) => records.push((key.to_string(), record)),
            Err(error) => tracing::error!(%error, "skipping a malformed record"),
        }
    }
    Ok(records)
}

/// A read transaction.
pub struct ReadTxn {
    txn: redb::ReadTransaction,
}

impl ReadTxn {
    pub fn get<T: DeserializeOwned>(&self, table: Table<T>, key: &str) -> Result<Option<T>, StoreError> {
        match self.txn.open_table(table.definition()) {
            Ok(open) => get_in(table.name, &open, key),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table<T>) -> Result<Vec<(String, T)>, StoreError> {
        self.list_prefix(table, "")
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn list_prefix<T: DeserializeOwned>(
        &self,
        table: Table<T>,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        match self.txn.open_table(table.definition()) {
            Ok(open) => list_in(table.name, &open, prefix),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(error) => Err(error.into()),
        }
    }
}

/// A write transaction; see [`Store::write`].
pub struct WriteTxn {
    txn: redb::WriteTransaction,
}

impl WriteTxn {
    pub fn get<T: DeserializeOwned>(&self, table: Table<T>, key: &str) -> Result<Option<T>, StoreError> {
        let open = self.txn.open_table(table.definition())?;
        get_in(table.name, &open, key)
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table<T>) -> Result<Vec<(String, T)>, StoreError> {
        self.list_prefix(table, "")
    }

    pub fn list_prefix<T: DeserializeOwned>(
        &self,
        table: Table<T>,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let open = self.txn.open_table(table.definition())?;
        list_in(table.name, &open, prefix)
    }

    /// Inserts or replaces a record.
    pub fn put<T: Serialize>(&self, table: Table<T>, key: &str, record: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            table: table.name,
            key: key.to_string(),
            source,
        })?;
        let mut open = self.txn.open_table(table.definition())?;
        open.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Removes a record; returns whether it existed.
    pub fn delete<T>(&self, table: Table<T>, key: &str) -> Result<bool, StoreError> {
        let mut open = self.txn.open_table(table.definition())?;
        let existed = open.remove(key)?.is_some();
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pet {
        legs: u32,
    }
    const PETS: Table<Pet> = Table::new("pets");

    fn temporary_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.redb")).expect("open");
        (dir, store)
    }

    #[test]
    fn a_malformed_record_is_skipped_by_listings_and_reported_by_get() {
        let (_dir, store) = temporary_store();
        store.write(|txn| txn.put(PETS, "a/cat", &Pet { legs: 4 })).expect("write");
        let raw = store.database.begin_write().expect("begin");
        raw.open_table(PETS.definition()).expect("table").insert("a/broken", br#"{"legs": "many"}"#.as_slice()).expect("insert");
        raw.commit().expect("commit");
        let listed = store.list(PETS).expect("list");
        assert_eq!(listed, vec![("a/cat".to_string(), Pet { legs: 4 })]);
        assert!(matches!(store.get(PETS, "a/broken"), Err(StoreError::Decode { .. })));
    }

    #[test]
    fn records_round_trip_and_absent_tables_read_empty() {
        let (_dir, store) = temporary_store();
        assert_eq!(store.get(PETS, "cat").expect("get"), None);
        assert!(store.list(PETS).expect("list").is_empty());
        store
            .write(|txn| {
                txn.put(PETS, "a/cat", &Pet { legs: 4 })?;
                txn.put(PETS, "a/bird", &Pet { legs: 2 })?;
                txn.put(PETS, "b/snake", &Pet { legs: 0 })
            })
            .expect("write");
        assert_eq!(store.get(PETS, "a/cat").expect("get"), Some(Pet { legs: 4 }));
        let in_a = store.read(|txn| txn.list_prefix(PETS, "a/")).expect("list");
        let keys: Vec<_> = in_a.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["a/bird", "a/cat"]);
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let (_dir, store) = temporary_store();
        let outcome: Result<(), StoreError> = store.write(|txn| {
            txn.put(PETS, "dog", &Pet { legs: 4 })?;
            Err(StoreError::Database("refused".into()))
        });
        assert!(outcome.is_err());
        assert_eq!(store.get(PETS, "dog").expect("get"), None);
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        {
            let store = Store::open(&path).expect("open");
            store.write(|txn| txn.put(PETS, "cat", &Pet { legs: 4 })).expect("write");
            store.write(|txn| txn.delete(PETS, "cat").map(|_| ())).expect("delete");
            store.write(|txn| txn.put(PETS, "ant", &Pet { legs: 6 })).expect("write");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.get(PETS, "cat").expect("get"), None);
        assert_eq!(store.get(PETS, "ant").expect("get"), Some(Pet { legs: 6 }));
    }
}
