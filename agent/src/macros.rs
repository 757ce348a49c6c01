//! `probe!`: declares a probe site. The macro stays thin: a `static`, a
//! relaxed load, and a call into [`crate::callsite::Callsite::hit`].

/// Declares a probe: a place whose variables a breakpoint can capture for a
/// debug session.
///
/// `probe!("label", a, b, total = cart.total(), ?order)`: `name` captures a
/// variable by the richest trait its type has (serde `Serialize`, else
/// `Debug`, else just its type name); `?name` forces `Debug`; `name = expr`
/// captures an expression (`?name = expr` through `Debug`). Arguments are
/// evaluated only when a breakpoint captures; a probe with no breakpoint costs
/// one relaxed atomic load.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Cart { items: Vec<String>, total_cents: u64 }
///
/// fn checkout(cart: &Cart, user_id: u64) {
///     keyhole::probe!("checkout.start", cart, user_id, item_count = cart.items.len());
/// }
/// checkout(&Cart { items: vec!["sku-1".into()], total_cents: 1299 }, 7);
/// ```
///
/// With the crate feature `compiled-out`, `probe!` expands to nothing at all:
/// no static, no load, no arguments evaluated.
#[cfg(not(feature = "compiled-out"))]
#[macro_export]
macro_rules! probe {
    ($label:literal $(,)?) => {
        $crate::__probe_site!($label; []; [])
    };
    ($label:literal, $($rest:tt)+) => {
        $crate::__probe_args!($label; []; []; $($rest)+)
    };
}

/// `probe!` compiled out (crate feature `compiled-out`): expands to nothing.
#[cfg(feature = "compiled-out")]
#[macro_export]
macro_rules! probe {
    ($($anything:tt)*) => {
        ()
    };
}

/// Munches `probe!` arguments into names and capture expressions.
#[doc(hidden)]
#[macro_export]
macro_rules! __probe_args {
    // `?name = expr`
    ($label:literal; [$($names:expr),*]; [$($caps:tt)*]; ? $name:ident = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__probe_args!($label; [$($names,)* ::core::stringify!($name)];
            [$($caps)* (::core::stringify!($name), debug, $value)]; $($($rest)*)?)
    };
    // `name = expr`
    ($label:literal; [$($names:expr),*]; [$($caps:tt)*]; $name:ident = $value:expr $(, $($rest:tt)*)?) => {
        $crate::__probe_args!($label; [$($names,)* ::core::stringify!($name)];
            [$($caps)* (::core::stringify!($name), best, $value)]; $($($rest)*)?)
    };
    // `?name`
    ($label:literal; [$($names:expr),*]; [$($caps:tt)*]; ? $name:ident $(, $($rest:tt)*)?) => {
        $crate::__probe_args!($label; [$($names,)* ::core::stringify!($name)];
            [$($caps)* (::core::stringify!($name), debug, $name)]; $($($rest)*)?)
    };
    // `name`
    ($label:literal; [$($names:expr),*]; [$($caps:tt)*]; $name:ident $(, $($rest:tt)*)?) => {
        $crate::__probe_args!($label; [$($names,)* ::core::stringify!($name)];
            [$($caps)* (::core::stringify!($name), best, $name)]; $($($rest)*)?)
    };
    ($label:literal; [$($names:expr),*]; [$($caps:tt)*];) => {
        $crate::__probe_site!($label; [$($names),*]; [$($caps)*])
    };
}

/// The site itself: the static, the fast path, the cold call.
#[doc(hidden)]
#[macro_export]
macro_rules! __probe_site {
    ($label:literal; [$($names:expr),*]; [$(($name:expr, $how:ident, $value:expr))*]) => {{
        #[$crate::__private::linkme::distributed_slice($crate::__private::CALLSITES)]
        #[linkme(crate = $crate::__private::linkme)]
        static __KEYHOLE_CALLSITE: $crate::__private::Callsite =
            $crate::__private::Callsite::new($crate::__private::ProbeMeta {
                label: $label,
                file: ::core::file!(),
                line: ::core::line!(),
                module: ::core::module_path!(),
                variables: &[$($names),*],
            });
        if __KEYHOLE_CALLSITE.is_armed() {
            __KEYHOLE_CALLSITE.hit(&|_capturer: &mut $crate::__private::Capturer<'_>| {
                #[allow(unused_imports)]
                use $crate::__private::{CaptureBest as _, CaptureDebugOnly as _, CaptureTypeName as _};
                $(
                    _capturer.variable($name, |slot| $crate::__capture_value!($how, slot, $value));
                )*
            });
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __capture_value {
    (best, $slot:ident, $value:expr) => {
        (&&&$crate::__private::Wrap(&$value)).keyhole_capture($slot)
    };
    (debug, $slot:ident, $value:expr) => {
        $slot.debug(&$value)
    };
}
