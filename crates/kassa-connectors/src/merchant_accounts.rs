//! Provider accounts outside the payment routing (ID providers, self-exclusion registers), by
//! account id, each with the merchant it serves.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What an account of such a family is known by.
pub trait AccountNamed {
    /// The account id.
    fn account_id(&self) -> &str;
}

/// The configured accounts of one family, by id, each with its merchant.
pub struct MerchantAccounts<P: ?Sized> {
    accounts: BTreeMap<String, (String, Arc<P>)>,
}

impl<P: ?Sized> Default for MerchantAccounts<P> {
    fn default() -> Self {
        MerchantAccounts {
            accounts: BTreeMap::new(),
        }
    }
}

impl<P: ?Sized> Clone for MerchantAccounts<P> {
    fn clone(&self) -> Self {
        MerchantAccounts {
            accounts: self.accounts.clone(),
        }
    }
}

impl<P: ?Sized> fmt::Debug for MerchantAccounts<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connectors hold credentials; the account ids are all a log needs.
        f.debug_set().entries(self.accounts.keys()).finish()
    }
}

impl<P: ?Sized + AccountNamed> MerchantAccounts<P> {
    /// Adds `account` for `merchant_id`; refuses a second account of the same id.
    pub fn add(&mut self, merchant_id: &str, account: Arc<P>) -> Result<(), crate::RegistryError> {
        let name = account.account_id().to_string();
        if self.accounts.contains_key(&name) {
            return Err(crate::RegistryError::Duplicate(name));
        }
        self.accounts
            .insert(name, (merchant_id.to_string(), account));
        Ok(())
    }

    /// The account `name`, whichever merchant it serves (webhooks name the account).
    pub fn get(&self, name: &str) -> Option<&Arc<P>> {
        self.accounts.get(name).map(|(_, account)| account)
    }

    /// The merchant's first account by id that is `wanted`.
    pub fn find(&self, merchant_id: &str, wanted: impl Fn(&P) -> bool) -> Option<&Arc<P>> {
        self.accounts
            .values()
            .find(|(merchant, account)| merchant == merchant_id && wanted(account))
            .map(|(_, account)| account)
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}
