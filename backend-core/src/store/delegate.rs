//! How the store traits are declared, and the stores that hand every call to another one ([`Delegate`]).
//!
//! Each trait goes through [`store_trait!`], which emits the `#[async_trait]` trait as written (contracts, default
//! bodies and all) together with its forwarding implementation for every [`Delegate`] and the list of its method
//! names. So a method added to a trait is forwarded by every decorator (failure injection in [`super::faults`],
//! tests that spread calls over several connections) without a line written for it elsewhere.

use super::MetadataStore;
use crate::error::Result;

/// A store that serves each call by handing it to another store, chosen (or refused) per call by the name of the
/// method: the base of decorators such as [`super::faults::FaultyStore`]. Every store trait is implemented for every
/// `Delegate` by forwarding, so a decorator only says where a call goes.
pub trait Delegate: Send + Sync {
    /// The store that serves a call to `method` (a method name of one of the store traits), or the error the call
    /// fails with before reaching any store.
    fn delegate(&self, method: &'static str) -> Result<&dyn MetadataStore>;
}

/// Declares one store trait: emits it with `#[async_trait]` and `Send + Sync`, a forwarding implementation of it for
/// every [`Delegate`], and `METHODS`, the names of its methods, in the module it is invoked in. Every method takes
/// `&self` and named arguments and returns the crate's `Result`; a method may carry a default body.
macro_rules! store_trait {
    (
        $(#[$trait_meta:meta])*
        pub trait $trait:ident {
            $(
                $(#[$meta:meta])*
                async fn $method:ident(&$this:ident $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty
                    $($default:block)? $(; $($no_body:ident)*)?
            )*
        }
    ) => {
        $(#[$trait_meta])*
        #[async_trait::async_trait]
        pub trait $trait: Send + Sync {
            $(
                $(#[$meta])*
                async fn $method(&$this $(, $arg: $ty)*) -> $ret $($default)? $(; $($no_body)*)?
            )*
        }

        #[async_trait::async_trait]
        impl<D: $crate::store::Delegate> $trait for D {
            $(
                async fn $method(&$this $(, $arg: $ty)*) -> $ret {
                    $this.delegate(stringify!($method))?.$method($($arg),*).await
                }
            )*
        }

        /// The names of this trait's methods (the failure points of [`crate::store::faults::FaultyStore`]).
        pub(crate) const METHODS: &[&str] = &[$(stringify!($method)),*];
    };
}

/// Every method name of the store traits, trait after trait.
pub(crate) const POINTS: &[&str] = &concat::<{ count() }>();

/// The method lists of the six traits.
const TRAITS: [&[&str]; 6] = [
    super::account::METHODS,
    super::domain::METHODS,
    super::policy::METHODS,
    super::agent::METHODS,
    super::session::METHODS,
    super::vfolder::METHODS,
];

const fn count() -> usize {
    let (mut total, mut i) = (0, 0);
    while i < TRAITS.len() {
        total += TRAITS[i].len();
        i += 1;
    }
    total
}

const fn concat<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let (mut at, mut i) = (0, 0);
    while i < TRAITS.len() {
        let mut j = 0;
        while j < TRAITS[i].len() {
            out[at] = TRAITS[i][j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}
