//! Built-in tools.

use serde_json::json;

use super::{evaluate, Calculator, GetTime, MockWeather};
use crate::tools::{Tool, ToolContext};

#[test]
fn calculator_follows_precedence_and_reports_errors() {
    assert_eq!(evaluate("2+3*4"), Ok(14.0));
    assert_eq!(evaluate("(2+3)*4"), Ok(20.0));
    assert_eq!(evaluate(" -2 * -(1.5 + 0.5) / 4 "), Ok(1.0));
    assert_eq!(evaluate("10-4-3"), Ok(3.0));
    assert_eq!(evaluate("1/0"), Err("division by zero".into()));
    assert!(evaluate("2+").is_err());
    assert!(evaluate("(1").is_err());
    assert!(evaluate("2 x 3").is_err());
    assert!(evaluate("").is_err());
    assert!(evaluate("1.2.3").is_err());
}

#[tokio::test]
async fn calculator_and_clock_as_tools() {
    let ctx = ToolContext::default();
    assert_eq!(
        Calculator
            .call(json!({"expression": "7/2"}), &ctx)
            .await
            .unwrap(),
        "3.5"
    );
    assert_eq!(
        Calculator
            .call(json!({"expression": "2+3*4"}), &ctx)
            .await
            .unwrap(),
        "14"
    );
    assert!(Calculator.call(json!({}), &ctx).await.is_err());
    let now = GetTime.call(json!({}), &ctx).await.unwrap();
    let parsed =
        time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(
        (time::OffsetDateTime::now_utc() - parsed)
            .whole_seconds()
            .abs()
            < 5
    );
}

#[tokio::test]
async fn weather_needs_its_credential_and_never_returns_it() {
    let tool = MockWeather {
        key_env: "PALISADE_TEST_WEATHER_KEY_A".into(),
    };
    let ctx = ToolContext::default();
    let err = tool.call(json!({"city": "Paris"}), &ctx).await.unwrap_err();
    assert!(err.0.contains("PALISADE_TEST_WEATHER_KEY_A"), "{err}");
    std::env::set_var("PALISADE_TEST_WEATHER_KEY_A", "wk-secret-9876");
    let out = tool.call(json!({"city": "Paris"}), &ctx).await.unwrap();
    assert!(out.starts_with("Paris: "), "{out}");
    assert!(!out.contains("wk-secret-9876"));
    assert_eq!(
        out,
        tool.call(json!({"city": "Paris"}), &ctx).await.unwrap()
    );
    let spec = serde_json::to_string(&tool.spec().parameters).unwrap();
    assert!(
        !spec.contains("key"),
        "the model is never asked for the key"
    );
}
