//! The errors of the in-cluster runtime.

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The Northbound database failed a request.
    #[error("OVSDB: {0}")]
    Ovsdb(#[from] ovsdb::Error),
    /// The desired state could not be turned into operations (a bug in translation).
    #[error("diff: {0}")]
    Diff(#[from] ovn_nb::diff::DiffError),
    /// This replica does not hold the Lease: it writes nothing.
    #[error("not the leader: nothing written")]
    NotLeader,
    /// The Northbound replica has not synced yet.
    #[error("the Northbound replica is not synced yet")]
    NotSynced,
    /// The object waits for something else (retried with backoff).
    #[error("waiting: {0}")]
    Waiting(String),
    /// A write raced with another writer or a stale cache (retried with backoff).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A short label for metrics (`error="kube"`).
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Ovsdb(_) => "ovsdb",
            Error::Diff(_) => "diff",
            Error::NotLeader => "not_leader",
            Error::NotSynced => "not_synced",
            Error::Waiting(_) => "waiting",
            Error::Conflict(_) => "conflict",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Finalizer(other.to_string()),
        }
    }
}
