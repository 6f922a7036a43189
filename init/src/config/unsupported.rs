//! Talos keys that Keel accepts but does not act on.
//!
//! A Talos user's whole machine config must load unchanged (docs/ARCHITECTURE.md), so
//! sections such as `machine.kubelet` are accepted with any content and
//! reported once as "not supported by Keel, ignored: `<path>`". Anything else
//! unknown stays an error (`deny_unknown_fields`).

use serde::de::{Deserialize, Deserializer, IgnoredAny};

/// Any YAML value, read and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsupported;

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(Unsupported)
    }
}

/// Declares a config struct plus the Talos keys it accepts and ignores,
/// keeping the accepted-key list and the warning list in one place: each
/// ignored key becomes an `Option<Unsupported>` field, and
/// `unsupported_keys()` lists the ones present.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
        unsupported { $( $ufield:ident = $key:literal, )* }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            $(
                #[doc = concat!("Talos `", $key, "`: accepted and ignored (not supported by Keel).")]
                #[serde(default, rename = $key, deserialize_with = "crate::config::unsupported::present")]
                pub $ufield: Option<$crate::config::unsupported::Unsupported>,
            )*
        }

        impl $name {
            /// Every Talos key this section accepts but Keel ignores.
            pub const UNSUPPORTED_KEYS: &'static [&'static str] = &[$($key),*];

            /// The ignored Talos keys present in this section, in
            /// declaration order.
            pub fn unsupported_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$ufield.is_some() { keys.push($key); } )*
                keys
            }
        }
    };
}

pub(crate) use section;

/// Any value, even `null`, means the key is present (and gets its warning).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Unsupported>, D::Error> {
    Unsupported::deserialize(d).map(Some)
}

/// Reads `null` as the default value, so `machine:` or `network:` with
/// nothing under it (Go's YAML reads that as an empty struct, so Talos
/// accepts it) is not an error.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An empty string reads as absent: Talos writes `key: ""` for a CA whose
/// key this node does not hold (a worker's `machine.ca`).
pub(crate) fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String>,
    T::Error: std::fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => T::try_from(s).map(Some).map_err(serde::de::Error::custom),
    }
}
