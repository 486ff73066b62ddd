//! JSON-RPC 1.0 messages as ovsdb-server sends and accepts them (RFC 7047 §4).
//!
//! The dialect: there is no `"jsonrpc"` member; a request has `method`, `params` (always an
//! array) and a non-null `id`; a notification is a request whose `id` is `null`; a response has
//! `id`, `result` and `error`, with `error` null on success and `result` null on failure.
//!
//! `params` and `result` are kept as [`RawValue`]: the text is checked for well-formedness here
//! but parsed only once, later, straight into the typed structures of whoever asked (a monitor
//! reply into table updates, a transact reply into operation results). Parsing them into a
//! [`Value`] here would build a throw-away tree the size of the message, and the initial reply
//! to a monitor request can be tens of MiB. `error` and `id` are small and inspected at this
//! layer, so they are [`Value`]s.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Error;

/// One JSON-RPC message, in either direction.
#[derive(Debug, Clone)]
pub enum Message {
    /// A call that expects a [`Response`] with the same id.
    Request(Request),
    /// The answer to a [`Request`].
    Response(Response),
    /// A call that expects no answer, such as ovsdb-server's `update` and `locked`.
    Notification(Notification),
}

/// A JSON-RPC request: `{"method": .., "params": [..], "id": ..}`.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method name, such as `"transact"` or `"echo"`.
    pub method: String,
    /// The parameters: always a JSON array in this dialect.
    pub params: Box<RawValue>,
    /// Any JSON value except `null`. We send integers; ovsdb-server's own probes use `"echo"`.
    pub id: Value,
}

/// A JSON-RPC notification: `{"method": .., "params": [..], "id": null}`.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The method name, such as `"update2"`.
    pub method: String,
    /// The parameters: always a JSON array in this dialect.
    pub params: Box<RawValue>,
}

/// A JSON-RPC response: `{"result": .., "error": .., "id": ..}`.
#[derive(Debug, Clone)]
pub struct Response {
    /// The id of the request this answers. `null` only if the peer could not tell which request
    /// it is answering.
    pub id: Value,
    /// `Ok` with the wire's `result` when `error` is null; `Err` with the wire's `error` (an
    /// RFC 7047 error object such as `{"error": "unknown database"}`) otherwise.
    pub result: Result<Box<RawValue>, Value>,
}

impl Request {
    /// A request whose params are `params` serialized; `params` must serialize to an array.
    pub fn new(
        id: impl Into<Value>,
        method: impl Into<String>,
        params: &impl Serialize,
    ) -> Result<Self, Error> {
        Ok(Self {
            method: method.into(),
            params: params_to_raw(params)?,
            id: id.into(),
        })
    }
}

impl Notification {
    /// A notification whose params are `params` serialized; `params` must serialize to an array.
    pub fn new(method: impl Into<String>, params: &impl Serialize) -> Result<Self, Error> {
        Ok(Self {
            method: method.into(),
            params: params_to_raw(params)?,
        })
    }
}

fn params_to_raw(params: &impl Serialize) -> Result<Box<RawValue>, Error> {
    let raw = serde_json::value::to_raw_value(params).map_err(Error::Encode)?;
    if !raw.get().starts_with('[') {
        return Err(Error::InvalidMessage("\"params\" must be a JSON array"));
    }
    Ok(raw)
}

impl Message {
    /// Decodes one message from the text of one JSON value, as returned by
    /// [`JsonSplitter`](crate::JsonSplitter) or [`JsonCodec`](crate::JsonCodec).
    ///
    /// Members other than `method`, `params`, `result`, `error` and `id` are ignored. As in Open
    /// vSwitch's own reader, a `null` member counts as absent, except `id`, where `null` is what
    /// makes a notification.
    pub fn decode(text: &[u8]) -> Result<Self, Error> {
        // serde's derived struct visitor would also accept a JSON array of the fields in order;
        // JSON-RPC 1.0 has no such form, so rule it out before deserializing.
        let first = text.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(Error::InvalidMessage("message is not a JSON object"));
        }
        let wire: WireIn = serde_json::from_slice(text).map_err(Error::Decode)?;
        wire.classify()
    }

    /// Encodes the message as compact JSON text, the form ovsdb-server expects.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        match self {
            Message::Request(request) => request.encode(),
            Message::Response(response) => response.encode(),
            Message::Notification(notification) => notification.encode(),
        }
    }
}

impl Request {
    /// Encodes the request as compact JSON text.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        to_vec(&WireOut {
            method: Some(&self.method),
            params: Some(&self.params),
            id: &self.id,
            ..WireOut::default()
        })
    }
}

impl Notification {
    /// Encodes the notification as compact JSON text, with `"id": null`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        to_vec(&WireOut {
            method: Some(&self.method),
            params: Some(&self.params),
            ..WireOut::default()
        })
    }
}

impl Response {
    /// Encodes the response as compact JSON text, with both `result` and `error` present.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let (result, error) = match &self.result {
            Ok(result) => (Some(&**result), None),
            Err(error) => (None, Some(error)),
        };
        to_vec(&WireOut {
            result: Some(result),
            error: Some(error),
            id: &self.id,
            ..WireOut::default()
        })
    }
}

fn to_vec(wire: &WireOut<'_>) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(wire).map_err(Error::Encode)
}

const NULL: &Value = &Value::Null;

/// A message as written: members that are `None` are left out, `Some(None)` is `null`.
#[derive(Serialize)]
struct WireOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Option<&'a RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Option<&'a Value>>,
    id: &'a Value,
}

impl Default for WireOut<'_> {
    fn default() -> Self {
        Self {
            method: None,
            params: None,
            result: None,
            error: None,
            id: NULL,
        }
    }
}

/// A message as read. Each member is `None` when absent and `Some` when present, even if `null`,
/// because JSON-RPC gives a present `null` meaning (for `id`) that absence does not have.
#[derive(Deserialize)]
struct WireIn {
    #[serde(default, deserialize_with = "present")]
    method: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
}

/// Deserializes a member that is present, keeping `null` as a value rather than as absence.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn is_null(raw: &RawValue) -> bool {
    // RawValue holds the value's text without surrounding whitespace.
    raw.get() == "null"
}

impl WireIn {
    fn classify(self) -> Result<Message, Error> {
        let params = self.params.filter(|p| !is_null(p));
        let result = self.result;
        let error = self.error.filter(|e| !e.is_null());
        let has_result = result.as_deref().is_some_and(|r| !is_null(r));

        if let Some(method) = self.method.flatten() {
            if has_result || error.is_some() {
                return Err(Error::InvalidMessage(
                    "request has \"method\" and also \"result\" or \"error\"",
                ));
            }
            let Some(params) = params else {
                return Err(Error::InvalidMessage("request has no \"params\""));
            };
            if !params.get().starts_with('[') {
                return Err(Error::InvalidMessage("\"params\" must be a JSON array"));
            }
            return match self.id {
                None => Err(Error::InvalidMessage("request has no \"id\"")),
                Some(Value::Null) => Ok(Message::Notification(Notification { method, params })),
                Some(id) => Ok(Message::Request(Request { method, params, id })),
            };
        }

        if params.is_some() {
            return Err(Error::InvalidMessage(
                "message has \"params\" but no \"method\"",
            ));
        }
        let Some(id) = self.id else {
            return Err(Error::InvalidMessage("response has no \"id\""));
        };
        let result = match (result, error) {
            (None, None) => {
                return Err(Error::InvalidMessage(
                    "message has no \"method\", \"result\" or non-null \"error\"",
                ))
            }
            (Some(_), Some(_)) if has_result => {
                return Err(Error::InvalidMessage(
                    "response has both non-null \"result\" and non-null \"error\"",
                ))
            }
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
        };
        Ok(Message::Response(Response { id, result }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Message, Error> {
        Message::decode(text.as_bytes())
    }

    fn invalid(text: &str) -> &'static str {
        match decode(text) {
            Err(Error::InvalidMessage(reason)) => reason,
            other => panic!("{text}: expected InvalidMessage, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_transact_reply() {
        let Message::Response(response) =
            decode(r#"{"id":7,"result":[{"uuid":["uuid","2f6c"]},{}],"error":null}"#).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(response.id, json!(7));
        assert_eq!(
            response.result.unwrap().get(),
            r#"[{"uuid":["uuid","2f6c"]},{}]"#
        );
    }

    #[test]
    fn decodes_an_error_reply() {
        let Message::Response(response) =
            decode(r#"{"id":3,"result":null,"error":{"error":"unknown database","details":"x"}}"#)
                .unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(response.id, json!(3));
        assert_eq!(
            response.result.unwrap_err(),
            json!({"error": "unknown database", "details": "x"})
        );
    }

    #[test]
    fn decodes_an_error_reply_without_result() {
        // Some Open vSwitch versions leave out "result" on error replies.
        let Message::Response(response) = decode(r#"{"id":3,"error":"bad"}"#).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(response.result.unwrap_err(), json!("bad"));
    }

    #[test]
    fn null_result_with_null_error_is_a_null_success() {
        let Message::Response(response) = decode(r#"{"id":1,"result":null,"error":null}"#).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(response.result.unwrap().get(), "null");
    }

    #[test]
    fn decodes_the_servers_echo_request() {
        let Message::Request(request) =
            decode(r#" {"id":"echo","method":"echo","params":[]} "#).unwrap()
        else {
            panic!("not a request")
        };
        assert_eq!(request.id, json!("echo"));
        assert_eq!(request.method, "echo");
        assert_eq!(request.params.get(), "[]");
    }

    #[test]
    fn decodes_an_update_notification() {
        let text = r#"{"id":null,"method":"update2","params":["m",{"Logical_Switch":{"5b":{"insert":{"name":"ls0"}}}}]}"#;
        let Message::Notification(notification) = decode(text).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!(notification.method, "update2");
        let params: Value = serde_json::from_str(notification.params.get()).unwrap();
        assert_eq!(
            params,
            json!(["m", {"Logical_Switch": {"5b": {"insert": {"name": "ls0"}}}}])
        );
    }

    #[test]
    fn unknown_members_are_ignored() {
        assert!(matches!(
            decode(r#"{"jsonrpc":"1.0","id":1,"result":{},"error":null}"#),
            Ok(Message::Response(_))
        ));
    }

    #[test]
    fn malformed_shapes_are_rejected_with_a_reason() {
        let cases = [
            (r#"[1,2]"#, "message is not a JSON object"),
            (r#""id""#, "message is not a JSON object"),
            (r#""#, "message is not a JSON object"),
            (r#"{}"#, "response has no \"id\""),
            (r#"{"result":1,"error":null}"#, "response has no \"id\""),
            (
                r#"{"id":1}"#,
                "message has no \"method\", \"result\" or non-null \"error\"",
            ),
            (
                r#"{"id":1,"error":null}"#,
                "message has no \"method\", \"result\" or non-null \"error\"",
            ),
            (
                r#"{"id":1,"result":[],"error":"x"}"#,
                "response has both non-null \"result\" and non-null \"error\"",
            ),
            (r#"{"method":"echo","params":[]}"#, "request has no \"id\""),
            (r#"{"method":"echo","id":1}"#, "request has no \"params\""),
            (
                r#"{"method":"echo","params":null,"id":1}"#,
                "request has no \"params\"",
            ),
            (
                r#"{"method":"echo","params":{},"id":1}"#,
                "\"params\" must be a JSON array",
            ),
            (
                r#"{"method":"echo","params":[],"id":1,"result":[]}"#,
                "request has \"method\" and also \"result\" or \"error\"",
            ),
            (
                r#"{"method":"echo","params":[],"id":1,"error":"x"}"#,
                "request has \"method\" and also \"result\" or \"error\"",
            ),
            (
                r#"{"params":[],"id":1,"result":[],"error":null}"#,
                "message has \"params\" but no \"method\"",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(invalid(text), reason, "{text}");
        }
    }

    #[test]
    fn invalid_json_and_wrong_types_are_decode_errors() {
        for text in [
            &b"{"[..],
            b"{\"id\":1,}",
            b"{\"id\":1,\"result\":[],\"error\":null} {}",
            b"{\"method\":7,\"params\":[],\"id\":1}",
            b"{\"id\":1,\"id\":2,\"result\":1,\"error\":null}",
            b"{\"id\":1,\"result\":\"\xff\",\"error\":null}",
            b"{\"id\":\"\\ud800\",\"result\":1,\"error\":null}",
        ] {
            let decoded = Message::decode(text);
            assert!(
                matches!(decoded, Err(Error::Decode(_))),
                "{}: {decoded:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn encodes_requests_without_a_jsonrpc_member() {
        let request = Request::new(1, "list_dbs", &json!([])).unwrap();
        assert_eq!(
            Message::Request(request).encode().unwrap(),
            br#"{"method":"list_dbs","params":[],"id":1}"#
        );
    }

    #[test]
    fn encodes_notifications_with_a_null_id() {
        let notification = Notification::new("cancel", &json!([4])).unwrap();
        assert_eq!(
            notification.encode().unwrap(),
            br#"{"method":"cancel","params":[4],"id":null}"#
        );
    }

    #[test]
    fn encodes_responses_with_both_result_and_error() {
        let ok = Response {
            id: json!("echo"),
            result: Ok(RawValue::from_string("[]".into()).unwrap()),
        };
        assert_eq!(
            ok.encode().unwrap(),
            br#"{"result":[],"error":null,"id":"echo"}"#
        );
        let err = Response {
            id: json!(2),
            result: Err(json!({"error": "not supported"})),
        };
        assert_eq!(
            err.encode().unwrap(),
            br#"{"result":null,"error":{"error":"not supported"},"id":2}"#
        );
    }

    #[test]
    fn params_that_are_not_an_array_are_refused_when_building() {
        assert!(matches!(
            Request::new(1, "transact", &json!({"op": "select"})),
            Err(Error::InvalidMessage("\"params\" must be a JSON array"))
        ));
    }

    #[test]
    fn an_echo_request_answered_with_its_params_round_trips() {
        let Message::Request(echo) =
            decode(r#"{"id":"echo","method":"echo","params":[1,"a"]}"#).unwrap()
        else {
            panic!("not a request")
        };
        let reply = Message::Response(Response {
            id: echo.id,
            result: Ok(echo.params),
        });
        let text = reply.encode().unwrap();
        let Message::Response(decoded) = Message::decode(&text).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(decoded.id, json!("echo"));
        assert_eq!(decoded.result.unwrap().get(), r#"[1,"a"]"#);
    }

    /// Compares two messages by their encoded form (RawValue has no PartialEq).
    fn same(a: &Message, b: &Message) -> bool {
        a.encode().unwrap() == b.encode().unwrap()
    }

    fn arb_id() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            Just(json!([1, "x"])),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let params = prop::collection::vec(any::<String>(), 0..4).prop_map(Value::from);
        prop_oneof![
            (arb_id(), "[a-z_]{1,12}", params.clone()).prop_map(|(id, method, params)| {
                Message::Request(Request::new(id, method, &params).unwrap())
            }),
            ("[a-z_]{1,12}", params.clone()).prop_map(|(method, params)| {
                Message::Notification(Notification::new(method, &params).unwrap())
            }),
            (arb_id(), params.clone()).prop_map(|(id, result)| {
                Message::Response(Response {
                    id,
                    result: Ok(serde_json::value::to_raw_value(&result).unwrap()),
                })
            }),
            (arb_id(), any::<String>()).prop_map(|(id, error)| {
                Message::Response(Response {
                    id,
                    result: Err(json!({ "error": error })),
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(message in arb_message()) {
            let decoded = Message::decode(&message.encode().unwrap()).unwrap();
            prop_assert!(same(&message, &decoded));
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Message::decode(&text);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            members in prop::collection::vec(
                (
                    prop::sample::select(&["id", "method", "params", "result", "error", "x"][..]),
                    prop_oneof![
                        Just(Value::Null),
                        Just(json!([])),
                        Just(json!({})),
                        Just(json!("s")),
                        Just(json!(1)),
                    ],
                ),
                0..6,
            ),
        ) {
            let object: serde_json::Map<String, Value> =
                members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let _ = Message::decode(&serde_json::to_vec(&object).unwrap());
        }
    }
}
