//! Values between JSON and the engines: PostgreSQL's binary results decoded into JSON, JSON
//! arguments sent to PostgreSQL as text it parses as the parameter's own type.

use std::error::Error;

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn Error + Sync + Send>;

/// Bytes as PostgreSQL prints `bytea`: `\x` and lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// One result cell of any PostgreSQL type, as JSON.
pub struct Cell(pub Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self(decode(ty, raw).unwrap_or_else(|error| {
            Value::String(format!(
                "<{} value that could not be read: {error}>",
                ty.name()
            ))
        })))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Self(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    Ok(match *ty {
        Type::BOOL => bool::from_sql(ty, raw)?.into(),
        Type::INT2 => i16::from_sql(ty, raw)?.into(),
        Type::INT4 => i32::from_sql(ty, raw)?.into(),
        Type::INT8 => i64::from_sql(ty, raw)?.into(),
        Type::OID => u32::from_sql(ty, raw)?.into(),
        Type::FLOAT4 => float(f32::from_sql(ty, raw)?.into()),
        Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
        // Exact decimals stay exact: as text.
        Type::NUMERIC => numeric(raw)?.into(),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            String::from_sql(ty, raw)?.into()
        }
        Type::CHAR => (i8::from_sql(ty, raw)? as u8 as char).to_string().into(),
        Type::JSON | Type::JSONB => Value::from_sql(ty, raw)?,
        Type::UUID => uuid::Uuid::from_sql(ty, raw)?.to_string().into(),
        Type::BYTEA => hex(raw).into(),
        Type::TIMESTAMP => chrono::NaiveDateTime::from_sql(ty, raw)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
            .unwrap_or_else(|_| infinity(raw))
            .into(),
        Type::TIMESTAMPTZ => chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|_| infinity(raw))
            .into(),
        Type::DATE => chrono::NaiveDate::from_sql(ty, raw)
            .map(|d| d.to_string())
            .unwrap_or_else(|_| infinity(raw))
            .into(),
        Type::TIME => chrono::NaiveTime::from_sql(ty, raw)?.to_string().into(),
        Type::INTERVAL => interval(raw)?.into(),
        _ => match ty.kind() {
            Kind::Array(_) => Vec::<Cell>::from_sql(ty, raw)?
                .into_iter()
                .map(|cell| cell.0)
                .collect(),
            Kind::Domain(inner) => decode(inner, raw)?,
            // An enum's binary form is its label.
            Kind::Enum(_) => String::from_utf8(raw.to_vec())?.into(),
            // Types from extensions (citext, …) often send text; anything else is named.
            _ => match std::str::from_utf8(raw) {
                Ok(text) if !text.chars().any(char::is_control) => text.into(),
                _ => format!("<{} value, {} bytes>", ty.name(), raw.len()).into(),
            },
        },
    })
}

/// Timestamps and dates out of chrono's range are PostgreSQL's `±infinity`.
fn infinity(raw: &[u8]) -> String {
    if raw.first().is_some_and(|b| b & 0x80 != 0) {
        "-infinity".into()
    } else {
        "infinity".into()
    }
}

fn read_i16(raw: &[u8], at: usize) -> Result<i16, BoxError> {
    raw.get(at..at + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated value".into())
}

/// `numeric`'s binary form (base-10000 digits with a weight and a display scale) as text.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = read_i16(raw, 0)?.max(0) as usize;
    let weight = read_i16(raw, 2)? as i32;
    let sign = read_i16(raw, 4)? as u16;
    let scale = read_i16(raw, 6)?.max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits)
        .map(|i| read_i16(raw, 8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let digit = |index: i32| -> i16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                out.push_str(&digit(index).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(index)));
            }
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let groups = scale.div_ceil(4) as i32;
        for index in weight + 1..weight + 1 + groups {
            fraction.push_str(&format!("{:04}", digit(index)));
        }
        fraction.truncate(scale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// `interval`'s binary form (microseconds, days, months) as PostgreSQL prints it.
fn interval(raw: &[u8]) -> Result<String, BoxError> {
    let bytes: [u8; 16] = raw.try_into().map_err(|_| "interval is not 16 bytes")?;
    let micros = i64::from_be_bytes(bytes[0..8].try_into()?);
    let days = i32::from_be_bytes(bytes[8..12].try_into()?);
    let months = i32::from_be_bytes(bytes[12..16].try_into()?);
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, "year"), (months, "mon"), (days, "day")] {
        if n != 0 {
            parts.push(format!("{n} {unit}{}", if n.abs() == 1 { "" } else { "s" }));
        }
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let micros = micros.unsigned_abs();
        let seconds = micros / 1_000_000;
        let mut time = format!(
            "{sign}{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        );
        if micros % 1_000_000 != 0 {
            time.push_str(&format!(".{:06}", micros % 1_000_000));
        }
        parts.push(time);
    }
    Ok(parts.join(" "))
}

/// A JSON argument sent in text format, so PostgreSQL parses it as whatever type the
/// parameter has (integer, numeric, date, uuid, enum, …).
#[derive(Debug)]
pub struct TextParam(Option<String>);

impl TextParam {
    /// `ty` is the parameter's type as PostgreSQL inferred it.
    pub fn new(value: &Value, ty: &Type) -> Self {
        Self(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Array(items) if matches!(ty.kind(), Kind::Array(_)) => {
                Some(array_literal(items))
            }
            other => Some(other.to_string()),
        })
    }
}

/// `{1,2,"three",NULL}`: a JSON array as a PostgreSQL array literal.
fn array_literal(items: &[Value]) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_owned(),
            Value::Array(inner) => array_literal(inner),
            Value::String(s) => quote_element(s),
            other => quote_element(&other.to_string()),
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

fn quote_element(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ToSql for TextParam {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, scale: i16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [ndigits, weight, sign as i16, scale] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_read_exactly() {
        // 12345.6789 = [1, 2345, 6789], weight 1, scale 4
        assert_eq!(
            numeric(&numeric_bytes(3, 1, 0, 4, &[1, 2345, 6789])).unwrap(),
            "12345.6789"
        );
        // -0.000012 = [12] at weight -2 (0.0000|12), scale 6
        assert_eq!(
            numeric(&numeric_bytes(1, -2, 0x4000, 6, &[1200])).unwrap(),
            "-0.000012"
        );
        // 10000 = [1] weight 1, trailing zero group implied
        assert_eq!(numeric(&numeric_bytes(1, 1, 0, 0, &[1])).unwrap(), "10000");
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(
            numeric(&numeric_bytes(0, 0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
        assert!(numeric(&[0, 1]).is_err());
    }

    #[test]
    fn intervals_read_like_postgres_prints_them() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(3_723_500_000i64).to_be_bytes());
        raw.extend_from_slice(&2i32.to_be_bytes());
        raw.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            interval(&raw).unwrap(),
            "1 year 2 mons 2 days 01:02:03.500000"
        );
        assert!(interval(&raw[..8]).is_err());
    }

    #[test]
    fn arrays_become_postgres_literals() {
        let value = serde_json::json!([1, "a\"b", null, [2]]);
        assert_eq!(
            array_literal(value.as_array().unwrap()),
            r#"{"1","a\"b",NULL,{"2"}}"#
        );
    }
}
