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

/// `value` trimmed, when that is 1 to `max` characters of one line of
/// plain text: no NUL, no control character and no bidirectional control
/// (which could make a listing show something other than what is stored).
fn trimmed<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, Invalid> {
    no_nul(field, value)?;
    let trimmed = value.trim();
    if !(1..=max).contains(&trimmed.chars().count()) {
        return Err(invalid(
            field,
            format!("{field} must be 1 to {max} characters after trimming"),
        ));
    }
    if trimmed.chars().any(spoofs) {
        return Err(invalid(
            field,
            format!("{field} must not contain control characters or bidirectional overrides"),
        ));
    }
    Ok(trimmed)
}

/// A C0 or C1 control, DEL, or a bidirectional embedding, override or
/// isolate (U+202A–U+202E, U+2066–U+2069).
fn spoofs(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_token_names_refuse_controls_and_bidirectional_overrides() {
        for bad in [
            "a\u{7}b",
            "a\u{7f}b",
            "a\u{85}b",
            "evil\u{202E}gpj.exe",
            "x\u{2066}y",
            "a\nb",
        ] {
            assert_eq!(title(bad).unwrap_err().field, "title", "{bad:?}");
            assert_eq!(token_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert_eq!(title("  Héllo, wörld ✓ "), Ok("Héllo, wörld ✓"));
        assert_eq!(token_name("ci\u{200D}bot"), Ok("ci\u{200D}bot"));
    }
}
