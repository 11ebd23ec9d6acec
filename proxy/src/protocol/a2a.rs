//! A2A: JSON-RPC methods (v0.3 and v1.0 names) and the HTTP+JSON (REST) binding, each mapped
//! to its `a2a_*` Cedar action on `Agent::"<agent>"`. Unknown methods map to nothing and are
//! refused by the caller.

/// The `a2a_*` action of an A2A JSON-RPC method; `None` when unknown.
pub fn action(method: &str) -> Option<&'static str> {
    Some(match method {
        "message/send" | "SendMessage" => "a2a_send",
        "message/stream"
        | "SendStreamingMessage"
        | "tasks/resubscribe"
        | "SubscribeToTask"
        | "TaskSubscription" => "a2a_stream",
        "tasks/get"
        | "GetTask"
        | "tasks/list"
        | "ListTasks"
        | "tasks/pushNotificationConfig/get"
        | "tasks/pushNotificationConfig/list"
        | "GetTaskPushNotificationConfig"
        | "ListTaskPushNotificationConfig"
        | "agent/getAuthenticatedExtendedCard"
        | "GetExtendedAgentCard"
        | "GetAuthenticatedExtendedCard" => "a2a_get_task",
        "tasks/cancel"
        | "CancelTask"
        | "tasks/pushNotificationConfig/delete"
        | "DeleteTaskPushNotificationConfig" => "a2a_cancel",
        "tasks/pushNotificationConfig/set"
        | "SetTaskPushNotificationConfig"
        | "CreateTaskPushNotificationConfig" => "a2a_send",
        _ => return None,
    })
}

/// The `a2a_*` action of a request in the HTTP+JSON binding (`POST /v1/message:send`,
/// `GET /v1/tasks/{id}`, `POST /v1/tasks/{id}:cancel`, …), read from the path's last segments
/// whatever prefix the route adds. `None` when the path is not an A2A REST call.
pub fn rest_action(method: &http::Method, path: &str) -> Option<&'static str> {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let verb = last.rsplit_once(':').map(|(_, v)| v);
    let in_tasks = path.contains("/tasks/") || path.ends_with("/tasks");
    Some(match (method.as_str(), verb) {
        ("POST", Some("send")) if last.starts_with("message") => "a2a_send",
        ("POST", Some("stream")) if last.starts_with("message") => "a2a_stream",
        ("POST", Some("cancel")) if in_tasks => "a2a_cancel",
        ("POST" | "GET", Some("subscribe")) if in_tasks => "a2a_stream",
        ("GET", None) if in_tasks => "a2a_get_task",
        ("POST", None) if path.contains("/pushNotificationConfigs") => "a2a_send",
        ("DELETE", None) if path.contains("/pushNotificationConfigs") => "a2a_cancel",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_of_both_versions_map_to_actions() {
        for (method, want) in [
            ("message/send", "a2a_send"),
            ("SendMessage", "a2a_send"),
            ("message/stream", "a2a_stream"),
            ("SendStreamingMessage", "a2a_stream"),
            ("tasks/resubscribe", "a2a_stream"),
            ("tasks/get", "a2a_get_task"),
            ("GetTask", "a2a_get_task"),
            ("ListTasks", "a2a_get_task"),
            ("tasks/cancel", "a2a_cancel"),
            ("CancelTask", "a2a_cancel"),
            ("tasks/pushNotificationConfig/set", "a2a_send"),
        ] {
            assert_eq!(action(method), Some(want), "{method}");
        }
        assert_eq!(action("tasks/teleport"), None);
        assert_eq!(action(""), None);
    }

    #[test]
    fn rest_binding_maps_to_the_same_actions() {
        let (get, post) = (http::Method::GET, http::Method::POST);
        for (m, path, want) in [
            (&post, "/a2a/v1/message:send", Some("a2a_send")),
            (&post, "/v1/message:stream", Some("a2a_stream")),
            (&post, "/a2a/v1/tasks/t-1:cancel", Some("a2a_cancel")),
            (&get, "/a2a/v1/tasks/t-1", Some("a2a_get_task")),
            (&get, "/v1/tasks", Some("a2a_get_task")),
            (&get, "/a2a/v1/tasks/t-1:subscribe", Some("a2a_stream")),
            (&post, "/a2a/v1/tasks/t-1:teleport", None),
            (&get, "/a2a/", None),
        ] {
            assert_eq!(rest_action(m, path), want, "{m} {path}");
        }
    }
}
