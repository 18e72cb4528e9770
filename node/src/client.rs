//! The client side of the API, for `vecino members`, `rtt`, `post`, `tail`, `status`, `links`.
//!
//! A small blocking HTTP client (ureq, no TLS: the API is on loopback). The node to talk to is
//! `--api`/`VECINO_API` if given, else the address the local node wrote to `api.addr` in its
//! data directory, else the default `127.0.0.1:7300`.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::{API_ADDR_FILE, DEFAULT_API};

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// Finds the API address: given, else `<data_dir>/api.addr`, else the default.
pub fn api_address(given: Option<&str>, data_dir: Option<&Path>) -> String {
    if let Some(a) = given {
        return a.trim_start_matches("http://").trim_end_matches('/').to_string();
    }
    let dir = data_dir.map(Path::to_owned).or_else(crate::keyfile::default_data_dir);
    dir.and_then(|d| std::fs::read_to_string(d.join(API_ADDR_FILE)).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_API.to_string())
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(timeout).http_status_as_error(false).build().into()
}

impl Client {
    /// A client of the API at `addr` (`host:port`).
    pub fn new(addr: &str) -> Self {
        Client { base: format!("http://{addr}"), agent: agent(Some(Duration::from_secs(15))) }
    }

    fn answer(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut r = r.with_context(|| {
            format!("cannot reach the vecino API at {} (is `vecino run` up? set --api)", self.base)
        })?;
        let status = r.status();
        let text = r.body_mut().read_to_string().with_context(|| format!("reading {what}"))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{what}: {msg} (HTTP {})", status.as_u16());
        }
        Ok(v)
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.agent.get(format!("{}{path}", self.base)).call();
        self.answer(path, r)
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .with_context(|| format!("cannot reach the vecino API at {}", self.base))?;
        Ok(r.body_mut().read_to_string()?)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body.to_string());
        self.answer(path, r)
    }

    /// Follows the event stream, calling `on` with each (event, data) until it returns false
    /// or the stream ends.
    pub fn follow(&self, mut on: impl FnMut(&str, &Value) -> bool) -> anyhow::Result<()> {
        let r = agent(None)
            .get(format!("{}/v1/events", self.base))
            .call()
            .with_context(|| format!("cannot reach the vecino API at {}", self.base))?;
        let reader = std::io::BufReader::new(r.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let line = line?;
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if !on(&event, &v) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A fixed-width text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
        assert_eq!(cell(&serde_json::json!(1.25)), "1.2");
        assert_eq!(cell(&Value::Null), "-");
    }
}
