//! One spelling per setting value. An enum declared with [`named!`] is written and read the same
//! way everywhere: on the command line, in sweep files, in JSON results and manifests, and in
//! file and batch names (`FromStr`, `Display`, serde, `ALL` and `NAMES`).

/// What every [`named!`] enum offers generically (e.g. to a command-line parser).
pub trait Named: Sized + Copy + std::str::FromStr<Err = String> + Send + Sync + 'static {
    const NAMES: &'static [&'static str];
}

/// Declares a fieldless enum with one name per variant: `named! { pub enum E { A = "a", B = "b" } }`.
#[macro_export]
macro_rules! named {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The variant's one spelling.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl $crate::names::Named for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                // Any case: sweep files and command lines written either way mean the same.
                Self::ALL
                    .iter()
                    .find(|v| v.name().eq_ignore_ascii_case(s))
                    .copied()
                    .ok_or_else(|| format!("{s:?} is not one of {}", Self::NAMES.join(", ")))
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}
