//! The built-in offline model: answers without any network or weights, deterministically.
//!
//! It echoes the last user message back (or greets when there is none), streamed word by word.
//! A later model backend (any OpenAI-compatible endpoint) replaces it behind the same shape:
//! messages in, text deltas out.

use palisade_wire::agui::Message;
use palisade_wire::agui::Role;

/// The answer when the conversation holds no user text.
pub const GREETING: &str =
    "Hello! I am the Palisade offline model. Send me a message and I will echo it back.";

/// The scripted offline model.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineModel;

impl OfflineModel {
    /// The answer to a conversation: the text of the last user message, with whitespace runs
    /// collapsed to single spaces, or [`GREETING`] when there is no user text.
    pub fn answer(&self, messages: &[Message]) -> String {
        let last_user_text = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .and_then(|m| m.text());
        let words: Vec<&str> = last_user_text
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if words.is_empty() {
            GREETING.to_owned()
        } else {
            words.join(" ")
        }
    }

    /// Splits an answer into the deltas streamed as `TEXT_MESSAGE_CONTENT`: one per word, every
    /// word after the first carrying its leading space, so the deltas concatenate to the answer.
    /// Deltas are never empty, as AG-UI requires.
    pub fn deltas(answer: &str) -> Vec<String> {
        answer
            .split_whitespace()
            .enumerate()
            .map(|(i, word)| {
                if i == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use palisade_wire::agui::{Message, MessageContent, Role};
    use serde_json::json;

    use super::{OfflineModel, GREETING};

    fn msg(role: Role, text: &str) -> Message {
        Message::text_message("id", role, text)
    }

    #[test]
    fn echoes_the_last_user_message() {
        let messages = [
            msg(Role::System, "be nice"),
            msg(Role::User, "first question"),
            msg(Role::Assistant, "first answer"),
            msg(Role::User, "  second\n question\there "),
            msg(Role::Assistant, "pending"),
        ];
        assert_eq!(OfflineModel.answer(&messages), "second question here");
    }

    #[test]
    fn greets_without_user_text() {
        assert_eq!(OfflineModel.answer(&[]), GREETING);
        assert_eq!(OfflineModel.answer(&[msg(Role::System, "sys")]), GREETING);
        assert_eq!(OfflineModel.answer(&[msg(Role::User, " \n ")]), GREETING);
        let no_content = Message {
            content: None,
            ..msg(Role::User, "")
        };
        assert_eq!(OfflineModel.answer(&[no_content]), GREETING);
    }

    #[test]
    fn reads_text_parts_of_multimodal_messages() {
        let m = Message {
            content: Some(MessageContent::Structured(json!([
                {"type": "text", "text": "look at"},
                {"type": "binary", "mimeType": "image/png", "data": "AAAA"},
                {"type": "text", "text": "this"}
            ]))),
            ..msg(Role::User, "")
        };
        assert_eq!(OfflineModel.answer(&[m]), "look at this");
    }

    #[test]
    fn deltas_are_words_that_concatenate_to_the_answer() {
        let deltas = OfflineModel::deltas("hello big world");
        assert_eq!(deltas, ["hello", " big", " world"]);
        assert_eq!(deltas.concat(), "hello big world");
        assert!(OfflineModel::deltas("").is_empty());
        let greeting = OfflineModel::deltas(GREETING);
        assert_eq!(greeting.concat(), GREETING);
        assert!(greeting.iter().all(|d| !d.trim().is_empty()));
    }
}
