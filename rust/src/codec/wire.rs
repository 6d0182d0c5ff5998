//! Wire facts every other codec module shares: the frame prelude, the flag bits, the header
//! encodings and the client languages. Depends on nothing, so nothing cycles through it.

/// Apache RocketMQ's default limit (`com.rocketmq.remoting.frameMaxLength`): 16 MiB, prefix included.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Bytes before the header: the length prefix and the header-length word.
pub const PRELUDE_LEN: usize = 8;

/// Bit 0 of `flag`: the command is a response.
pub const FLAG_RESPONSE: i32 = 0x1;
/// Bit 1 of `flag`: the request is oneway (no response will be sent).
pub const FLAG_ONEWAY: i32 = 0x2;

/// The header encoding named by the high byte of the header-length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    /// RocketMQ's name for it (`serializeTypeCurrentRPC`).
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// The ordinals of Java's `LanguageCode` enum, in order.
const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

/// The client language carried in every header; unknown bytes are kept so re-encoding is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    pub const JAVA: LanguageCode = LanguageCode(0);
    pub const PYTHON: LanguageCode = LanguageCode(3);
    pub const OTHER: LanguageCode = LanguageCode(7);
    pub const RUST: LanguageCode = LanguageCode(12);

    /// Java's enum name, or `None` for a byte Java would decode as null.
    pub fn name(self) -> Option<&'static str> {
        LANGUAGES.get(usize::from(self.0)).copied()
    }

    /// The code for a Java enum name (case-insensitive).
    pub fn from_name(name: &str) -> Option<LanguageCode> {
        LANGUAGES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| LanguageCode(i as u8))
    }
}

impl Default for LanguageCode {
    fn default() -> Self {
        LanguageCode::JAVA
    }
}

/// Version `V5_3_3` of `MQVersion.Version`: new enough for standard route JSON and GO_AWAY.
pub const DEFAULT_VERSION: i32 = 479;
