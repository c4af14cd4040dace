//! `model_info.mode`: which kind of endpoint a deployment serves, so one alias can
//! hold an embedding and a chat model side by side.

/// The kind of endpoint a deployment serves, in LiteLLM's `model_info.mode` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Chat,
    Completion,
    Embedding,
    ImageGeneration,
    AudioTranscription,
    AudioSpeech,
    Moderation,
    Rerank,
    Responses,
}

impl Mode {
    pub const ALL: [Mode; 9] = [
        Mode::Chat,
        Mode::Completion,
        Mode::Embedding,
        Mode::ImageGeneration,
        Mode::AudioTranscription,
        Mode::AudioSpeech,
        Mode::Moderation,
        Mode::Rerank,
        Mode::Responses,
    ];

    /// LiteLLM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Completion => "completion",
            Mode::Embedding => "embedding",
            Mode::ImageGeneration => "image_generation",
            Mode::AudioTranscription => "audio_transcription",
            Mode::AudioSpeech => "audio_speech",
            Mode::Moderation => "moderation",
            Mode::Rerank => "rerank",
            Mode::Responses => "responses",
        }
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The client paths of this kind, for messages.
    pub fn endpoints(self) -> &'static str {
        match self {
            Mode::Chat => "/v1/chat/completions",
            Mode::Completion => "/v1/completions",
            Mode::Embedding => "/v1/embeddings",
            Mode::ImageGeneration => "/v1/images/*",
            Mode::AudioTranscription => "/v1/audio/transcriptions and /v1/audio/translations",
            Mode::AudioSpeech => "/v1/audio/speech",
            Mode::Moderation => "/v1/moderations",
            Mode::Rerank => "/v1/rerank",
            Mode::Responses => "/v1/responses",
        }
    }

    /// Whether a deployment of `mode` (`None`: unmarked) serves a request of kind
    /// `wanted` (`None`: a path of no particular kind). A chat model also serves the
    /// Responses API, which every OpenAI chat model speaks.
    pub fn serves(mode: Option<Mode>, wanted: Option<Mode>) -> bool {
        match (mode, wanted) {
            (None, _) | (_, None) => true,
            (Some(Mode::Chat), Some(Mode::Responses)) => true,
            (Some(m), Some(w)) => m == w,
        }
    }
}
