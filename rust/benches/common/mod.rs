//! What more than one bench sends.

/// The extFields a Java producer's SEND_MESSAGE_V2 (code 310) header carries.
pub const JAVA_SEND_V2_FIELDS: [(&str, &str); 13] = [
    ("a", "please_rename_unique_group_name"),
    ("b", "TopicTest"),
    ("c", "TBW102"),
    ("d", "4"),
    ("e", "3"),
    ("f", "0"),
    ("g", "1733212800000"),
    ("h", "0"),
    (
        "i",
        "KEYS\u{1}order-1\u{2}UNIQ_KEY\u{1}7F0000010001\u{2}WAIT\u{1}true\u{2}",
    ),
    ("j", "0"),
    ("k", "false"),
    ("m", "false"),
    ("n", "broker-a"),
];
