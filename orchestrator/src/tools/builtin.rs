//! Built-in tools: `get_time`, `calculator` and `mock_weather`.
//!
//! `mock_weather` stands for a tool that needs a secret: its API key is read from the
//! environment (`tools.weather_api_key_env`) when it is called and used only inside the tool —
//! it is never part of the tool's spec, arguments or result, so the model never sees it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::{Tool, ToolContext, ToolError};
use crate::config::ToolsConfig;
use crate::model::ToolSpec;

/// The built-in tools for `cfg`.
pub fn all(cfg: &ToolsConfig) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(GetTime),
        Arc::new(Calculator),
        Arc::new(MockWeather {
            key_env: cfg.weather_api_key_env.clone(),
        }),
    ]
}

/// `get_time`: the current UTC time, RFC 3339.
#[derive(Debug, Clone, Copy)]
pub struct GetTime;

#[async_trait]
impl Tool for GetTime {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "get_time".into(),
            description: "The current date and time (UTC, RFC 3339).".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, _args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| ToolError(e.to_string()))
    }
}

/// `calculator`: `+ - * /`, parentheses, unary minus and decimals.
#[derive(Debug, Clone, Copy)]
pub struct Calculator;

#[async_trait]
impl Tool for Calculator {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "calculator".into(),
            description: "Evaluates an arithmetic expression with + - * / and parentheses.".into(),
            parameters: json!({"type": "object", "required": ["expression"],
                "properties": {"expression": {"type": "string"}}}),
        }
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let expr = args["expression"]
            .as_str()
            .ok_or_else(|| ToolError("`expression` (a string) is required".into()))?;
        let value = evaluate(expr).map_err(ToolError)?;
        Ok(format_number(value))
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Evaluates an arithmetic expression.
pub fn evaluate(expr: &str) -> Result<f64, String> {
    let tokens: Vec<char> = expr.chars().filter(|c| !c.is_whitespace()).collect();
    if tokens.is_empty() {
        return Err("empty expression".into());
    }
    let mut p = Parser { tokens, pos: 0 };
    let v = p.sum()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected `{}`", p.tokens[p.pos]));
    }
    if !v.is_finite() {
        return Err("result is not a finite number".into());
    }
    Ok(v)
}

struct Parser {
    tokens: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let rhs = self.product()?;
            v = if op == '+' { v + rhs } else { v - rhs };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.factor()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            let rhs = self.factor()?;
            if op == '/' && rhs == 0.0 {
                return Err("division by zero".into());
            }
            v = if op == '*' { v * rhs } else { v / rhs };
        }
        Ok(v)
    }

    fn factor(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some('-') => {
                self.pos += 1;
                Ok(-self.factor()?)
            }
            Some('(') => {
                self.pos += 1;
                let v = self.sum()?;
                if self.peek() != Some(')') {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.pos += 1;
                }
                let text: String = self.tokens[start..self.pos].iter().collect();
                text.parse().map_err(|_| format!("bad number `{text}`"))
            }
            Some(c) => Err(format!("unexpected `{c}`")),
            None => Err("expression ends too early".into()),
        }
    }
}

/// `mock_weather`: a deterministic forecast for a city, "fetched" with an API key from the
/// environment.
#[derive(Debug, Clone)]
pub struct MockWeather {
    key_env: String,
}

#[async_trait]
impl Tool for MockWeather {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "mock_weather".into(),
            description: "Current weather for a city (a mock weather service).".into(),
            parameters: json!({"type": "object", "required": ["city"],
                "properties": {"city": {"type": "string"}}}),
        }
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        let city = args["city"]
            .as_str()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ToolError("`city` (a string) is required".into()))?;
        // The credential is injected here, at call time, and never leaves this function.
        let key = std::env::var(&self.key_env)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ToolError(format!(
                    "mock_weather has no credential: set {}",
                    self.key_env
                ))
            })?;
        Ok(forecast(city, &key))
    }
}

/// The mock service: a forecast derived from the city name; the key only gates access.
fn forecast(city: &str, key: &str) -> String {
    debug_assert!(!key.is_empty());
    let seed = city
        .to_lowercase()
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let sky = ["sunny", "cloudy", "light rain", "windy", "foggy"][(seed % 5) as usize];
    let celsius = (seed / 5 % 35) as i32 - 5;
    format!("{city}: {celsius}°C, {sky}")
}

#[cfg(test)]
mod tests;
