//! Configured rule sets (errors with their field paths, custom rules beside the built-in ones),
//! detectors over long text, AG-UI chunk/result/snapshot redaction, and the work and state
//! bounds a hostile stream cannot exceed.

use super::*;

#[test]
fn configuration_errors_name_their_field() {
    let spec: RuleSetSpec = yaml_serde::from_str(
        r#"
disable: [pii.nothing]
overrides: {injection.ignore_instructions: {input: redact}}
rules:
  - {id: "bad id", phrases: [x], input: block}
  - {id: a, phrases: [x], regex: y, input: block}
  - {id: b, regex: "(", on: raw, input: flag}
  - {id: c, phrases: ["!!"], output: block}
  - {id: d, phrases: [hello]}
"#,
    )
    .unwrap();
    let errors = RuleSet::compile("s", &spec).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "disable[0]",
        "overrides.injection.ignore_instructions.input",
        "rules[0].id",
        "rules[1]",
        "rules[2].regex",
        "rules[3].phrases[0]",
        "rules[3].output",
        "rules[4]",
    ] {
        assert!(paths.contains(&want), "{want} missing in {errors:?}");
    }
}

#[test]
fn custom_rules_run_beside_the_builtin_ones() {
    let spec: RuleSetSpec = yaml_serde::from_str(
        r#"
builtin: false
rules:
  - {id: custom.wire, phrases: ["wire the money"], input: block, output: stop}
  - {id: custom.ticket, regex: "TICKET-[0-9]{4}", on: raw, input: redact, output: redact}
"#,
    )
    .unwrap();
    let rs = RuleSet::compile("s", &spec).unwrap();
    let s = scan_text(
        &rs,
        "W1RE the m0ney now",
        Side::Input,
        Location::UserMessage,
    );
    assert_eq!(
        s.refused.map(|r| rs.rules[r].id.as_str()),
        Some("custom.wire")
    );
    let s = scan_text(&rs, "see TICKET-1234", Side::Input, Location::UserMessage);
    assert_eq!(s.text.as_deref(), Some("see [REDACTED:TICKET]"));
    let s = scan_text(&rs, "jane@example.com", Side::Input, Location::UserMessage);
    assert!(s.fired.is_empty(), "built-ins are off");
    assert_eq!(rs.rules[0].input, Some(Action::Block));
}

#[test]
fn digit_led_detectors_find_matches_anywhere_in_long_text() {
    let rs = default_set();
    let items = [
        ("4111 1111 1111 1111", "[REDACTED:CREDIT_CARD]"),
        ("123-45-6789", "[REDACTED:SSN]"),
        ("MT84 MALT 0110 0001 2345 MTLC AST0 01S", "[REDACTED:IBAN]"),
        ("GB82WEST12345698765432", "[REDACTED:IBAN]"),
        ("(555) 123-4567", "[REDACTED:PHONE]"),
        ("+44 20 7946 0958", "[REDACTED:PHONE]"),
        ("192.168.10.254", "[REDACTED:IP_ADDRESS]"),
    ];
    let filler = "some ordinary words without any numbers in them at all, ";
    let mut text = String::new();
    let mut want = String::new();
    for (i, (item, placeholder)) in items.iter().enumerate() {
        for _ in 0..(i % 3 + 1) {
            text.push_str(filler);
            want.push_str(filler);
        }
        text.push_str(item);
        want.push_str(placeholder);
        text.push_str(" and 42 more. ");
        want.push_str(" and 42 more. ");
    }
    let scanned = scan_text(&rs, &text, Side::Input, Location::UserMessage);
    assert_eq!(scanned.text.as_deref(), Some(want.as_str()));
}

#[test]
fn agui_chunks_results_and_snapshots_are_redacted() {
    let rs = default_set();
    let mut g = AguiGuard::new(&rs, "r3");
    let (out, stop, _) = recorder_run(
        &mut g,
        &rs,
        &[
            "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n\
             data: {\"type\":\"TEXT_MESSAGE_CHUNK\",\"messageId\":\"c1\",\"role\":\"assistant\",\"delta\":\"ping 10.0.\"}\n\n",
            "data: {\"type\":\"TEXT_MESSAGE_CHUNK\",\"delta\":\"0.1 now\"}\n\n\
             data: {\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m9\",\"toolCallId\":\"x\",\"content\":\"owner: ann@example.org\"}\n\n\
             data: {\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"a\",\"role\":\"assistant\",\"content\":\"ssn 123-45-6789\"}]}\n\n\
             data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n",
        ],
    );
    assert!(stop.is_none());
    let evs = events(&out);
    let chunks: String = evs
        .iter()
        .filter(|e| e["type"] == "TEXT_MESSAGE_CHUNK")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(chunks, "ping [REDACTED:IP_ADDRESS] now");
    // The first chunk keeps its id and role even when its whole delta is held back.
    assert_eq!(evs[1]["messageId"], "c1");
    assert_eq!(evs[1]["role"], "assistant");
    let result = evs
        .iter()
        .find(|e| e["type"] == "TOOL_CALL_RESULT")
        .unwrap();
    assert_eq!(result["content"], "owner: [REDACTED:EMAIL]");
    let snapshot = evs
        .iter()
        .find(|e| e["type"] == "MESSAGES_SNAPSHOT")
        .unwrap();
    assert_eq!(snapshot["messages"][0]["content"], "ssn [REDACTED:SSN]");
    // Held chunk text is relayed before the next non-chunk event.
    let types: Vec<_> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let last_chunk = types
        .iter()
        .rposition(|t| *t == "TEXT_MESSAGE_CHUNK")
        .unwrap();
    let result_at = types.iter().position(|t| *t == "TOOL_CALL_RESULT").unwrap();
    assert!(last_chunk < result_at, "{types:?}");
    assert!(!out.contains("10.0.0.1") && !out.contains("ann@"));
}

#[test]
fn config_errors_carry_the_full_field_path() {
    let yaml = r#"
upstreams: {u: {address: "127.0.0.1:1"}}
routes:
  - {name: a, match: {path_prefix: /a}, upstream: u, guardrails: {rule_set: nope}}
guardrails:
  default_rule_set: missing
  rule_sets:
    strict:
      rules:
        - {id: x, phrases: [hello], input: redact}
"#;
    let Err(err) = crate::config::Config::from_yaml(yaml, Vec::new()) else {
        panic!("the config is invalid");
    };
    let err = err.to_string();
    for path in [
        "guardrails.default_rule_set",
        "guardrails.rule_sets.strict.rules[0].input",
        "routes[0].guardrails.rule_set",
    ] {
        assert!(err.contains(path), "{path} missing in:\n{err}");
    }
}

/// A delta where every position stays a live e-mail prefix to its end (`a.a.a.…`) would cost
/// O(n²) DFA steps without the work bound in `RuleSet::live_from`; with it this finishes at once,
/// and the overgrown hold is redacted rather than relayed.
#[test]
fn a_hostile_delta_costs_linear_work_and_is_held_not_leaked() {
    let rs = default_set();
    let hostile = "a.".repeat(200_000);
    let mut cache = rs.live_cache();
    let mut t = TextStream::default();
    let scanned = t.push(&rs, cache.as_mut(), &hostile, Location::AssistantText);
    let relayed = scanned.text.unwrap_or_default();
    assert!(relayed.len() < hostile.len(), "held nothing back");
    assert!(
        relayed.ends_with("[REDACTED]"),
        "{}",
        &relayed[relayed.len().saturating_sub(40)..]
    );
    // Ordinary long text is not affected by the bound: nothing is redacted.
    let prose = "the quick brown fox jumps over the lazy dog. ".repeat(20_000);
    let (out, refused) = stream_all(&rs, &[&prose], Location::AssistantText);
    assert_eq!(refused, None);
    assert_eq!(out, prose);
}

/// Messages opened one after another and never ended keep a bounded state.
#[test]
fn open_texts_per_response_are_bounded() {
    use crate::guardrails::stream::agui::MAX_OPEN_TEXTS;
    let rs = default_set();
    let mut g = AguiGuard::new(&rs, "r1");
    let mut chunk =
        String::from("data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n");
    for i in 0..MAX_OPEN_TEXTS * 4 {
        chunk.push_str(&format!(
            "data: {{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m{i}\",\"role\":\"assistant\"}}\n\n\
             data: {{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m{i}\",\"delta\":\"see AKIA\"}}\n\n"
        ));
    }
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let mut findings = Findings::default();
    let mut rec = Recorder {
        metrics: &metrics,
        findings: &mut findings,
    };
    // Not the end of the stream: what the open messages hold stays held.
    assert!(g.process(&rs, &mut rec, chunk.as_bytes(), false).is_ok());
    // Each open message holds its last word ("tail"); only the newest MAX_OPEN_TEXTS remain.
    assert!(
        g.held() <= MAX_OPEN_TEXTS * "tail".len(),
        "held {}",
        g.held()
    );
    assert!(g.held() > 0);
}
