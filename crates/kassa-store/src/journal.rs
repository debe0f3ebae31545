//! The journal row format, once: the columns a ledger entry is stored in, their order and
//! type, how an entry becomes their values and how a row becomes an entry again. The shared
//! sqlx path and both wallet writers (SQLite through rusqlite, PostgreSQL through
//! tokio-postgres) build their statements and read their rows from here, so a column added
//! or moved cannot be forgotten on one path.

use std::sync::LazyLock;

use kassa_core::ledger::{Entry, EntryMeta};

use crate::ledger::parse_entry_codes;
use crate::StoreError;

/// The SQL type of a journal column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    Int,
}

/// An entry's columns in `ledger_entries`, in the order of [`entry_values`] and
/// [`entry_from_row`]. `merchant_id` and `created_at_ms` belong to the batch, not the entry,
/// and are written beside these.
pub(crate) const ENTRY_COLUMNS: [(&str, ColumnType); ENTRY_WIDTH] = [
    ("txn_id", ColumnType::Text),
    ("label", ColumnType::Text),
    ("operation", ColumnType::Text),
    ("status", ColumnType::Text),
    ("fingerprint", ColumnType::Text),
    ("currency", ColumnType::Text),
    ("amount_minor", ColumnType::Int),
    ("debit_account_id", ColumnType::Int),
    ("credit_account_id", ColumnType::Int),
    ("hold_account_id", ColumnType::Int),
    ("ref_txn_id", ColumnType::Text),
    ("subject_account_id", ColumnType::Int),
    ("subject_balance_after_minor", ColumnType::Int),
    ("player_id", ColumnType::Text),
    ("round_id", ColumnType::Text),
    ("reference", ColumnType::Text),
    ("refusal", ColumnType::Text),
];

/// Columns of an entry.
pub(crate) const ENTRY_WIDTH: usize = 17;

/// `txn_id, label, …`: the entry columns for a SELECT or an INSERT's column list.
pub(crate) static ENTRY_COLUMN_LIST: LazyLock<String> = LazyLock::new(|| {
    ENTRY_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
});

/// One column's value of an entry, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JournalValue<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// The values of an entry's columns, in the order of [`ENTRY_COLUMNS`].
pub(crate) fn entry_values(e: &Entry) -> [JournalValue<'_>; ENTRY_WIDTH] {
    use JournalValue::{Int, Text};
    [
        Text(Some(&e.txn_id)),
        Text(Some(&e.label)),
        Text(Some(e.operation.as_str())),
        Text(Some(e.status.as_str())),
        Text(e.fingerprint.as_deref()),
        Text(e.currency.map(|c| c.code())),
        Int(Some(e.amount_minor)),
        Int(e.debit_account),
        Int(e.credit_account),
        Int(e.hold_account),
        Text(e.ref_txn_id.as_deref()),
        Int(e.subject_account),
        Int(e.subject_balance_after_minor),
        Text(e.meta.player_id.as_deref()),
        Text(e.meta.round_id.as_deref()),
        Text(e.meta.reference.as_deref()),
        Text(e.meta.refusal.as_deref()),
    ]
}

/// A row of some driver, read by column position.
pub(crate) trait JournalRow {
    /// A text column; `None` for NULL.
    fn text(&self, column: usize) -> Result<Option<String>, StoreError>;
    /// An integer column; `None` for NULL.
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError>;
}

/// The entry in a row whose columns from `first` on are [`ENTRY_COLUMNS`].
pub(crate) fn entry_from_row(row: &impl JournalRow, first: usize) -> Result<Entry, StoreError> {
    let text = |i: usize| row.text(first + i);
    let int = |i: usize| row.int(first + i);
    let required = |value: Option<String>, i: usize| {
        value.ok_or_else(|| StoreError::Corrupt(format!("{} is NULL", ENTRY_COLUMNS[i].0)))
    };
    let (operation, status, currency) = parse_entry_codes(
        &required(text(2)?, 2)?,
        &required(text(3)?, 3)?,
        text(5)?.as_deref(),
    )?;
    Ok(Entry {
        txn_id: required(text(0)?, 0)?,
        label: required(text(1)?, 1)?,
        operation,
        status,
        fingerprint: text(4)?,
        currency,
        amount_minor: int(6)?.ok_or_else(|| StoreError::Corrupt("amount_minor is NULL".into()))?,
        debit_account: int(7)?,
        credit_account: int(8)?,
        hold_account: int(9)?,
        ref_txn_id: text(10)?,
        subject_account: int(11)?,
        subject_balance_after_minor: int(12)?,
        meta: EntryMeta {
            player_id: text(13)?,
            round_id: text(14)?,
            reference: text(15)?,
            refusal: text(16)?,
        },
    })
}

impl JournalRow for sqlx::any::AnyRow {
    fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl JournalRow for rusqlite::Row<'_> {
    fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }

    fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
}

impl JournalRow for tokio_postgres::Row {
    fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_core::ledger::{EntryStatus, Operation};
    use kassa_core::Currency;

    /// A row that holds the values [`entry_values`] gave, as a database would return them.
    struct Stored(Vec<JournalValue<'static>>);

    impl JournalRow for Stored {
        fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
            match self.0[column] {
                JournalValue::Text(value) => Ok(value.map(str::to_string)),
                JournalValue::Int(_) => Err(StoreError::Corrupt(format!("{column} is an int"))),
            }
        }

        fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
            match self.0[column] {
                JournalValue::Int(value) => Ok(value),
                JournalValue::Text(_) => Err(StoreError::Corrupt(format!("{column} is text"))),
            }
        }
    }

    fn entry() -> Entry {
        Entry {
            txn_id: "t1".into(),
            label: "debit".into(),
            operation: Operation::Transfer,
            status: EntryStatus::Posted,
            fingerprint: Some("fp".into()),
            currency: Some(Currency::from_code("EUR").unwrap()),
            amount_minor: 250,
            debit_account: Some(1),
            credit_account: Some(2),
            hold_account: None,
            ref_txn_id: Some("t0".into()),
            subject_account: Some(1),
            subject_balance_after_minor: Some(750),
            meta: EntryMeta {
                player_id: Some("alice".into()),
                round_id: Some("r1".into()),
                reference: None,
                refusal: None,
            },
        }
    }

    #[test]
    fn an_entry_reads_back_as_written_and_values_match_the_column_types() {
        let entry = entry();
        let values = entry_values(&entry);
        for ((name, kind), value) in ENTRY_COLUMNS.iter().zip(values) {
            let matches = matches!(
                (kind, value),
                (ColumnType::Text, JournalValue::Text(_)) | (ColumnType::Int, JournalValue::Int(_))
            );
            assert!(matches, "{name} is written as {value:?}");
        }
        let leaked: &'static Entry = Box::leak(Box::new(entry.clone()));
        let mut row = vec![JournalValue::Int(Some(99))];
        row.extend(entry_values(leaked));
        assert_eq!(entry_from_row(&Stored(row), 1).unwrap(), entry);
    }

    #[test]
    fn a_null_in_a_required_column_is_corrupt() {
        let leaked: &'static Entry = Box::leak(Box::new(entry()));
        let mut row = entry_values(leaked).to_vec();
        row[1] = JournalValue::Text(None);
        assert!(matches!(
            entry_from_row(&Stored(row), 0),
            Err(StoreError::Corrupt(message)) if message.contains("label")
        ));
    }
}
