//! The contract's validation rules for client input, in one place.
//!
//! "Characters" are Unicode scalar values (`char`s); a NUL is refused
//! everywhere.

/// Input that breaks a rule; `field` is the input field's GraphQL name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// 3–32 characters of `A–Z a–z 0–9 _ . -`.
pub fn username(value: &str) -> Result<(), Invalid> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !(3..=32).contains(&value.chars().count()) || !value.chars().all(allowed) {
        return Err(invalid(
            "username",
            "username must be 3 to 32 characters of A-Z, a-z, 0-9, _, . and -",
        ));
    }
    Ok(())
}

/// 8–128 characters, any but NUL.
pub fn password(value: &str) -> Result<(), Invalid> {
    no_nul("password", value)?;
    if !(8..=128).contains(&value.chars().count()) {
        return Err(invalid("password", "password must be 8 to 128 characters"));
    }
    Ok(())
}

/// 1–200 characters after trimming; returns the trimmed title.
pub fn title(value: &str) -> Result<&str, Invalid> {
    trimmed("title", value, 200)
}

/// 1–50 000 characters.
pub fn body(value: &str) -> Result<(), Invalid> {
    no_nul("body", value)?;
    if !(1..=50_000).contains(&value.chars().count()) {
        return Err(invalid("body", "body must be 1 to 50000 characters"));
    }
    Ok(())
}

/// An API token's name: 1–64 characters after trimming; returns it trimmed.
pub fn token_name(value: &str) -> Result<&str, Invalid> {
    trimmed("name", value, 64)
}

/// A page size: 1..=100.
pub fn first(value: i32) -> Result<i64, Invalid> {
    if !(1..=100).contains(&value) {
        return Err(invalid("first", "first must be between 1 and 100"));
    }
    Ok(i64::from(value))
}

/// `value` trimmed, when that is 1 to `max` characters (and no NUL).
fn trimmed<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, Invalid> {
    no_nul(field, value)?;
    let trimmed = value.trim();
    if !(1..=max).contains(&trimmed.chars().count()) {
        return Err(invalid(
            field,
            format!("{field} must be 1 to {max} characters after trimming"),
        ));
    }
    Ok(trimmed)
}

fn no_nul(field: &'static str, value: &str) -> Result<(), Invalid> {
    if value.contains('\0') {
        return Err(invalid(
            field,
            format!("{field} must not contain a NUL character"),
        ));
    }
    Ok(())
}
