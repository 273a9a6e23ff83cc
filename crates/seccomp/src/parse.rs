//! Reading a `linux.seccomp` object with one clear line for a bad name.
//!
//! oci-spec's types refuse an unknown action, architecture, operator or
//! flag during deserialization, with serde's generic "unknown variant"
//! message somewhere in config.json. Checking those strings first lets the
//! runtime say `seccomp: unknown action SCMP_ACT_FOO`.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// Parses a `linux.seccomp` JSON object.
pub fn from_json(json: &[u8]) -> Result<LinuxSeccomp, Error> {
    let value: Value = serde_json::from_slice(json).map_err(Error::Json)?;
    from_value(&value)
}

/// Checks the names in a `linux.seccomp` JSON value, then deserializes it.
/// A runtime whose config.json failed to parse can call this on
/// `linux.seccomp` to find out whether the profile was the reason.
pub fn from_value(value: &Value) -> Result<LinuxSeccomp, Error> {
    check_names(value)?;
    serde_json::from_value(value.clone()).map_err(Error::Json)
}

fn check_names(value: &Value) -> Result<(), Error> {
    check::<LinuxSeccompAction>(value.get("defaultAction"), Error::UnknownAction)?;
    for arch in array(value.get("architectures")) {
        check::<Arch>(Some(arch), Error::UnknownArchitecture)?;
    }
    for flag in array(value.get("flags")) {
        check::<LinuxSeccompFilterFlag>(Some(flag), Error::UnknownFlag)?;
    }
    for rule in array(value.get("syscalls")) {
        check::<LinuxSeccompAction>(rule.get("action"), Error::UnknownAction)?;
        for arg in array(rule.get("args")) {
            check::<LinuxSeccompOperator>(arg.get("op"), Error::UnknownOperator)?;
        }
    }
    Ok(())
}

fn array(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

/// A string that does not deserialize as `T` is an unknown name; anything
/// else (missing, not a string) is left to the full deserialization.
fn check<T: DeserializeOwned>(
    value: Option<&Value>,
    unknown: fn(String) -> Error,
) -> Result<(), Error> {
    if let Some(Value::String(name)) = value {
        if serde_json::from_value::<T>(Value::String(name.clone())).is_err() {
            return Err(unknown(name.clone()));
        }
    }
    Ok(())
}
