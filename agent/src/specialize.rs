//! Picking the richest way to capture a value at compile time, without
//! specialization: method resolution tries `&&Wrap` (serde), then `&Wrap`
//! (Debug), then `Wrap` (type name only), so `probe!` needs no bounds.

use std::fmt::Debug;

use serde::Serialize;

use crate::capture::{Captured, ValueSlot};

#[doc(hidden)]
pub struct Wrap<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait CaptureBest {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured;
}

#[doc(hidden)]
pub trait CaptureDebugOnly {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured;
}

#[doc(hidden)]
pub trait CaptureTypeName {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured;
}

impl<T: Serialize + ?Sized> CaptureBest for &&Wrap<'_, T> {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured {
        slot.serialize(self.0)
    }
}

impl<T: Debug + ?Sized> CaptureDebugOnly for &Wrap<'_, T> {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured {
        slot.debug(self.0)
    }
}

impl<T: ?Sized> CaptureTypeName for Wrap<'_, T> {
    fn keyhole_capture(&self, slot: ValueSlot<'_, '_>) -> Captured {
        slot.type_name_of::<T>()
    }
}
