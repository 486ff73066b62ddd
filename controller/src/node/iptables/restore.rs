//! The I/O driver: `iptables-save` / `iptables-restore --noflush --wait` for one backend and
//! family, optionally inside a network namespace (`ip netns exec NS ...`, used by the tests).

use super::backend::{Backend, Family};
use super::exec::run_tool;
use super::plan::{plan_removal, plan_table, DesiredChain, DesiredTable};
use super::save::{parse_save, SavedRule, SavedTable};
use super::IptablesError;

/// What one [`Iptables::reconcile`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Successful `iptables-restore` transactions (0 when actual == desired, else 1).
    pub writes: u32,
    /// Transactions iptables refused (a concurrent change made a delete-by-spec or an insert
    /// index stale); each was followed by a fresh read.
    pub rejected: u32,
}

/// One backend and family of iptables, in the root namespace or in a named one.
#[derive(Debug, Clone)]
pub struct Iptables {
    backend: Backend,
    family: Family,
    netns: Option<String>,
    attempts: u32,
    lock_file: Option<std::path::PathBuf>,
}

impl Iptables {
    /// The host's iptables of this backend and family.
    pub fn new(backend: Backend, family: Family) -> Iptables {
        Iptables {
            backend,
            family,
            netns: None,
            attempts: 3,
            lock_file: None,
        }
    }

    /// The same, run inside network namespace `name` (`ip netns exec NAME ...`).
    pub fn in_netns(mut self, name: &str) -> Iptables {
        self.netns = Some(name.to_string());
        self
    }

    /// How many transactions one reconcile tries, each after a fresh read (default 3).
    pub fn attempts(mut self, n: u32) -> Iptables {
        self.attempts = n.max(1);
        self
    }

    /// The xtables lock file of the legacy backend (`XTABLES_LOCKFILE`; default
    /// `/run/xtables.lock`), for a shim whose `/run` is not the host's.
    pub fn lock_file(mut self, path: impl Into<std::path::PathBuf>) -> Iptables {
        self.lock_file = Some(path.into());
        self
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The program name, e.g. `ip6tables-nft-restore`.
    pub fn program(&self, tool: &str) -> String {
        let family = match self.family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let backend = match self.backend {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        };
        format!("{family}-{backend}-{tool}")
    }

    /// The plain command, e.g. `ip6tables-nft`.
    fn command(&self) -> String {
        self.program("").trim_end_matches('-').to_string()
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String, IptablesError> {
        self.run_program(self.program(tool), args, stdin)
    }

    fn run_program(
        &self,
        program: String,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, IptablesError> {
        run_tool(
            &program,
            args,
            self.netns.as_deref(),
            self.lock_file.as_deref(),
            stdin,
        )
    }

    /// Reads one table: `iptables-save -t TABLE`, parsed.
    pub fn save(&self, table: &str) -> Result<SavedTable, IptablesError> {
        let text = self.run("save", &["-t", table], None)?;
        parse_save(&text, table)
    }

    /// Reads several tables. iptables-nft fetches the whole ruleset of the family from the
    /// kernel whatever `-t` says (measured: `iptables-nft-save -t filter` of an empty filter
    /// table costs as much as `iptables-nft-save` when nat holds 1,000 rules), so for nft one
    /// `iptables-nft-save` serves every table; legacy hands out one table at a time, so there
    /// each table is read with `-t` and the others are not paid for.
    pub fn save_tables(&self, names: &[&str]) -> Result<Vec<SavedTable>, IptablesError> {
        match self.backend {
            Backend::Nft if names.len() > 1 => {
                let text = self.run("save", &[], None)?;
                names.iter().map(|n| parse_save(&text, n)).collect()
            }
            _ => names.iter().map(|n| self.save(n)).collect(),
        }
    }

    /// [`Iptables::reconcile`] of several tables of this family from one read
    /// ([`Iptables::save_tables`]); a table whose transaction is refused is re-read alone. When
    /// the shared read fails, each table is reconciled on its own so each reports its error.
    pub fn reconcile_all(
        &self,
        desired: &[DesiredTable],
    ) -> Vec<Result<Reconciled, IptablesError>> {
        let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
        match self.save_tables(&names) {
            Ok(actual) => desired
                .iter()
                .zip(actual)
                .map(|(d, a)| self.converge(d, plan_table, Some(a)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the tables at once failed; one by one");
                desired.iter().map(|d| self.reconcile(d)).collect()
            }
        }
    }

    /// [`Iptables::check`] of several tables from one read: the tables not in working order.
    pub fn check_all<'a>(
        &self,
        desired: &'a [DesiredTable],
    ) -> Result<Vec<&'a DesiredTable>, IptablesError> {
        let names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
        let actual = self.save_tables(&names)?;
        Ok(desired
            .iter()
            .zip(&actual)
            .filter(|(d, a)| plan_table(d, a).is_some())
            .map(|(d, _)| d)
            .collect())
    }

    /// Writes one transaction: `iptables-restore --noflush --wait` fed `input`.
    pub fn restore(&self, input: &str) -> Result<(), IptablesError> {
        self.run("restore", &["--noflush", "--wait"], Some(input))
            .map(|_| ())
    }

    /// Reads the table, plans, and writes the plan in one transaction if there is one; a
    /// rejected transaction is retried after a fresh read, up to [`Iptables::attempts`].
    #[tracing::instrument(skip_all, fields(table = %desired.name, backend = ?self.backend, family = ?self.family))]
    pub fn reconcile(&self, desired: &DesiredTable) -> Result<Reconciled, IptablesError> {
        self.converge(desired, plan_table, None)
    }

    /// Whether the table holds our rules in a working order (what `/readyz` reports): a read,
    /// never a write. True exactly when [`plan_table`] has nothing to do — not "the last write
    /// succeeded", and not "we are first".
    pub fn check(&self, desired: &DesiredTable) -> Result<bool, IptablesError> {
        Ok(plan_table(desired, &self.save(&desired.name)?).is_none())
    }

    /// Whether our chain `chain` of `table` holds exactly its desired rules (by tag), read
    /// with `iptables -S CHAIN`: one chain, not the whole table, so it stays cheap on a host
    /// with thousands of foreign rules. The canary poll: a chain of ours that vanished (the
    /// table was flushed and its chains deleted) or lost its rules (the chain or the table was
    /// flushed) reads as false; so does any failure to read.
    pub fn chain_intact(&self, table: &str, chain: &DesiredChain) -> bool {
        let Ok(text) = self.run_program(
            self.command(),
            &["-w", "-t", table, "-S", &chain.name],
            None,
        ) else {
            return false;
        };
        let prefix = format!("-A {} ", chain.name);
        let tags: Vec<Option<String>> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|spec| SavedRule::parse(spec).tag().map(str::to_string))
            .collect();
        tags.len() == chain.rules.len()
            && tags
                .iter()
                .zip(&chain.rules)
                .all(|(t, r)| t.as_deref() == Some(r.tag.as_str()))
    }

    /// Removes everything of ours from the table ([`plan_removal`]): the engine of
    /// `ovn-vpc node --cleanup`. Retried after a fresh read like [`Iptables::reconcile`].
    #[tracing::instrument(skip_all, fields(table = %desired.name, backend = ?self.backend, family = ?self.family))]
    pub fn remove(&self, desired: &DesiredTable) -> Result<Reconciled, IptablesError> {
        self.converge(desired, plan_removal, None)
    }

    fn converge(
        &self,
        desired: &DesiredTable,
        planner: fn(&DesiredTable, &SavedTable) -> Option<String>,
        mut already_read: Option<SavedTable>,
    ) -> Result<Reconciled, IptablesError> {
        let mut done = Reconciled::default();
        loop {
            let actual = match already_read.take() {
                Some(a) => a,
                None => self.save(&desired.name)?,
            };
            let Some(plan) = planner(desired, &actual) else {
                return Ok(done);
            };
            tracing::debug!(%plan, "iptables-restore");
            match self.restore(&plan) {
                Ok(()) => {
                    done.writes += 1;
                    return Ok(done);
                }
                Err(e) if done.rejected + 1 < self.attempts => {
                    tracing::warn!(error = %e, "transaction rejected; re-reading");
                    done.rejected += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
