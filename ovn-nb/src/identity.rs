//! Whose row is it: the convention by which a program tells its rows from everyone else's in
//! a shared database. A program using this crate tags every row it writes with its owner (the
//! object the row belongs to) and a key unique among its rows of that table, both in
//! `external_ids`, under keys of its own prefix; rows without the owner tag are never read as
//! its own, so never changed or removed by [`crate::diff`]. The convention is the program's:
//! it passes its [`Identity`] to the diff, the effects analysis and [`crate::ops::Txn`].

use ovsdb::Datum;

/// The `external_ids` keys a program owns its rows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The key naming the object a row belongs to (`ovn-vpc/owner`).
    pub owner_key: &'static str,
    /// The key naming the row among the program's rows of its table (`ovn-vpc/key`).
    pub row_key: &'static str,
    /// The prefix of every `external_ids` key the program writes (`ovn-vpc/`); keys without
    /// it belong to others and are left as they are.
    pub prefix: &'static str,
}

impl Identity {
    /// An identity from its keys. `owner_key` and `row_key` should start with `prefix`.
    pub const fn new(
        owner_key: &'static str,
        row_key: &'static str,
        prefix: &'static str,
    ) -> Identity {
        Identity {
            owner_key,
            row_key,
            prefix,
        }
    }

    /// The owner recorded in an `external_ids` value.
    pub fn owner_of<'d>(&self, external_ids: &'d Datum) -> Option<&'d str> {
        external_ids.get_str(self.owner_key)
    }

    /// The row key recorded in an `external_ids` value.
    pub fn key_of<'d>(&self, external_ids: &'d Datum) -> Option<&'d str> {
        external_ids.get_str(self.row_key)
    }

    /// Whether an `external_ids` key is the program's to write and remove.
    pub fn owns_key(&self, key: &str) -> bool {
        key.starts_with(self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tags_and_tells_keys_apart() {
        const ID: Identity = Identity::new("p/owner", "p/key", "p/");
        let ids = Datum::map([("p/owner", "Vpc/a"), ("p/key", "Vpc/a/x"), ("team", "blue")]);
        assert_eq!(ID.owner_of(&ids), Some("Vpc/a"));
        assert_eq!(ID.key_of(&ids), Some("Vpc/a/x"));
        assert!(ID.owns_key("p/anything") && !ID.owns_key("team"));
    }
}
