//! Which CQL server the backend talks to. ScyllaDB and Apache Cassandra speak the same native
//! protocol and the same CQL for everything smogwatch needs, with one exception at keyspace
//! creation: ScyllaDB's `tablets = {...}` option (LWT, used for late violations and sequence
//! counters, is not supported in tablet keyspaces on older ScyllaDB), which Cassandra rejects as
//! a syntax error. So the server is identified once at connect, and Scylla-only clauses are
//! rendered only for ScyllaDB.
use super::ScyllaError;
use ::scylla::client::session::Session;

/// The server family behind the contact points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Scylla,
    Cassandra,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Scylla => "ScyllaDB",
            Dialect::Cassandra => "Apache Cassandra",
        }
    }
}

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub dialect: Dialect,
    /// `system.local.release_version` (ScyllaDB reports a Cassandra-compatible `3.0.8` here;
    /// its own version comes from `system.versions`).
    pub release_version: String,
}

/// Identifies the server: ScyllaDB when a node announced shard-awareness (the `SCYLLA_SHARD`
/// protocol extension) or the ScyllaDB-only `system.versions` table answers; Cassandra otherwise.
pub async fn detect(session: &Session) -> Result<ServerInfo, ScyllaError> {
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local WHERE key = 'local'", ())
        .await?
        .into_rows_result()?;
    let mut release_version =
        rows.maybe_first_row::<(Option<String>,)>()?.and_then(|r| r.0).unwrap_or_default();
    let sharded = session.get_cluster_state().get_nodes_info().iter().any(|n| n.sharder().is_some());
    let scylla_version = match session.query_unpaged("SELECT version FROM system.versions", ()).await {
        Ok(result) => result
            .into_rows_result()
            .ok()
            .and_then(|r| r.maybe_first_row::<(Option<String>,)>().ok().flatten())
            .and_then(|r| r.0),
        // Cassandra: "unconfigured table versions". Any other failure also leaves the sharding
        // signal to decide.
        Err(_) => None,
    };
    let dialect = if sharded || scylla_version.is_some() { Dialect::Scylla } else { Dialect::Cassandra };
    if let Some(v) = scylla_version {
        release_version = v;
    }
    Ok(ServerInfo { dialect, release_version })
}
