//! Which provider a model name belongs to.

/// The provider name [`extract_provider`] returns when it cannot tell.
pub const UNKNOWN_PROVIDER: &str = "unknown";

/// The provider of `model`, from its name alone (no network, no price table).
///
/// - A `provider/model` prefix wins: `anthropic/claude-sonnet-4-5` is `anthropic`,
///   `ollama/llama3` is `ollama`, `openrouter/openai/gpt-4o` is `openrouter`. The prefix is
///   lower-cased and passed through [`canonical_provider`], so `google/gemini-2.5-flash` is
///   `gemini`.
/// - Otherwise the name decides: `gpt-`, `chatgpt-`, `text-embedding-`, `davinci-`,
///   `babbage-`, `dall-e-`, `whisper-`, `tts-`, `omni-moderation-` and the reasoning
///   series `o1`, `o3`, `o4`, ... (an `o` and digits, then the end of the name or a `-`) are
///   `openai`; `claude-` is `anthropic`; `gemini-` is `gemini`.
/// - Anything else is [`UNKNOWN_PROVIDER`]. A name such as `llama3:8b` is never guessed to be
///   a free local model: pass the provider explicitly (`ollama`) or prefix the name
///   (`ollama/llama3:8b`). `gpt-oss` models are open weights served by many hosts, so they
///   are unknown too.
///
/// Google's Gemini API is named `gemini`, as LiteLLM names it (its price file keys those
/// models `gemini/<model>`), so that names from that file match without translation.
///
/// ```
/// use agent_profiler_runtime::extract_provider;
///
/// assert_eq!(extract_provider("gpt-4o-mini"), "openai");
/// assert_eq!(extract_provider("o3-mini"), "openai");
/// assert_eq!(extract_provider("claude-sonnet-4-5-20250929"), "anthropic");
/// assert_eq!(extract_provider("gemini-2.5-flash"), "gemini");
/// assert_eq!(extract_provider("ollama/llama3.2"), "ollama");
/// assert_eq!(extract_provider("llama3.2"), "unknown");
/// assert_eq!(extract_provider("o1x"), "unknown");
/// ```
pub fn extract_provider(model: &str) -> String {
    let model = model.trim();
    if let Some((prefix, rest)) = model.split_once('/')
        && !prefix.is_empty()
        && !rest.is_empty()
    {
        return canonical_provider(prefix);
    }
    let lower = model.to_ascii_lowercase();
    let name = lower.as_str();
    if name.starts_with("gpt-oss") {
        return UNKNOWN_PROVIDER.to_owned();
    }
    const OPENAI_PREFIXES: [&str; 9] = [
        "gpt-",
        "chatgpt-",
        "text-embedding-",
        "davinci-",
        "babbage-",
        "dall-e-",
        "whisper-",
        "tts-",
        "omni-moderation-",
    ];
    if OPENAI_PREFIXES.iter().any(|p| name.starts_with(p)) || is_openai_reasoning_series(name) {
        return "openai".to_owned();
    }
    if name.starts_with("claude-") {
        return "anthropic".to_owned();
    }
    if name.starts_with("gemini-") {
        return "gemini".to_owned();
    }
    UNKNOWN_PROVIDER.to_owned()
}

/// `o1`, `o3-mini`, `o4-mini-2025-04-16`: an `o`, one or more digits, then the end or `-`.
fn is_openai_reasoning_series(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('o') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && (rest.len() == digits || rest.as_bytes()[digits] == b'-')
}

/// The canonical spelling of a provider name: lower case, surrounding blanks removed, and
/// `google` (and `google_ai_studio`) folded into `gemini`, the name LiteLLM uses for
/// Google's Gemini API. Other names pass through unchanged (lower-cased): `vertex_ai`,
/// `azure`, `bedrock`, `openrouter`, `vllm`, ...
///
/// ```
/// use agent_profiler_runtime::cost::canonical_provider;
///
/// assert_eq!(canonical_provider(" Google "), "gemini");
/// assert_eq!(canonical_provider("OpenAI"), "openai");
/// ```
pub fn canonical_provider(provider: &str) -> String {
    let lower = provider.trim().to_ascii_lowercase();
    match lower.as_str() {
        "google" | "google_ai_studio" | "googleai" => "gemini".to_owned(),
        _ => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_win() {
        assert_eq!(extract_provider("anthropic/claude-3-7-sonnet"), "anthropic");
        assert_eq!(extract_provider("openai/gpt-4o"), "openai");
        assert_eq!(extract_provider("ollama/llama3"), "ollama");
        assert_eq!(extract_provider("google/gemini-2.5-pro"), "gemini");
        assert_eq!(extract_provider("Vertex_AI/gemini-2.5-pro"), "vertex_ai");
        // A prefix wins even over a name that looks like another provider's.
        assert_eq!(extract_provider("azure/gpt-4o"), "azure");
        assert_eq!(
            extract_provider("openrouter/anthropic/claude-sonnet-4"),
            "openrouter"
        );
    }

    #[test]
    fn names_decide_without_a_prefix() {
        for openai in [
            "gpt-4o",
            "gpt-4.1-nano",
            "gpt-5",
            "chatgpt-4o-latest",
            "o1",
            "o1-mini",
            "o3",
            "o3-pro-2025-06-10",
            "o4-mini",
            "text-embedding-3-small",
            "GPT-4o",
        ] {
            assert_eq!(extract_provider(openai), "openai", "{openai}");
        }
        assert_eq!(extract_provider("claude-opus-4-1"), "anthropic");
        assert_eq!(extract_provider("gemini-2.0-flash"), "gemini");
    }

    #[test]
    fn anything_else_is_unknown_never_free() {
        for unknown in [
            "",
            "o",
            "o1x",
            "o1mini",
            "omni",
            "ollama",
            "llama3.2",
            "llama3:8b",
            "mistral-large",
            "gpt-oss-120b",
            "gpt-oss:20b",
            "/gpt-4o",
            "openai/",
        ] {
            assert_eq!(extract_provider(unknown), UNKNOWN_PROVIDER, "{unknown:?}");
        }
    }
}
