//! Enums whose values are spelled in SQL: each variant's text lives once, in
//! the enum's declaration, and both directions go through it.

/// Declares an enum with its SQL spelling: `as_sql`, `from_sql` and `ALL`.
macro_rules! sql_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $sql:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value as SQL spells it.
            pub fn as_sql(self) -> &'static str {
                match self {
                    $($name::$variant => $sql,)+
                }
            }

            /// The value SQL spells `text`, if any; exact, as the CHECKs are.
            pub fn from_sql(text: &str) -> Option<$name> {
                match text {
                    $($sql => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_sql())
            }
        }
    };
}
