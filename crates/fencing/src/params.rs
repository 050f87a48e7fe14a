//! Device parameters: `key=value` pairs as fence-agents and Pacemaker name them.
//!
//! They come as words (`ip=10.0.0.1 username=admin`) or as lines in the fence-agents stdin
//! format (`#` comments, blank lines ignored, last value wins). Values of secret keys are
//! redacted from `Debug` and from every error message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::agent::AgentError;
use crate::secret::Secret;

/// Device parameters, keyed by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// True for keys whose values are secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("passw") || k.contains("secret") || k == "hexadecimal_kg" || k.contains("token")
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.map {
            if is_secret_key(k) {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

fn config_err(field: &str, problem: impl Into<String>) -> AgentError {
    AgentError::Config {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

impl Params {
    /// Parses `key=value` words.
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<Params, AgentError> {
        let mut p = Params::default();
        for w in words {
            let w = w.as_ref();
            let Some((k, v)) = w.split_once('=') else {
                return Err(config_err(
                    w,
                    "expected key=value (e.g. ip=192.0.2.1); a bare word is not a parameter",
                ));
            };
            p.set(k, v)?;
        }
        Ok(p)
    }

    /// Parses the fence-agents stdin format.
    pub fn from_lines(text: &str) -> Result<Params, AgentError> {
        let mut p = Params::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(config_err(&format!("line {}", n + 1), "expected key=value"));
            };
            p.set(k.trim(), v.trim())?;
        }
        Ok(p)
    }

    /// Sets one parameter (last value wins).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), AgentError> {
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(config_err(
                key,
                "parameter names are letters, digits, `_` and `-`",
            ));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(config_err(key, "values cannot contain newlines or NUL"));
        }
        self.map.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// Removes a parameter.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    /// All parameters in key order (secrets included: do not print).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first of `keys` that is set (for aliases like `username`/`login`).
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|k| self.map.get(*k).map(String::as_str))
    }

    /// Like [`Params::get`], but a missing value is an error naming the first key.
    pub fn require(&self, keys: &[&str], what: &str) -> Result<&str, AgentError> {
        match self.get(keys) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(config_err(
                keys[0],
                format!("missing: set {}=<{what}>", keys[0]),
            )),
        }
    }

    /// A secret value (empty when absent).
    pub fn secret(&self, keys: &[&str]) -> Secret {
        Secret::new(self.get(keys).unwrap_or(""))
    }

    /// A boolean in the fence-agents spellings (`1/0`, `true/false`, `yes/no`, `on/off`).
    pub fn flag(&self, keys: &[&str], default: bool) -> Result<bool, AgentError> {
        match self.get(keys) {
            None | Some("") => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" | "y" => Ok(true),
                "0" | "false" | "no" | "off" | "n" => Ok(false),
                _ => Err(config_err(
                    keys[0],
                    format!("`{v}` is not a boolean; use 1 or 0"),
                )),
            },
        }
    }

    /// An unsigned integer.
    pub fn number<T: std::str::FromStr>(&self, keys: &[&str], default: T) -> Result<T, AgentError> {
        match self.get(keys) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| config_err(keys[0], format!("`{v}` is not a valid number"))),
        }
    }

    /// A duration in Pacemaker's spelling (`30s`, `5min`, `1h`, `500ms`; bare = seconds).
    pub fn duration(&self, keys: &[&str], default: Duration) -> Result<Duration, AgentError> {
        match self.get(keys) {
            None | Some("") => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| {
                config_err(
                    keys[0],
                    format!("`{v}` is not a duration; use e.g. 20s, 500ms, 2min"),
                )
            }),
        }
    }

    /// Rejects keys outside `known` (and outside the fencer's own `pcmk_*` keys), naming them.
    pub fn check_known(&self, agent: &str, known: &[&str]) -> Result<(), AgentError> {
        let unknown: Vec<&str> = self
            .map
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k) && !k.starts_with("pcmk_") && !COMMON.contains(k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(config_err(
                unknown[0],
                format!(
                    "not a parameter of agent {agent} (unknown: {}); see `crmctl stonith describe {agent}`",
                    unknown.join(", ")
                ),
            ))
        }
    }
}

/// Keys every device accepts.
const COMMON: &[&str] = &[
    "agent",
    "plug",
    "port",
    "timeout",
    "retries",
    "power_timeout",
    "delay",
];

/// Parses `30s`, `5min`, `1h`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" | "msec" | "msecs" => n / 1000.0,
        "us" | "usec" => n / 1e6,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hr" | "hrs" => n * 3600.0,
        _ => return None,
    };
    if secs > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_words_and_lines_with_last_value_winning() {
        let p = Params::from_lines("# c\naction=off\n\nip = 1.2.3.4\npassword=x=y\nip=5.6.7.8\n")
            .unwrap();
        assert_eq!(p.get(&["ipaddr", "ip"]), Some("5.6.7.8"));
        assert_eq!(p.get(&["password"]), Some("x=y"));
        assert!(!format!("{p:?}").contains("x=y"));
        assert!(Params::from_words(&["ip"]).is_err());
        let e = Params::from_words(&["ip=1", "bogus=2"])
            .unwrap()
            .check_known("ipmi", &["ip"])
            .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn durations_follow_pacemaker_spelling() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("3 weeks"), None);
    }
}
